"""The operators' audit log (issue #13): hash-chained, append-only, verified, exported.

On both backends (``central_db``: SQLite and a real PostgreSQL). The tamper tests play an
administrator with direct database access: they write through the raw connection, the
trigger tests show the database refuses it, the others drop the triggers first (what a
superuser may do) and show that ``verify_audit`` names the row.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from central.cli import main as cli_main
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.auditchain import AUDIT_GENESIS, row_hash

pytestmark = pytest.mark.processes  # the PostgreSQL half starts a server


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        self.ms += 1000
        return self.ms


@pytest.fixture
def store(central_db: Callable[[], str | None], tmp_path: Path) -> Iterator[CentralStore]:
    """A store on a fresh database holding five audit rows (seq 1-5)."""
    with CentralStore(
        CentralSettings(data_dir=tmp_path / "data", db=central_db()), clock=Clock()
    ) as opened:
        opened.add_operator("ada", "security_officer")  # 1
        minted = opened.create_api_token("ada", label="laptop")  # 2
        opened.record_action(  # 3
            "ada", "POST /admin/badges", {"uid": "04aa"}, remote="127.0.0.1", status=200
        )
        opened.record_action(  # 4
            "ada", "PUT /admin/doors/{door}/settings", {"door": "lobby"}, remote="::1", status=200
        )
        opened.revoke_api_token(minted["token_id"])  # 5
        yield opened


def raw(store: CentralStore, sql: str) -> None:
    """Run *sql* on the store's own connection, outside the store's rules (autocommit)."""
    store._db.conn.execute(sql)  # type: ignore[attr-defined]


def _pg_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (psycopg.Error,)


def drop_triggers(store: CentralStore) -> None:
    """What an administrator with full database rights can do first."""
    if store._db.dialect == "sqlite":
        raw(store, "DROP TRIGGER operator_journal_no_update")
        raw(store, "DROP TRIGGER operator_journal_no_delete")
    else:
        raw(store, "DROP TRIGGER operator_journal_no_change ON operator_journal")


def test_every_row_is_chained_to_the_one_before(store: CentralStore) -> None:
    entries = store.operator_journal()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    prev = AUDIT_GENESIS
    for entry in entries:
        assert entry["prev_hash"] == prev
        assert row_hash(entry) == entry["hash"]
        prev = entry["hash"]
    result = store.verify_audit()
    assert result == {
        "ok": True,
        "rows": 5,
        "head_seq": 5,
        "head_hash": prev,
        "problems": [],
    }


def test_the_database_refuses_update_and_delete(store: CentralStore) -> None:
    # SQLite: IntegrityError (RAISE(ABORT)); PostgreSQL: RaiseException.
    errors = (sqlite3.DatabaseError, *_pg_errors())
    with pytest.raises(errors, match="append-only"):
        raw(store, "UPDATE operator_journal SET operator = 'eve' WHERE seq = 3")
    with pytest.raises(errors, match="append-only"):
        raw(store, "DELETE FROM operator_journal WHERE seq = 3")
    with pytest.raises(errors, match="append-only"):
        raw(store, "DELETE FROM operator_journal")
    if store._db.dialect == "postgresql":
        with pytest.raises(errors, match="append-only"):
            raw(store, "TRUNCATE operator_journal")
    assert [e["operator"] for e in store.operator_journal()][2] == "ada"
    assert store.verify_audit()["ok"]


def test_a_changed_row_is_named(store: CentralStore) -> None:
    drop_triggers(store)
    raw(store, "UPDATE operator_journal SET remote = '10.9.9.9' WHERE seq = 3")
    result = store.verify_audit()
    assert not result["ok"]
    assert [(p["seq"], p["problem"]) for p in result["problems"]] == [(3, "changed")]


def test_a_row_rewritten_with_its_hash_breaks_the_next_link(store: CentralStore) -> None:
    """Whoever recomputes the changed row's hash breaks the link of the row after it."""
    drop_triggers(store)
    entry = store.operator_journal()[2]
    forged = {**entry, "operator": "eve"}
    raw(
        store,
        f"UPDATE operator_journal SET operator = 'eve', hash = '{row_hash(forged)}' WHERE seq = 3",
    )
    problems = store.verify_audit()["problems"]
    assert [(p["seq"], p["problem"]) for p in problems] == [(4, "broken_link")]


