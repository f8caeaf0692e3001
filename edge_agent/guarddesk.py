"""The guard desk: guard logins, taps at the console's reader, sessions and their checks.

:class:`GuardDesk` is what :class:`edge_agent.agent.Agent` composes for the guard
console: the login (the device's rate limit, the badge, an NTAG 424 badge's verified
tap, the PIN checked in constant time whatever else is wrong, the durable lock-out
counted alike for any UID), a guard's tap at the console's own reader, the sessions
a login opens (:class:`~edge_agent.guards.GuardSessions`) with their badge checked
again on every call and by a sweep thread, the logout, and the rules of a guard's
action (:meth:`GuardDesk.action_session`, :func:`action_refusal`). Every refusal and
every session's end is journaled with who and why.

The agent carries out a guard's action on the door (under its mode lock, journaled
before the door acts: :meth:`edge_agent.agent.Agent.guard_action`); the data model
(guards, sessions, the rate limit, the PIN hashes) is :mod:`edge_agent.guards`.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

from edge_agent.cacheview import StoreCacheView
from edge_agent.config import AgentConfig
from edge_agent.door import Alarm, DoorController, DoorMode
from edge_agent.errors import ActionError
from edge_agent.grants import AppendClaimed, Journal
from edge_agent.guards import (
    Guard,
    GuardDenied,
    GuardSessions,
    Session,
    TokenBucket,
    dummy_hash,
)
from edge_agent.store import Store
from edge_agent.timefloor import ClockTrust
from portier_common.ntag424 import SunError, SunVerifier
from portier_common.pins import valid_pin_text, verify_pin
from portier_common.uid import BadgeUid

log = logging.getLogger(__name__)

#: Guard actions the local API accepts, and the door mode each one sets.
GUARD_ACTIONS = ("open_once", "lockdown", "free_access", "normal", "acknowledge")
MODE_OF_ACTION = {
    "lockdown": DoorMode.LOCKDOWN,
    "free_access": DoorMode.FREE_ACCESS,
    "normal": DoorMode.NORMAL,
}
#: A guard's NTAG 424 tap at this device's own reader may open a login this long after.
GUARD_TAP_WINDOW_S = 60.0
#: How often open guard sessions are re-checked against the cache (revocations).
GUARD_SWEEP_S = 2.0
#: Longest text of a caller's value kept in a ``guard.login_failed`` event.
JOURNAL_TEXT_MAX = 64
#: Refusals of an NTAG 424 guard's login that come before any PIN could count.
TAP_REFUSALS = frozenset(
    {"tap_required", "tap_unverifiable", "bad_tap", "tap_mismatch", "replayed"}
)
#: Longest SUN URL a guard login accepts (an NTAG 424 URL is well under 256).
MAX_SUN_CHARS = 1024
#: NTAG 424 guard taps kept for the login that follows (one kiosk, a few guards).
MAX_KEPT_TAPS = 16

#: The agent's ``badge.counter`` event for a spent counter (uid, counter, SUN URL), or
#: None when there is no central to tell.
ShareCounter = Callable[[str, int, str], tuple[str, dict[str, Any]] | None]


class GuardDesk:
    """Guard logins and sessions of one device; thread-safe.

    ``journal`` and ``append_claimed`` are the agent's (durable, then published
    live), ``publish`` its event bus's (live only); ``share_counter`` builds the
    ``badge.counter`` event of a spent NTAG 424 counter; ``check_clock`` is the
    agent's clock check (a guard's validity window is not judged by a clock set
    back); ``wall`` and ``mono`` the clocks.
    """

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        cache: StoreCacheView,
        *,
        sun: SunVerifier | None,
        journal: Journal,
        append_claimed: AppendClaimed,
        publish: Callable[[str, dict[str, Any]], None],
        share_counter: ShareCounter,
        check_clock: Callable[[float], ClockTrust],
        wall: Callable[[], float],
        mono: Callable[[], float],
    ) -> None:
        self._config = config
        self._store = store
        self._cache = cache
        self._sun = sun
        self._journal = journal
        self._append_claimed = append_claimed
        self._publish = publish
        self._share_counter = share_counter
        self._check_clock = check_clock
        self._wall = wall
        self._mono = mono
        #: The open sessions (idle expiry).
        self.sessions = GuardSessions(mono, session_timeout_s=config.guard.session_timeout_s)
        #: The device's rate limit on logins.
        self.bucket = TokenBucket(config.guard.login_attempts_per_minute, config.guard.login_burst)
        # One login at a time: the failure count read, the PIN check and the
        # durable update cannot interleave (and scrypt never runs twice at once).
        self._login_lock = threading.Lock()
        #: NTAG 424 guard taps at this device's reader: UID -> (SUN URL, monotonic time).
        self._taps: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._closed = False
        if not config.guard.console:
            # No console: keep no guard PIN hash to be searched offline on a stolen door.
            store.cache.keep_guard_secrets = False
            stripped = store.cache.strip_guard_secrets()
            if stripped:
                log.info("dropped %d guard PIN hashes: this device has no guard console", stripped)

    # -- a guard's tap at the console's own reader --------------------------------------
    def badge_tap(self, guard: Guard, uid_hex: str, sun_url: str | None) -> dict[str, Any]:
        """Journal a guard's tap at the console's reader as ``guard.badge_tap``; no decision.

        An NTAG 424 guard badge's SUN message is verified and its counter spent in the
        same commit as the event (shared with the central as ``badge.counter``, as a
        decision's would be), then kept for the login that follows (see
        :meth:`login`); a tap that does not verify is journaled with
        ``verified: false`` and why, and opens no login. The live ``guard.tap`` event
        (not journaled: it holds the SUN message) carries the tap to the kiosk.
        """
        payload: dict[str, Any] = {
            "door": self._config.door.id,
            "source": "nfc",
            "badge_uid": uid_hex,
            "guard_id": guard.guard_id,
            "name": guard.name,
            "kind": guard.kind,
        }
        kept: str | None = None
        if guard.kind == "uid":
            event = self._journal("guard.badge_tap", {**payload, "verified": True})
        else:
            why, counter = self.verify_tap(uid_hex, sun_url)
            if why is not None or counter is None or sun_url is None:
                event = self._journal(
                    "guard.badge_tap", {**payload, "verified": False, "why": why or "bad_tap"}
                )
            else:
                items = [("guard.badge_tap", {**payload, "verified": True, "counter": counter})]
                shared = self._share_counter(uid_hex, counter, sun_url)
                if shared is not None:
                    items.append(shared)  # the other doors of the site refuse this message too
                events, claimed = self._append_claimed(
                    self._store.replay.counter_claim(uid_hex, counter),
                    items,
                    [("guard.badge_tap", {**payload, "verified": False, "why": "replayed"})],
                )
                event = events[0]
                if claimed:
                    kept = sun_url
                    with self._lock:
                        if len(self._taps) >= MAX_KEPT_TAPS:
                            oldest = min(self._taps, key=lambda k: self._taps[k][1])
                            del self._taps[oldest]
                        self._taps[uid_hex] = (sun_url, self._mono())
        if event.payload.get("verified"):
            # Live only (not journaled): the kiosk carries the tap to the login.
            self._publish("guard.tap", {"badge_uid": uid_hex, "sun_url": kept})
        return {**event.payload, "seq": event.seq, "event_id": event.id}

    def verify_tap(self, uid_hex: str, sun_url: str | None) -> tuple[str | None, int | None]:
        """(refusal or None, the tap's counter) of a guard's NTAG 424 tap, at the reader or
        carried to a login: the counter is known once the MAC verified (``replayed``
        included), None otherwise."""
        if not sun_url:
            return "tap_required", None
        if len(sun_url) > MAX_SUN_CHARS:
            return "bad_tap", None
        if self._sun is None:
            return "tap_unverifiable", None
        try:
            tap = self._sun.verify(sun_url)
        except (SunError, ValueError):
            return "bad_tap", None
        if tap.uid_hex.upper() != uid_hex:
            return "tap_mismatch", None
        last = self._store.replay.last_counter(uid_hex)
        if last is not None and tap.counter <= last:
            return "replayed", tap.counter
        return None, tap.counter

    # -- the login ------------------------------------------------------------------------
    def login(self, badge_uid: object, pin: object, sun_url: object = None) -> Session:
        """Open a guard session; every refusal is journaled. Raises :class:`GuardDenied`.

        In order: the device's rate limit, ``[guard] console``, the UID (one
        type, :class:`~portier_common.uid.BadgeUid`), the lockout of the
        normalised identity (the guard, whatever badge or spelling; else the
        UID), then the badge (a guard's, not revoked, enabled, inside its
        window; an NTAG 424 badge with a verified fresh tap ``sun_url``, a bare
        UID only with ``[guard] accept_uid_login``) and the PIN. A failure is
        counted durably in the same commit as its ``guard.login_failed`` event.
        """
        with self._login_lock:
            return self._login(badge_uid, pin, sun_url)

    def login_refused(self, why: str) -> None:
        """Journal a login refused before its body could be read (``too_large``)."""
        self._journal_login_failed({"badge_uid": None, "why": why})

    def _journal_login_failed(self, payload: dict[str, Any]) -> None:
        self._journal("guard.login_failed", payload)

    def _login(self, badge_uid: object, pin: object, sun_url: object) -> Session:
        cfg = self._config.guard
        now = self._wall()
        now_ms = int(now * 1000)
        shown = shown_uid(badge_uid)
        wait = self.bucket.take(self._mono())
        if wait:
            self._journal_login_failed({**shown, "why": "rate_limited"})
            raise GuardDenied(
                "rate_limited", "too many guard logins on this device", retry_after_s=wait
            )
        if not cfg.console:
            self._journal_login_failed({**shown, "why": "console_disabled"})
            raise GuardDenied("console_disabled", "this device has no guard console")
        try:
            uid = BadgeUid.parse(badge_uid).hex_upper()
        except ValueError:
            self._journal_login_failed({**shown, "why": "bad_uid"})
            raise GuardDenied(
                "bad_request", "'badge_uid' must be 4, 7 or 10 bytes of hex", detail="bad_uid"
            ) from None
        if not valid_pin_text(pin):
            # The format of a PIN is no secret: a clear 400, journaled, not a guess.
            self._journal_login_failed({"badge_uid": uid, "why": "bad_pin_format"})
            raise GuardDenied(
                "bad_request", "'pin' must be 4 to 12 digits", detail="bad_pin_format"
            )
        if sun_url is not None and (not isinstance(sun_url, str) or len(sun_url) > MAX_SUN_CHARS):
            self._journal_login_failed({"badge_uid": uid, "why": "bad_tap"})
            raise GuardDenied(
                "bad_request", f"'sun_url' must be a string of at most {MAX_SUN_CHARS} characters"
            )
        guard = self._cache.guard(uid)
        shown = {"badge_uid": uid}
        if guard is not None:
            ident = f"guard:{guard.guard_id}"
            shown["guard_id"] = guard.guard_id
        else:
            ident = f"uid:{uid}"
        lockouts = self._store.guard_lockouts
        state = lockouts.get(ident)
        failures = 0
        if state is not None:
            if state.locked_until_ms is not None and now_ms < state.locked_until_ms:
                left = (state.locked_until_ms - now_ms) / 1000.0
                self._journal_login_failed({**shown, "why": "locked_out"})
                raise GuardDenied("locked_out", "too many failed logins", retry_after_s=left)
            if state.locked_until_ms is None and now_ms - state.updated_ms < cfg.lockout_s * 1000:
                failures = state.failures  # failures older than lockout_s are forgotten
        why: str | None = "unknown_guard"
        counter_claim = None
        if guard is not None:
            why = guard.refusal(now)
            bounded = guard.not_before is not None or guard.not_after is not None
            if why is None and bounded and not self._check_clock(now).trusted:
                # Its window would be judged by a clock set back (docs/threat-model.md).
                why = "clock_untrusted"
            if why is None and guard.kind != "uid":
                why, counter_claim = self._tap(uid, sun_url)
            elif why is None and not cfg.accept_uid_login:
                why = "uid_login_disabled"
        # The PIN is checked whatever else is wrong, so that timing does not tell a
        # guard's badge from any other.
        secret = guard.pin_hash if guard is not None and guard.pin_hash else dummy_hash()
        pin_ok = verify_pin(str(pin), secret)
        if why is None and not pin_ok:
            why = "bad_pin"
        if why in TAP_REFUSALS:
            # Without a verified tap of the guard's own card no PIN was really tried
            # (the answer does not depend on it): journaled, held by the device's rate
            # limit, but not counted, or anyone who read a guard's UID off the badge
            # could lock that guard out of the console.
            self._journal_login_failed({**shown, "why": why, "failures": failures})
            raise GuardDenied(
                "not_recognised",
                "badge or PIN not recognised",
                detail=why,
                attempts_left=max(0, cfg.max_pin_failures - failures),
            )
        if why is not None:
            failures += 1
            locked = failures >= cfg.max_pin_failures
            locked_until = now_ms + int(cfg.lockout_s * 1000) if locked else None
            payload = {**shown, "why": why, "failures": failures}
            if locked:
                payload["locked_out_s"] = int(cfg.lockout_s)
            item = [("guard.login_failed", payload)]
            self._append_claimed(
                lockouts.failure_claim(ident, 0 if locked else failures, locked_until, now_ms),
                item,
                item,
            )
            if locked:
                raise GuardDenied(
                    "locked_out", "too many failed logins", retry_after_s=cfg.lockout_s, detail=why
                )
            raise GuardDenied(
                "not_recognised",
                "badge or PIN not recognised",
                detail=why,
                attempts_left=cfg.max_pin_failures - failures,
            )
        assert guard is not None
        reset = lockouts.reset_claim(ident)
        claims = [counter_claim, reset] if counter_claim is not None else [reset]
        _, ok = self._append_claimed(
            lambda conn: all(claim(conn) for claim in claims),
            [("guard.login", {"guard_id": guard.guard_id, "name": guard.name})],
            [("guard.login_failed", {**shown, "why": "replayed", "failures": failures})],
        )
        if not ok:  # the same tap won a concurrent presentation
            raise GuardDenied("not_recognised", "badge or PIN not recognised", detail="replayed")
        session = self.sessions.open(guard)
        self._start_watch()
        return session

    def _tap(self, uid: str, sun_url: object) -> tuple[str | None, Any]:
        """Check an NTAG 424 guard's tap: (refusal code or None, counter claim or None).

        A fresh counter is claimed with the login. The tap already counted by this
        device's own reader (:meth:`badge_tap`) is accepted once, within
        :data:`GUARD_TAP_WINDOW_S`, as exactly the SUN URL the reader read.
        """
        if not isinstance(sun_url, str):
            return "tap_required", None
        why, counter = self.verify_tap(uid, sun_url)
        if why is None and counter is not None:
            return None, self._store.replay.counter_claim(uid, counter)
        if why != "replayed":
            return why, None
        with self._lock:
            kept = self._taps.pop(uid, None)
        if (
            kept is not None
            and counter == self._store.replay.last_counter(uid)
            and hmac.compare_digest(kept[0].encode(), sun_url.encode())
            and self._mono() - kept[1] <= GUARD_TAP_WINDOW_S
        ):
            return None, None
        return "replayed", None

    # -- sessions -------------------------------------------------------------------------
    def session(self, token: str) -> Session:
        """The live session for ``token``, its badge checked again now.

        Raises :class:`ActionError` ``not_logged_in`` when there is none, or when its badge is
        no longer a valid guard badge (revoked, disabled, expired...): then the
        session is ended and ``guard.session_ended`` journaled with why.
        """
        session = self.sessions.check(token)
        if session is None:
            raise ActionError("not_logged_in", "guard session missing or expired")
        why = self._session_refusal(session)
        if why is not None:
            self._end_session(session, why)
            raise ActionError("not_logged_in", f"guard session ended ({why})")
        return session

    def _session_refusal(self, session: Session) -> str | None:
        if not self._config.guard.console:
            return "console_disabled"
        guard = self._cache.guard(session.badge_uid)
        if guard is None or guard.guard_id != session.guard_id:
            return "not_a_guard"
        return guard.refusal(self._wall())

    def _end_session(self, session: Session, why: str) -> None:
        if self.sessions.logout(session.token):
            self._journal(
                "guard.session_ended",
                {"guard_id": session.guard_id, "name": session.name, "why": why},
            )

    def sweep(self) -> int:
        """End every open session whose badge stopped being valid; return how many."""
        ended = 0
        for session in self.sessions.open_sessions():
            why = self._session_refusal(session)
            if why is not None:
                self._end_session(session, why)
                ended += 1
        return ended

    def _start_watch(self) -> None:
        # A revocation that arrives while a session is open ends it within
        # GUARD_SWEEP_S, even if the kiosk makes no call meanwhile.
        with self._lock:
            if self._watch is not None or self._closed:
                return
            self._watch = threading.Thread(
                target=self._watch_loop, name="guard-sessions", daemon=True
            )
        self._watch.start()

    def _watch_loop(self) -> None:
        while not self._watch_stop.wait(GUARD_SWEEP_S):
            try:
                self.sweep()
            except Exception:
                log.exception("guard session sweep failed; retrying")

    def logout(self, token: str) -> None:
        """Close a guard session (journaled)."""
        session = self.sessions.check(token, touch=False)
        if self.sessions.logout(token) and session is not None:
            self._journal("guard.logout", {"guard_id": session.guard_id, "name": session.name})

    # -- a guard's action -----------------------------------------------------------------
    def action_session(
        self, token: str, action: str, reason: str, alarm: str | None, *, has_door: bool
    ) -> Session:
        """The session a guard's action runs in, once the request is well formed.

        Raises :class:`ActionError`: ``not_logged_in`` (:meth:`session`),
        ``unknown_action``, ``reason_required`` (every action needs a reason),
        ``no_door`` (``has_door`` False), ``unknown_alarm``. A malformed request is
        not an action and is not journaled; what the door cannot carry out now is
        :func:`action_refusal`'s.
        """
        session = self.session(token)
        if action not in GUARD_ACTIONS:
            raise ActionError("unknown_action", f"action must be one of {GUARD_ACTIONS}")
        if not reason or not reason.strip():
            raise ActionError("reason_required", "every guard action needs a reason")
        if not has_door:
            raise ActionError("no_door", "this agent has no door")
        if action == "acknowledge" and (alarm is None or alarm not in {a.value for a in Alarm}):
            raise ActionError("unknown_alarm", f"alarm must be one of {[a.value for a in Alarm]}")
        return session

    # -- life cycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sweep thread. Idempotent."""
        self._closed = True
        self._watch_stop.set()
        if self._watch is not None:
            self._watch.join(timeout=2)


