"""Credential cache: what the door needs to decide offline.

Badges, invitations, revocations, signing keys and door schedules pushed by
the central as deltas by cursor. Every table is keyed for O(log n) lookups
and stays on disk: a lookup reads a handful of pages through SQLite's page
cache, so 1,000,000 badges cost disk, not agent memory.

Times are epoch **seconds** (like CWT/JWT ``nbf``/``exp``); None means
unbounded. Free-form extras go in ``data`` (a JSON object).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edge_agent.store.db import Database
from edge_agent.store.errors import CursorMismatch
from portier_common.encoding import Clock
from portier_common.uid import BadgeUid

_META_CURSOR = "downlink.cursor"
_META_SYNCED = "downlink.last_sync_ms"

#: Badge technologies the cache knows. ``uid`` badges are cloneable and
#: accepted only where a door's configuration allows them.
BADGE_KINDS = ("uid", "ntag424", "desfire")


class RevocationKind(StrEnum):
    """What a revocation entry revokes."""

    INVITATION = "invitation"
    BADGE = "badge"
    HOLDER = "holder"
    KEY = "key"


def _check_time(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name}: {value!r} must be epoch seconds (int) or None")


def _check_text(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: {value!r} must be a non-empty string")


def _tuple_of_text(name: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name}: {value!r} must be a list of strings or None")
    items = tuple(value)
    for item in items:
        _check_text(name, item)
    return items


def _check_data(value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise ValueError(f"data: {value!r} must be a JSON object or None")


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value is not JSON: {exc}") from None


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _doors(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def search_key(name: str) -> str:
    """Return the case- and space-insensitive form used for name look-ups."""
    return " ".join(name.casefold().split())


@dataclass(frozen=True, slots=True)
class Badge:
    """A badge the door may accept. ``doors`` None means every door."""

    uid: bytes
    kind: str
    holder: str
    doors: tuple[str, ...] | None = None
    not_before: int | None = None
    not_after: int | None = None
    data: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "uid", BadgeUid.parse(self.uid).raw)
        if self.kind not in BADGE_KINDS:
            raise ValueError(f"kind: {self.kind!r} must be one of {BADGE_KINDS}")
        _check_text("holder", self.holder)
        object.__setattr__(self, "doors", _tuple_of_text("doors", self.doors))
        _check_time("not_before", self.not_before)
        _check_time("not_after", self.not_after)
        _check_data(self.data)


@dataclass(frozen=True, slots=True)
class Invitation:
    """A visitor invitation known to the door (for look-up and check-in)."""

    id: str
    visitor: str
    host: str | None = None
    doors: tuple[str, ...] | None = None
    not_before: int | None = None
    not_after: int | None = None
    single_use: bool = True
    data: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_text("id", self.id)
        _check_text("visitor", self.visitor)
        _check_text("host", self.host, optional=True)
        object.__setattr__(self, "doors", _tuple_of_text("doors", self.doors))
        _check_time("not_before", self.not_before)
        _check_time("not_after", self.not_after)
        if not isinstance(self.single_use, bool):
            raise ValueError(f"single_use: {self.single_use!r} must be true or false")
        _check_data(self.data)


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked credential. After ``expires_at`` the credential would be
    invalid anyway and the entry may be pruned. Badge ids are the UID in
    lower-case hex without separators."""

    kind: RevocationKind
    id: str
    revoked_at: int | None = None
    expires_at: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", RevocationKind(self.kind))
        except ValueError:
            raise ValueError(
                f"kind: {self.kind!r} must be one of {[k.value for k in RevocationKind]}"
            ) from None
        _check_text("id", self.id)
        if self.kind is RevocationKind.BADGE:
            object.__setattr__(self, "id", BadgeUid.parse(self.id).hex())
        _check_time("revoked_at", self.revoked_at)
        _check_time("expires_at", self.expires_at)


@dataclass(frozen=True, slots=True)
class CachedSigningKey:
    """A public key that signs invitations, by key id, as the cache keeps it (the key that
    signs is :class:`portier_common.tokens.SigningKey`, on the central)."""

    kid: str
    alg: str
    public_key: bytes
    not_before: int | None = None
    not_after: int | None = None
    data: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_text("kid", self.kid)
        _check_text("alg", self.alg)
        if not isinstance(self.public_key, bytes) or not self.public_key:
            raise ValueError("public_key: must be non-empty bytes")
        _check_time("not_before", self.not_before)
        _check_time("not_after", self.not_after)
        _check_data(self.data)


