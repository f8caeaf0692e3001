"""Suite-wide pytest set-up: slow tests run only when asked for; the UI session fixtures;
the reference central every test that talks to one starts through.;
one throw-away PostgreSQL server for the central's tests (``postgres_server``).

``@pytest.mark.slow`` tests (the arm64 image build under emulation, the
ten-minute chaos soak) are skipped unless the run selects them with
``-m slow`` or sets ``PORTIER_SLOW=1``; the default run stays quick.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from central.admin import CentralAdmin
    from central.testing import CentralProcess

#: The UI tests' session fixtures (one Kivy app per process, shared by every UI module).
pytest_plugins = ["tests.support.kiosk_ui_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless they were asked for."""
    if "slow" in (config.option.markexpr or "") or os.environ.get("PORTIER_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or PORTIER_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def central(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CentralProcess]:
    """A reference central (``portier-central serve``, a real process on loopback), one per module.

    A module that needs it started differently sets ``CENTRAL_OPTIONS``, keyword arguments of
    :class:`central.testing.CentralProcess` (``{"site": ...}``); a module whose tests each need a
    central of their own asks for ``central_per_test`` instead.
    """
    from central.testing import CentralProcess

    options = getattr(request.module, "CENTRAL_OPTIONS", {})
    with CentralProcess(tmp_path_factory.mktemp("central") / "data", **options) as process:
        yield process


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def central_on_each_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CentralProcess]:
    """The reference central on each backend, one per module and backend: SQLite in its data
    directory, or ``--db`` a new database of the session's PostgreSQL server. A module runs
    its tests on both by defining ``central`` as this fixture."""
    from central.testing import CentralProcess

    data = tmp_path_factory.mktemp("central") / "data"
    if request.param == "sqlite":
        with CentralProcess(data) as process:
            yield process
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    try:
        with CentralProcess(data, extra_args=["--db", url]) as process:
            yield process
    finally:
        server.drop_database(url)


@pytest.fixture
def central_per_test(tmp_path) -> Iterator[CentralProcess]:
    """A reference central of the test's own: nothing it enrolled or set outlives the test."""
    from central.testing import CentralProcess

    with CentralProcess(tmp_path / "central") as process:
        yield process


@pytest.fixture
def admin(central: CentralProcess) -> Iterator[CentralAdmin]:
    """The admin client of the module's central; faults a test switched on are off after it."""
    with central.admin() as client:
        yield client
        client.clear_faults()


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


@pytest.fixture(params=["sqlite", "postgresql"])
def central_db(request: pytest.FixtureRequest) -> Iterator[Callable[[], str | None]]:
    """The central's two backends: a factory of fresh databases, as ``CentralSettings.db``
    takes them: None (SQLite in ``data_dir``) or the URL of a new PostgreSQL database,
    copied from a template that already holds the schema (fast), dropped after the test."""
    if request.param == "sqlite":
        yield lambda: None
        return
    from central.testing_pg import migrate_only

    server = request.getfixturevalue("postgres_server")
    template = server.template("central_schema", migrate_only)
    made: list[str] = []

    def new_database() -> str:
        made.append(server.create_database(template))
        return made[-1]

    yield new_database
    for url in made:
        server.drop_database(url)


@pytest.fixture(scope="session", autouse=True)
def central_operator_token() -> Iterator[str]:
    """One operator API token for the session, in ``$PORTIER_CENTRAL_TOKEN``: every
    ``CentralProcess`` registers it (operator ``tests``, a security officer) and
    ``CentralAdmin``, ``enroll_device`` and ``portier-central`` children send it."""
    token = os.environ.get("PORTIER_CENTRAL_TOKEN") or "pct_tests_" + secrets.token_urlsafe(32)
    previous = os.environ.get("PORTIER_CENTRAL_TOKEN")
    os.environ["PORTIER_CENTRAL_TOKEN"] = token
    yield token
    if previous is None:
        os.environ.pop("PORTIER_CENTRAL_TOKEN", None)
