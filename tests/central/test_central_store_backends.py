"""The store's contract on both backends: SQLite (the embedded default) and PostgreSQL.

PostgreSQL is a real server the tests start themselves (``postgres_server`` in
tests/conftest.py: Debian's PostgreSQL, ``initdb`` into a temporary directory as an
unprivileged user, a Unix socket only, stopped at the end); no mock of the database.
Skipped only where PostgreSQL is not installed. The full rule tests are
tests/central/test_central_store.py (both backends too); this file holds what is about the
backends themselves: reopening, failed calls, two processes migrating at once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from central.errors import NotFound, TokenUsed
from central.settings import CentralSettings
from central.store import SCHEMA_VERSION, CentralStore
from central.testing import ChainBuilder

pytestmark = pytest.mark.processes

PG_BIN = Path("/usr/lib/postgresql/15/bin")

StoreFactory = Callable[[], CentralStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores on one fresh database of the backend (open it again to reopen)."""
    settings = CentralSettings(data_dir=tmp_path / "data")
    opened: list[CentralStore] = []
    if request.param == "sqlite":

        def make() -> CentralStore:
            opened.append(CentralStore(settings))
            return opened[-1]

    else:
        from central.store.postgres import PostgresDatabase

        url = request.getfixturevalue("postgres_server").create_database()

        def make() -> CentralStore:
            opened.append(CentralStore(settings, database=PostgresDatabase(url)))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


def enroll(store: CentralStore, device_id: str, door: str = "lobby") -> dict:
    token = store.create_enroll_token(door=door)["enroll_token"]
    return store.enroll({"enroll_token": token, "device_id": device_id})


def test_events_are_stored_once_in_order_and_the_chain_verifies(open_store: StoreFactory) -> None:
    store = open_store()
    device = enroll(store, "dev-a")
    assert store.authenticate(device["device_token"])["device_id"] == "dev-a"
    events = ChainBuilder().events(12)
    first = store.upload_events("dev-a", events[:5] + events[7:9])
    assert [a["status"] for a in first["acks"]] == ["accepted"] * 5 + ["retry_later"] * 2
    again = store.upload_events("dev-a", events[3:])
    assert [a["status"] for a in again["acks"]] == ["duplicate"] * 2 + ["accepted"] * 7
    assert again["next_seq"] == 13 and again["chain_ok"]
    assert store.verify_chain("dev-a") == (True, None)
    page = store.device_events("dev-a", 0, 5)
    assert [e["seq"] for e in page["events"]] == [1, 2, 3, 4, 5] and page["more"]
    assert page["events"][0]["payload_json"] == events[0]["payload_json"]
    totals = store.received(verify=True)["totals"]
    assert totals == {
        "devices": 1,
        "unique_events": 12,
        "duplicates_seen": 2,
        "rejected": 0,
        "chain_ok": True,
    }
    with pytest.raises(NotFound):
        store.upload_events("nobody", events[:1])


def test_a_broken_link_is_recorded_and_big_values_fit(open_store: StoreFactory) -> None:
    store = open_store()
    enroll(store, "dev-a")
    builder = ChainBuilder()
    events = [builder.event(wall_ms=2**47) for _ in range(3)]
    events[1] = {**events[1], "payload_json": '{"x":1}'}
    result = store.upload_events("dev-a", events)
    assert result["chain_ok"] is False
    summary = store.received()["devices"][0]
    assert summary["chain_broken_at"] == 2 and summary["unique_events"] == 3
    assert store.device_events("dev-a")["events"][0]["wall_ms"] == 2**47


def test_credentials_reach_devices_as_deltas_by_cursor(open_store: StoreFactory) -> None:
    store = open_store()
    enroll(store, "dev-a")
    start = store.deltas("hq", None)
    assert start["reset"] and len(start["signing_keys"]) == 1
    cursor = start["cursor"]
    store.put_badge({"uid": "04:A1:B2:C3", "holder": "Ada", "doors": ["lobby"]})
    invitation = store.create_invitation({"visitor": "Bob", "doors": ["lobby"]})["invitation"]
    store.revoke_badge("04a1b2c3")
    store.revoke_invitation(invitation["id"])
    store.put_door_settings("lobby", {"settings": {"mode": "lockdown"}})
    store.put_door_settings("lobby", {"settings": {"mode": "normal"}})
    page = store.deltas("hq", cursor)
    assert [b["enabled"] for b in page["badges"]] == [False]
    assert [i["id"] for i in page["invitations"]] == [invitation["id"]]
    assert {(r["kind"], r["id"]) for r in page["revocations"]} == {
        ("badge", "04a1b2c3"),
        ("invitation", invitation["id"]),
    }
    assert [d["version"] for d in page["door_settings"]] == [2]
    store.delete_badge("04a1b2c3")
    later = store.deltas("hq", page["cursor"])
    assert later["removed"]["badges"] == ["04a1b2c3"]
    assert later["removed"]["revocations"] == [{"kind": "badge", "id": "04a1b2c3"}]
    assert int(later["cursor"]) > int(page["cursor"]) and store.head_cursor() == later["cursor"]