@dataclass(frozen=True, slots=True)
class CachedSchedule:
    """When a door (or zone) may be opened; ``id`` is the door or zone id the
    door configuration refers to, ``data`` the schedule as the policy reads it (into an
    :class:`edge_agent.policy.Schedule`)."""

    id: str
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check_text("id", self.id)
        if not isinstance(self.data, Mapping):
            raise ValueError(f"data: {self.data!r} must be a JSON object")


def _tuple(name: str, value: Iterable[Any], kind: type | tuple[type, ...]) -> tuple[Any, ...]:
    items = tuple(value)
    for item in items:
        if not isinstance(item, kind):
            raise ValueError(f"{name}: {item!r} is not a {kind}")
    return items


@dataclass(frozen=True)
class Delta:
    """One page of changes from the central, applied atomically with its
    cursor by :meth:`CredentialCache.apply_delta`.

    ``reset`` marks a full snapshot: the cache tables (not the replay ledger)
    are emptied first, in the same transaction. ``used_invitations`` are
    single-use invitations used at other doors, as (id, expires_at) pairs.
    """

    cursor: str
    badges: Sequence[Badge] = ()
    deleted_badges: Sequence[bytes | str] = ()
    invitations: Sequence[Invitation] = ()
    deleted_invitations: Sequence[str] = ()
    revocations: Sequence[Revocation] = ()
    deleted_revocations: Sequence[tuple[str, str]] = ()
    signing_keys: Sequence[CachedSigningKey] = ()
    deleted_signing_keys: Sequence[str] = ()
    schedules: Sequence[CachedSchedule] = ()
    deleted_schedules: Sequence[str] = ()
    used_invitations: Sequence[tuple[str, int]] = ()
    reset: bool = False
    _size: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_text("cursor", self.cursor)
        setter = object.__setattr__
        setter(self, "badges", _tuple("badges", self.badges, Badge))
        setter(
            self,
            "deleted_badges",
            tuple(BadgeUid.parse(uid).raw for uid in self.deleted_badges),
        )
        setter(self, "invitations", _tuple("invitations", self.invitations, Invitation))
        setter(
            self,
            "deleted_invitations",
            _tuple("deleted_invitations", self.deleted_invitations, str),
        )
        setter(self, "revocations", _tuple("revocations", self.revocations, Revocation))
        deleted_revocations = []
        for pair in self.deleted_revocations:
            # The wire's strings: Revocation checks them and converts the kind.
            kind: Any
            ident: Any
            kind, ident = pair
            key = Revocation(kind, ident)
            deleted_revocations.append((key.kind.value, key.id))
        setter(self, "deleted_revocations", tuple(deleted_revocations))
        setter(self, "signing_keys", _tuple("signing_keys", self.signing_keys, CachedSigningKey))
        setter(
            self,
            "deleted_signing_keys",
            _tuple("deleted_signing_keys", self.deleted_signing_keys, str),
        )
        setter(self, "schedules", _tuple("schedules", self.schedules, CachedSchedule))
        setter(self, "deleted_schedules", _tuple("deleted_schedules", self.deleted_schedules, str))
        used: list[tuple[str, int]] = []
        for entry in self.used_invitations:
            ident, expires_at = entry
            _check_text("used_invitations", ident)
            if not isinstance(expires_at, int) or isinstance(expires_at, bool):
                raise ValueError(f"used_invitations: expiry {expires_at!r} must be epoch seconds")
            used.append((ident, expires_at))
        setter(self, "used_invitations", tuple(used))
        if not isinstance(self.reset, bool):
            raise ValueError(f"reset: {self.reset!r} must be true or false")
        setter(
            self,
            "_size",
            sum(
                len(getattr(self, name))
                for name in [
                    "badges",
                    "deleted_badges",
                    "invitations",
                    "deleted_invitations",
                    "revocations",
                    "deleted_revocations",
                    "signing_keys",
                    "deleted_signing_keys",
                    "schedules",
                    "deleted_schedules",
                    "used_invitations",
                ]
            ),
        )

    def __len__(self) -> int:
        """Number of upserts and deletes in this delta."""
        return self._size


