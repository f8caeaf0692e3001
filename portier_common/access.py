"""The access decision: a pure function of credential, door, mode, time and cache.

It lives in ``portier_common`` because two programs decide with it: the door agent
(``edge_agent.policy`` re-exports it) at every presentation, and the central's console
when it explains a person's rights at a door (``central/console/access.py``): one way to
decide, so the explanation cannot drift from what the door does.

:func:`decide` reads the credential cache through the small
:class:`CacheView` protocol and never writes: single-use invitations and
NTAG 424 counters are *claimed* by the caller after a grant (see
:attr:`Decision.claim`), atomically in the store, so two doors or two threads
racing on one single-use invitation cannot both open.

Checks run in a fixed order so that the journal always records the most
telling reason: first whether the credential is genuine (format, signature,
key, time, scope), then whether it still stands (revocation, replay), then
whether this door may open now (mode, clock, schedule, cache staleness). A
forged invitation shown during a lockdown or a fire alarm is journaled as forged.

While the fire input holds the door in ``emergency`` every entry is refused
with ``emergency`` (after the genuineness checks, like ``lockdown``): the door
is released for people to get *out*; nobody is let *in* by a credential during
an evacuation. Egress never depends on this module (door.py, hardware).

While the wall clock is below the agent's time floor (``clock_floor``, see
:mod:`edge_agent.timefloor`) every time-bounded credential -- a QR invitation
(it always has dates), a badge with a validity window or a schedule, a visitor
schedule -- is refused with ``clock_untrusted``: its dates cannot be checked
against a clock that was set back. Badges without time bounds (staff badges
with no window and no schedule) are still decided, and cache staleness is
measured against the floor rather than the (behind) wall clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from portier_common.ntag424 import SunError, SunVerifier
from portier_common.reasons import Reason
from portier_common.tokens import DEFAULT_MAX_SKEW_S, Keyring, Verified, window_and_scope
from portier_common.tokens import verify as verify_token

log = logging.getLogger(__name__)


class DoorMode(StrEnum):
    """Operating mode of a door (what :mod:`edge_agent.door` carries out)."""

    NORMAL = "normal"
    LOCKDOWN = "lockdown"
    FREE_ACCESS = "free_access"
    EMERGENCY = "emergency"


CredentialKind = Literal["qr", "badge"]


@dataclass(frozen=True)
class Credential:
    """What was presented at the door.

    ``qr``: ``text`` is the decoded QR payload. ``badge``: ``uid`` is the UID
    read by the reader and ``sun_url`` the NDEF URL record of an NTAG 424 DNA
    (its SUN message), when the badge carried one.
    """

    kind: CredentialKind
    text: str = ""
    uid: bytes = b""
    sun_url: str | None = None

    @classmethod
    def qr(cls, text: str) -> Credential:
        """A scanned QR code."""
        return cls("qr", text=text)

    @classmethod
    def badge(cls, uid: bytes, sun_url: str | None = None) -> Credential:
        """A badge read (UID, and the SUN URL of a cryptographic badge)."""
        return cls("badge", uid=bytes(uid), sun_url=sun_url)


@dataclass(frozen=True)
class Window:
    """A weekly time window: ``days`` (0 = Monday) between ``start`` and ``end`` minutes."""

    days: frozenset[int]
    start_min: int
    end_min: int

    def contains(self, weekday: int, minute: int) -> bool:
        """True if (weekday, minute of day) falls in the window."""
        if self.start_min <= self.end_min:
            return weekday in self.days and self.start_min <= minute < self.end_min
        # Over midnight: the part after midnight belongs to the previous day's window.
        return (weekday in self.days and minute >= self.start_min) or (
            (weekday - 1) % 7 in self.days and minute < self.end_min
        )


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_days(spec: str) -> frozenset[int]:
    days: set[int] = set()
    for part in spec.lower().replace(" ", "").split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            i, j = _DAY_NAMES.index(a), _DAY_NAMES.index(b)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        else:
            days.add(_DAY_NAMES.index(part))
    return frozenset(days)


def _parse_hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value <= 24 * 60:
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class Schedule:
    """Named weekly schedule in a time zone: access allowed inside any window, except on
    its holidays (local dates of ``tz``), when it is closed all day."""

    name: str
    tz: str
    windows: tuple[Window, ...]
    #: ``(YYYY-MM-DD, name)`` of each day the schedule is closed (the site's holidays).
    holidays: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Build from ``{"name", "tz", "windows": [{"days": "mon-fri", "from": "07:00",
        "to": "19:00"}], "holidays": [{"date": "2026-12-25", "name": "Christmas"}]}``
        (``holidays`` optional). Raises ValueError naming the bad part."""
        try:
            name = str(data["name"])
            tz = str(data.get("tz", "UTC"))
            ZoneInfo(tz)
            windows = tuple(
                Window(_parse_days(w["days"]), _parse_hhmm(w["from"]), _parse_hhmm(w["to"]))
                for w in data["windows"]
            )
            holidays = tuple(
                (dt.date.fromisoformat(h["date"]).isoformat(), str(h.get("name", "")))
                for h in data.get("holidays") or ()
            )
        except (KeyError, ValueError, TypeError, ZoneInfoNotFoundError) as exc:
            raise ValueError(f"schedule {data.get('name', '?')!r}: invalid ({exc})") from exc
        return cls(name, tz, windows, holidays)

    def allows(self, now: float) -> bool:
        """True if Unix time ``now`` falls in one of the windows (local time of ``tz``)
        and not on a holiday."""
        if self.holiday(now) is not None:
            return False
        local = dt.datetime.fromtimestamp(now, ZoneInfo(self.tz))
        minute = local.hour * 60 + local.minute
        return any(w.contains(local.weekday(), minute) for w in self.windows)

    def holiday(self, now: float) -> str | None:
        """The name of the holiday Unix time ``now`` falls on (local date of ``tz``), or
        None on an ordinary day. A window over midnight into a holiday closes at midnight:
        the holiday is the whole local day."""
        if not self.holidays:
            return None
        today = dt.datetime.fromtimestamp(now, ZoneInfo(self.tz)).date().isoformat()
        return next((name or today for day, name in self.holidays if day == today), None)