def action_refusal(door: DoorController, action: str, alarm: str | None) -> tuple[str, str] | None:
    """Why ``door`` cannot carry out a guard's ``action`` now, as (code, message), or None.

    Open once: refused in lockdown (lift it first) and in emergency (the fire
    input already holds the door released: an "opening" would be journaled that
    the guard did not cause). Acknowledge: refused when the alarm is not pending.
    Mode changes are always carried out (deferred until the fire alarm clears
    during an emergency, ``mode.deferred``). The caller holds the agent's mode lock.
    """
    if action == "open_once":
        mode = door.mode
        if mode is DoorMode.LOCKDOWN:
            return "lockdown", "lift the lockdown first"
        if mode is DoorMode.EMERGENCY:
            return "emergency", "the fire alarm holds the door released"
    elif action == "acknowledge":
        pending = {a["alarm"] for a in door.snapshot()["alarms"] if not a["acknowledged"]}
        if alarm not in pending:
            return "no_such_alarm", f"no unacknowledged {alarm} alarm"
    return None


def shown_uid(value: object) -> dict[str, Any]:
    """A caller's ``badge_uid`` as a journal may keep it: printable ASCII, at most
    :data:`JOURNAL_TEXT_MAX` characters, ``truncated`` when it was longer."""
    if value is None:
        return {"badge_uid": None}
    if not isinstance(value, str):
        return {"badge_uid": f"<{type(value).__name__}>"}
    text = "".join(c if " " <= c <= "~" else "?" for c in value[:JOURNAL_TEXT_MAX])
    if len(value) > JOURNAL_TEXT_MAX:
        return {"badge_uid": text, "truncated": True, "length": len(value)}
    return {"badge_uid": text}