def test_a_single_use_invitation_used_at_one_door_is_shared(open_store: StoreFactory) -> None:
    store = open_store()
    enroll(store, "dev-a")
    invitation = store.create_invitation(
        {"visitor": "Bob", "doors": ["lobby"], "single_use": True}
    )["invitation"]
    cursor = store.head_cursor()
    used = ChainBuilder().event(
        "invitation.used",
        {"invitation_id": invitation["id"], "door": "lobby", "expires": invitation["expires"]},
    )
    assert store.upload_events("dev-a", [used])["acks"][0]["status"] == "accepted"
    shared = store.deltas("hq", cursor)["used_invitations"]
    assert [(u["id"], u["device_id"]) for u in shared] == [(invitation["id"], "dev-a")]


def test_the_schema_is_made_once_and_kept_across_restarts(open_store: StoreFactory) -> None:
    store = open_store()
    enroll(store, "dev-a")
    token = store.create_enroll_token(door="lobby")["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": "dev-b"})
    kid, delta_key = store.info()["active_kid"], store.delta_key()
    rotated = store.rotate_key()
    store.close()
    again = open_store()
    assert again.info()["active_kid"] == rotated["active"]["kid"] != kid
    assert again.delta_key() == delta_key
    assert [d["device_id"] for d in again.received()["devices"]] == ["dev-a", "dev-b"]
    with pytest.raises(TokenUsed):
        again.enroll({"enroll_token": token, "device_id": "dev-c"})
    # 12: deny list, 13: groups, 14: stats, 15: holidays, 16: event packs
    assert SCHEMA_VERSION == 16


def test_a_failed_call_leaves_nothing_behind(open_store: StoreFactory) -> None:
    store = open_store()
    token = store.create_enroll_token(door="lobby")["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": "dev-a"})
    before = store.head_cursor()
    with pytest.raises(NotFound):
        store.revoke_invitation("nope")
    with pytest.raises(NotFound):
        store.disable_device("nope")
    assert store.head_cursor() == before
    assert store.heartbeat("dev-a", {"sent_at_ms": 1}, int(time.time() * 1000))["next_seq"] == 1


_RACER = """
import sys
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.postgres import PostgresDatabase

database = PostgresDatabase(sys.argv[1])
print("connected", flush=True)
sys.stdin.readline()
with CentralStore(CentralSettings(data_dir=sys.argv[2]), database=database) as store:
    print(store.info()["active_kid"], flush=True)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_starting_on_a_new_database_migrate_it_once(
    postgres_server, tmp_path: Path, attempt: int
) -> None:
    url = postgres_server.create_database()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, str(tmp_path / f"d{i}")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        for racer in racers:  # both connected: let them go at the same moment
            assert racer.stdout is not None and racer.stdout.readline() == "connected\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        results = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    for racer, (_out, err) in zip(racers, results, strict=True):
        assert racer.returncode == 0, err
    kids = {out.strip() for out, _ in results}
    assert len(kids) == 1  # one signing key made, the other process found it
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT count(*) FROM signing_keys").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM delta_keys").fetchone() == (1,)


def test_operators_tokens_and_the_journal(open_store: StoreFactory) -> None:
    store = open_store()
    store.add_operator("ada", "security_officer", "correct horse battery")
    minted = store.create_api_token("ada", label="laptop")
    assert store.authenticate_operator(minted["token"])["role"] == "security_officer"
    session = store.login("ada", "correct horse battery", remote="127.0.0.1")
    assert store.session_operator(session["session"], session["csrf_token"])["csrf_ok"]
    store.record_action("ada", "POST /admin/badges", {"path": "/admin/badges"}, status=200)
    store.revoke_api_token(minted["token_id"])
    store.close()
    again = open_store()
    assert [o["name"] for o in again.list_operators()] == ["ada"]
    assert again.list_api_tokens()[0]["revoked_at_ms"] is not None
    actions = [e["action"] for e in again.operator_journal()]
    assert actions == [
        "operator.add",
        "token.create",
        "login",
        "POST /admin/badges",
        "token.revoke",
    ]


def test_one_transaction_commits_all_or_nothing(open_store: StoreFactory) -> None:
    """Calls inside ``one_transaction`` are savepoints: a failed one is undone alone (even
    on PostgreSQL, where an error aborts the transaction), and an error at the end undoes
    them all."""
    store = open_store()
    before = store.head_cursor()
    badge = {"uid": "04aabbccddeeff", "holder": "Ada", "doors": ["lobby"], "kind": "uid"}
    with store.one_transaction():
        store.put_badge(badge)
        with pytest.raises(NotFound):
            store.revoke_invitation("nope")  # fails: its savepoint only
        store.record_action("ada", "POST /admin/badges", {"uid": badge["uid"]}, status=200)
    assert store.head_cursor() != before
    rows = store.verify_audit()["rows"]
    middle = store.head_cursor()
    with pytest.raises(RuntimeError), store.one_transaction():
        store.put_badge({**badge, "uid": "04aabbccddee00"})
        store.record_action("ada", "POST /admin/badges", {}, status=200)
        raise RuntimeError("the process dies before the commit")
    assert store.head_cursor() == middle and store.verify_audit()["rows"] == rows
    with (
        pytest.raises(RuntimeError, match="re-entrant"),
        store.one_transaction(),
        store.one_transaction(),
    ):
        pass
