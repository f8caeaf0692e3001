"""The tree is ruff clean (lint and format) and mypy clean, as the style guide asks."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: it is a pinned dev dependency")
    return [found]


def test_ruff_check_is_clean():
    proc = subprocess.run(
        [*_ruff(), "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format_is_clean():
    proc = subprocess.run(
        [*_ruff(), "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_import_layers_hold():
    """The layer contracts of pyproject.toml ([tool.importlinter], docs/architecture.md)."""
    exe = Path(sys.executable).with_name("lint-imports")
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: import-linter is a pinned dev dependency")
    # This checkout's packages first on the path, whatever the virtualenv was installed from.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [found, "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        "an import breaks the layers (docs/architecture.md says what may import what; "
        "an exception goes in pyproject.toml's [tool.importlinter] with a comment saying why):\n"
        + proc.stdout[-6000:]
        + proc.stderr[-2000:]
    )


def test_mypy_is_clean():
    """mypy, configured in pyproject.toml ([tool.mypy]: the packages, bench/ and tools/)."""
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: it is a pinned dev dependency")
    proc = subprocess.run(
        # No cache written into the tree (a cold run takes about 15 s).
        [sys.executable, "-m", "mypy", "--cache-dir", os.devnull],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        lines = proc.stdout.splitlines()
        errors = [line for line in lines if ": error:" in line]
        summary = lines[-1] if lines else proc.stderr.strip()
        pytest.fail(
            f"mypy is not clean ({summary}); the first errors, .venv/bin/mypy for all:\n"
            + "\n".join(errors[:30] or lines[:30])
            + ("\n" + proc.stderr[-2000:] if proc.stderr.strip() else ""),
            pytrace=False,
        )
