"""PostgreSQL going away under a running central (a restart, a failover): the central
answers 503 with Retry-After while the database is down, and works again once it is back,
without a restart of its own (central/store/postgres.py).

The server here is the module's own (``PostgresServer``), not the session's: the tests stop
and start it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from central.errors import Unavailable
from central.store.postgres import PostgresDatabase
from central.testing import CentralProcess, ChainBuilder, enroll_device
from central.testing_pg import PostgresServer, find_pg_bin, migrate_only

pytestmark = pytest.mark.processes

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with PostgresServer() as server:
        yield server


def _acks(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [ack["status"] for ack in response.json()["acks"]]


def test_upload_and_admin_work_again_after_a_postgres_restart(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.create_database()
    with CentralProcess(tmp_path / "data", extra_args=["--db", url]) as central:
        _enrolled, session = enroll_device(central.url, device_id="failover-1")
        chain = ChainBuilder()
        events = f"{central.url}/v1/events"
        assert (
            _acks(session.post(events, json={"events": chain.events(2)}, timeout=TIMEOUT))
            == ["accepted"] * 2
        )

        own_postgres.halt()
        try:
            batch = chain.events(2)
            down = session.post(events, json={"events": batch}, timeout=TIMEOUT)
            # A clear, retryable refusal: what a device's uploader waits on and sends again.
            assert down.status_code == 503, down.text
            assert down.json()["error"] == "unavailable"
            assert int(down.headers["Retry-After"]) >= 1
            with central.admin() as admin, pytest.raises(Unavailable):
                admin.info()
        finally:
            own_postgres.resume()

        # The same batch again (the device's retry), then the next: no central restart.
        assert (
            _acks(session.post(events, json={"events": batch}, timeout=TIMEOUT)) == ["accepted"] * 2
        )
        assert _acks(session.post(events, json={"events": chain.events(1)}, timeout=TIMEOUT)) == [
            "accepted"
        ]
        with central.admin() as admin:
            invitation = admin.create_invitation(
                visitor="Ana Silva", host="Bo Chen", doors=["lobby"]
            )
            assert invitation["token"]
            seen = admin.received(verify=True)["devices"][0]
        assert seen["unique_events"] == 5 and seen["chain_verified"]
        log = central.log_path.read_text()
        assert "reconnected to PostgreSQL" in log


def _terminate_others(url: str) -> None:
    """Cut every other session on the database of *url* (what a failover does to them)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def database(own_postgres: PostgresServer) -> Iterator[tuple[str, PostgresDatabase]]:
    url = own_postgres.create_database()
    migrate_only(url)
    db = PostgresDatabase(url)
    try:
        yield url, db
    finally:
        db.close()
        own_postgres.drop_database(url)


def _count(db: PostgresDatabase) -> int:
    with db.transaction() as conn:
        return int(conn.execute("SELECT count(*) AS n FROM schema_version").fetchone()["n"])


def test_a_connection_lost_while_idle_is_replaced_transparently(
    database: tuple[str, PostgresDatabase],
) -> None:
    url, db = database
    assert _count(db) == 1
    _terminate_others(url)
    assert _count(db) == 1  # reconnected, nothing raised


def test_a_connection_lost_mid_transaction_is_503_and_rolled_back(
    database: tuple[str, PostgresDatabase],
) -> None:
    url, db = database
    with pytest.raises(Unavailable) as raised, db.transaction() as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (99,))
        _terminate_others(url)
        conn.execute("SELECT 1 AS one")
    assert "nothing was stored" in raised.value.detail
    assert "outcome" not in raised.value.extra
    assert _count(db) == 1


def test_a_connection_lost_at_commit_says_the_outcome_is_unknown(
    database: tuple[str, PostgresDatabase],
) -> None:
    url, db = database
    with pytest.raises(Unavailable) as raised, db.transaction() as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (99,))
        _terminate_others(url)
    assert raised.value.extra["outcome"] == "unknown"
    assert _count(db) == 1  # here the server had not committed it; the caller cannot know


def test_while_the_server_is_down_a_transaction_is_refused_quickly(
    own_postgres: PostgresServer, database: tuple[str, PostgresDatabase]
) -> None:
    _url, db = database
    own_postgres.halt()
    try:
        with pytest.raises(Unavailable):
            _count(db)
        with pytest.raises(Unavailable):
            _count(db)
    finally:
        own_postgres.resume()
    assert _count(db) == 1
