"""Visitors at the kiosk: check-in (self or manual), the "expected today" list, Help.

:class:`VisitorDesk` is what :class:`edge_agent.agent.Agent` composes for a
visitor's check-in: the self check-in a QR grant allows (once per grant, within
:data:`CHECKIN_WINDOW_S`; the agent tells it of each grant, :meth:`VisitorDesk.remember_grant`),
a guard's manual check-in judged by the scan's rules (refused, or checked in with
an override and its reason), the guard console's invitation lookup and its list of
the invitations expected today. :class:`HelpCall` is the kiosk's Help button: one
``help_requested`` alarm per call. Both journal what they do through the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from edge_agent.cacheview import StoreCacheView
from edge_agent.config import DoorSection
from edge_agent.door import Alarm, DoorController
from edge_agent.errors import ActionError
from edge_agent.grants import Journal
from edge_agent.guards import Session
from edge_agent.onsite import OnSite
from edge_agent.policy import CachedInvitation, Decision, DoorPolicy, judge_invitation
from edge_agent.store import Store, StoreError
from edge_agent.timefloor import ClockTrust
from portier_common.passes import normalise_pass_ref, pass_ref

log = logging.getLogger(__name__)

#: A visitor may self check-in (with a photo) this long after their QR was granted.
CHECKIN_WINDOW_S = 300.0
#: At most this many recent QR grants are remembered for self check-in (oldest forgotten).
MAX_RECENT_GRANTS = 1024
#: A check-in photo larger than this is refused (``photo_too_large``): a kiosk photo
#: is a few hundred KiB; this keeps one visitor from filling the media store.
MAX_CHECKIN_PHOTO_BYTES = 1024 * 1024
#: Longest reason a guard may give to override a refused manual check-in.
OVERRIDE_REASON_MAX = 200
#: The guard console's "expected today" list: at most this many invitations per answer.
EXPECTED_MAX = 200
#: Journal events read back (newest first) to find today's check-ins: a bound on the
#: work of one "expected today" answer, whatever the journal's size.
CHECKIN_SCAN_MAX = 20_000


#: The invitation's ``extra`` key that names the visitor category (the pass's band colour).
CATEGORY_EXTRA_KEY = "category"


def grant_pass_fields(decision: Decision, site: str) -> dict[str, Any]:
    """What the visitor's pass prints, from a QR grant (the invitation's verified claims):
    validity, doors, zones, category and site. Kept with the check-in (``pass`` in
    ``visitor.checked_in``) so that a guard's reprint prints the same pass."""
    category = decision.extra.get(CATEGORY_EXTRA_KEY)
    return {
        "valid_from": None if decision.valid_from is None else int(decision.valid_from),
        "valid_until": None if decision.valid_until is None else int(decision.valid_until),
        "doors": list(decision.doors),
        "zones": list(decision.zones),
        "category": category if isinstance(category, str) else None,
        "site": site,
    }


