"""The store's three kinds of transaction (central/store/db.py, docs/central-store.md
"Concurrency"): a read takes no lock and cannot write; device traffic does not wait for the
rules lock and locks its device row instead; whatever appends to the deltas log does.

Two stores on one database stand for two central processes. On SQLite writers are
serialised anyway, so what is about waiting runs on PostgreSQL only; the rules run on both.
Last, the server's own lanes: on PostgreSQL an upload stuck on its device row does not hold
up the process's polls and admin requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from central.settings import CentralSettings
from central.store import CentralStore
from central.store.deltas import record_change
from central.testing import CentralProcess, ChainBuilder, enroll_device

pytestmark = pytest.mark.processes  # a PostgreSQL server

Stores = Callable[[], CentralStore]


@pytest.fixture
def stores(central_db: Callable[[], str | None], tmp_path: Path) -> Iterator[Stores]:
    """A factory of stores on one fresh database of each backend."""
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    opened: list[CentralStore] = []

    def make() -> CentralStore:
        opened.append(CentralStore(settings))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def _enroll(store: CentralStore, device_id: str) -> str:
    token = store.create_enroll_token(door="lobby")["enroll_token"]
    return str(store.enroll({"enroll_token": token, "device_id": device_id})["device_token"])


def _postgresql_only(store: CentralStore) -> None:
    if store._db.dialect != "postgresql":
        pytest.skip("SQLite serialises every writer: nothing runs beside the rules lock")


def test_a_read_cannot_write(stores: Stores) -> None:
    store = stores()
    with pytest.raises(Exception), store._read() as conn:  # noqa: B017 - either driver's
        conn.execute("DELETE FROM devices")
    # The connection is usable afterwards, for reads and writes.
    _enroll(store, "door-1")
    with store._read() as conn:
        assert conn.execute("SELECT count(*) AS n FROM devices").fetchone()["n"] == 1


def test_device_traffic_does_not_wait_for_the_rules_lock(stores: Stores) -> None:
    admin, device = stores(), stores()
    _postgresql_only(admin)
    credential = _enroll(admin, "door-1")
    admin.put_badge({"uid": "04A1B2C3D4E5F6", "holder": "Sam", "doors": ["lobby"]})
    events = ChainBuilder().events(10)
    with ThreadPoolExecutor(1) as pool, admin._tx() as conn:  # the rules lock, held
        conn.execute("SELECT 1 AS one")
        # A poll, a credential check, an upload and a heartbeat go through meanwhile...
        assert pool.submit(device.authenticate, credential).result(10)["device_id"] == "door-1"
        page = pool.submit(device.deltas, "hq", None).result(10)
        assert [b["uid"] for b in page["badges"]] == ["04a1b2c3d4e5f6"]
        acks = pool.submit(device.upload_events, "door-1", events).result(10)["acks"]
        assert {a["status"] for a in acks} == {"accepted"}
        pool.submit(device.heartbeat, "door-1", {"sent_at_ms": 1}, 2).result(10)
        # ...but a change to the deltas log waits for the lock.
        revoke = pool.submit(device.revoke_badge, "04A1B2C3D4E5F6")
        with pytest.raises(TimeoutError):
            revoke.result(0.5)
    assert revoke.result(10)["id"] == "04a1b2c3d4e5f6"


def test_a_change_is_only_appended_under_the_rules_lock(stores: Stores) -> None:
    store = stores()
    _postgresql_only(store)
    with pytest.raises(RuntimeError, match="rules lock"), store._tx(rules_lock=False) as conn:
        record_change(conn, "hq", "badge", "04a1", {"uid": "04a1"})
    assert store.deltas("hq", None)["badges"] == []


def test_two_stores_uploading_one_device_store_each_event_once_in_order(stores: Stores) -> None:
    """The device row orders a device's batches: each store sends every batch (as a device
    resending through the other process does), the chain ends whole and each event once."""
    first, second = stores(), stores()
    _enroll(first, "door-1")
    events = ChainBuilder().events(400)
    batches = [events[i : i + 20] for i in range(0, len(events), 20)]
    start = threading.Barrier(2)

    def send(store: CentralStore) -> None:
        start.wait()
        for batch in batches:
            store.upload_events("door-1", batch)

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(send, first), pool.submit(send, second)]:
            done.result(60)
    device = first.received(verify=True)["devices"][0]
    assert device["unique_events"] == 400
    assert device["next_seq"] == 401
    assert device["chain_ok"] and device["chain_verified"]


def test_a_poll_and_a_revocation_do_not_queue_behind_a_stuck_upload(
    postgres_server: Any, tmp_path: Path
) -> None:
    """On PostgreSQL the server runs uploads on a thread and connection of their own: with an
    upload stuck on its device row, the same process still answers polls and operators."""
    import psycopg

    url = postgres_server.create_database()
    try:
        with CentralProcess(tmp_path / "central", extra_args=["--db", url]) as central:
            _, device = enroll_device(central.url, device_id="door-1", token=central.token)
            admin = central.admin()
            admin.put_badge(uid="04A1B2C3D4E5F6", holder="Sam", doors=["lobby"], kind="uid")
            with ThreadPoolExecutor(1) as pool, psycopg.connect(url) as holder:
                holder.execute("SELECT 1 FROM devices WHERE device_id = 'door-1' FOR UPDATE")
                events = {"events": ChainBuilder().events(5)}
                upload = pool.submit(
                    device.post, f"{central.url}/v1/events", json=events, timeout=30
                )
                with pytest.raises(TimeoutError):
                    upload.result(1.0)  # waiting for the row
                assert device.get(f"{central.url}/v1/deltas", timeout=3).status_code == 200
                assert admin.revoke_badge("04A1B2C3D4E5F6")["id"] == "04a1b2c3d4e5f6"
                holder.rollback()
                assert upload.result(10).status_code == 200
            assert admin.received()["devices"][0]["unique_events"] == 5
    finally:
        postgres_server.drop_database(url)
