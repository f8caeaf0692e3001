"""Replay ledger: what must never be accepted twice, durably.

* single-use invitation ids already used, each with the invitation's expiry
  so the entry can be pruned once the invitation could not verify anyway;
* the last accepted NTAG 424 DNA SUN read counter per badge UID.

Both survive restarts and are changed atomically under SQLite's write lock,
so two concurrent attempts (threads or processes) cannot both succeed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from edge_agent.store.db import Database
from portier_common.encoding import Clock
from portier_common.uid import BadgeUid

#: SUN read counters are 24-bit (NTAG 424 DNA data sheet, SDMReadCtr).
MAX_COUNTER = 0xFFFFFF

#: A ledger change run on an open write transaction; True if it took effect
#: (first use of an invitation, counter above every earlier one).
Claim = Callable[[sqlite3.Connection], bool]


class ReplayLedger:
    """Obtained as ``store.replay``; every method is thread-safe."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def use_once(self, invitation_id: str, expires_at: int) -> bool:
        """Record the single-use invitation as used; return True if this call
        is the first use, False if it was used before.

        Durable (committed, fsynced) before it returns True, so a grant that
        follows cannot be replayed after a crash. ``expires_at`` is the
        invitation's expiry in epoch seconds. Raises :class:`ValueError` for
        an empty id or a non-integer expiry.
        """
        claim = self.invitation_claim(invitation_id, expires_at)
        with self._db.transaction("replay use_once") as conn:
            return claim(conn)

    def invitation_claim(self, invitation_id: str, expires_at: int) -> Claim:
        """Return :meth:`use_once` as a claim to run inside another transaction.

        :meth:`Journal.append_claimed` runs it in the same commit as the
        decision it justifies, so the ledger and the journal never disagree.
        """
        if not isinstance(invitation_id, str) or not invitation_id:
            raise ValueError(f"invitation_id: {invitation_id!r} must be a non-empty string")
        if not isinstance(expires_at, int) or isinstance(expires_at, bool):
            raise ValueError(f"expires_at: {expires_at!r} must be epoch seconds (int)")
        now_ms = self._clock.wall_ms()

        def claim(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "INSERT INTO used_invitations (id, used_at_ms, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO NOTHING",
                    (invitation_id, now_ms, expires_at),
                ).rowcount
                == 1
            )

        return claim

    def is_used(self, invitation_id: str) -> bool:
        """Return True if the invitation id is in the ledger."""
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT 1 FROM used_invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
        return row is not None

    def advance_counter(self, uid: bytes | str, counter: int) -> bool:
        """Accept a SUN read counter for a badge; return True if it is greater
        than every counter accepted before for that UID (then it is stored,
        durably), False if it is a replay (equal or lower).

        Raises :class:`ValueError` for a malformed UID or a counter outside
        0..2**24-1.
        """
        claim = self.counter_claim(uid, counter)
        with self._db.transaction("replay advance_counter") as conn:
            return claim(conn)

    def counter_claim(self, uid: bytes | str, counter: int) -> Claim:
        """Return :meth:`advance_counter` as a claim to run inside another transaction."""
        raw = BadgeUid.parse(uid).raw
        if not isinstance(counter, int) or isinstance(counter, bool):
            raise ValueError(f"counter: {counter!r} must be an integer")
        if not 0 <= counter <= MAX_COUNTER:
            raise ValueError(f"counter: {counter} is outside 0..{MAX_COUNTER}")
        now_ms = self._clock.wall_ms()

        def claim(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "INSERT INTO badge_counters (uid, counter, updated_at_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT(uid) DO UPDATE SET counter = excluded.counter, "
                    "updated_at_ms = excluded.updated_at_ms "
                    "WHERE excluded.counter > badge_counters.counter",
                    (raw, counter, now_ms),
                ).rowcount
                == 1
            )

        return claim

    def last_counter(self, uid: bytes | str) -> int | None:
        """Return the last accepted counter for the badge, or None."""
        raw = BadgeUid.parse(uid).raw
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT counter FROM badge_counters WHERE uid = ?", (raw,)
            ).fetchone()
        return None if row is None else row[0]

    def used_count(self) -> int:
        """Return the number of used single-use invitations remembered."""
        with self._db.reader() as conn:
            return conn.execute("SELECT count(*) FROM used_invitations").fetchone()[0]

    def prune(self, before: int) -> int:
        """Forget used invitations that expired before ``before`` (epoch
        seconds: pass now minus the verifier's allowed clock skew, so an
        entry outlives every moment its invitation could still verify).
        Returns how many were removed."""
        with self._db.transaction("replay prune") as conn:
            return conn.execute(
                "DELETE FROM used_invitations WHERE expires_at < ?", (before,)
            ).rowcount


__all__ = ["MAX_COUNTER", "ReplayLedger"]
