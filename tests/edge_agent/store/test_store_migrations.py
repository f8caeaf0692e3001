"""Versioned schema migrations (PRAGMA user_version)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.store import SCHEMA_VERSION, SchemaError, Store, StoreSettings
from edge_agent.store.schema import MIGRATIONS, Migration, current_version, migrate


def settings(path: Path) -> StoreSettings:
    return StoreSettings(path=path, reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0)


def old_file(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    assert migrate(conn, target=version) == version
    return conn


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_new_file_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    with Store.open(settings(path)) as store:
        assert store.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1].version
    assert {"events", "meta", "badges", "used_invitations", "media"} <= tables(path)


def test_version_1_file_with_events_is_upgraded_and_keeps_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = old_file(path, 1)
    assert "badges" not in tables(path)
    conn.close()
    # Events written by version-1 code (same journal tables).
    from portier_common.encoding import GENESIS_HASH, UUIDv7Generator, event_hash

    conn = sqlite3.connect(path, isolation_level=None)
    prev, gen = GENESIS_HASH, UUIDv7Generator()
    for seq in range(1, 4):
        raw_id = gen.next_bytes(1_700_000_000_000 + seq)
        digest = event_hash(prev, seq, raw_id, 1_700_000_000_000 + seq, seq, "old.event", "{}")
        conn.execute(
            "INSERT INTO events (seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, 'old.event', '{}', ?, ?)",
            (seq, raw_id, 1_700_000_000_000 + seq, seq, prev, digest),
        )
        prev = digest
    conn.close()

    with Store.open(settings(path)) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.journal.verify_chain().checked == 3
        assert store.journal.append("new.event", {}).seq == 4
        assert store.replay.use_once("inv-1", 2_000_000_000)
        assert store.journal.verify_chain().ok


def test_version_2_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    conn = old_file(path, 2)
    conn.execute(
        "INSERT INTO used_invitations (id, used_at_ms, expires_at) VALUES ('inv-9', 1, 2000000000)"
    )
    conn.close()
    with Store.open(settings(path)) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.replay.is_used("inv-9")
        assert store.media.put(b"\xff\xd8photo").size == 7


def test_file_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    conn = old_file(path, SCHEMA_VERSION)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        Store.open(settings(path))


def test_failing_migration_rolls_back_to_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "fail.sqlite"
    conn = old_file(path, 1)
    broken = (
        *MIGRATIONS[:1],
        Migration(
            2,
            "half-broken",
            ("CREATE TABLE half_done (x INTEGER)", "CREATE TABLE half_done (x INTEGER)"),
        ),
    )
    with pytest.raises(SchemaError, match="rolled back"):
        migrate(conn, target=2, migrations=broken)
    assert current_version(conn) == 1
    assert "half_done" not in tables(path)
    assert not conn.in_transaction
    conn.close()
    # The real code still upgrades it afterwards.
    with Store.open(settings(path)) as store:
        assert store.schema_version() == SCHEMA_VERSION


def test_read_only_open_needs_a_current_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old_file(path, 1).close()
    with pytest.raises(SchemaError):
        Store.open(settings(path), read_only=True)


def test_callable_migration_steps_run_in_the_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    seen = []

    def step(c: sqlite3.Connection) -> None:
        seen.append(c.in_transaction)
        c.execute("CREATE TABLE t (x)")

    assert migrate(conn, target=1, migrations=(Migration(1, "callable", (step,)),)) == 1
    assert seen == [True]
    conn.close()
