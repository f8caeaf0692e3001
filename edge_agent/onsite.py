"""Who is on site: visitors checked in here and not checked out, from the journal.

:class:`OnSite` keeps the list the muster screen shows in a fire (``GET /v1/muster``):
each visitor checked in at this door (``visitor.checked_in``) and not checked out since
(``visitor.checked_out``), with their host, time of entry, door and zones. It works
offline: the list is the agent's own journal read forward, never a call to the central.

Durability. The journal is the record; the list is what it says. So that a restart
does not depend on events the journal may have trimmed (acknowledged events beyond
``[store] keep_acked``: a contractor on site for a week outlives them at a busy door), the
list is also kept in the ``meta`` row :data:`STATE_ONSITE`, written **in the commit of
the event that changed it** (check-in or check-out): the two can never disagree. That row
names the journal's head just before the event (``seq``); at start the agent loads it and
replays every check-in and check-out after that ``seq`` (replaying an event the row
already holds changes nothing), so events written by a version without this row, or with
the row lost, are read from the journal too (with no row at all: the whole journal).

Memory and the row are bounded by :data:`MAX_ON_SITE` visitors; past it the oldest entry
is dropped and counted (``dropped`` in the muster answer, logged): a muster list that
says it is incomplete rather than an agent that runs out of memory.

Check-outs (``visitor.checked_out``, ``how``):

* ``kiosk``: the visitor showed their pass at the kiosk (:meth:`OnSite.checkout_by_pass`:
  the pass QR is ``PV1:<pass id>``, docs/passes.md);
* ``guard``: a guard on the console, with a reason (:meth:`OnSite.checkout_by_guard`);
* ``expired``: the agent, at the end of the invitation's validity (:meth:`OnSite.sweep`,
  only with a trusted clock: a clock set forward must not empty the muster list).

Passes. Each check-in gets a pass id (:func:`OnSite.mint_pass`, returned in the check-in
answer, printed in the pass QR). The journal and the list's row keep only its hash
(:func:`portier_common.passes.pass_hash`, ``pass_hash`` in ``visitor.checked_in``): the
live event stream and the central never see an id that checks a visitor out, and a
restart finds the visit a pass names from the journal alone. A guard's reprint mints a
new id (``visitor.pass_reissued``): the old pass stops working. The hashes of passes
whose visitor checked out are kept (at most :data:`MAX_LEFT`), so a visitor who shows
their pass twice is told they are checked out already, not that the pass is unknown.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from edge_agent.errors import ActionError
from edge_agent.grants import AppendClaimed
from edge_agent.guards import Session
from edge_agent.store import Store, StoreError
from edge_agent.store.db import Database
from portier_common.passes import PassQrError, new_pass_id, pass_hash, pass_ref

log = logging.getLogger(__name__)

#: The meta row that holds the on-site list (``{"seq": N, "visitors": [...]}``).
STATE_ONSITE = "agent.onsite"
#: At most this many visitors are kept on the list (oldest dropped, counted).
MAX_ON_SITE = 2000
#: How often the agent checks out visitors whose invitation ended (seconds).
ONSITE_SWEEP_S = 30.0
#: Longest reason a guard may give for a check-out.
CHECKOUT_REASON_MAX = 200
#: Journal events read per page when replaying.
REPLAY_PAGE = 500
CHECKED_IN = "visitor.checked_in"
CHECKED_OUT = "visitor.checked_out"
PASS_REISSUED = "visitor.pass_reissued"
#: The journal events that change the list.
_LIST_EVENTS = (CHECKED_IN, CHECKED_OUT, PASS_REISSUED)
#: Hashes of the passes of visitors who checked out, kept to say "checked out already".
MAX_LEFT = 500

#: Looks up what the credential cache knows of an invitation: (visitor, host, not_after,
#: zones) or None.
InvitationInfo = Callable[[str], "tuple[str, str, int | None, list[str]] | None"]


class OnSite:
    """The visitors on site at one door; thread-safe.

    ``append_claimed`` is the agent's (one commit for the event and the list's row);
    ``invitation`` reads the credential cache; ``guard_session`` checks a guard's token
    (raises ``not_logged_in``); ``clock_trusted`` says whether the wall clock may end a
    visit; ``wall`` is the wall clock (seconds).
    """

    def __init__(
        self,
        store: Store,
        *,
        door: str,
        append_claimed: AppendClaimed,
        invitation: InvitationInfo,
        guard_session: Callable[[str], Session],
        clock_trusted: Callable[[float], bool],
        wall: Callable[[], float],
        max_visitors: int = MAX_ON_SITE,
    ) -> None:
        self._store = store
        self._door = door
        self._append_claimed = append_claimed
        self._invitation = invitation
        self._guard_session = guard_session
        self._clock_trusted = clock_trusted
        self._wall = wall
        self._max = max_visitors
        #: invitation id -> entry (ordered by time of entry, oldest first).
        self._visitors: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._dropped = 0
        #: Hashes of the passes whose visitor checked out (oldest first, bounded).
        self._left: OrderedDict[str, None] = OrderedDict()
        #: Serialises every change: the list in memory, its row and the journal agree.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- the list, rebuilt -------------------------------------------------------------
    def restore(self) -> int:
        """Load the list's row and replay the journal after it; return how many are on site."""
        with self._lock:
            self._visitors.clear()
            self._left.clear()
            self._dropped = 0
            after = 0
            raw = self._store.agent_state(STATE_ONSITE)
            if raw is not None:
                try:
                    record = json.loads(raw)
                    after = int(record["seq"])
                    for entry in record["visitors"]:
                        self._visitors[str(entry["invitation_id"])] = dict(entry)
                    self._dropped = int(record.get("dropped", 0))
                    self._left.update((str(h), None) for h in record.get("left", []))
                except (TypeError, ValueError, KeyError) as exc:
                    log.error("on-site list row unreadable (%s): rebuilt from the journal", exc)
                    self._visitors.clear()
                    after = 0
            seq = after + 1
            while True:
                events = self._store.journal.events(from_seq=seq, limit=REPLAY_PAGE)
                if not events:
                    break
                for event in events:
                    if event.type in _LIST_EVENTS:
                        self._apply(event.type, event.payload, event.wall_ms, event.id)
                seq = events[-1].seq + 1
            return len(self._visitors)

    def _apply(self, kind: str, payload: dict[str, Any], wall_ms: int, event_id: str) -> None:
        """Change the list in memory by one journaled event (idempotent for a replay)."""
        ident = payload.get("invitation_id")
        if not isinstance(ident, str):
            return
        if kind == CHECKED_OUT:
            leaving = self._visitors.pop(ident, None)
            if leaving is not None and leaving.get("pass_hash"):
                self._left[leaving["pass_hash"]] = None
                while len(self._left) > MAX_LEFT:
                    self._left.popitem(last=False)
            return
        if kind == PASS_REISSUED:
            entry = self._visitors.get(ident)
            if entry is not None and isinstance(payload.get("pass_hash"), str):
                entry["pass_hash"] = payload["pass_hash"]
                ref = payload.get("pass_ref")
                entry["pass_ref"] = ref if isinstance(ref, str) else None
            return
        info = self._invitation(ident)
        visitor = payload.get("visitor")
        host = payload.get("host")
        not_after = payload.get("not_after")
        zones = payload.get("zones")
        if info is not None:
            visitor = visitor if isinstance(visitor, str) else info[0]
            host = host if isinstance(host, str) else info[1]
            not_after = not_after if isinstance(not_after, int) else info[2]
            zones = zones if isinstance(zones, list) else info[3]
        self._visitors.pop(ident, None)
        self._visitors[ident] = {
            "invitation_id": ident,
            "visitor": visitor if isinstance(visitor, str) else "",
            "host": host if isinstance(host, str) else "",
            "entered_ms": int(wall_ms),
            # The journal is this device's own: a door renamed since keeps its visitors.
            "door": payload["door"] if isinstance(payload.get("door"), str) else self._door,
            "zones": [str(z) for z in zones] if isinstance(zones, list) else [],
            "not_after": not_after if isinstance(not_after, int) else None,
            "checkin_id": event_id,
            "pass_hash": payload["pass_hash"]
            if isinstance(payload.get("pass_hash"), str)
            else None,
            # The reference printed under the pass's code (a guard types it to find the
            # visit: portier_common.passes.pass_ref), what the pass printed (a reprint
            # prints the same) and the consented photo's media id.
            "pass_ref": payload["pass_ref"] if isinstance(payload.get("pass_ref"), str) else None,
            "pass": dict(payload["pass"]) if isinstance(payload.get("pass"), dict) else None,
            "photo": payload["photo"] if isinstance(payload.get("photo"), str) else None,
        }
        while len(self._visitors) > self._max:
            gone, _entry = self._visitors.popitem(last=False)
            self._dropped += 1
            log.error("on-site list full (%d): %s dropped from it", self._max, gone)

    def _row(self, head_seq: int) -> str:
        return json.dumps(
            {
                "seq": head_seq,
                "visitors": list(self._visitors.values()),
                "dropped": self._dropped,
                "left": list(self._left),
            },
            sort_keys=True,
            ensure_ascii=False,
        )

    def _record(self, kind: str, payload: dict[str, Any]) -> Any:
        """Journal ``kind`` and the list's new row in one commit; return the event.

        The list in memory changes only once the commit is done (a failed append, a
        full disk, leaves it as it was)."""
        with self._lock:
            head = self._store.journal.head().seq
            before = OrderedDict((k, dict(v)) for k, v in self._visitors.items())
            dropped, left = self._dropped, OrderedDict(self._left)
            # The row as it will be after this event: applied now, undone if the commit fails.
            self._apply(kind, payload, int(self._wall() * 1000), "")
            row = self._row(head)

            def write(conn: Any) -> bool:
                Database.meta_set(conn, STATE_ONSITE, row)
                return True

            try:
                events, _ok = self._append_claimed(write, [(kind, payload)], [(kind, payload)])
            except BaseException:
                self._visitors, self._dropped, self._left = before, dropped, left
                raise
            event = events[0]
            # The entry's time and check-in id are the journal's own (the row is rewritten
            # with them at the next change; a restart replays this event anyway).
            entry = self._visitors.get(payload.get("invitation_id", ""))
            if kind == CHECKED_IN and entry is not None:
                entry["entered_ms"] = int(event.wall_ms)
                entry["checkin_id"] = event.id
            return event

    # -- check-in and check-outs -------------------------------------------------------
    def checkin_payload(self, invitation_id: str) -> dict[str, Any]:
        """The fields a ``visitor.checked_in`` event adds for this list: the door, the
        host, the end of validity and the zones the cache knows."""
        info = self._invitation(invitation_id)
        fields: dict[str, Any] = {"door": self._door}
        if info is not None:
            fields.update(host=info[1], not_after=info[2], zones=list(info[3]))
        return fields

    @staticmethod
    def mint_pass() -> tuple[str, str]:
        """A new pass id and the hash the journal keeps of it: ``(pass_id, pass_hash)``.

        The check-in puts the hash in its ``visitor.checked_in`` and answers the id
        (the kiosk prints it in the pass QR); nothing else ever holds the id."""
        pass_id = new_pass_id()
        return pass_id, pass_hash(pass_id)

    def record_checkin(self, payload: dict[str, Any]) -> Any:
        """Journal a ``visitor.checked_in`` (built by the visitor desk) and put the
        visitor on the list, in one commit; return the event."""
        return self._record(CHECKED_IN, payload)

    def _checkout(self, invitation_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = self._visitors.get(invitation_id)
            if entry is None:
                raise ActionError("not_on_site", "this visitor is not checked in here")
            payload = {
                "invitation_id": invitation_id,
                "visitor": entry["visitor"],
                "door": self._door,
                "entered_ms": entry["entered_ms"],
                "checkin_id": entry["checkin_id"],
                **fields,
            }
            if entry.get("pass_hash"):
                payload["pass_hash"] = entry["pass_hash"]
            event = self._record(CHECKED_OUT, payload)
        return {
            "checked_out": True,
            "seq": event.seq,
            "event_id": event.id,
            "visitor": entry["visitor"],
        }

    def _by_pass(self, pass_id: object) -> tuple[str, str]:
        """The invitation id of the visit on site the pass ``pass_id`` names, and the
        pass's hash; raises ``bad_request``, ``not_on_site`` (its visitor checked out)
        or ``unknown_pass`` (not a pass of this door, or one a reprint replaced)."""
        try:
            digest = pass_hash(pass_id)  # type: ignore[arg-type]
        except PassQrError as exc:
            raise ActionError("bad_request", f"pass_id: {exc}") from None
        with self._lock:
            for ident, entry in self._visitors.items():
                if entry.get("pass_hash") == digest:
                    return ident, digest
            if digest in self._left:
                raise ActionError("not_on_site", "the visitor of this pass is checked out already")
        raise ActionError("unknown_pass", "this pass is not one of a visitor on site here")

    def checkout_by_pass(self, pass_id: str) -> dict[str, Any]:
        """A visitor checks out at the kiosk by showing their pass (QR ``PV1:<pass id>``).

        The agent finds the visit from the pass's hash (its own journal: offline and
        after a restart). Refused ``bad_request`` (not a pass id), ``not_on_site``
        (checked out already) or ``unknown_pass``. Journals ``visitor.checked_out``
        with ``by: visitor``, ``how: kiosk`` and the pass's hash, never its id.
        """
        with self._lock:
            ident, _digest = self._by_pass(pass_id)
            return self._checkout(ident, {"by": "visitor", "how": "kiosk"})

    def pass_belongs(self, invitation_id: str, pass_id: str) -> bool:
        """True when ``pass_id`` is the current pass of ``invitation_id``'s visit on site."""
        try:
            digest = pass_hash(pass_id)
        except PassQrError:
            return False
        with self._lock:
            entry = self._visitors.get(invitation_id)
            return entry is not None and entry.get("pass_hash") == digest

    def reissue_pass(self, token: str, invitation_id: object) -> dict[str, Any]:
        """A guard's reprint: a new pass id for a visitor on site (the old pass stops
        working). Journals ``visitor.pass_reissued`` (the new id's hash, who); returns
        the id and what the pass prints (visitor, host, entry time, end, zones).
        Raises ``not_logged_in``, ``bad_request``, ``not_on_site``."""
        session = self._guard_session(token)
        if not isinstance(invitation_id, str):
            raise ActionError("bad_request", "'invitation_id' must be a string")
        with self._lock:
            entry = self._visitors.get(invitation_id)
            if entry is None:
                raise ActionError("not_on_site", "this visitor is not checked in here")
            pass_id, digest = self.mint_pass()
            event = self._record(
                PASS_REISSUED,
                {
                    "invitation_id": invitation_id,
                    "visitor": entry["visitor"],
                    "door": self._door,
                    "pass_hash": digest,
                    "pass_ref": pass_ref(pass_id),
                    "by": f"guard:{session.guard_id}",
                    "guard_id": session.guard_id,
                    "name": session.name,
                },
            )
            entry = dict(self._visitors[invitation_id])
        printed = entry.get("pass") or {}
        answer = {
            "pass_id": pass_id,
            "invitation_id": invitation_id,
            "visitor": entry["visitor"],
            "host": entry["host"],
            "entered_at": entry["entered_ms"] / 1000.0,
            "not_after": entry["not_after"],
            "zones": entry["zones"],
            "seq": event.seq,
            # What the first pass printed (the check-in's ``pass``): the same pass again.
            "valid_from": printed.get("valid_from"),
            "valid_until": printed.get("valid_until", entry["not_after"]),
            "doors": list(printed.get("doors") or ()),
            "category": printed.get("category"),
            "site": printed.get("site"),
            "photo_jpeg": None,
        }
        if printed.get("zones") is not None:
            answer["zones"] = list(printed["zones"])
        if entry.get("photo"):
            try:  # the consented check-in photo, printed on the first pass too
                answer["photo_jpeg"] = base64.b64encode(
                    self._store.media.get(entry["photo"])
                ).decode("ascii")
            except (StoreError, OSError, KeyError) as exc:
                log.warning("reprint without the check-in photo (%s)", exc)
        return answer

    def checkout_by_guard(self, token: str, invitation_id: str, reason: object) -> dict[str, Any]:
        """A guard checks a visitor out from the console (session and reason required).

        Journals ``visitor.checked_out`` with ``by: guard:<id>``, ``how: guard``,
        ``guard_id``, ``name`` and ``reason``. Raises ``not_logged_in``, ``bad_request``
        (no reason, or one over :data:`CHECKOUT_REASON_MAX` characters), ``not_on_site``.
        """
        session = self._guard_session(token)
        if not isinstance(reason, str) or not reason.strip() or len(reason) > CHECKOUT_REASON_MAX:
            raise ActionError(
                "bad_request", f"'reason' must be 1 to {CHECKOUT_REASON_MAX} characters of text"
            )
        if not isinstance(invitation_id, str):
            raise ActionError("bad_request", "'invitation_id' must be a string")
        return self._checkout(
            invitation_id,
            {
                "by": f"guard:{session.guard_id}",
                "how": "guard",
                "guard_id": session.guard_id,
                "name": session.name,
                "reason": reason.strip(),
            },
        )

    def sweep(self, now: float | None = None) -> int:
        """Check out every visitor whose invitation ended (``how: expired``); return how many.

        Nothing happens while the clock is not trusted (set forward, a visitor would
        vanish from the muster list while still inside)."""
        now = self._wall() if now is None else now
        with self._lock:
            ended = [
                ident
                for ident, entry in self._visitors.items()
                if entry.get("not_after") is not None and entry["not_after"] <= now
            ]
        if not ended or not self._clock_trusted(now):
            return 0
        done = 0
        for ident in ended:
            try:
                self._checkout(ident, {"by": "agent", "how": "expired", "reason": "expired"})
                done += 1
            except ActionError:
                pass  # checked out meanwhile
        return done

    # -- the muster list -----------------------------------------------------------------
    def muster(self) -> dict[str, Any]:
        """The visitors on site, by name: what ``GET /v1/muster`` answers."""
        with self._lock:
            entries = [dict(e) for e in self._visitors.values()]
            dropped = self._dropped
        entries.sort(key=lambda e: (e["visitor"].casefold(), e["entered_ms"]))
        visitors = [
            {
                "invitation_id": e["invitation_id"],
                "visitor": e["visitor"],
                "host": e["host"],
                "entered_at": e["entered_ms"] / 1000.0,
                "door": e["door"],
                "zones": e["zones"],
                "not_after": e["not_after"],
                "pass_ref": e.get("pass_ref"),
            }
            for e in entries
        ]
        return {"count": len(visitors), "visitors": visitors, "dropped": dropped}

    def find_by_ref(self, ref: str) -> dict[str, Any] | None:
        """The visit on site whose current pass has the reference ``ref`` (the characters
        printed under its code, :func:`portier_common.passes.pass_ref`), or None."""
        with self._lock:
            for entry in self._visitors.values():
                if entry.get("pass_ref") == ref:
                    return {
                        "invitation_id": entry["invitation_id"],
                        "visitor": entry["visitor"],
                        "host": entry["host"],
                        "entered_at": entry["entered_ms"] / 1000.0,
                        "not_after": entry["not_after"],
                    }
        return None

    def __contains__(self, invitation_id: object) -> bool:
        with self._lock:
            return invitation_id in self._visitors

    # -- the sweep ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the auto check-out thread (every :data:`ONSITE_SWEEP_S`). Idempotent."""
        if self._sweeper is not None or self._stop.is_set():
            return
        self._sweeper = threading.Thread(target=self._sweep_loop, name="onsite-sweep", daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(ONSITE_SWEEP_S):
            try:
                self.sweep()
            except StoreError as exc:
                log.warning("auto check-out not journaled (%s); retrying", exc)
            except Exception:
                log.exception("auto check-out failed; retrying")

    def close(self) -> None:
        """Stop the sweep. Idempotent."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=2)
            self._sweeper = None