class VisitorDesk:
    """Visitors' check-ins at one door; thread-safe.

    ``policy`` returns the door's policy in force (the central's door settings
    replace it); ``trust`` is the agent's clock check on a decision's path (no
    store write); ``guard_session`` the guard desk's session check (raises
    ``not_logged_in``); ``journal`` the agent's; ``wall`` and ``mono`` the clocks.
    """

    def __init__(
        self,
        store: Store,
        cache: StoreCacheView,
        *,
        policy: Callable[[], DoorPolicy],
        trust: Callable[[float], ClockTrust],
        guard_session: Callable[[str], Session],
        journal: Journal,
        wall: Callable[[], float],
        mono: Callable[[], float],
        onsite: OnSite | None = None,
    ) -> None:
        self._store = store
        #: The on-site list a check-in joins (in the commit of its event), or None.
        self._onsite = onsite
        self._cache = cache
        self._policy = policy
        self._trust = trust
        self._guard_session = guard_session
        self._journal = journal
        self._wall = wall
        self._mono = mono
        #: invitation id -> [monotonic time of its latest grant here, checked in since].
        self._recent_grants: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember_grant(self, invitation_id: str, pass_fields: dict[str, Any] | None = None) -> None:
        """A QR grant of ``invitation_id`` at this door: it allows one self check-in.
        ``pass_fields`` (:func:`grant_pass_fields`): what its pass prints."""
        # Each grant allows one self check-in (a new grant of a multi-use invitation
        # allows a new one). Only grants inside the check-in window matter, and at
        # most MAX_RECENT_GRANTS of them: memory stays bounded whatever is presented.
        now = self._mono()
        with self._lock:
            self._recent_grants.pop(invitation_id, None)
            self._recent_grants[invitation_id] = [now, False, pass_fields]
            while self._recent_grants:
                oldest = next(iter(self._recent_grants.values()))
                if len(self._recent_grants) <= MAX_RECENT_GRANTS and (
                    now - oldest[0] <= CHECKIN_WINDOW_S
                ):
                    break
                self._recent_grants.popitem(last=False)

    def lookup(self, token: str, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Invitations whose visitor name starts with ``query`` (guard only); a query
        that is a pass's reference (the 8 characters printed under its code, any case:
        :func:`portier_common.passes.normalise_pass_ref`) first finds the visit on site
        whose current pass it names (``on_site: true``, ``pass_ref``)."""
        self._guard_session(token)
        by_pass: list[dict[str, Any]] = []
        ref = normalise_pass_ref(query)
        if ref is not None and self._onsite is not None:
            entry = self._onsite.find_by_ref(ref)
            if entry is not None:
                by_pass.append(
                    {
                        "invitation_id": entry["invitation_id"],
                        "visitor": entry["visitor"],
                        "host": entry["host"],
                        "doors": None,
                        "not_before": None,
                        "not_after": entry["not_after"],
                        "single_use": False,
                        "used": False,
                        "on_site": True,
                        "pass_ref": ref,
                        "entered_at": entry["entered_at"],
                    }
                )
        found = self._store.cache.find_invitations(query, limit=limit)
        return by_pass + [
            {
                "invitation_id": i.id,
                "visitor": i.visitor,
                "host": i.host,
                "doors": list(i.doors) if i.doors is not None else None,
                "not_before": i.not_before,
                "not_after": i.not_after,
                "single_use": i.single_use,
                "used": self._store.replay.is_used(i.id),
            }
            for i in found
        ]

    # -- check-in -------------------------------------------------------------------------
    def checkin(
        self,
        invitation_id: str,
        *,
        consent: bool,
        photo: bytes | None,
        token: str | None = None,
        override_reason: str | None = None,
    ) -> dict[str, Any]:
        """Record a visitor's check-in, with a photo only if they consented.

        A visitor may check in themselves once per grant, within
        :data:`CHECKIN_WINDOW_S` of their invitation being granted at this door
        (a second try is refused with ``already_checked_in``; a new grant of a
        multi-use invitation allows a new check-in). Any other check-in is a manual
        one and needs a guard session (``token``). A photo over
        :data:`MAX_CHECKIN_PHOTO_BYTES` is refused (``photo_too_large``).

        A manual check-in runs the scan's rules on the cached invitation
        (:func:`~edge_agent.policy.judge_invitation`): one that is unknown here is
        refused (``unknown_invitation``); one the policy refuses (expired, not yet
        valid, revoked, wrong site or door, clock not trusted) is journaled as
        ``visitor.checkin_refused`` and refused ``checkin_refused`` with its ``reason``
        -- unless the guard gives an ``override_reason``: then it is checked in, and the
        ``visitor.checked_in`` event carries ``override {guard_id, name, reason, refused_reason}``.
        """
        if override_reason is not None and (
            not isinstance(override_reason, str)
            or not override_reason.strip()
            or len(override_reason) > OVERRIDE_REASON_MAX
        ):
            raise ActionError(
                "bad_request",
                f"'override_reason' must be 1 to {OVERRIDE_REASON_MAX} characters of text",
            )
        if photo and len(photo) > MAX_CHECKIN_PHOTO_BYTES:
            raise ActionError(
                "photo_too_large",
                f"a check-in photo is at most {MAX_CHECKIN_PHOTO_BYTES} bytes",
            )
        if photo and not consent:
            raise ActionError("no_consent", "a photo is taken only with the visitor's consent")
        with self._lock:
            grant = self._recent_grants.get(invitation_id)
            in_window = grant is not None and self._mono() - grant[0] <= CHECKIN_WINDOW_S
            self_service = in_window and grant is not None and not grant[1]
            if self_service:
                assert grant is not None
                grant[1] = True  # taken now, so a concurrent second check-in is refused
        by = "visitor"
        extra: dict[str, Any] = {}
        granted_pass = grant[2] if self_service and grant is not None else None
        try:
            if not self_service:
                if token is None:
                    if in_window:
                        # One grant, one check-in: not ten check-ins with ten photos.
                        raise ActionError(
                            "already_checked_in",
                            "this visit is checked in already; a guard can check in again",
                        )
                    raise ActionError("guard_required", "manual check-in needs a guard")
                session = self._guard_session(token)
                by = f"guard:{session.guard_id}"
                extra = self._judge_manual(session, invitation_id, override_reason)
            else:
                # The guard console's events name the visitor, not an invitation id.
                cached = self._store.cache.invitation(invitation_id)
                if cached is not None:
                    extra = {"visitor": cached.visitor}
            media_id = None
            if photo and consent:
                try:
                    media_id = self._store.media.put(photo, content_type="image/jpeg").id
                except StoreError as exc:
                    log.warning("photo not stored (%s); check-in goes on without it", exc)
            payload = {
                "invitation_id": invitation_id,
                "by": by,
                "photo": media_id,
                "consent": consent,
                **extra,
            }
            pass_id = None
            if self._onsite is not None:
                # The door, host, end of validity and zones: the muster list's fields;
                # the pass's hash (its id is answered to the kiosk, never journaled).
                payload.update(self._onsite.checkin_payload(invitation_id))
                # What the pass prints (the grant's claims, or the cache's for a guard's
                # check-in), so that a guard's reprint prints the same pass.
                payload["pass"] = granted_pass or self._cached_pass_fields(invitation_id)
                if granted_pass is not None:
                    # A signed invitation the cache does not hold: its own end of validity
                    # and zones, so the agent still checks the visitor out when it ends.
                    if payload.get("not_after") is None:
                        payload["not_after"] = granted_pass.get("valid_until")
                    if not payload.get("zones"):
                        payload["zones"] = list(granted_pass.get("zones") or [])
                pass_id, payload["pass_hash"] = self._onsite.mint_pass()
                payload["pass_ref"] = pass_ref(pass_id)
                event = self._onsite.record_checkin(payload)
            else:
                event = self._journal("visitor.checked_in", payload)
        except BaseException:
            if self_service and grant is not None:
                with self._lock:
                    grant[1] = False  # not checked in after all: the visitor may try again
            raise
        answer = {"checked_in": True, "seq": event.seq, "event_id": event.id, "photo": media_id}
        if pass_id is not None:
            # What the printed pass's QR carries to check out (OnSite.checkout_by_pass).
            answer["pass_id"] = pass_id
        if "override" in extra:
            answer["override"] = extra["override"]
        return answer

    def _cached_pass_fields(self, invitation_id: str) -> dict[str, Any] | None:
        """What the pass of ``invitation_id`` prints, from the credential cache (a guard's
        check-in has no QR grant), or None when the cache does not know it."""
        cached = self._store.cache.invitation(invitation_id)
        if cached is None:
            return None
        data = cached.data or {}
        raw_extra = data.get("extra")
        extra: dict[str, Any] = raw_extra if isinstance(raw_extra, dict) else {}
        category = data.get(CATEGORY_EXTRA_KEY, extra.get(CATEGORY_EXTRA_KEY))
        site = data.get("site")
        return {
            "valid_from": cached.not_before,
            "valid_until": cached.not_after,
            "doors": list(cached.doors or ()),
            "zones": [str(z) for z in data.get("zones") or ()],
            "category": category if isinstance(category, str) else None,
            "site": site if isinstance(site, str) else None,
        }

    def _judge_manual(
        self, session: Session, invitation_id: str, override_reason: str | None
    ) -> dict[str, Any]:
        """The policy's word on a guard's check-in of ``invitation_id``: the fields the
        ``visitor.checked_in`` event adds (the visitor's name, an override), or
        :class:`ActionError` for a refusal (journaled ``visitor.checkin_refused``)."""
        cached = self._store.cache.invitation(invitation_id)
        if cached is None:
            raise ActionError("unknown_invitation", "no such invitation in this door's cache")
        data = cached.data or {}
        site = data.get("site")
        zones = tuple(str(z) for z in data.get("zones") or ())
        invitation = CachedInvitation(
            invitation_id=cached.id,
            visitor=cached.visitor,
            host=cached.host or "",
            site=site if isinstance(site, str) else None,
            # A cache entry that names neither doors nor zones says nothing of its scope.
            doors=None if cached.doors is None and not zones else tuple(cached.doors or ()),
            zones=zones,
            not_before=cached.not_before,
            not_after=cached.not_after,
        )
        now = self._wall()
        trust = self._trust(now)
        decision = judge_invitation(
            invitation,
            self._policy(),
            now,
            self._cache,
            clock_floor=None if trust.trusted else trust.floor,
        )
        fields: dict[str, Any] = {"visitor": cached.visitor}
        if decision.granted:
            return fields
        code = decision.reason.value
        if override_reason is None:
            self._journal(
                "visitor.checkin_refused",
                {
                    "invitation_id": invitation_id,
                    "visitor": cached.visitor,
                    "guard_id": session.guard_id,
                    "name": session.name,
                    "reason_code": code,
                    "detail": decision.detail,
                },
            )
            raise ActionError(
                "checkin_refused",
                f"{decision.detail}: a guard may check in anyway with a reason",
                extra={
                    "reason": code,
                    "detail": decision.detail,
                    "visitor": cached.visitor,
                    "not_before": cached.not_before,
                    "not_after": cached.not_after,
                },
            )
        fields["override"] = {
            "guard_id": session.guard_id,
            "name": session.name,
            "reason": override_reason.strip(),
            "refused_reason": code,
        }
        return fields

    # -- expected today -------------------------------------------------------------------
    def expected_today(self, token: str, limit: int = 100) -> dict[str, Any]:
        """The invitations valid today (the agent's local day), for the guard console.

        At most ``limit`` (bounded by :data:`EXPECTED_MAX`; ``truncated`` says there
        were more), by start of validity then name, each with its doors and zones, whether
        it was checked in today (``checked_in_at``) and whether a single-use one was used.
        """
        self._guard_session(token)
        limit = max(1, min(EXPECTED_MAX, limit))
        now = self._wall()
        local = time.localtime(now)
        start = int(time.mktime((*local[:3], 0, 0, 0, 0, 0, -1)))
        end = int(time.mktime((*local[:2], local[2] + 1, 0, 0, 0, 0, 0, -1)))
        found = self._store.cache.invitations_valid_between(start, end, limit + 1)
        checked = self._checkins_since(start * 1000)
        items = []
        for inv in found[:limit]:
            data = inv.data or {}
            items.append(
                {
                    "invitation_id": inv.id,
                    "visitor": inv.visitor,
                    "host": inv.host,
                    "doors": list(inv.doors) if inv.doors is not None else None,
                    "zones": [str(z) for z in data.get("zones") or ()],
                    "not_before": inv.not_before,
                    "not_after": inv.not_after,
                    "single_use": inv.single_use,
                    "used": self._store.replay.is_used(inv.id),
                    "revoked": self._cache.is_revoked("invitation", inv.id),
                    "checked_in_at": checked.get(inv.id),
                }
            )
        return {
            "day_start": start,
            "day_end": end,
            "invitations": items,
            "truncated": len(found) > limit,
        }

    def _checkins_since(self, since_ms: int) -> dict[str, float]:
        """Invitation id -> time of its latest ``visitor.checked_in`` at or after
        ``since_ms``, reading the journal back from its head (at most
        :data:`CHECKIN_SCAN_MAX` events)."""
        found: dict[str, float] = {}
        journal = self._store.journal
        seq = journal.head().seq
        read = 0
        page = 500
        while seq >= 1 and read < CHECKIN_SCAN_MAX:
            first = max(1, seq - page + 1)
            events = journal.events(from_seq=first, limit=seq - first + 1)
            if not events:
                break
            for event in reversed(events):
                if event.wall_ms < since_ms:
                    return found
                if event.type == "visitor.checked_in":
                    ident = event.payload.get("invitation_id")
                    if isinstance(ident, str) and ident not in found:
                        found[ident] = event.wall_ms / 1000.0
            read += len(events)
            seq = first - 1
        return found


class HelpCall:
    """The kiosk's Help button at one door: one ``help_requested`` alarm per call.

    ``door`` is None on an agent without a door (every call is then ``no_door``);
    ``journal`` is the agent's.
    """

    def __init__(
        self, door: DoorController | None, door_cfg: DoorSection, *, journal: Journal
    ) -> None:
        self._door = door
        self._door_cfg = door_cfg
        self._journal = journal
        #: One call at a time: the "already raised" check and the raise.
        self._lock = threading.Lock()

    def call(self, screen: str, lang: str) -> dict[str, Any]:
        """A visitor pressed Help on the kiosk: journal ``visitor.help``, raise ``help_requested``.

        One call per alarm: while ``help_requested`` is active, further presses (a
        child pressing a hundred times) journal and raise nothing and answer
        ``already: true``. The alarm clears after ``[door] help_alarm_s`` or when a
        guard acknowledges it. Raises :class:`ActionError` ``bad_request`` for a bad
        screen or language, ``no_door`` on an agent without a door.
        """
        if not isinstance(screen, str) or not screen.isidentifier() or len(screen) > 40:
            raise ActionError("bad_request", "'screen' must be a screen name (identifier)")
        if not isinstance(lang, str) or not lang.isalpha() or not 2 <= len(lang) <= 8:
            raise ActionError("bad_request", "'lang' must be a language code such as 'en'")
        door = self._door
        if door is None:
            raise ActionError("no_door", "this agent controls no door")
        with self._lock:
            if door.alarm_raised_at(Alarm.HELP_REQUESTED) is not None:
                return {"called": True, "already": True, "alarm": Alarm.HELP_REQUESTED.value}
            payload = {"door": self._door_cfg.id, "screen": screen, "lang": lang.lower()}
            self._journal("visitor.help", payload)
            door.raise_alarm(Alarm.HELP_REQUESTED, screen=screen, lang=lang.lower())
            raised_at = door.alarm_raised_at(Alarm.HELP_REQUESTED)
        log.warning("visitor help requested at %s (%s)", screen, lang)

        def clear_help() -> None:
            door.clear_alarm(Alarm.HELP_REQUESTED, since=raised_at)

        door.scheduler.call_later(self._door_cfg.help_alarm_s, clear_help)
        return {"called": True, "already": False, "alarm": Alarm.HELP_REQUESTED.value}
