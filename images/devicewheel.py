"""The device's distribution, ``portier-device``: the one wheel the appliance image installs.

The checkout's ``pyproject.toml`` describes one distribution, ``portier``, for developers and
CI (``pip install -e .``, ``./tools/dev demo``): every package and every command, the
reference central and the demo included. A device never runs those two, so the image must
not carry them (and a command whose module is missing would be a broken command there).

This module derives the device's distribution from the checkout's, so that nothing is
written twice: the same version, the same pinned dependencies and ``pi`` extra, only the
packages a device runs (:data:`DEVICE_PACKAGES`) and only the commands whose module is in
them (``edge-agent``, ``kiosk``, ``appliance``: ``portier-central`` and ``portier-demo``
drop out). It copies those packages and a derived ``pyproject.toml`` into a staging
directory and builds the wheel there with ``pip wheel`` (``images/build.sh`` calls it)::

    python -m images.devicewheel OUT_DIR     # prints the wheel's path

Build-machine only (it needs ``tomli-w``, a dev dependency); the device never runs it.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: The distribution's name (its wheel: ``portier_device-<version>-py3-none-any.whl``).
NAME = "portier-device"

#: What a device runs: the door agent and its drivers, the kiosk, the code both share with
#: the central, and ``images`` (``appliance firstboot``, portier-firstboot.service).
DEVICE_PACKAGES = ("hardware", "portier_common", "edge_agent", "kiosk", "images")

#: In the developers' distribution, never in the device's.
NOT_ON_A_DEVICE = ("central", "portier_demo")

#: Dependencies only the central uses (operator password hashing, the console's
#: templates, PostgreSQL): the device's wheel leaves them out (tests/images/test_devicewheel.py
#: checks no device package imports them).
CENTRAL_ONLY_DEPENDENCIES = ("argon2-cffi", "jinja2", "psycopg")

#: Left out of the staged copy: build leftovers of a developer's checkout.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def device_pyproject(pyproject: dict[str, Any]) -> dict[str, Any]:
    """The device distribution's pyproject, derived from the checkout's ``pyproject``.

    Kept: the build system, the version, the dependencies and the ``pi`` extra, the
    package data, less :data:`CENTRAL_ONLY_DEPENDENCIES`. Changed: the name, the packages
    (:data:`DEVICE_PACKAGES`), the commands (those whose module is in a device package).
    Dropped: the ``dev`` extra and the developer tools' settings (ruff, mypy, pytest,
    import-linter).
    """
    source = pyproject["project"]
    project = copy.deepcopy(source)
    project["name"] = NAME
    project["description"] = source["description"] + " (the device's packages)"
    project.pop("readme", None)  # the README is the checkout's, not staged
    project["dependencies"] = [
        requirement
        for requirement in source.get("dependencies", [])
        if _requirement_name(requirement) not in CENTRAL_ONLY_DEPENDENCIES
    ]
    extras = {
        k: v
        for k, v in source.get("optional-dependencies", {}).items()
        if k not in ("dev", "station")  # station: the Pass Office's desk PC, never a device
    }
    project["optional-dependencies"] = extras
    project["scripts"] = {
        command: target
        for command, target in source.get("scripts", {}).items()
        if target.split(".", 1)[0] in DEVICE_PACKAGES
    }
    setuptools = copy.deepcopy(pyproject.get("tool", {}).get("setuptools", {}))
    setuptools["packages"] = {"find": {"include": [f"{p}*" for p in DEVICE_PACKAGES]}}
    return {
        "build-system": copy.deepcopy(pyproject["build-system"]),
        "project": project,
        "tool": {"setuptools": setuptools},
    }


def _requirement_name(requirement: str) -> str:
    """The distribution name of a pinned requirement (``name[extra]==1.0`` -> ``name``)."""
    return re.split(r"[\[=<>!~;\s]", requirement, maxsplit=1)[0].lower()


def stage(repo: Path, where: Path) -> Path:
    """Copy the device packages of ``repo`` and the derived pyproject into ``where``."""
    import tomli_w  # a dev dependency: this module ships in images/, the device never runs it

    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    where.mkdir(parents=True, exist_ok=True)
    for package in DEVICE_PACKAGES:
        shutil.copytree(repo / package, where / package, ignore=_IGNORED)
    (where / "pyproject.toml").write_text(
        tomli_w.dumps(device_pyproject(pyproject)), encoding="utf-8"
    )
    return where


def build(out_dir: Path, repo: Path = REPO) -> Path:
    """Build the device wheel of ``repo`` into ``out_dir``; return its path.

    The kiosk's gettext catalogues must be compiled first (``kiosk.i18n.ensure_compiled``,
    as images/build.sh does): the staged copy takes the ``.mo`` files as they are.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("portier_device-*.whl"))
    with tempfile.TemporaryDirectory(prefix="portier-device-") as tmp:
        staged = stage(repo, Path(tmp) / "src")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir),
             str(staged)],
            stdout=sys.stderr,  # stdout carries only the wheel's path (images/build.sh)
            check=True,
        )  # fmt: skip
    built = sorted(set(out_dir.glob("portier_device-*.whl")) - before) or sorted(
        out_dir.glob("portier_device-*.whl")
    )
    if not built:
        raise RuntimeError(f"pip wheel wrote no portier_device wheel into {out_dir}")
    return built[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m images.devicewheel",
        description="build the device's wheel (portier-device: no central, no demo)",
    )
    parser.add_argument("out_dir", type=Path, help="where the wheel goes (created)")
    args = parser.parse_args(argv)
    sys.stdout.write(f"{build(args.out_dir)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