@dataclass(frozen=True)
class BadgeRecord:
    """A cached badge: who holds it and where it opens."""

    uid: str  # upper-case hex
    holder: str
    kind: Literal["uid", "ntag424"] = "uid"
    doors: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    enabled: bool = True
    valid_from: float | None = None
    valid_until: float | None = None
    schedule: str | None = None

    def allows(self, door: str, zones_of_door: Iterable[str]) -> bool:
        """True if the badge names this door or one of its zones (``*`` = every door)."""
        return "*" in self.doors or door in self.doors or bool(set(self.zones) & set(zones_of_door))


class CacheView(Protocol):
    """Read-only view of the credential cache the policy needs."""

    def keyring(self) -> Keyring:
        """Pinned invitation signing keys."""

    def is_revoked(self, kind: str, ident: str) -> bool:
        """True if invitation id / badge UID (hex) ``ident`` is revoked."""

    def badge(self, uid_hex: str) -> BadgeRecord | None:
        """The badge with this UID, or None."""

    def invitation_used(self, invitation_id: str) -> bool:
        """True if a single-use invitation was already used (here or elsewhere)."""

    def last_counter(self, uid_hex: str) -> int | None:
        """Last accepted NTAG 424 SUN counter for this UID, or None."""

    def schedule(self, name: str) -> Schedule | None:
        """The named schedule, or None when unknown."""

    def staleness_s(self, now: float) -> float | None:
        """Seconds since the cache was last brought up to date (None: never)."""