def test_a_deleted_row_is_named(store: CentralStore) -> None:
    drop_triggers(store)
    raw(store, "DELETE FROM operator_journal WHERE seq = 3")
    result = store.verify_audit()
    assert not result["ok"] and result["rows"] == 4
    assert [(p["seq"], p["problem"]) for p in result["problems"]] == [
        (3, "missing"),
        (4, "broken_link"),
    ]


def test_reordered_rows_are_named(store: CentralStore) -> None:
    """Rows 3 and 4 swap places (their contents swap seq numbers)."""
    drop_triggers(store)
    raw(store, "UPDATE operator_journal SET seq = 103 WHERE seq = 3")
    raw(store, "UPDATE operator_journal SET seq = 3 WHERE seq = 4")
    raw(store, "UPDATE operator_journal SET seq = 4 WHERE seq = 103")
    problems = {(p["seq"], p["problem"]) for p in store.verify_audit()["problems"]}
    assert {(3, "changed"), (4, "changed"), (3, "broken_link")} <= problems


def test_the_chain_continues_after_a_reopen(
    central_db: Callable[[], str | None], tmp_path: Path
) -> None:
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings) as first:
        first.add_operator("ada", "auditor")
    with CentralStore(settings) as second:
        second.add_operator("bob", "auditor")
        result = second.verify_audit()
    assert result["ok"] and result["rows"] == 2


def test_export_gives_a_contiguous_run_and_its_proof(store: CentralStore) -> None:
    entries = store.operator_journal()
    exported = store.audit_export(since_ms=entries[1]["at_ms"], until_ms=entries[3]["at_ms"])
    assert [e["seq"] for e in exported["entries"]] == [2, 3]
    assert exported["prev_hash"] == entries[0]["hash"]
    assert exported["head_seq"] == 5 and exported["head_hash"] == entries[4]["hash"]
    prev = exported["prev_hash"]
    for entry in exported["entries"]:  # what an auditor checks offline
        assert entry["prev_hash"] == prev and row_hash(entry) == entry["hash"]
        prev = entry["hash"]
    whole = store.audit_export()
    assert len(whole["entries"]) == 5 and whole["prev_hash"] == AUDIT_GENESIS
    assert store.audit_export(since_ms=entries[4]["at_ms"] + 1)["entries"] == []


