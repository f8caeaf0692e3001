"""Guard login failures and lockouts, durable (they survive an agent restart).

One row per *normalised identity*: ``guard:<guard id>`` when the badge is a
guard's (every badge and every spelling of its UID share it), ``uid:<HEX>``
otherwise. The agent writes a row with the ``guard.login_failed`` event that
explains it, in the same commit (:meth:`Journal.append_claimed` runs the
claim), so the journal and the lockout never disagree. ``uid:`` rows are capped
(:attr:`GuardLockouts.cap`, oldest dropped first): an attacker who cycles
through UIDs fills a bounded table, not the disk or the agent's memory.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from edge_agent.store.db import Database
from edge_agent.store.replay import Claim

#: ``uid:`` rows kept at most (guard rows are bounded by the number of guards).
DEFAULT_CAP = 256


@dataclass(frozen=True)
class LockoutState:
    """Failures counted for an identity, and until when it is locked out (epoch ms)."""

    failures: int
    locked_until_ms: int | None
    updated_ms: int


class GuardLockouts:
    """Obtained as ``store.guard_lockouts``; thread-safe."""

    def __init__(self, db: Database, cap: int = DEFAULT_CAP) -> None:
        self._db = db
        self.cap = cap

    def get(self, ident: str) -> LockoutState | None:
        """The state of ``ident``, or None if it has no failure on record."""
        with self._db.reader() as conn:
            row = conn.execute(
                "SELECT failures, locked_until_ms, updated_ms FROM guard_lockouts WHERE ident = ?",
                (ident,),
            ).fetchone()
        return None if row is None else LockoutState(row[0], row[1], row[2])

    def failure_claim(
        self, ident: str, failures: int, locked_until_ms: int | None, now_ms: int
    ) -> Claim:
        """A claim (for :meth:`Journal.append_claimed`) that records ``failures`` for
        ``ident``, and drops the oldest ``uid:`` rows beyond the cap; always takes effect."""

        def claim(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO guard_lockouts (ident, failures, locked_until_ms, updated_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(ident) DO UPDATE SET "
                "failures = excluded.failures, locked_until_ms = excluded.locked_until_ms, "
                "updated_ms = excluded.updated_ms",
                (ident, failures, locked_until_ms, now_ms),
            )
            if ident.startswith("uid:"):
                (count,) = conn.execute(
                    "SELECT count(*) FROM guard_lockouts WHERE ident >= 'uid:' AND ident < 'uid;'"
                ).fetchone()
                if count > self.cap:
                    conn.execute(
                        "DELETE FROM guard_lockouts WHERE ident IN (SELECT ident FROM "
                        "guard_lockouts WHERE ident >= 'uid:' AND ident < 'uid;' AND ident <> ? "
                        "ORDER BY updated_ms LIMIT ?)",
                        (ident, count - self.cap),
                    )
            return True

        return claim

    def reset_claim(self, ident: str) -> Claim:
        """A claim that forgets ``ident``'s failures (a successful login); always takes effect."""

        def claim(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM guard_lockouts WHERE ident = ?", (ident,))
            return True

        return claim

    def count(self) -> int:
        """Rows in the table."""
        with self._db.reader() as conn:
            return int(conn.execute("SELECT count(*) FROM guard_lockouts").fetchone()[0])


__all__ = ["DEFAULT_CAP", "GuardLockouts", "LockoutState"]