@dataclass(frozen=True)
class DoorPolicy:
    """What a door accepts. Built from the agent's config (and central door settings)."""

    site: str
    door: str
    zones: tuple[str, ...] = ()
    accept_qr: bool = True
    accept_ntag424: bool = True
    #: UID-only badges can be cloned: accepted only where the config says so.
    accept_uid: bool = False
    #: Refuse offline decisions when the cache is older than this (None: never refuse).
    max_offline_staleness_s: float | None = None
    visitor_schedule: str | None = None
    #: Tolerance on every validity window: what NTP-synchronised clocks need (see
    #: docs/tokens.md, "Clock skew"); the config's ``[door] max_clock_skew_s``.
    max_skew_s: float = DEFAULT_MAX_SKEW_S


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide`; JSON-ready through :meth:`to_dict`.

    ``claim`` is what the caller must record atomically before opening:
    ``("invitation", id, expires)`` for a single-use invitation or
    ``("counter", uid_hex, counter)`` for an NTAG 424 tap. If the claim fails
    (someone was quicker), the caller denies with :attr:`Reason.REPLAYED`.
    ``claim`` is set on grants only.

    ``consumes`` is set on *denials* only: the NTAG 424 counter of a SUN message
    that verified (counter above the last) although the tap is refused (lockdown,
    wrong door, schedule, stale cache, revoked...). The caller records it in the
    replay ledger with the deny, so the same message cannot open the door once the
    reason for refusing it is gone (a tap refused in lockdown is not replayable
    after the lockdown lifts). Single-use invitations are never consumed by a deny.
    """

    granted: bool
    reason: Reason
    kind: CredentialKind
    credential_id: str = ""
    holder: str = ""
    host: str = ""
    detail: str = ""
    claim: tuple[str, str, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    consumes: tuple[str, str, int] | None = None
    #: What a refused visitor needs to be told (known once the credential is genuine):
    #: its validity window (Unix seconds) and where it does open (door ids, zone names).
    valid_from: float | None = None
    valid_until: float | None = None
    doors: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (no claim or consumes: those are internal).

        ``valid_from``/``valid_until`` (whole Unix seconds) and ``doors``/``zones``
        appear only when known, so the kiosk can say since when an invitation
        expired or which entrance to use.
        """
        scope: dict[str, Any] = {}
        if self.valid_from is not None:
            scope["valid_from"] = int(self.valid_from)
        if self.valid_until is not None:
            scope["valid_until"] = int(self.valid_until)
        if self.doors:
            scope["doors"] = list(self.doors)
        if self.zones:
            scope["zones"] = list(self.zones)
        return {
            "granted": self.granted,
            "reason": self.reason.value,
            "kind": self.kind,
            "credential_id": self.credential_id,
            "holder": self.holder,
            "host": self.host,
            "detail": self.detail,
            **({"extra": dict(self.extra)} if self.extra else {}),
            **scope,
        }


#: Modes that refuse every entry whatever the credential (their reason beats the clock's).
_REFUSING_MODES = frozenset({DoorMode.LOCKDOWN, DoorMode.EMERGENCY})

#: Verifier denials that depend on the clock.
_TIME_REASONS = frozenset({Reason.EXPIRED, Reason.NOT_YET_VALID})


def _deny(kind: CredentialKind, reason: Reason, detail: str, **kw: Any) -> Decision:
    return Decision(False, reason, kind, detail=detail, **kw)


def _clock_untrusted(kind: CredentialKind, now: float, clock_floor: float, **who: Any) -> Decision:
    behind = clock_floor - now
    return _deny(
        kind,
        Reason.CLOCK_UNTRUSTED,
        f"clock {behind:.0f} s behind the latest trusted time: dates cannot be checked",
        **who,
    )


def _mode_and_time_checks(
    kind: CredentialKind,
    policy: DoorPolicy,
    mode: DoorMode,
    now: float,
    cache: CacheView,
    schedule_name: str | None,
    clock_floor: float | None = None,
    *,
    time_bounded: bool = False,
    **who: Any,
) -> Decision | None:
    if mode is DoorMode.EMERGENCY:
        # The relay is released by the fire input: a grant would say "come in" to a
        # visitor during an evacuation. Refused whatever the credential.
        return _deny(kind, Reason.EMERGENCY, "fire alarm: entry refused", **who)
    if mode is DoorMode.LOCKDOWN:
        return _deny(kind, Reason.LOCKDOWN, "door in lockdown", **who)
    if clock_floor is not None and (time_bounded or (schedule_name and mode is DoorMode.NORMAL)):
        return _clock_untrusted(kind, now, clock_floor, **who)
    if schedule_name and mode is DoorMode.NORMAL:
        schedule = cache.schedule(schedule_name)
        if schedule is None:
            # An unknown schedule fails closed: a typo must not open a door all night.
            return _deny(
                kind, Reason.OUTSIDE_SCHEDULE, f"unknown schedule {schedule_name!r}", **who
            )
        holiday = schedule.holiday(now)
        if holiday is not None:
            # Its own reason: "closed today" is not "come back later today".
            return _deny(kind, Reason.HOLIDAY, f"schedule {schedule_name} closed: {holiday}", **who)
        if not schedule.allows(now):
            return _deny(kind, Reason.OUTSIDE_SCHEDULE, f"outside schedule {schedule_name}", **who)
    if policy.max_offline_staleness_s is not None:
        # A clock set back would make a stale cache look fresh: measure from the floor.
        stale = cache.staleness_s(now if clock_floor is None else max(now, clock_floor))
        if stale is None or stale > policy.max_offline_staleness_s:
            age = "never synced" if stale is None else f"{stale:.0f} s old"
            return _deny(kind, Reason.CACHE_STALE, f"cache {age}", **who)
    return None


def decide(
    credential: Credential,
    policy: DoorPolicy,
    mode: DoorMode,
    now: float,
    cache: CacheView,
    sun_verifier: SunVerifier | None = None,
    *,
    clock_floor: float | None = None,
) -> Decision:
    """Decide whether ``credential`` opens ``policy.door`` at Unix time ``now``.

    Never raises for anything in the credential: every failure is a deny with
    a reason code. ``sun_verifier`` checks NTAG 424 SUN messages (None: this
    agent has no SUN keys, so such badges are refused as unknown).
    ``clock_floor``: None while the wall clock is trusted; otherwise the latest
    trusted time (Unix seconds) the clock is behind, and time-bounded
    credentials are refused with ``clock_untrusted`` (module docstring).
    """
    if credential.kind == "qr":
        return _decide_qr(credential, policy, mode, now, cache, clock_floor)
    if credential.kind == "badge":
        return _decide_badge(credential, policy, mode, now, cache, sun_verifier, clock_floor)
    return _deny("qr", Reason.MALFORMED, f"unknown credential kind {credential.kind!r}")


def _invitation_who(claims: Any) -> dict[str, Any]:
    """Who an invitation is for and where and when it opens (once genuine)."""
    return {
        "credential_id": claims.invitation_id,
        "holder": claims.visitor,
        "host": claims.host,
        "valid_from": claims.not_before,
        "valid_until": claims.expires,
        "doors": tuple(claims.doors),
        "zones": tuple(claims.zones),
    }


def _badge_who(uid_hex: str, record: BadgeRecord) -> dict[str, Any]:
    """Who holds a known badge and where and when it opens."""
    return {
        "credential_id": uid_hex,
        "holder": record.holder,
        "valid_from": record.valid_from,
        "valid_until": record.valid_until,
        "doors": tuple(record.doors),
        "zones": tuple(record.zones),
    }


def _decide_qr(
    credential: Credential,
    policy: DoorPolicy,
    mode: DoorMode,
    now: float,
    cache: CacheView,
    clock_floor: float | None,
) -> Decision:
    if not policy.accept_qr:
        return _deny("qr", Reason.KIND_NOT_ACCEPTED, "this door takes no QR invitations")
    result = verify_token(
        credential.text,
        cache.keyring(),
        now=now,
        site=policy.site,
        door=policy.door,
        zones_of_door=policy.zones,
        max_skew_s=policy.max_skew_s,
    )
    if not isinstance(result, Verified):
        who: dict[str, Any] = {}
        if result.claims is not None:  # trustworthy only once the signature verified
            who = _invitation_who(result.claims)
            if clock_floor is not None and result.reason in _TIME_REASONS:
                # Genuine, but its dates were judged by a clock set back.
                return _clock_untrusted("qr", now, clock_floor, **who)
        return _deny("qr", result.reason, result.detail, **who)
    claims = result.claims
    who = _invitation_who(claims)
    if cache.is_revoked("invitation", claims.invitation_id):
        return _deny("qr", Reason.REVOKED, "invitation revoked", **who)
    if claims.single_use and cache.invitation_used(claims.invitation_id):
        return _deny("qr", Reason.REPLAYED, "single-use invitation already used", **who)
    # An invitation always has dates (not_before, expires): it is time-bounded.
    blocked = _mode_and_time_checks(
        "qr",
        policy,
        mode,
        now,
        cache,
        policy.visitor_schedule,
        clock_floor,
        time_bounded=True,
        **who,
    )
    if blocked is not None:
        return blocked
    claim = ("invitation", claims.invitation_id, claims.expires) if claims.single_use else None
    return Decision(
        True,
        Reason.GRANTED,
        "qr",
        claim=claim,
        detail=f"kid {result.kid}",
        extra=dict(claims.extra),
        **who,
    )


def _decide_badge(
    credential: Credential,
    policy: DoorPolicy,
    mode: DoorMode,
    now: float,
    cache: CacheView,
    sun_verifier: SunVerifier | None,
    clock_floor: float | None = None,
) -> Decision:
    if credential.sun_url and policy.accept_ntag424:
        if sun_verifier is None:
            return _deny("badge", Reason.UNKNOWN_KEY, "no NTAG 424 keys configured on this door")
        try:
            tap = sun_verifier.verify(credential.sun_url)
        except SunError as exc:
            return _deny(
                "badge", exc.reason, f"SUN: {exc}", credential_id=credential.uid.hex().upper()
            )
        uid_hex = tap.uid_hex.upper()
        last = cache.last_counter(uid_hex)
        if last is not None and tap.counter <= last:
            return _deny(
                "badge",
                Reason.REPLAYED,
                f"SUN counter {tap.counter} not above {last} (replayed or cloned message)",
                credential_id=uid_hex,
            )
        claim = ("counter", uid_hex, tap.counter)
        decision = _badge_checks(uid_hex, True, claim, policy, mode, now, cache, clock_floor)
        # A verified counter is spent even when the tap is refused (see Decision.consumes).
        return decision if decision.granted else replace(decision, consumes=claim)
    uid_hex = credential.uid.hex().upper()
    if not uid_hex:
        return _deny("badge", Reason.MALFORMED, "empty UID")
    return _badge_checks(uid_hex, False, None, policy, mode, now, cache, clock_floor)


def decide_badge_presented(
    uid_hex: str,
    policy: DoorPolicy,
    mode: DoorMode,
    now: float,
    cache: CacheView,
) -> Decision:
    """What the door decides when the badge *uid_hex* is presented as its genuine card is
    (an NTAG 424 badge with a SUN message that verifies and is new, a UID badge by its
    UID): the checks of :func:`decide` once the card is read, with the clock trusted.

    The central's console explains a person's rights at a door with it (who, when,
    why): what a real tap adds (the SUN message's own checks, the replay ledger, the
    clock floor) is about the card, not about the person's rights.
    """
    record = cache.badge(uid_hex)
    crypto = record is not None and record.kind == "ntag424"
    return _badge_checks(uid_hex, crypto, None, policy, mode, now, cache)


def _badge_checks(
    uid_hex: str,
    crypto: bool,
    claim: tuple[str, str, int] | None,
    policy: DoorPolicy,
    mode: DoorMode,
    now: float,
    cache: CacheView,
    clock_floor: float | None = None,
) -> Decision:
    """The checks of a badge once it is read (and its SUN message, if any, verified)."""
    record = cache.badge(uid_hex)
    if record is None:
        return _deny("badge", Reason.UNKNOWN_BADGE, "UID not in the cache", credential_id=uid_hex)
    who = _badge_who(uid_hex, record)
    if not crypto:
        if record.kind == "ntag424":
            # The genuine card always sends a SUN message: a bare UID is a copy.
            return _deny(
                "badge",
                Reason.UID_NOT_ALLOWED,
                "cryptographic badge presented without its SUN message (possible clone)",
                **who,
            )
        if not policy.accept_uid:
            return _deny("badge", Reason.UID_NOT_ALLOWED, "door refuses UID-only badges", **who)
    if cache.is_revoked("badge", uid_hex) or not record.enabled:
        return _deny("badge", Reason.REVOKED, "badge revoked or disabled", **who)
    time_bounded = (
        record.valid_from is not None or record.valid_until is not None or bool(record.schedule)
    )
    if clock_floor is not None and time_bounded and mode not in _REFUSING_MODES:
        # Its window or schedule would be judged by a clock set back.
        return _clock_untrusted("badge", now, clock_floor, **who)
    if record.valid_from is not None and now < record.valid_from:
        return _deny("badge", Reason.NOT_YET_VALID, "badge not valid yet", **who)
    if record.valid_until is not None and now >= record.valid_until:
        return _deny("badge", Reason.EXPIRED, "badge validity ended", **who)
    if not record.allows(policy.door, policy.zones):
        return _deny("badge", Reason.WRONG_DOOR, "badge not valid for this door", **who)
    blocked = _mode_and_time_checks(
        "badge",
        policy,
        mode,
        now,
        cache,
        record.schedule,
        clock_floor,
        time_bounded=time_bounded,
        **who,
    )
    if blocked is not None:
        return blocked
    return Decision(
        True, Reason.GRANTED, "badge", claim=claim, detail="ntag424" if crypto else "uid", **who
    )


@dataclass(frozen=True)
class CachedInvitation:
    """What the credential cache knows of an invitation: what a guard checks in by hand."""

    invitation_id: str
    visitor: str
    host: str = ""
    site: str | None = None
    #: None: the cache does not say where it is valid (not refused for it).
    doors: tuple[str, ...] | None = ()
    zones: tuple[str, ...] = ()
    not_before: float | None = None
    not_after: float | None = None


def judge_invitation(
    invitation: CachedInvitation,
    policy: DoorPolicy,
    now: float,
    cache: CacheView,
    *,
    clock_floor: float | None = None,
) -> Decision:
    """Whether a guard may check ``invitation`` in by hand at ``policy.door``, as a scan would.

    The same rules as a scanned invitation's (:func:`_decide_qr`), through the same
    code: time window with the door's skew, site, door or zones
    (:func:`portier_common.tokens.window_and_scope`), revocation, and a clock below the
    time floor (``clock_untrusted``). What only the door's opening depends on is not
    asked: the signature (the cache holds what the central signed), the mode, the
    schedule, the cache's age, and single use (a manual check-in opens nothing, so
    it does not spend the invitation). A guard may still override a refusal, with a
    reason (the agent journals it).
    """
    who: dict[str, Any] = {
        "credential_id": invitation.invitation_id,
        "holder": invitation.visitor,
        "host": invitation.host,
    }
    refused = window_and_scope(
        invitation.not_before,
        invitation.not_after,
        invitation.site,
        invitation.doors,
        invitation.zones,
        now=now,
        skew=policy.max_skew_s,
        site=policy.site,
        door=policy.door,
        zones_of_door=policy.zones,
    )
    if refused is not None:
        reason, detail = refused
        if clock_floor is not None and reason in _TIME_REASONS:
            return _clock_untrusted("qr", now, clock_floor, **who)
        return _deny("qr", reason, detail, **who)
    if cache.is_revoked("invitation", invitation.invitation_id):
        return _deny("qr", Reason.REVOKED, "invitation revoked", **who)
    if clock_floor is not None:
        return _clock_untrusted("qr", now, clock_floor, **who)
    return Decision(True, Reason.GRANTED, "qr", detail="manual check-in", **who)
