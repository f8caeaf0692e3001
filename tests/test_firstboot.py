"""``appliance firstboot`` against the reference central on loopback.

A provisioned boot directory is commissioned on the simulator hardware: the device
is enrolled, its self-test report is stored at the central, the configuration is
written with the right modes and the one-time token is gone from every file.
"""

from __future__ import annotations

import json
import socket
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.errors import NotFound
from central.testing import CentralProcess, ContractChecker
from edge_agent.config import load_config
from edge_agent.enroll import load_credential
from images.cli import main
from images.provision import BOOT_FILE_NAME, Provisioning, WifiSettings

SITE = "hq"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralProcess]:
    with CentralProcess(tmp_path_factory.mktemp("central") / "data", site=SITE) as process:
        yield process


def new_token(central: CentralProcess, door: str) -> str:
    with central.admin() as admin:
        return admin.create_enroll_token(door, site=SITE)["enroll_token"]


def provision_boot(tmp_path: Path, settings: Provisioning) -> Path:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / BOOT_FILE_NAME).write_text(settings.to_toml(), encoding="utf-8")
    return boot


def firstboot(tmp_path: Path, *extra: str, timeout: float = 20.0) -> int:
    return main(
        [
            "firstboot",
            "--boot",
            str(tmp_path / "boot"),
            "--etc",
            str(tmp_path / "etc"),
            "--state",
            str(tmp_path / "state"),
            "--simulator",
            "--timeout",
            str(timeout),
            *extra,
        ]
    )


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_firstboot_enrolls_uploads_report_and_destroys_token(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = new_token(central, "gate-a")
    settings = Provisioning(
        site=SITE,
        door="gate-a",
        central_url=central.url,
        enroll_token=token,
        wifi=WifiSettings(ssid="Site Wi-Fi", psk="correct horse"),
        hostname="gate-a-1",
    )
    boot = provision_boot(tmp_path, settings)
    etc, state = tmp_path / "etc", tmp_path / "state"

    assert firstboot(tmp_path) == 0
    out = capsys.readouterr().out
    assert "enrolled as device gate-a-1" in out

    # Enrolled at the central, with the self-test report stored there.
    with central.admin() as admin:
        devices = {d["device_id"]: d for d in admin.received()["devices"]}
        stored = admin.device_selftest("gate-a-1")
    assert devices["gate-a-1"]["door"] == "gate-a"
    kept = (state / "selftest-report.json").read_text(encoding="utf-8")
    assert stored["report"] == json.loads(kept)
    assert stored["ok"] is True and stored["report"]["ok"] is True
    checks = {(r["component"], r["check"]): r["status"] for r in stored["report"]["results"]}
    assert checks[("relay", "pulse_readback")] == "pass"
    assert checks[("nfc", "badge_read")] == "skipped"  # no prompts at first boot
    ContractChecker().validate(stored, "StoredSelfTest")

    # The configuration, with the modes the sandbox and the agent need.
    config = load_config(etc / "agent.toml")
    assert (config.device.id, config.device.site, config.door.id) == ("gate-a-1", SITE, "gate-a")
    assert config.central.url == central.url
    assert config.central.credential_file == etc / "central-credential.json"
    assert config.hardware.gpio is not None and config.hardware.gpio.backend == "mock"
    credential = load_credential(etc / "central-credential.json")
    assert credential is not None and credential.device_id == "gate-a-1"
    assert mode(etc / "provision.toml") == 0o600
    assert mode(etc / "wifi" / "wpa_supplicant-wlan0.conf") == 0o600
    assert mode(etc / "agent.toml") == 0o640
    assert mode(etc / "central-credential.json") == 0o640
    assert (etc / "hostname").read_text() == "gate-a-1\n"
    wpa = (etc / "wifi" / "wpa_supplicant-wlan0.conf").read_text()
    assert f"ssid={b'Site Wi-Fi'.hex()}" in wpa and 'psk="correct horse"' in wpa
    kept_settings = tomllib.loads((etc / "provision.toml").read_text())
    assert kept_settings["site"] == SITE and "enroll_token" not in kept_settings

    # The token is nowhere on disk; the boot file is gone.
    assert not (boot / BOOT_FILE_NAME).exists()
    everything = files_under(tmp_path)
    assert everything
    assert not [p for p, data in everything.items() if token.encode() in data]

    # A second run is a no-op and says so.
    assert firstboot(tmp_path) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert files_under(tmp_path) == everything


def test_bad_provisioning_file_exits_2_and_changes_nothing(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    text = (
        f'format = 1\nsite = "hq"\ndoor = "Gate A"\ncentral_url = "{central.url}"\n'
        f'enroll_token = "{"x" * 32}"\n'
    )
    (boot / BOOT_FILE_NAME).write_text(text)
    with pytest.raises(SystemExit) as exit_:
        firstboot(tmp_path)
    assert exit_.value.code == 2
    assert "--door" in capsys.readouterr().err
    assert (boot / BOOT_FILE_NAME).read_text() == text
    assert not (tmp_path / "etc").exists() and not (tmp_path / "state").exists()


def test_unreachable_central_exits_1_and_keeps_the_file_for_the_next_boot(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    token = new_token(central, "gate-b")
    settings = Provisioning(site=SITE, door="gate-b", central_url=dead_url, enroll_token=token)
    boot = provision_boot(tmp_path, settings)
    original = (boot / BOOT_FILE_NAME).read_bytes()

    assert firstboot(tmp_path, timeout=1.0) == 1
    assert "next boot tries again" in capsys.readouterr().err
    assert (boot / BOOT_FILE_NAME).read_bytes() == original
    assert not (tmp_path / "etc" / "central-credential.json").exists()
    with central.admin() as admin, pytest.raises(NotFound):
        admin.device_selftest(f"{SITE}-gate-b")

    # The next boot, with the central reachable, finishes the job.
    fixed = Provisioning(site=SITE, door="gate-b", central_url=central.url, enroll_token=token)
    (boot / BOOT_FILE_NAME).write_text(fixed.to_toml())
    assert firstboot(tmp_path) == 0
    with central.admin() as admin:
        assert admin.device_selftest(f"{SITE}-gate-b")["device_id"] == f"{SITE}-gate-b"
    assert not (boot / BOOT_FILE_NAME).exists()
    assert not [p for p, data in files_under(tmp_path).items() if token.encode() in data]


def test_central_database_of_schema_1_gains_the_report_table(tmp_path: Path) -> None:
    from central.settings import CentralSettings
    from central.store import SCHEMA_VERSION, CentralStore

    settings = CentralSettings(data_dir=tmp_path / "central", site=SITE)
    with CentralStore(settings) as store:
        store._conn.execute("DROP TABLE selftest_reports")
        store._conn.execute("PRAGMA user_version = 1")
    with CentralStore(settings) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        with pytest.raises(NotFound):
            store.selftest("nobody")
