"""A badge's rights at a door, explained: may it open now, at which times this week, and why.

The answer comes from the decision the doors run (:func:`portier_common.access.
decide_badge_presented`, the agent's :func:`~portier_common.access.decide` once a card is
read), fed with what the central holds (``store.rights_facts``): the badge, its revocation,
the door's zones, its settings (mode, kinds accepted) and the site's schedules with their
holidays. So the console cannot say "yes" where the door would say "no".

What the central cannot know is left out and said so: a door's local configuration where
the central sent no settings (a door takes no UID-only badge unless told, as the agent's
default), the door's clock and offline data (``clock_untrusted``, ``cache_stale``) and a
fire alarm (``emergency``) at the moment of the tap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from portier_common.access import (
    BadgeRecord,
    Decision,
    DoorMode,
    DoorPolicy,
    Schedule,
    decide_badge_presented,
)
from portier_common.tokens import Keyring

__all__ = ["Span", "explain"]

#: The modes the central sets (``emergency`` follows a door's fire input).
_MODES = {mode.value: mode for mode in DoorMode}


@dataclass(frozen=True)
class Span:
    """A stretch of the week with one outcome: ``start``/``end`` Unix seconds."""

    start: int
    end: int
    granted: bool
    reason: str
    detail: str


class _CentralView:
    """The decision's :class:`~portier_common.access.CacheView` over the central's facts:
    one badge, its revocation, the site's schedules; fresh by definition (it is the source)."""

    def __init__(self, record: BadgeRecord, revoked: bool, schedules: Mapping[str, Schedule]):
        self._record = record
        self._revoked = revoked
        self._schedules = schedules

    def keyring(self) -> Keyring:
        return Keyring([])  # badges only: no invitation is decided here

    def is_revoked(self, kind: str, ident: str) -> bool:
        return kind == "badge" and ident.upper() == self._record.uid and self._revoked

    def badge(self, uid_hex: str) -> BadgeRecord | None:
        return self._record if uid_hex.upper() == self._record.uid else None

    def invitation_used(self, invitation_id: str) -> bool:
        return False

    def last_counter(self, uid_hex: str) -> int | None:
        return None

    def schedule(self, name: str) -> Schedule | None:
        return self._schedules.get(name)

    def staleness_s(self, now: float) -> float | None:
        return 0.0


def _schedules(published: Mapping[str, Mapping[str, Any]]) -> dict[str, Schedule]:
    """The central's schedules (``{id, timezone, rules, holidays}``) in the decision's form,
    converted as the agent's downlink does (``edge_agent/sync/downlink.py``)."""
    out = {}
    for name, item in published.items():
        try:
            out[name] = Schedule.from_dict(
                {
                    "name": name,
                    "tz": item.get("timezone", "UTC"),
                    "windows": [
                        {"days": ",".join(rule["days"]), "from": rule["start"], "to": rule["end"]}
                        for rule in item.get("rules", [])
                    ],
                    "holidays": item.get("holidays", []),
                }
            )
        except ValueError:
            continue  # the agent refuses by an invalid schedule too (unknown: fails closed)
    return out


def _policy(facts: Mapping[str, Any]) -> DoorPolicy:
    settings = facts.get("door_settings") or {}
    accept = settings.get("accept")
    kinds = set(accept) if isinstance(accept, list) else {"qr", "ntag424"}  # the agent's default
    return DoorPolicy(
        site=facts["site"],
        door=facts["door"],
        zones=tuple(facts.get("zones", ())),
        accept_qr="qr" in kinds,
        accept_ntag424="ntag424" in kinds,
        accept_uid="uid" in kinds,
    )


def _record(badge: Mapping[str, Any]) -> BadgeRecord:
    return BadgeRecord(
        uid=str(badge["uid"]).upper(),
        holder=str(badge.get("holder", "")),
        kind="ntag424" if badge.get("kind", "ntag424") == "ntag424" else "uid",
        doors=tuple(badge.get("doors", ())),
        zones=tuple(badge.get("zones", ())),
        enabled=bool(badge.get("enabled", True)),
        valid_from=badge.get("not_before"),
        valid_until=badge.get("not_after"),
        schedule=badge.get("schedule"),
    )


