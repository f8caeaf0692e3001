"""bench/central.py in its smallest mode, so it cannot rot: it starts two centrals on each
backend, enrolls its devices, loads them, revokes a badge, and checks every accepted event
was stored once and the revocation reached every device (its exit status)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database(postgres_server: Any) -> Any:
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


def test_the_central_bench_runs_on_both_backends(database: str) -> None:
    done = subprocess.run(
        [sys.executable, "bench/central.py", "--quick", "--json", "--pg-url", database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert [f["backend"] for f in figures] == ["postgresql", "sqlite"]
    for f in figures:
        assert f["stored_once"] and f["accepted"] > 0, f
        assert f["revocation_reached"] == f["devices"], f
