"""The hardened units under systemd/: verified, rated, and their support files work.

``systemd-analyze verify`` checks that every ExecStart=/ExecStopPost= binary exists
and is executable. The units name the paths they have on the appliance
(``/opt/portier/venv/bin/...``), which do not exist here, so each test builds a
small root directory laid out like the image: the units in ``etc/systemd/system``,
this machine's own systemd unit set (the same Debian release as the image) in
``usr/lib/systemd/system`` so that targets and dependencies resolve, and at each
Exec path a copy of the real console script that ``pip install`` generated for this
project from ``pyproject.toml``. ``verify --root`` then reads everything from that
root, exactly as it would read an installed image. verify exits 0 on unknown keys
and only warns, so a clean result also needs an empty stderr.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
UNITS = sorted(p.name for p in UNIT_DIR.glob("*.service"))
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (Debian: systemd)"
)


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """Return (section, key, value) for every assignment, repeated keys kept."""
    entries, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(unit: str, key: str) -> list[str]:
    return [v for _, k, v in unit_entries((UNIT_DIR / unit).read_text()) if k == key]


def exec_paths(unit: str) -> set[str]:
    paths = set()
    for key in ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost"):
        for value in values(unit, key):
            if value:
                paths.add(value.lstrip("-@:+!").split()[0])
    return paths


def make_root(tmp_path: Path, units: dict[str, str]) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    scripts = Path(sys.executable).parent
    for name, text in units.items():
        (root / "etc/systemd/system" / name).write_text(text)
        for path in exec_paths(name):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = scripts / Path(path).name
            assert source.is_file(), f"{name}: no console script {source.name} (pyproject.toml)"
            shutil.copy2(source, target)
    return root


def verify(root: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *names],
        capture_output=True,
        text=True,
        check=False,
    )


def test_units_are_the_expected_ones():
    assert UNITS == ["edge-agent.service", "kiosk.service", "portier-firstboot.service"]


@pytest.mark.processes
def test_verify_is_clean(tmp_path):
    root = make_root(tmp_path, {n: (UNIT_DIR / n).read_text() for n in UNITS})
    proc = verify(root, UNITS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.processes
def test_verify_reports_unknown_keys_on_stderr(tmp_path):
    # The check above must be able to fail: a typo in a key is only a warning.
    text = (
        (UNIT_DIR / "edge-agent.service").read_text().replace("NoNewPrivileges=", "NoNewPrivilege=")
    )
    root = make_root(tmp_path, {"edge-agent.service": text})
    proc = verify(root, ["edge-agent.service"])
    assert proc.returncode == 0
    assert "Unknown key 'NoNewPrivilege'" in proc.stderr


@pytest.mark.processes
def test_verify_reports_missing_binaries(tmp_path):
    root = make_root(tmp_path, {"kiosk.service": (UNIT_DIR / "kiosk.service").read_text()})
    (root / "opt/portier/venv/bin/kiosk").unlink()
    proc = verify(root, ["kiosk.service"])
    assert proc.returncode != 0
    assert "kiosk is not executable" in proc.stderr


def exposure(unit_path: Path) -> float:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1))


@pytest.mark.processes
@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure(unit, capsys):
    level = exposure(UNIT_DIR / unit)
    with capsys.disabled():  # shown in every run, not only on failure
        print(f"\nsystemd-analyze security --offline=yes {unit}: exposure {level}")
    assert level <= MAX_EXPOSURE


@pytest.mark.processes
def test_security_rating_can_fail(tmp_path):
    # The same measurement on a unit without any sandboxing is far above the target.
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > MAX_EXPOSURE


@pytest.mark.parametrize("unit", UNITS)
def test_common_policy(unit):
    assert values(unit, "Restart") == ["always" if unit == "kiosk.service" else "on-failure"]
    assert values(unit, "StartLimitBurst") and values(unit, "StartLimitIntervalSec")
    assert values(unit, "SyslogIdentifier")
    (env,) = values(unit, "EnvironmentFile")
    assert env.startswith("-/etc/default/")
    assert values(unit, "DevicePolicy") == ["closed"]
    assert values(unit, "NoNewPrivileges") == ["yes"]
    assert values(unit, "ProtectSystem") == ["strict"]
    assert values(unit, "CapabilityBoundingSet") == [""]


def comment_before(unit: str, key: str) -> str:
    """Return the comment block above the run of assignments that contains ``key``."""
    lines = (UNIT_DIR / unit).read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(key + "="))
    block = []
    for line in reversed(lines[:index]):
        if line.startswith("#"):
            block.append(line)
        elif block or not line.strip():
            break
    return "\n".join(reversed(block))


RELAXABLE = ("DeviceAllow", "RestrictAddressFamilies", "SupplementaryGroups", "UMask")


@pytest.mark.parametrize(
    ("unit", "key"),
    [(u, k) for u in UNITS for k in RELAXABLE if values(u, k) not in ([], [""], ["0077"])],
)
def test_relaxations_are_explained(unit, key):
    assert comment_before(unit, key).strip(), f"{unit}: {key}= without a comment"


# Hardening options that systemd-analyze security counts; when a unit leaves one out,
# a comment in it must say why.
OMISSIONS = {
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "ProcSubset": "pid",
    "MemoryDenyWriteExecute": "yes",
    "PrivateNetwork": "yes",
    "IPAddressDeny": "any",
    "User": None,
}


@pytest.mark.parametrize("unit", UNITS)
def test_omissions_are_explained(unit):
    text = (UNIT_DIR / unit).read_text()
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for key, value in OMISSIONS.items():
        present = values(unit, key)
        if present and (value is None or present == [value]):
            continue
        assert f"{key}=" in comments or (key == "User" and "as root" in comments), (
            f"{unit}: {key}= not set and no comment says why"
        )


def test_agent_unit():
    unit = "edge-agent.service"
    assert values(unit, "Type") == ["notify"]
    assert values(unit, "WatchdogSec")
    (start,) = values(unit, "ExecStart")
    assert start.endswith("edge-agent run --config /etc/portier/agent.toml")
    (stop,) = values(unit, "ExecStopPost")
    assert stop.endswith("edge-agent safe-state --config /etc/portier/agent.toml")
    assert values(unit, "StateDirectory") == ["portier"]
    assert values(unit, "RuntimeDirectory") == ["portier"]
    assert values(unit, "User") == ["portier"]
    # Offline-first: never held back by a missing uplink.
    assert "network-online.target" not in " ".join(values(unit, "After") + values(unit, "Wants"))


def test_kiosk_unit():
    unit = "kiosk.service"
    assert values(unit, "User") == ["portier-kiosk"]
    assert values(unit, "PrivateNetwork") == ["yes"]
    assert values(unit, "IPAddressDeny") == ["any"]
    families = values(unit, "RestrictAddressFamilies")[0].split()
    assert "AF_INET" not in families and "AF_INET6" not in families
    allowed = " ".join(values(unit, "DeviceAllow"))
    assert "gpio" not in allowed and "usb" not in allowed


def test_firstboot_unit_matches_provisioning():
    from images.provision import BOOT_FILE_NAME, DEVICE_BOOT_DIR

    unit = "portier-firstboot.service"
    assert values(unit, "Type") == ["oneshot"]
    assert values(unit, "ConditionPathExists") == [f"{DEVICE_BOOT_DIR}/{BOOT_FILE_NAME}"]
    assert "appliance firstboot" in values(unit, "ExecStart")[0]
    before = " ".join(values(unit, "Before"))
    assert "edge-agent.service" in before and "kiosk.service" in before


@pytest.mark.processes
def test_sysusers_creates_users_and_memberships(tmp_path):
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers missing")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:\ninput:x:101:\nrender:x:102:\n")
    subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(UNIT_DIR / "portier.sysusers")],
        check=True,
        capture_output=True,
    )
    users = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",")
        for line in (root / "etc/group").read_text().splitlines()
    }
    assert users["portier"][6] == "/usr/sbin/nologin"
    assert users["portier-kiosk"][6] == "/usr/sbin/nologin"
    assert "portier-kiosk" in groups["portier-api"]
    assert "portier" in groups["gpio"] and "portier" in groups["plugdev"]
    assert "portier" in groups["dialout"]  # the OSDP readers' serial adapter
    assert {"video", "render", "input"} <= {g for g, m in groups.items() if "portier-kiosk" in m}
    # The kiosk must not reach the agent's configuration group nor the door hardware.
    door = groups["portier"] + groups["gpio"] + groups["plugdev"] + groups["dialout"]
    assert "portier-kiosk" not in door
    # Every group a unit names exists after sysusers.
    for unit in UNITS:
        for group in " ".join(values(unit, "SupplementaryGroups") + values(unit, "Group")).split():
            assert group in groups, f"{unit}: group {group} not created"


@pytest.mark.processes
def test_tmpfiles_makes_config_dir_setgid(tmp_path):
    if shutil.which("systemd-tmpfiles") is None or shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-tmpfiles missing")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    for tool, args in (
        ("systemd-sysusers", [str(UNIT_DIR / "portier.sysusers")]),
        ("systemd-tmpfiles", ["--create", str(UNIT_DIR / "portier.tmpfiles")]),
    ):
        proc = subprocess.run([tool, f"--root={root}", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    info = (root / "etc/portier").stat()
    assert info.st_mode & 0o7777 == 0o2751
    group_line = next(
        line
        for line in (root / "etc/group").read_text().splitlines()
        if line.startswith("portier:")
    )
    assert info.st_gid == int(group_line.split(":")[2])
