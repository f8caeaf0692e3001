"""Grants opened on request (the kiosk's welcome step): held, opened, ended, journaled.

``POST /v1/present`` with ``"open": "on_request"`` decides and journals a grant at the
scan but leaves the door shut; the answer's handle opens it later
(:meth:`edge_agent.agent.Agent.open_grant`), within ``[door] grant_hold_s``.
:class:`OpenGrants` keeps those grants: their handles (in memory only, so no grant
opens the door after a restart), the durable ledger of the ones not opened yet (what
a restart journals as ``access.grant_unused``) and the sweep that journals a grant
nobody opened. The agent decides, checks the door's mode and commands the door.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.config import DoorSection
from edge_agent.policy import Decision
from edge_agent.store import Store, StoreError
from edge_agent.store.db import Database

log = logging.getLogger(__name__)

#: Durable ledger of the grants decided at the scan and not opened yet (store ``meta``,
#: JSON ``{grant_ref: {...}}``): what a restart journals as ``access.grant_unused``.
#: The grant handles themselves live in memory only, so no grant opens the door after
#: a restart (see :meth:`edge_agent.agent.Agent.open_grant`).
STATE_OPEN_GRANTS = "agent.open_grants"
#: How often grants past ``[door] grant_hold_s`` are looked for.
GRANT_SWEEP_S = 0.5
#: At most this many grants wait to be opened (a flood of scans cannot grow memory).
MAX_PENDING_GRANTS = 256
#: Handles of grants past their bound remembered, to answer ``grant_expired``.
MAX_ENDED_GRANTS = 256

Events = list[tuple[str, dict[str, Any]]]
#: The agent's ``_append_claimed``: run a claim and journal one list or the other in
#: one commit, publishing what was journaled.
AppendClaimed = Callable[[Callable[[Any], bool], Events, Events], tuple[list[Any], bool]]
#: The agent's ``journal``: append one event durably and publish it (returns the Event).
Journal = Callable[[str, dict[str, Any]], Any]


@dataclass
class PendingGrant:
    """A grant decided at the scan whose door opens on request (in memory only).

    ``handle`` is the caller's capability (unguessable, never journaled); ``ref``
    is the public reference journaled with the decision, each opening and the end.
    """

    handle: str
    ref: str
    kind: str
    credential_id: str
    decision_seq: int
    decision_event_id: str
    issued_mono: float
    expires_mono: float
    openings: int = 0


class OpenGrants:
    """The grants of one door waiting to be opened on request. Thread-safe.

    ``lock`` serialises the changes of the ledger (the agent holds it across a
    decision that adds a grant and across an opening); ``append_claimed`` journals
    a claim's events in the claim's commit.
    """

    def __init__(
        self,
        store: Store,
        door: DoorSection,
        *,
        append_claimed: AppendClaimed,
        wall: Callable[[], float],
        mono: Callable[[], float],
    ) -> None:
        self._store = store
        self._door = door
        self._append_claimed = append_claimed
        self._wall = wall
        self._mono = mono
        #: handle -> PendingGrant; ended handles -> why.
        self._pending: dict[str, PendingGrant] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self.lock = threading.RLock()
        self._sweep: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # -- the durable ledger -------------------------------------------------------------
    def _ledger_entry(self, decision: Decision) -> dict[str, Any]:
        return {
            "kind": decision.kind,
            "credential_id": decision.credential_id,
            "issued_ms": int(self._wall() * 1000),
            "hold_ms": round(self._door.grant_hold_s * 1000),
        }

    @staticmethod
    def _read_ledger(raw: object) -> dict[str, Any]:
        try:
            ledger = json.loads(raw) if isinstance(raw, str | bytes) else {}
        except ValueError:
            log.error("ledger of open grants unreadable (%r): starting it afresh", raw)
            return {}
        return ledger if isinstance(ledger, dict) else {}

    def _ledger_change(
        self, *, add: tuple[str, dict[str, Any]] | None = None, remove: str | None = None
    ) -> Callable[[sqlite3.Connection], bool]:
        """A claim (run inside a journal commit) adding or removing one ledger entry;
        a removal of an entry that is not there does not take effect."""

        def claim(conn: sqlite3.Connection) -> bool:
            ledger = self._read_ledger(Database.meta_get(conn, STATE_OPEN_GRANTS))
            if remove is not None:
                if remove not in ledger:
                    return False
                del ledger[remove]
            if add is not None:
                ledger[add[0]] = add[1]
            Database.meta_set(conn, STATE_OPEN_GRANTS, json.dumps(ledger, sort_keys=True))
            return True

        return claim

    def ledger_claim(self, ref: str, decision: Decision) -> Callable[[sqlite3.Connection], bool]:
        """The claim adding the grant ``ref`` of ``decision`` to the ledger, for the
        decision's own commit: a restart after it journals the grant as unused, once."""
        return self._ledger_change(add=(ref, self._ledger_entry(decision)))

    def drop_from_ledger(self, ref: str) -> None:
        """Remove ``ref`` from the ledger of grants not opened (call with the lock)."""
        ledger = self._read_ledger(self._store.agent_state(STATE_OPEN_GRANTS))
        if ledger.pop(ref, None) is not None:
            self._store.set_agent_state({STATE_OPEN_GRANTS: json.dumps(ledger, sort_keys=True)})

    # -- the grants held ----------------------------------------------------------------
    def hold(self, ref: str, decision: Decision, event: Any) -> dict[str, Any]:
        """Keep a grant just journaled for an opening; its wire form."""
        now = self._mono()
        hold = self._door.grant_hold_s
        grant = PendingGrant(
            handle=secrets.token_urlsafe(24),
            ref=ref,
            kind=decision.kind,
            credential_id=decision.credential_id or "",
            decision_seq=event.seq,
            decision_event_id=event.id,
            issued_mono=now,
            expires_mono=now + hold,
        )
        with self.lock:
            while len(self._pending) >= MAX_PENDING_GRANTS:
                oldest = min(self._pending.values(), key=lambda g: g.issued_mono)
                self.end(oldest, "too_many_waiting")
            self._pending[grant.handle] = grant
        self._start_sweep()
        return {
            "id": grant.handle,
            "ref": ref,
            "hold_s": hold,
            "unlock_s": self._door.visitor_unlock_s,
        }

    def pending(self, handle: object) -> PendingGrant | None:
        """The grant held for ``handle``, or None (call with the lock)."""
        return self._pending.get(handle) if isinstance(handle, str) else None

    def ended(self, handle: object) -> bool:
        """True if ``handle`` was a grant that ended (recently: the last few hundred)."""
        return isinstance(handle, str) and handle in self._ended

    def end(self, grant: PendingGrant, why: str) -> None:
        """Forget a grant (call with the lock); never opened: ``access.grant_unused``.

        The event and the ledger entry's removal share one commit. If the journal
        cannot be written the grant stays (expired: it opens nothing) for the next try.
        """
        if grant.openings == 0:
            item = [
                (
                    "access.grant_unused",
                    {
                        "door": self._door.id,
                        "grant_ref": grant.ref,
                        "kind": grant.kind,
                        "credential_id": grant.credential_id,
                        "decision_seq": grant.decision_seq,
                        "decision_event_id": grant.decision_event_id,
                        "hold_ms": round(self._door.grant_hold_s * 1000),
                        "why": why,
                    },
                )
            ]
            self._append_claimed(self._ledger_change(remove=grant.ref), item, item)
        self._pending.pop(grant.handle, None)
        self._ended[grant.handle] = why
        while len(self._ended) > MAX_ENDED_GRANTS:
            self._ended.popitem(last=False)

    def sweep(self) -> int:
        """End every grant past ``[door] grant_hold_s``; return how many ended."""
        now = self._mono()
        ended = 0
        with self.lock:
            for grant in [g for g in self._pending.values() if now >= g.expires_mono]:
                self.end(grant, "not_opened")
                ended += 1
        return ended

    def _start_sweep(self) -> None:
        # Grants that nobody opens are journaled within GRANT_SWEEP_S of their bound,
        # even if the kiosk makes no call meanwhile.
        with self.lock:
            if self._sweep is not None or self._closed:
                return
            self._sweep = threading.Thread(target=self._sweep_loop, name="grant-sweep", daemon=True)
        self._sweep.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(GRANT_SWEEP_S):
            try:
                self.sweep()
            except Exception:
                log.exception("grant sweep failed; retrying")

    def end_previous_run(self) -> None:
        """Journal the grants a previous run decided and never opened (start-up).

        Their handles died with that run, so none of them can open the door any more;
        each is journaled ``access.grant_unused`` (``why: agent_restarted``) in one
        commit with the ledger emptied: exactly once, whatever crash comes next.
        """
        try:
            ledger = self._read_ledger(self._store.agent_state(STATE_OPEN_GRANTS))
            if not ledger:
                return
            items = [
                (
                    "access.grant_unused",
                    {
                        "door": self._door.id,
                        "grant_ref": str(ref),
                        "kind": str(entry.get("kind", "")) if isinstance(entry, dict) else "",
                        "credential_id": (
                            str(entry.get("credential_id", "")) if isinstance(entry, dict) else ""
                        ),
                        "issued_ms": _int_or_none(entry.get("issued_ms"))
                        if isinstance(entry, dict)
                        else None,
                        "hold_ms": _int_or_none(entry.get("hold_ms"))
                        if isinstance(entry, dict)
                        else None,
                        "why": "agent_restarted",
                    },
                )
                for ref, entry in sorted(ledger.items())
            ]

            def empty(conn: sqlite3.Connection) -> bool:
                Database.meta_set(conn, STATE_OPEN_GRANTS, "{}")
                return True

            self._append_claimed(empty, items, items)
        except StoreError:
            log.exception("grants of the previous run not journaled; next start tries again")

    def close(self) -> None:
        """Stop the sweep (no new one starts). Idempotent."""
        self._closed = True
        self._stop.set()
        if self._sweep is not None:
            self._sweep.join(timeout=2)


def _int_or_none(value: object) -> int | None:
    """``value`` if it is an integer (not a bool), else None: ledger values, journaled."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