def test_rows_written_before_the_chain_are_chained_by_the_migration(tmp_path: Path) -> None:
    settings = CentralSettings(data_dir=tmp_path / "data")
    with CentralStore(settings) as store:
        store.add_operator("ada", "auditor")
        store.add_operator("bob", "auditor")
        conn = store._conn
        # Back to schema 4: no triggers, no hashes, a gap in seq (a rolled-back insert).
        conn.execute("DROP TRIGGER operator_journal_no_update")
        conn.execute("DROP TRIGGER operator_journal_no_delete")
        conn.execute("UPDATE operator_journal SET seq = 7 WHERE seq = 2")
        conn.execute("ALTER TABLE operator_journal DROP COLUMN prev_hash")
        conn.execute("ALTER TABLE operator_journal DROP COLUMN hash")
        # And schema 7's (retention), and schema 6's (host notification).
        conn.execute("DROP INDEX events_received")
        conn.execute("ALTER TABLE events DROP COLUMN purged_at_ms")
        conn.execute("ALTER TABLE invitations DROP COLUMN purged_at_ms")
        conn.execute("DROP TABLE notifications")
        conn.execute("ALTER TABLE invitations DROP COLUMN host_email")
        conn.execute("ALTER TABLE invitations DROP COLUMN lang")
        # And schema 8's (operators over HTTP).
        conn.execute("ALTER TABLE operators DROP COLUMN must_change_password")
        # And schema 9's (badge issuance).
        conn.execute("DROP TABLE badge_issues")
        # And schema 16's (event packs).
        conn.execute("DROP TABLE event_packs")
        conn.execute("ALTER TABLE devices DROP COLUMN pack_key")
        # And schema 10's (alarm acknowledgements, the self-test log), 11's (door modes) and
        # 15's (holidays).
        for table in ("alarm_acks", "selftest_log", "door_modes", "holidays"):
            conn.execute(f"DROP TABLE {table}")
        # And schema 14's (the statistics' index, device contact).
        conn.execute("DROP INDEX events_kind_time")
        conn.execute("DROP TABLE device_contact")
        conn.execute("DROP TABLE onsite_visits")
        # And schema 13's (invitation groups and extensions, CSV import drafts).
        conn.execute("DROP INDEX invitations_group")
        for table in ("invitation_groups", "import_drafts"):
            conn.execute(f"DROP TABLE {table}")
        for column in ("group_id", "replaces", "replaced_by"):
            conn.execute(f"ALTER TABLE invitations DROP COLUMN {column}")
        # And schema 12's (the deny list, approvals, the visitor's e-mail).
        for table in ("deny_list", "invitation_approvals"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("ALTER TABLE invitations DROP COLUMN visitor_email")
        conn.execute("PRAGMA user_version = 4")
    with CentralStore(settings) as store:
        store.add_operator("cy", "auditor")
        assert [e["seq"] for e in store.operator_journal()] == [1, 2, 3]
        assert store.verify_audit()["ok"]
        with pytest.raises(Exception, match="append-only"):
            store._conn.execute("DELETE FROM operator_journal")


def test_the_audit_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    with CentralStore(CentralSettings(data_dir=data)) as store:
        store.add_operator("ada", "auditor")
        store.add_operator("bob", "auditor")
    assert cli_main(["audit", "verify", "--data", str(data)]) == 0
    assert "audit chain intact: 2 rows" in capsys.readouterr().out
    out = tmp_path / "audit.json"
    assert cli_main(["audit", "export", "--data", str(data), "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert [e["seq"] for e in exported["entries"]] == [1, 2]
    assert exported["prev_hash"] == AUDIT_GENESIS
    assert cli_main(["audit", "export", "--data", str(data), "--since", "2001-01-01",
                     "--until", "2001-01-02", "--out", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["entries"] == []
    with CentralStore(CentralSettings(data_dir=data)) as store:
        drop_triggers(store)
        store._conn.execute("UPDATE operator_journal SET action = 'nothing' WHERE seq = 2")
    capsys.readouterr()
    assert cli_main(["audit", "verify", "--data", str(data)]) == 1
    printed = capsys.readouterr().out
    assert "row 2: changed" in printed and "audit chain BROKEN" in printed


def test_two_stores_on_one_database_extend_one_linear_chain(
    central_db: Callable[[], str | None], tmp_path: Path
) -> None:
    """Two connections appending at once (two centrals on one PostgreSQL): the write lock
    every transaction takes first keeps one chain, no fork, no duplicate seq."""
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    stores = [CentralStore(settings), CentralStore(settings)]
    try:

        def append(store: CentralStore, name: str) -> None:
            for number in range(40):
                store.record_action(name, "POST /admin/badges", {"n": number}, status=200)

        threads = [
            threading.Thread(target=append, args=(store, f"op{i}"))
            for i, store in enumerate(stores)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = stores[0].verify_audit()
        assert result["ok"], result["problems"]
        assert result["rows"] == 80
        operators = {e["operator"] for e in stores[1].operator_journal(limit=100)}
        assert operators == {"op0", "op1"}
    finally:
        for store in stores:
            store.close()


# -- the head, anchored outside the central ----------------------------------------------


def rewrite_from(store: CentralStore, first: int, **changes: Any) -> None:
    """The attack the chain alone cannot see: a database administrator changes row *first*
    and recomputes every hash after it, so the rewritten chain verifies."""
    drop_triggers(store)
    entries = store.operator_journal()
    prev = entries[first - 2]["hash"] if first > 1 else AUDIT_GENESIS
    for entry in entries[first - 1 :]:
        forged = {**entry, **(changes if entry["seq"] == first else {}), "prev_hash": prev}
        forged["hash"] = row_hash(forged)
        values = ", ".join(
            f"{name} = " + ("NULL" if forged[name] is None else f"'{forged[name]}'")
            for name in ("operator", "prev_hash", "hash")
        )
        raw(store, f"UPDATE operator_journal SET {values} WHERE seq = {entry['seq']}")
        prev = forged["hash"]


def test_a_kept_head_shows_a_chain_rewritten_with_every_hash_recomputed(
    store: CentralStore,
) -> None:
    anchor = store.audit_head()
    assert anchor["seq"] == 5 and anchor["hash"] == store.verify_audit()["head_hash"]
    assert anchor["kid"] == store.delta_key()["kid"] and anchor["signature"]
    assert store.verify_audit(anchor)["ok"]
    store.add_operator("bob", "auditor")  # the chain goes on: the kept head still holds
    assert store.verify_audit(anchor)["ok"]
    rewrite_from(store, 3, operator="eve")
    assert store.operator_journal()[2]["operator"] == "eve"
    assert store.verify_audit()["ok"]  # the chain alone: nothing to see
    result = store.verify_audit(anchor)
    assert not result["ok"]
    assert [(p["seq"], p["problem"]) for p in result["problems"]] == [(5, "anchor")]


def test_a_kept_head_shows_rows_cut_off_the_end(store: CentralStore) -> None:
    anchor = store.audit_head()
    drop_triggers(store)
    raw(store, "DELETE FROM operator_journal WHERE seq >= 4")
    assert store.verify_audit()["ok"]  # a shorter chain is still a chain
    problems = store.verify_audit(anchor)["problems"]
    assert [(p["seq"], p["problem"]) for p in problems] == [(5, "anchor")]
    assert "gone" in problems[0]["detail"]


def test_a_forged_head_is_refused(store: CentralStore) -> None:
    anchor = store.audit_head()
    forged = {**anchor, "seq": 4, "hash": store.operator_journal()[3]["hash"]}
    problems = store.verify_audit(forged)["problems"]
    assert [p["problem"] for p in problems] == ["anchor_signature"]
    assert [p["problem"] for p in store.verify_audit({"seq": 1})["problems"]] == ["anchor"]


def test_the_anchor_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    with CentralStore(CentralSettings(data_dir=data)) as store:
        for name in ("ada", "bob", "cy"):
            store.add_operator(name, "auditor")
    kept = tmp_path / "kept-head.json"
    assert cli_main(["audit", "head", "--data", str(data), "--out", str(kept)]) == 0
    assert kept.stat().st_mode & 0o777 == 0o600
    assert json.loads(kept.read_text())["seq"] == 3
    assert cli_main(["audit", "head", "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["seq"] == 3
    assert cli_main(["audit", "verify", "--data", str(data), "--anchor", str(kept)]) == 0
    assert "still holds the kept head" in capsys.readouterr().out
    with CentralStore(CentralSettings(data_dir=data)) as store:
        rewrite_from(store, 2, operator="eve")
    assert cli_main(["audit", "verify", "--data", str(data)]) == 0
    assert cli_main(["audit", "verify", "--data", str(data), "--anchor", str(kept)]) == 1
    assert "row 3: anchor" in capsys.readouterr().out
    missing = tmp_path / "nowhere.json"
    assert cli_main(["audit", "verify", "--data", str(data), "--anchor", str(missing)]) == 2
