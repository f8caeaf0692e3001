"""Suite-wide pytest set-up: slow tests run only when asked for; the UI session fixtures;
one throw-away PostgreSQL server for the central's tests (``postgres_server``).

``@pytest.mark.slow`` tests (the arm64 image build under emulation, the
ten-minute chaos soak) are skipped unless the run selects them with
``-m slow`` or sets ``PORTIER_SLOW=1``; the default run stays quick.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: The UI tests' session fixtures (one Kivy app per process, shared by every UI module).
pytest_plugins = ["kiosk_ui_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless they were asked for."""
    if "slow" in (config.option.markexpr or "") or os.environ.get("PORTIER_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or PORTIER_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One PostgreSQL server for the session (``central.testing_pg.PostgresServer``),
    started on first use and stopped at the end; skipped only when PostgreSQL's initdb
    is not installed (``./tools/dev test`` installs Debian's ``postgresql``)."""
    from central.testing_pg import PostgresServer, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb "
                    "(apt-get install postgresql, or ./tools/dev test)")  # fmt: skip
    with PostgresServer() as server:
        yield server
