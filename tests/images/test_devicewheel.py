"""The device's wheel (images/devicewheel.py): what the appliance image installs.

Built for real here (``pip wheel`` of a staged copy, a few seconds): it holds the device
packages and commands only, never the reference central or the demo, and everything a
device runs imports from it alone. The image test (test_images_build.py, slow) checks the
same inside the built image.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from images import devicewheel

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parents[2]
DEVICE_COMMANDS = {"edge-agent", "kiosk", "appliance"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return devicewheel.build(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(where)
    return where


def _dist_info(wheel: Path) -> str:
    return next(n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" in n)


def test_the_wheel_holds_the_device_packages_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {*devicewheel.DEVICE_PACKAGES, _dist_info(wheel)}
    assert not [n for n in names if n.startswith(("central/", "portier_demo/"))]
    # Every Python file of the device packages, as in the checkout (none left behind).
    ours = sorted(
        str(p.relative_to(REPO))
        for package in devicewheel.DEVICE_PACKAGES
        for p in (REPO / package).rglob("*.py")
    )
    assert sorted(n for n in names if n.endswith(".py")) == ours


def test_the_wheel_has_the_device_commands_and_metadata(wheel):
    dist_info = _dist_info(wheel)
    assert dist_info.startswith("portier_device-")
    archive = zipfile.ZipFile(wheel)
    entry_points = configparser.ConfigParser()
    entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
    scripts = dict(entry_points["console_scripts"])
    assert set(scripts) == DEVICE_COMMANDS
    assert "portier-central" not in scripts and "portier-demo" not in scripts
    assert not [t for t in scripts.values() if t.startswith(devicewheel.NOT_ON_A_DEVICE)]
    # Same version and the same pinned dependencies as the developers' distribution.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert f"Version: {project['version']}\n" in metadata
    for requirement in project["dependencies"]:
        central_only = requirement.startswith(devicewheel.CENTRAL_ONLY_DEPENDENCIES)
        assert (f"Requires-Dist: {requirement}\n" in metadata) is not central_only, requirement
    assert "pytest" not in metadata  # no dev extra


def test_derived_pyproject_keeps_only_device_commands():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    derived = devicewheel.device_pyproject(pyproject)
    assert derived["project"]["name"] == "portier-device"
    assert set(derived["project"]["scripts"]) == DEVICE_COMMANDS
    assert set(derived["project"]["optional-dependencies"]) == {"pi"}
    assert derived["tool"] == {
        "setuptools": {
            **pyproject["tool"]["setuptools"],
            "packages": {"find": {"include": [f"{p}*" for p in devicewheel.DEVICE_PACKAGES]}},
        }
    }
    # The checkout's own distribution is untouched: developers keep every command.
    assert {"portier-central", "portier-demo"} <= set(pyproject["project"]["scripts"])


# Run in a fresh interpreter that sees the unpacked wheel and the third-party libraries,
# nothing else: -I -S, so no .pth file runs (the checkout's editable install would
# otherwise put the central back on the path).
_PROBE = """
import importlib, importlib.util, io, json, pathlib, sys, contextlib
wheel_dir, libraries, demo_dir = sys.argv[1:4]
sys.path[:] = [wheel_dir, *sys.path, *json.loads(libraries)]  # -I -S: sys.path is the stdlib
absent = [m for m in ("central", "portier_demo") if importlib.util.find_spec(m) is not None]
modules = sorted(
    ".".join(p.relative_to(wheel_dir).with_suffix("").parts).removesuffix(".__init__")
    for p in pathlib.Path(wheel_dir).rglob("*.py")
)
failed = {}
for name in modules:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
        continue
    assert module.__file__.startswith(wheel_dir), (name, module.__file__)
from edge_agent.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["demo", "--dir", demo_dir])
print(json.dumps({"present": absent, "modules": len(modules), "failed": failed,
                  "demo_code": code, "demo_err": err.getvalue()}))
"""


def test_everything_a_device_runs_imports_from_the_wheel_alone(unpacked, tmp_path):
    """Every module of the wheel imports with the central and the demo absent, and
    ``edge-agent demo`` says so in one line (exit 1), not with a traceback."""
    paths = sysconfig.get_paths()
    libraries = sorted({paths["purelib"], paths["platlib"]})
    env = {
        **os.environ,
        "KIVY_NO_ARGS": "1",
        "KIVY_NO_CONSOLELOG": "1",
        "KIVY_NO_FILELOG": "1",
        "KIVY_HOME": str(tmp_path / "kivy"),
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PROBE, str(unpacked), json.dumps(libraries),
         str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["present"] == []
    assert result["modules"] > 50
    assert result["failed"] == {}
    assert result["demo_code"] == 1
    message = result["demo_err"]
    assert message.count("\n") == 1 and "the demo is not installed here" in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "demo").exists()


def test_no_device_package_imports_what_only_the_central_installs():
    """The device's wheel leaves out the central's own dependencies (argon2 for operator
    passwords): no device package may import them, or the device would fail at run time."""
    modules = {
        name.replace("-", "_").split("_cffi")[0] for name in devicewheel.CENTRAL_ONLY_DEPENDENCIES
    }
    found = []
    for package in devicewheel.DEVICE_PACKAGES:
        for source in (REPO / package).rglob("*.py"):
            for line in source.read_text().splitlines():
                words = line.split()
                if (
                    len(words) >= 2
                    and words[0] in ("import", "from")
                    and words[1].split(".")[0] in modules
                ):
                    found.append(f"{source.relative_to(REPO)}: {line.strip()}")
    assert modules == {"argon2", "jinja2", "psycopg"} and not found
