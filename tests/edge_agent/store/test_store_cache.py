"""Credential cache: look-ups, atomic deltas, cursor, staleness."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.store import (
    Badge,
    CachedSchedule,
    CachedSigningKey,
    CursorMismatch,
    Delta,
    Invitation,
    Revocation,
    RevocationKind,
    Store,
    StoreError,
    StoreFull,
    StoreSettings,
)
from portier_common.uid import BadgeUid


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000_000

    def wall_ms(self) -> int:
        return self.now

    def mono_ns(self) -> int:
        return 1


def settings(path: Path, **kw: object) -> StoreSettings:
    return StoreSettings(path=path, reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0, **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with Store.open(settings(tmp_path / "cache.sqlite"), clock=clock) as s:
        yield s


def full_delta(cursor: str = "c1") -> Delta:
    return Delta(
        cursor=cursor,
        badges=[
            Badge(
                "04:A1:B2:C3:D4:E5:F6",
                "ntag424",
                "h-1",
                doors=["front", "lab"],
                not_after=2_000_000_000,
            ),
            Badge(b"\x01\x02\x03\x04", "uid", "h-2", data={"name": "Ada"}),
        ],
        invitations=[
            Invitation(
                "inv-1", "Zoë  Martin", host="h-1", doors=["front"], not_after=1_800_000_000
            ),
            Invitation("inv-2", "zoe marchand", single_use=False),
            Invitation("inv-3", "Alan Turing"),
        ],
        revocations=[
            Revocation(RevocationKind.INVITATION, "inv-3", revoked_at=1_700_000_000),
            Revocation("badge", "01-02-03-04"),
        ],
        signing_keys=[CachedSigningKey("k1", "EdDSA", b"\x11" * 32, not_before=1_700_000_000)],
        schedules=[CachedSchedule("front", {"mon": [["08:00", "18:00"]]})],
    )


def test_lookups_by_key(store: Store) -> None:
    assert store.cache.apply_delta(full_delta()) == 9
    badge = store.cache.badge("04a1b2c3d4e5f6")
    assert badge is not None and badge.kind == "ntag424" and badge.doors == ("front", "lab")
    assert badge.uid == bytes.fromhex("04a1b2c3d4e5f6")
    assert store.cache.badge(b"\x01\x02\x03\x04").data == {"name": "Ada"}
    assert store.cache.badge("04a1b2c3d4e5f7") is None
    inv = store.cache.invitation("inv-1")
    assert inv is not None and inv.visitor == "Zoë  Martin" and inv.single_use
    assert store.cache.invitation("inv-2").single_use is False
    assert store.cache.is_revoked("invitation", "inv-3")
    assert not store.cache.is_revoked("invitation", "inv-1")
    assert store.cache.is_revoked("badge", b"\x01\x02\x03\x04")
    assert store.cache.is_revoked(RevocationKind.BADGE, "01:02:03:04")
    assert store.cache.signing_key("k1").public_key == b"\x11" * 32
    assert [k.kid for k in store.cache.signing_keys()] == ["k1"]
    assert store.cache.schedule("front").data == {"mon": [["08:00", "18:00"]]}
    assert store.cache.schedule("back") is None
    counts = store.cache.counts()
    assert (counts.badges, counts.invitations, counts.revocations) == (2, 3, 2)


def test_find_invitations_by_name_prefix(store: Store) -> None:
    store.cache.apply_delta(full_delta())
    assert [i.id for i in store.cache.find_invitations("ZOË m")] == ["inv-1"]
    assert [i.id for i in store.cache.find_invitations("zo")] == ["inv-2", "inv-1"]
    assert store.cache.find_invitations("  ") == []
    assert [i.id for i in store.cache.find_invitations("a", limit=1)] == ["inv-3"]


def test_cursor_and_staleness(store: Store, clock: Clock) -> None:
    assert store.cache.downlink().cursor is None
    assert store.cache.downlink().staleness_ms(clock.now) is None
    store.cache.apply_delta(full_delta("c1"), expected_cursor=None)
    clock.now += 60_000
    state = store.cache.downlink()
    assert state.cursor == "c1" and state.staleness_ms(clock.now) == 60_000
    # An empty delta still proves the cache is fresh.
    store.cache.apply_delta(Delta(cursor="c1"), expected_cursor="c1")
    assert store.cache.downlink().staleness_ms(clock.now) == 0


def test_cursor_mismatch_applies_nothing(store: Store) -> None:
    store.cache.apply_delta(full_delta("c1"))
    delta = Delta(cursor="c3", badges=[Badge("0a0b0c0d", "uid", "h-9")])
    with pytest.raises(CursorMismatch) as info:
        store.cache.apply_delta(delta, expected_cursor="c2")
    assert info.value.actual == "c1"
    assert store.cache.badge("0a0b0c0d") is None
    assert store.cache.downlink().cursor == "c1"


def test_upserts_deletes_and_reset(store: Store) -> None:
    store.cache.apply_delta(full_delta("c1"))
    store.cache.apply_delta(
        Delta(
            cursor="c2",
            badges=[Badge("01020304", "uid", "h-2b")],
            deleted_badges=["04a1b2c3d4e5f6"],
            deleted_invitations=["inv-2"],
            deleted_revocations=[("badge", "01020304")],
            deleted_signing_keys=["k1"],
            deleted_schedules=["front"],
        )
    )
    assert store.cache.badge("01020304").holder == "h-2b"
    assert store.cache.badge("04a1b2c3d4e5f6") is None
    assert store.cache.invitation("inv-2") is None
    assert not store.cache.is_revoked("badge", "01020304")
    assert store.cache.signing_key("k1") is None and store.cache.schedule("front") is None
    store.replay.use_once("inv-1", 1_800_000_000)
    store.cache.apply_delta(
        Delta(cursor="c3", reset=True, badges=[Badge("0f0f0f0f", "uid", "h-3")])
    )
    counts = store.cache.counts()
    assert (counts.badges, counts.invitations, counts.revocations) == (1, 0, 0)
    assert store.replay.is_used("inv-1"), "a reset never forgets used invitations"


def test_delta_failing_midway_leaves_nothing_applied(store: Store, tmp_path: Path) -> None:
    store.cache.apply_delta(full_delta("c1"))
    # A trigger makes the revocation insert -- after the badges and
    # invitations of the same delta were written -- fail inside the
    # transaction, as a constraint or I/O error would.
    conn = sqlite3.connect(tmp_path / "cache.sqlite", isolation_level=None)
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON revocations WHEN NEW.id = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    )
    conn.close()
    delta = Delta(
        cursor="c2",
        badges=[Badge("0a0b0c0d", "uid", "h-new")],
        deleted_badges=["04a1b2c3d4e5f6"],
        invitations=[Invitation("inv-9", "New Visitor")],
        revocations=[Revocation("invitation", "inv-1"), Revocation("invitation", "poison")],
        used_invitations=[("inv-x", 1_900_000_000)],
    )
    with pytest.raises(StoreError, match="poisoned row"):
        store.cache.apply_delta(delta)
    assert store.cache.badge("0a0b0c0d") is None
    assert store.cache.badge("04a1b2c3d4e5f6") is not None
    assert store.cache.invitation("inv-9") is None
    assert not store.cache.is_revoked("invitation", "inv-1")
    assert not store.replay.is_used("inv-x")
    assert store.cache.downlink().cursor == "c1"


def test_delta_that_fills_the_database_leaves_nothing_applied(tmp_path: Path) -> None:
    path = tmp_path / "small.sqlite"
    with Store.open(settings(path, max_db_bytes=256 * 1024)) as store:
        store.cache.apply_delta(Delta(cursor="c1", badges=[Badge("01020304", "uid", "h")]))
        big = Delta(
            cursor="c2",
            badges=[Badge(i.to_bytes(7, "big"), "uid", "h" * 200) for i in range(5_000)],
        )
        with pytest.raises(StoreFull):
            store.cache.apply_delta(big)
        assert store.cache.counts().badges == 1
        assert store.cache.downlink().cursor == "c1"
        # The store still works afterwards.
        assert store.journal.append("cache.sync_failed", {"reason": "disk full"}).seq == 1


def test_delta_value_that_is_not_json_rolls_back(store: Store) -> None:
    delta = Delta(
        cursor="c1",
        badges=[
            Badge("01020304", "uid", "h"),
            Badge("01020305", "uid", "h", data={"when": object()}),
        ],
    )
    with pytest.raises(ValueError, match="JSON"):
        store.cache.apply_delta(delta)
    assert store.cache.badge("01020304") is None


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: Badge("zz", "uid", "h"), "uid"),
        (lambda: Badge("01020304", "magstripe", "h"), "kind"),
        (lambda: Badge("01020304", "uid", ""), "holder"),
        (lambda: Badge("01020304", "uid", "h", not_after="soon"), "not_after"),
        (lambda: Badge("01020304", "uid", "h", doors="front"), "doors"),
        (lambda: Invitation("", "v"), "id"),
        (lambda: Invitation("i", "v", single_use=1), "single_use"),
        (lambda: Revocation("person", "x"), "kind"),
        (lambda: CachedSigningKey("k", "EdDSA", b""), "public_key"),
        (lambda: CachedSchedule("front", "always"), "data"),
        (lambda: Delta(cursor=""), "cursor"),
        (lambda: Delta(cursor="c", badges=["01020304"]), "badges"),
        (lambda: Delta(cursor="c", used_invitations=[("i", None)]), "used_invitations"),
    ],
)
def test_bad_records_name_the_field(factory, match) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_prune_expired(store: Store) -> None:
    store.cache.apply_delta(
        Delta(
            cursor="c1",
            invitations=[Invitation("old", "A", not_after=100), Invitation("new", "B")],
            revocations=[Revocation("invitation", "old", expires_at=100)],
        )
    )
    assert store.cache.prune_expired(before=200) == 2
    assert store.cache.invitation("new") is not None


def test_uid_normalisation() -> None:
    assert BadgeUid.parse("04:a1-B2 c3").raw == b"\x04\xa1\xb2\xc3"
    with pytest.raises(ValueError):
        BadgeUid.parse("")
    with pytest.raises(ValueError):
        BadgeUid.parse(1234)


def test_cache_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Store.open(settings(path)) as store:
        store.cache.apply_delta(full_delta("c7"))
    with Store.open(settings(path), read_only=True) as store:
        assert store.cache.badge("04a1b2c3d4e5f6") is not None
        assert store.cache.downlink().cursor == "c7"