def _week(now_s: int, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    local = dt.datetime.fromtimestamp(now_s, zone)
    monday = (local - dt.timedelta(days=local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return monday, monday + dt.timedelta(days=7)


def _boundaries(
    start: dt.datetime, end: dt.datetime, record: BadgeRecord, schedules: Iterable[Schedule]
) -> list[int]:
    """Every instant of [start, end) at which the decision may change: the windows' ends
    and starts and midnight in each schedule's zone (holidays), the badge's validity."""
    s, e = int(start.timestamp()), int(end.timestamp())
    points = {s}
    for schedule in schedules:
        zone = ZoneInfo(schedule.tz)
        first = dt.datetime.fromtimestamp(s, zone).date() - dt.timedelta(days=1)
        for offset in range(10):
            day = first + dt.timedelta(days=offset)
            minutes = (
                {0}
                | {w.start_min for w in schedule.windows}
                | {w.end_min % (24 * 60) for w in schedule.windows}
            )
            for minute in minutes:
                moment = dt.datetime.combine(day, dt.time(), zone) + dt.timedelta(minutes=minute)
                points.add(int(moment.timestamp()))
    for bound in (record.valid_from, record.valid_until):
        if bound is not None:
            points.add(int(bound))
    return sorted(p for p in points if s <= p < e)


def explain(facts: Mapping[str, Any], now_s: int) -> dict[str, Any]:
    """The rights of the badge of *facts* (``store.rights_facts``) at its door.

    Returns ``{"now": Decision, "mode": str, "week_start": s, "week_end": s, "spans":
    [Span], "schedule": id or None, "schedule_known": bool, "via": {"door": bool, "zones":
    [zone]}, "holidays": [{date, name}] (this week's, of the badge's schedule)}``.
    """
    record = _record(facts["badge"])
    schedules = _schedules(facts.get("schedules", {}))
    view = _CentralView(record, bool(facts.get("revoked")), schedules)
    policy = _policy(facts)
    mode_name = (facts.get("door_settings") or {}).get("mode", "normal")
    mode = _MODES.get(mode_name, DoorMode.NORMAL)

    def at(moment: int) -> Decision:
        return decide_badge_presented(record.uid, policy, mode, moment, view)

    zone = ZoneInfo(facts.get("time_zone") or "UTC")
    start, end = _week(now_s, zone)
    used = [schedules[record.schedule]] if record.schedule in schedules else []
    points = _boundaries(start, end, record, used)
    spans: list[Span] = []
    for i, point in enumerate(points):
        until = points[i + 1] if i + 1 < len(points) else int(end.timestamp())
        decision = at(point)
        same = (decision.granted, decision.reason.value, decision.detail)
        if spans and (spans[-1].granted, spans[-1].reason, spans[-1].detail) == same:
            spans[-1] = Span(spans[-1].start, until, *same)
        else:
            spans.append(Span(point, until, *same))
    holidays = []
    if used:
        week_days = {(start.date() + dt.timedelta(days=n)).isoformat(): n for n in range(7)}
        holidays = [
            {"date": day, "name": name} for day, name in used[0].holidays if day in week_days
        ]
    own = record.doors
    return {
        "now": at(now_s),
        "mode": mode.value,
        "policy": policy,
        "week_start": int(start.timestamp()),
        "week_end": int(end.timestamp()),
        "spans": spans,
        "schedule": record.schedule,
        "schedule_known": record.schedule in schedules if record.schedule else True,
        "via": {
            "door": "*" in own or facts["door"] in own,
            "zones": sorted(set(record.zones) & set(facts.get("zones", ()))),
        },
        "holidays": holidays,
    }
