"""Agent configuration: typed, validated at start-up, errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config, simulator_config_path

EDGE_AGENT = [sys.executable, "-c", "import sys; from edge_agent.cli import main; sys.exit(main())"]

MINIMAL = """
[device]
id = "gate-a-1"
site = "hq"

[door]
id = "gate-a"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_config_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.device.id == "gate-a-1" and cfg.door.id == "gate-a"
    assert cfg.door.accept_uid is False  # UID-only badges are opt-in
    assert cfg.hardware.gpio is None and cfg.central.url is None
    assert cfg.paths.database == Path("/var/lib/portier/portier.db")


def test_simulator_config_loads_with_resolved_paths():
    cfg = load_config(simulator_config_path())
    assert cfg.hardware.gpio.backend == "mock"
    assert cfg.hardware.gpio.rex.asserted_level == "low"
    assert cfg.hardware.camera.replay_path.is_absolute()
    assert cfg.hardware.camera.replay_path.is_dir()


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[door]\nid = 'gate-a'\nunlock_s = 0\n", "door.unlock_s"),
        ("[door]\nid = 'gate-a'\naccept_uid = 'yes'\n", "door.accept_uid"),
        ("[door]\nid = 'gate a'\n", "door.id"),
        ("[door]\nid = 'gate-a'\nmode = 'party'\n", "door.mode"),
        ("[door]\nid = 'gate-a'\ncolour = 'red'\n", "door.colour"),
        (
            "[hardware.gpio]\nbackend = 'mock'\nlock_relay_pin = 99\n",
            "hardware.gpio.lock_relay_pin",
        ),
        (
            "[hardware.gpio]\nbackend = 'mock'\nrex = { pin = 3, asserted_level = 'sideways' }\n",
            "hardware.gpio.rex.asserted_level",
        ),
        ("[hardware.gpio]\nlock_relay_pin = 17\n", "hardware.gpio.backend"),
        ("[hardware.nfc]\nbackend = 'sim'\ndebounce = -1\n", "hardware.nfc"),
        ("[hardware.camera]\nbackend = 'replay'\nfps = 'fast'\n", "hardware.camera.fps"),
        ("[central]\nurl = 'ftp://x'\n", "central.url"),
        ("[ntag424]\nfile_read_key = '00'\n", "ntag424.file_read_key"),
        ("[guard]\nmax_pin_failures = 0\n", "guard.max_pin_failures"),
        ("[paths]\nsocket_mode = 4096\n", "paths.socket_mode"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
)
def test_errors_name_the_key(tmp_path, extra, key):
    base = MINIMAL.split("[door]", maxsplit=1)[0] if extra.startswith("[door]") else MINIMAL
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, base + extra))
    assert info.value.key.startswith(key), str(info.value)


def test_missing_required_section(tmp_path):
    with pytest.raises(ConfigError, match=r"^door: required key is missing"):
        load_config(write(tmp_path, '[device]\nid = "a"\nsite = "hq"\n'))


@pytest.mark.parametrize("content", [b"[device\nid=", b"\xff\xfe\x00garbage", b"id = [1, 2"])
def test_corrupt_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "agent.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"agent\.toml"):
        load_config(path)


@pytest.mark.processes
def test_check_config_cli(tmp_path):
    good = write(tmp_path, MINIMAL)
    proc = subprocess.run(
        [*EDGE_AGENT, "check-config", str(good)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "OK" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "unlock_s = -3\n")
    proc = subprocess.run(
        [*EDGE_AGENT, "check-config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "door.unlock_s" in proc.stderr and "Traceback" not in proc.stderr
    missing = subprocess.run(
        [*EDGE_AGENT, "check-config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