@dataclass(frozen=True)
class DownlinkState:
    """Where the downlink is: the cursor to ask the central from, and when the
    last sync that reached the central's head was applied (epoch ms, None if
    never: a first sync stopped between pages leaves it None)."""

    cursor: str | None
    last_sync_ms: int | None

    def staleness_ms(self, now_ms: int) -> int | None:
        """Return how old the cache is at ``now_ms``, or None if never synced."""
        return None if self.last_sync_ms is None else max(0, now_ms - self.last_sync_ms)


@dataclass(frozen=True)
class CacheCounts:
    """Rows per cache table."""

    badges: int
    invitations: int
    revocations: int
    signing_keys: int
    schedules: int


_UNCHECKED: Any = object()

_TABLES = ("badges", "invitations", "revocations", "signing_keys", "schedules")


class CredentialCache:
    """Look-ups and atomic delta application; obtained as ``store.cache``.

    Look-ups run on pooled read connections and never wait for a writer.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        #: False on a device without a guard console: guards' PIN hashes are
        #: dropped from badges as deltas arrive (:meth:`strip_guard_secrets` for
        #: those already cached), so a stolen door holds none to search offline.
        self.keep_guard_secrets = True

    # -- look-ups ----------------------------------------------------------------

    def badge(self, uid: bytes | str) -> Badge | None:
        """Return the cached badge with this UID, or None. Raises
        :class:`~portier_common.uid.BadgeUidError` (a :class:`ValueError`) for
        anything that is not a badge UID (:class:`~portier_common.uid.BadgeUid`)."""
        raw = BadgeUid.parse(uid).raw
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT uid, kind, holder, doors, not_before, not_after, data "
                "FROM badges WHERE uid = ?",
                (raw,),
            ).fetchone()
        if row is None:
            return None
        return Badge(row[0], row[1], row[2], _doors(row[3]), row[4], row[5], _load(row[6]))

    def invitation(self, invitation_id: str) -> Invitation | None:
        """Return the cached invitation with this id, or None."""
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT id, visitor, host, doors, not_before, not_after, single_use, data "
                "FROM invitations WHERE id = ?",
                (invitation_id,),
            ).fetchone()
        return None if row is None else self._invitation(row)

    @staticmethod
    def _invitation(row: Sequence[Any]) -> Invitation:
        return Invitation(
            row[0], row[1], row[2], _doors(row[3]), row[4], row[5], bool(row[6]), _load(row[7])
        )

    def find_invitations(self, name_prefix: str, limit: int = 20) -> list[Invitation]:
        """Return up to ``limit`` invitations whose visitor name starts with
        ``name_prefix`` (case- and space-insensitive), by name."""
        key = search_key(name_prefix)
        if not key:
            return []
        with self._db.reader() as conn:
            rows = conn.execute(
                "SELECT id, visitor, host, doors, not_before, not_after, single_use, data "
                "FROM invitations WHERE search_name >= ? AND search_name < ? "
                "ORDER BY search_name LIMIT ?",
                (key, key + "\U0010ffff", limit),
            ).fetchall()
        return [self._invitation(row) for row in rows]

    def invitations_valid_between(self, start: int, end: int, limit: int = 100) -> list[Invitation]:
        """Return up to ``limit`` invitations whose validity overlaps ``[start, end)`` (Unix
        seconds; an open bound overlaps everything), by start of validity then name.

        The guard console's "expected today" list: one indexed-free scan of the
        invitations table, which holds only invitations not yet ended (pruned).
        """
        with self._db.reader() as conn:
            rows = conn.execute(
                "SELECT id, visitor, host, doors, not_before, not_after, single_use, data "
                "FROM invitations WHERE (not_before IS NULL OR not_before < ?) "
                "AND (not_after IS NULL OR not_after > ?) "
                "ORDER BY coalesce(not_before, 0), search_name, id LIMIT ?",
                (end, start, limit),
            ).fetchall()
        return [self._invitation(row) for row in rows]

    def is_revoked(self, kind: RevocationKind | str, credential_id: str | bytes) -> bool:
        """Return True if the credential is revoked. Badge UIDs may be given
        as bytes or hex in any form."""
        return self.revocation(kind, credential_id) is not None

    def revocation(
        self, kind: RevocationKind | str, credential_id: str | bytes
    ) -> Revocation | None:
        """Return the revocation entry for the credential, or None."""
        kind = RevocationKind(kind)
        if kind is RevocationKind.BADGE:
            ident = BadgeUid.parse(credential_id).hex()
        elif isinstance(credential_id, str):
            ident = credential_id
        else:
            raise ValueError(f"id: {credential_id!r} must be a string")
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT revoked_at, expires_at FROM revocations WHERE kind = ? AND id = ?",
                (kind.value, ident),
            ).fetchone()
        return None if row is None else Revocation(kind, ident, row[0], row[1])

    def signing_key(self, kid: str) -> CachedSigningKey | None:
        """Return the signing key with this key id, or None."""
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT kid, alg, public_key, not_before, not_after, data "
                "FROM signing_keys WHERE kid = ?",
                (kid,),
            ).fetchone()
        return (
            None
            if row is None
            else CachedSigningKey(row[0], row[1], row[2], row[3], row[4], _load(row[5]))
        )

    def signing_keys(self) -> list[CachedSigningKey]:
        """Return every cached signing key, by key id."""
        with self._db.reader() as conn:
            rows = conn.execute(
                "SELECT kid, alg, public_key, not_before, not_after, data "
                "FROM signing_keys ORDER BY kid"
            ).fetchall()
        return [
            CachedSigningKey(row[0], row[1], row[2], row[3], row[4], _load(row[5])) for row in rows
        ]

    def schedule(self, schedule_id: str) -> CachedSchedule | None:
        """Return the schedule of this door or zone, or None."""
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT id, data FROM schedules WHERE id = ?", (schedule_id,)
            ).fetchone()
        return None if row is None else CachedSchedule(row[0], json.loads(row[1]))

    def downlink(self) -> DownlinkState:
        """Return the downlink cursor and the time of the last applied delta."""
        with self._db.snapshot() as conn:
            return DownlinkState(
                Database.meta_get(conn, _META_CURSOR), Database.meta_get(conn, _META_SYNCED)
            )

    def counts(self) -> CacheCounts:
        """Return the number of rows per table (scans: for status pages, not
        for the decision path)."""
        with self._db.snapshot() as conn:
            counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _TABLES]
        return CacheCounts(*counts)

    # -- writes ------------------------------------------------------------------

    def apply_delta(
        self,
        delta: Delta,
        *,
        expected_cursor: str | None = _UNCHECKED,
        synced_at_ms: int | None = None,
        at_head: bool = True,
    ) -> int:
        """Apply ``delta`` in one transaction: upserts, deletes, the cursor and
        the sync time, all or nothing. Returns ``len(delta)``.

        ``at_head`` False (a page the central says is followed by more) moves
        the cursor but not the sync time: the cache's staleness counts from the
        last sync that reached the central's head, so a sync stopped between
        pages (badges applied, their later revocations not) never makes the
        cache look fresh, and a first sync that never completed leaves it
        "never synced" (stale by definition: a bounded door refuses).

        ``expected_cursor`` (None meaning "never synced") makes the delta
        conditional on the cache's current cursor. Raises
        :class:`CursorMismatch` if it differs, :class:`ValueError` for a value
        that cannot be stored (JSON), :class:`StoreFull` and other store
        errors; in every case nothing of the delta is applied.

        A delta holds the write lock while it applies, so journal appends
        wait for it: keep pages to a few thousand items (about 50 ms each).
        """
        if not isinstance(delta, Delta):
            raise TypeError(f"delta: expected a Delta, got {type(delta).__name__}")
        now_ms = self._clock.wall_ms() if synced_at_ms is None else synced_at_ms
        with self._db.transaction("cache apply_delta") as conn:
            current = Database.meta_get(conn, _META_CURSOR)
            if expected_cursor is not _UNCHECKED and current != expected_cursor:
                raise CursorMismatch(expected_cursor, current)
            self._apply(conn, delta)
            Database.meta_set(conn, _META_CURSOR, delta.cursor)
            if at_head:
                Database.meta_set(conn, _META_SYNCED, now_ms)
        return len(delta)

    def _apply(self, conn: sqlite3.Connection, delta: Delta) -> None:
        if delta.reset:
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")
        # Generators: rows are encoded while the transaction is open, so a
        # value that fails to encode rolls back everything before it too.
        conn.executemany(
            "INSERT OR REPLACE INTO badges (uid, kind, holder, doors, not_before, not_after, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    b.uid,
                    b.kind,
                    b.holder,
                    _dump(b.doors),
                    b.not_before,
                    b.not_after,
                    _dump(self._badge_data(b.data)),
                )
                for b in delta.badges
            ),
        )
        conn.executemany(
            "DELETE FROM badges WHERE uid = ?", ((uid,) for uid in delta.deleted_badges)
        )
        conn.executemany(
            "INSERT OR REPLACE INTO invitations (id, visitor, search_name, host, doors, "
            "not_before, not_after, single_use, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    i.id,
                    i.visitor,
                    search_key(i.visitor),
                    i.host,
                    _dump(i.doors),
                    i.not_before,
                    i.not_after,
                    int(i.single_use),
                    _dump(i.data),
                )
                for i in delta.invitations
            ),
        )
        conn.executemany(
            "DELETE FROM invitations WHERE id = ?", ((i,) for i in delta.deleted_invitations)
        )
        conn.executemany(
            "INSERT OR REPLACE INTO revocations (kind, id, revoked_at, expires_at) "
            "VALUES (?, ?, ?, ?)",
            ((r.kind.value, r.id, r.revoked_at, r.expires_at) for r in delta.revocations),
        )
        conn.executemany(
            "DELETE FROM revocations WHERE kind = ? AND id = ?", delta.deleted_revocations
        )
        conn.executemany(
            "INSERT OR REPLACE INTO signing_keys (kid, alg, public_key, not_before, not_after, "
            "data) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (k.kid, k.alg, k.public_key, k.not_before, k.not_after, _dump(k.data))
                for k in delta.signing_keys
            ),
        )
        conn.executemany(
            "DELETE FROM signing_keys WHERE kid = ?", ((k,) for k in delta.deleted_signing_keys)
        )
        conn.executemany(
            "INSERT OR REPLACE INTO schedules (id, data) VALUES (?, ?)",
            ((s.id, _dump(s.data)) for s in delta.schedules),
        )
        conn.executemany(
            "DELETE FROM schedules WHERE id = ?", ((s,) for s in delta.deleted_schedules)
        )
        now_ms = self._clock.wall_ms()
        conn.executemany(
            "INSERT INTO used_invitations (id, used_at_ms, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
            ((ident, now_ms, expires_at) for ident, expires_at in delta.used_invitations),
        )

    def _badge_data(self, data: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        # Only a guard's PIN hash is a console secret; any other badge's is its card + PIN
        # second factor, which a door with a card + PIN reader checks (docs/readers.md).
        if self.keep_guard_secrets or not data or "pin_hash" not in data:
            return data
        if data.get("role") != "guard":
            return data
        return {k: v for k, v in data.items() if k != "pin_hash"}

    def strip_guard_secrets(self) -> int:
        """Drop every cached guard PIN hash (a device without a guard console);
        return how many badges had one. Other badges keep theirs (card + PIN)."""
        with self._db.transaction("cache strip guard secrets") as conn:
            return conn.execute(
                "UPDATE badges SET data = json_remove(data, '$.pin_hash') "
                "WHERE data IS NOT NULL AND json_type(data, '$.pin_hash') IS NOT NULL "
                "AND json_extract(data, '$.role') = 'guard'"
            ).rowcount

    def prune_expired(self, before: int) -> int:
        """Delete invitations that ended and revocations that expired before
        ``before`` (epoch seconds; pass now minus the allowed clock skew).
        Returns the number of rows deleted."""
        with self._db.transaction("cache prune") as conn:
            deleted = conn.execute(
                "DELETE FROM invitations WHERE not_after IS NOT NULL AND not_after < ?", (before,)
            ).rowcount
            deleted += conn.execute(
                "DELETE FROM revocations WHERE expires_at IS NOT NULL AND expires_at < ?",
                (before,),
            ).rowcount
        return deleted


__all__ = [
    "BADGE_KINDS",
    "Badge",
    "CacheCounts",
    "CachedSchedule",
    "CachedSigningKey",
    "CredentialCache",
    "Delta",
    "DownlinkState",
    "Invitation",
    "Revocation",
    "RevocationKind",
]
