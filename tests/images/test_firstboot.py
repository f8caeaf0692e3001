"""``appliance firstboot`` against the reference central on loopback.

A provisioned boot directory is commissioned on the simulator hardware: the device
is enrolled, its self-test report is stored at the central, the configuration is
written with the right modes and the one-time token is gone from every file. A
central behind TLS with a private CA (``central.testing.TlsCentral``) is reached only
with the provisioned CA.
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
from central.testing import (
    CentralProcess,
    ContractChecker,
    TlsCentral,
    mint_ca,
    mint_server_cert,
)
from edge_agent.config import load_config
from edge_agent.enroll import load_credential
from edge_agent.sync import CentralClient
from images.cli import main
from images.firstboot import agent_tables, kiosk_tables
from images.provision import BOOT_FILE_NAME, Provisioning, WifiSettings
from kiosk.config import load_config as load_kiosk_config
from kiosk.config import parse_config as parse_kiosk_config

pytestmark = pytest.mark.processes

SITE = "hq"
KIOSK_EXAMPLE = Path(__file__).resolve().parents[2] / "kiosk" / "data" / "kiosk.toml"


#: conftest's ``central`` for this module: a central that knows the site.
CENTRAL_OPTIONS = {"site": SITE}


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
    err = capsys.readouterr().err
    assert "error: door: 'Gate A' is not an identifier" in err
    assert f"(in {boot / BOOT_FILE_NAME})" in err  # the key and the file, not an option
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
        # Schema 3's additions (issue 10) go too: this is a database of schema 1.
        store._conn.execute("DROP TABLE delta_keys")
        # And schema 4's (issue 13: operators).
        for table in ("operator_journal", "operator_sessions", "api_tokens", "operators"):
            store._conn.execute(f"DROP TABLE {table}")
        # And schema 7's (retention) and 6's (host notification); 8's went with operators.
        store._conn.execute("DROP INDEX events_received")
        store._conn.execute("DROP TABLE notifications")
        store._conn.execute("DROP TABLE badge_issues")  # schema 9's (badge issuance)
        # And schema 10's (issue 14: the console's alarm acknowledgements, the self-test log).
        store._conn.execute("DROP TABLE alarm_acks")
        store._conn.execute("DROP TABLE selftest_log")
        store._conn.execute("DROP TABLE door_modes")  # schema 11's (issue 14: door modes)
        store._conn.execute("DROP TABLE event_packs")  # schema 16's (issue 14: event packs)
        store._conn.execute("DROP TABLE holidays")  # schema 15's (issue 14: holidays)
        # Schema 14's (issue 14: the statistics' index, device contact)
        store._conn.execute("DROP INDEX events_kind_time")
        store._conn.execute("DROP TABLE device_contact")
        store._conn.execute("DROP TABLE onsite_visits")
        # Schema 13's (issue 14: invitation groups and extensions, CSV import drafts).
        store._conn.execute("DROP TABLE invitation_groups")
        store._conn.execute("DROP TABLE import_drafts")
        store._conn.execute("DROP INDEX invitations_group")
        # Schema 12's (issue 14: the deny list, approvals, the visitor's e-mail).
        store._conn.execute("DROP TABLE deny_list")
        store._conn.execute("DROP TABLE invitation_approvals")
        for table, column in (
            ("events", "purged_at_ms"),
            ("invitations", "purged_at_ms"),
            ("invitations", "host_email"),
            ("invitations", "lang"),
            ("invitations", "visitor_email"),
            ("invitations", "group_id"),
            ("invitations", "replaces"),
            ("invitations", "replaced_by"),
            ("devices", "zones"),
            ("devices", "guard_console"),
            ("devices", "reset_allowed"),
            ("devices", "pack_key"),
            ("enroll_tokens", "zones"),
            ("enroll_tokens", "retry_hash"),
        ):
            store._conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        store._conn.execute("PRAGMA user_version = 1")
    with CentralStore(settings) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 16
        with pytest.raises(NotFound):
            store.selftest("nobody")
        token = store.create_enroll_token(door="lobby")["enroll_token"]
        assert store.enroll({"enroll_token": token})["delta_key"]["alg"] == "EdDSA"
        made = store.create_invitation({"visitor": "Ada", "doors": ["lobby"], "lang": "fr"})
        assert made["invitation"]["lang"] == "fr"


# -- the role: kiosk or headless door --------------------------------------------------


def test_kiosk_role_writes_a_kiosk_toml_the_kiosk_accepts(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = new_token(central, "lobby-k")
    settings = Provisioning(
        site=SITE, door="lobby-k", central_url=central.url, enroll_token=token, role="kiosk"
    )
    provision_boot(tmp_path, settings)
    etc = tmp_path / "etc"
    etc.mkdir()
    # The installer's own kiosk.toml in the image: its settings stay, but not its socket
    # (the kiosk must reach the agent first boot configured) nor, on the simulator, its
    # camera (the simulator's replayed test card, as for the agent).
    (etc / "kiosk.toml").write_text(
        '[agent]\nsocket = "/tmp/elsewhere.sock"\ntimeout_s = 3\n'
        '[camera]\nbackend = "opencv"\ndevice = 2\n'
        "[scan]\ndebounce_s = 6\n"
        '[ui]\ndirections = { en = "Lift to floor 3.", fr = "Ascenseur, 3e étage." }\n',
        encoding="utf-8",
    )

    assert firstboot(tmp_path) == 0
    assert "kiosk: wrote" in capsys.readouterr().out
    kiosk_file = etc / "kiosk.toml"
    assert mode(kiosk_file) == 0o644
    config = load_kiosk_config(kiosk_file)
    assert config.agent.socket == Path("/run/portier/agent.sock")
    assert config.agent.timeout_s == 3.0
    assert config.camera.backend == "replay"
    assert config.camera.replay_path is not None and config.camera.replay_path.is_dir()
    assert (config.input.provider, config.ui.fullscreen) == ("mouse", False)
    assert config.scan.debounce_s == 6.0
    assert config.ui.directions is not None and config.ui.directions.fr == "Ascenseur, 3e étage."
    # The agent and the kiosk were configured from the same run; the token is spent.
    assert load_config(etc / "agent.toml").door.id == "lobby-k"
    assert tomllib.loads((etc / "provision.toml").read_text())["role"] == "kiosk"
    assert not (tmp_path / "boot" / BOOT_FILE_NAME).exists()


def test_kiosk_tables_raspberry_pi_defaults_and_simulator(tmp_path: Path) -> None:
    settings = Provisioning(
        site=SITE, door="gate-p", central_url="https://c.example.org", enroll_token="t" * 32
    )
    for simulator in (False, True):
        agent = agent_tables(settings, tmp_path, simulator=simulator)
        tables = kiosk_tables(tmp_path, agent, simulator=simulator)
        config = parse_kiosk_config(tables, tmp_path)
        assert config.agent.socket == Path("/run/portier/agent.sock")
        assert config.ui.language == "en"
        if simulator:
            # The simulated agent's replayed camera and decoder, in a window, with a mouse.
            assert config.camera.backend == "replay" and config.camera.replay_path is not None
            assert config.camera.replay_path == Path(agent["hardware.camera"]["replay_path"])
            assert config.camera.replay_path.is_dir()
            assert (config.input.provider, config.ui.fullscreen) == ("mouse", False)
        else:
            # The packaged example: the 7" display and the CSI camera.
            assert config == load_kiosk_config(KIOSK_EXAMPLE)
            assert config.camera.backend == "picamera2" and config.input.provider == "mtdev"

    # An installer's kiosk.toml keeps its camera and touch panel on real hardware.
    (tmp_path / "kiosk.toml").write_text(
        '[camera]\nbackend = "opencv"\ndevice = 2\nrotation = 180\n'
        '[input]\nprovider = "hidinput"\ndevice = "/dev/input/event3"\n'
    )
    agent = agent_tables(settings, tmp_path)
    config = parse_kiosk_config(kiosk_tables(tmp_path, agent), tmp_path)
    camera = config.camera
    assert (camera.backend, camera.device, camera.rotation) == ("opencv", 2, 180)
    assert (config.input.provider, config.input.device) == ("hidinput", "/dev/input/event3")
    assert config.ui == load_kiosk_config(KIOSK_EXAMPLE).ui


def test_kiosk_toml_the_kiosk_refuses_exits_2_and_changes_nothing(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Provisioning(
        site=SITE, door="gate-k", central_url=central.url, enroll_token="t" * 32, role="kiosk"
    )
    boot = provision_boot(tmp_path, settings)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "kiosk.toml").write_text("[ui]\nidle_timeout_s = 1\n")
    before = files_under(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        firstboot(tmp_path)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "kiosk.toml: ui.idle_timeout_s: 1.0 must be between 5 and 3600" in err
    assert files_under(tmp_path) == before
    assert (boot / BOOT_FILE_NAME).exists() and not (tmp_path / "state").exists()


def test_door_role_writes_no_kiosk_toml_and_removes_a_stale_one(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = new_token(central, "gate-d")
    # A kiosk re-provisioned as a headless door: its old kiosk.toml must go, or the
    # kiosk unit (ConditionPathExists=/etc/portier/kiosk.toml) would start the UI.
    settings = Provisioning(site=SITE, door="gate-d", central_url=central.url, enroll_token=token)
    provision_boot(tmp_path, settings)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "kiosk.toml").write_text('[camera]\nbackend = "picamera2"\n')

    assert firstboot(tmp_path) == 0
    assert "role door: removed" in capsys.readouterr().out
    assert not (etc / "kiosk.toml").exists()
    assert tomllib.loads((etc / "provision.toml").read_text())["role"] == "door"
    assert load_config(etc / "agent.toml").door.id == "gate-d"


def test_bad_role_in_the_boot_file_exits_2_and_changes_nothing(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Provisioning(
        site=SITE, door="gate-r", central_url=central.url, enroll_token="t" * 32, role="kiosk"
    ).to_toml()
    text = text.replace('role = "kiosk"', 'role = "screen"')
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / BOOT_FILE_NAME).write_text(text)
    with pytest.raises(SystemExit) as exit_:
        firstboot(tmp_path)
    assert exit_.value.code == 2
    assert "error: role: 'screen' is not a role" in capsys.readouterr().err
    assert (boot / BOOT_FILE_NAME).read_text() == text
    assert not (tmp_path / "etc").exists() and not (tmp_path / "state").exists()


# -- the report upload against injected faults -----------------------------------------


@pytest.mark.parametrize(
    ("fault", "fields"),
    [
        ("error", {"status": 503, "count": 2}),
        ("drop_before_response", {"count": 1}),
        ("lost_after_commit", {"count": 1}),
    ],
)
def test_report_upload_retries_through_faults_on_selftest(
    central: CentralProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    fields: dict[str, int],
) -> None:
    door = f"gate-{fault.replace('_', '-')}"
    token = new_token(central, door)
    settings = Provisioning(site=SITE, door=door, central_url=central.url, enroll_token=token)
    boot = provision_boot(tmp_path, settings)
    with central.admin() as admin:
        admin.clear_faults()  # also forgets the spent faults of the tests before
        admin.set_fault(fault, endpoint="selftest", **fields)
    try:
        assert firstboot(tmp_path, timeout=60.0) == 0
        with central.admin() as admin:
            listed = admin.faults()
    finally:
        with central.admin() as admin:
            admin.clear_faults()
    # The fault really acted on the upload (and on nothing else), then it went through.
    assert [(f["name"], f["fired"]) for f in listed] == [(fault, fields["count"])]
    assert "report upload: " in capsys.readouterr().err
    with central.admin() as admin:
        assert admin.device_selftest(f"{SITE}-{door}")["device_id"] == f"{SITE}-{door}"
    assert not (boot / BOOT_FILE_NAME).exists()


# -- a central behind TLS with a private CA --------------------------------------------


@pytest.fixture
def tls_central(tmp_path: Path) -> Iterator[tuple[TlsCentral, Path]]:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_file, ca_key, ca_cert = mint_ca(pki, "site")
    cert, key = mint_server_cert(pki, ca_key, ca_cert)
    with TlsCentral(tmp_path / "central", cert, key) as central:
        yield central, ca_file


def test_provisioned_ca_verifies_the_central_over_https(
    tls_central: tuple[TlsCentral, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    central, ca_file = tls_central
    assert central.url.startswith("https://127.0.0.1:")
    token = central.server.store.create_enroll_token(door="gate-t")["enroll_token"]
    pem = ca_file.read_text()

    # Without the CA the device cannot trust the central: it keeps retrying, says why,
    # gives up at --timeout and keeps the boot file for the next boot.
    without = Provisioning(site=SITE, door="gate-t", central_url=central.url, enroll_token=token)
    boot = provision_boot(tmp_path, without)
    original = (boot / BOOT_FILE_NAME).read_bytes()
    assert firstboot(tmp_path, timeout=3.0) == 1
    err = capsys.readouterr().err
    assert "enrollment: central unreachable: POST /v1/enroll: TLS failure" in err
    assert "CERTIFICATE_VERIFY_FAILED" in err and "retrying in" in err
    assert "next boot tries again" in err
    assert (boot / BOOT_FILE_NAME).read_bytes() == original
    etc = tmp_path / "etc"
    assert not (etc / "central-credential.json").exists()
    assert not (etc / "central-ca.pem").exists()
    assert load_config(etc / "agent.toml").central.ca_file is None
    with pytest.raises(NotFound):
        central.server.store.selftest(f"{SITE}-gate-t")

    # Provisioned again with the site's CA: enrolled and the report uploaded over https.
    with_ca = Provisioning(
        site=SITE, door="gate-t", central_url=central.url, enroll_token=token, central_ca=pem
    )
    (boot / BOOT_FILE_NAME).write_text(with_ca.to_toml(), encoding="utf-8")
    assert firstboot(tmp_path) == 0
    out = capsys.readouterr().out
    assert f"central CA: wrote {etc / 'central-ca.pem'}" in out
    assert (etc / "central-ca.pem").read_text() == pem
    assert mode(etc / "central-ca.pem") == 0o644
    config = load_config(etc / "agent.toml")
    assert config.central.ca_file == etc / "central-ca.pem"
    assert config.central.url == central.url
    stored = central.server.store.selftest(f"{SITE}-gate-t")
    assert stored["report"] == json.loads((tmp_path / "state" / "selftest-report.json").read_text())
    assert not (boot / BOOT_FILE_NAME).exists()
    # The CA stays in the commissioned provisioning record, the token does not.
    kept = tomllib.loads((etc / "provision.toml").read_text(encoding="utf-8"))
    assert kept["central_ca"] == pem and "enroll_token" not in kept
    assert 'central_ca = """\n-----BEGIN CERTIFICATE-----\n' in (etc / "provision.toml").read_text()

    # The agent's own client, configured by first boot, reaches the central with it.
    credential = load_credential(etc / "central-credential.json")
    assert credential is not None
    with CentralClient(
        config.central.url, credential=credential.device_token, ca_file=config.central.ca_file
    ) as client:
        assert client.heartbeat({"sent_at_ms": 1})["sent_at_ms"] == 1


def test_no_provisioned_ca_removes_a_stale_one(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A device commissioned before for a private-CA central, provisioned again for a
    # central with a public certificate: the old CA must not go on deciding trust.
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "central-ca.pem").write_text(mint_ca(tmp_path, "old")[0].read_text())
    token = new_token(central, "gate-s")
    settings = Provisioning(site=SITE, door="gate-s", central_url=central.url, enroll_token=token)
    provision_boot(tmp_path, settings)

    assert firstboot(tmp_path) == 0
    assert "removed" in capsys.readouterr().out
    assert not (etc / "central-ca.pem").exists()
    agent = tomllib.loads((etc / "agent.toml").read_text())
    assert "ca_file" not in agent["central"]
    assert "central_ca" not in tomllib.loads((etc / "provision.toml").read_text())
