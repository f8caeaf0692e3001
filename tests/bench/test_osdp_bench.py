"""bench/osdp.py in its smallest mode, so it cannot rot: commissioning, the Secure Channel,
cards granted (relay energised) and denied (red LED), none missed (its exit status)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]


def test_the_osdp_bench_runs() -> None:
    done = subprocess.run(
        [sys.executable, "bench/osdp.py", "--samples", "12", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["missed"] == 0
    assert figures["grant"]["n"] == 9 and figures["deny"]["n"] == 3
    assert 0 < figures["grant"]["p50_ms"] <= figures["grant"]["p99_ms"]
    assert "card -> lock relay energised" in done.stdout
