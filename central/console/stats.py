"""The statistics page: visitors per day and per week, peak hours, refusals by reason, alarms
per door and device availability over the last 7, 30 or 90 days, each as a chart and a table,
and each as CSV (docs/console.md, "Statistics").

The charts are SVG written by the templates from the geometry :func:`bar_chart` and
:func:`hbar_chart` work out here: nothing runs in the browser, nothing is fetched, and a
chart prints. Each has a title and a description (``role="img"``, ``aria-labelledby``) and
its numbers in a table below it.

Days and hours are the site's (``time_zone``): the store counts per quarter hour of Unix
time (:mod:`central.store.stats`) and :func:`_by_day` / :func:`_by_hour` sort the quarters
into local days and hours, daylight saving included.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..store.stats import QUARTER_MS
from .i18n import N_, translations
from .words import alarm_label, reason_label

if TYPE_CHECKING:
    from .app import Console

__all__ = ["CSV_NAMES", "PERIODS", "add_routes", "bar_chart", "hbar_chart"]

#: The periods the page offers (days, today included); the first is the default.
PERIODS = (7, 30, 90)
#: The CSV exports: name -> what the file holds (its columns are in :func:`_csv_rows`).
CSV_NAMES = ("visits-per-day", "visits-per-week", "peak-hours", "denies", "alarms", "availability")
NO_REASON = N_("no reason given")
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Period:
    """The days of a period in the site's time zone, and its bounds in Unix ms."""

    days: int
    first: dt.date
    last: dt.date
    since_ms: int
    until_ms: int

    @classmethod
    def ending_today(cls, days: int, now_ms: int, zone: ZoneInfo) -> Period:
        today = dt.datetime.fromtimestamp(now_ms / 1000, zone).date()
        first = today - dt.timedelta(days=days - 1)
        return cls(days, first, today, _midnight(first, zone), _midnight(today + _ONE_DAY, zone))

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range(self.days)]


_ONE_DAY = dt.timedelta(days=1)


def _midnight(day: dt.date, zone: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), zone).timestamp() * 1000)


def _local(quarter: int, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(quarter * QUARTER_MS / 1000, zone)


def _by_day(quarters: dict[int, int], period: Period, zone: ZoneInfo) -> dict[dt.date, int]:
    days = dict.fromkeys(period.dates(), 0)
    for quarter, count in quarters.items():
        day = _local(quarter, zone).date()
        if day in days:
            days[day] += count
    return days


def _by_hour(quarters: dict[int, int], zone: ZoneInfo) -> list[int]:
    hours = [0] * 24
    for quarter, count in quarters.items():
        hours[_local(quarter, zone).hour] += count
    return hours


def _by_week(days: dict[dt.date, int]) -> dict[dt.date, int]:
    """Day counts summed per week, each week named by its Monday (ISO weeks)."""
    weeks: dict[dt.date, int] = {}
    for day, count in days.items():
        monday = day - dt.timedelta(days=day.weekday())
        weeks[monday] = weeks.get(monday, 0) + count
    return weeks


# -- chart geometry -----------------------------------------------------------------------


def _nice_top(value: float) -> int:
    """The axis's top: 1, 2 or 5 times a power of ten, at least *value* (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover -- the loop ends at 10


def bar_chart(
    bars: Sequence[tuple[str, float, str]],
    *,
    width: int = 720,
    height: int = 240,
    label_every: int = 1,
) -> dict[str, Any]:
    """The geometry of a vertical bar chart: *bars* are ``(label, value, shown value)``;
    one label in *label_every* is written under the axis (all are in each bar's title)."""
    left, right, top, bottom = 44, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    high = _nice_top(max((b[1] for b in bars), default=0))
    slot = plot_w / max(1, len(bars))
    gap = min(6.0, slot * 0.2)
    shapes = []
    for index, (label, value, shown) in enumerate(bars):
        h = plot_h * value / high
        x = left + index * slot + gap / 2
        shapes.append(
            {
                "x": round(x, 1),
                "y": round(top + plot_h - h, 1),
                "w": round(max(1.0, slot - gap), 1),
                "h": round(h, 1),
                "label": label,
                "shown": shown,
                "tick": label if index % label_every == 0 else "",
                "tx": round(x + (slot - gap) / 2, 1),
            }
        )
    lines = 5 if high >= 5 else high  # whole numbers on the axis: 0-50 by 10, 0-2 by 1
    grid = [
        {"y": round(top + plot_h - plot_h * n / lines, 1), "text": _number(high * n / lines)}
        for n in range(lines + 1)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "base": top + plot_h,
        "label_y": top + plot_h + 18,
        "bars": shapes,
        "grid": grid,
    }


def hbar_chart(
    bars: Sequence[tuple[str, float, str]], *, width: int = 720, top_value: float | None = None
) -> dict[str, Any]:
    """The geometry of a horizontal bar chart (one row per bar, its label on the left and
    its value at the end); *top_value* fixes the scale (100 for percentages)."""
    label_w, value_w, row_h = 220, 70, 26
    plot_w = width - label_w - value_w
    high = top_value or _nice_top(max((b[1] for b in bars), default=0))
    rows = []
    for index, (label, value, shown) in enumerate(bars):
        y = index * row_h
        w = plot_w * min(value, high) / high
        rows.append(
            {
                "label": label,
                "shown": shown,
                "y": y + 4,
                "h": row_h - 8,
                "ty": y + row_h / 2 + 5,
                "w": round(w, 1),
                "vx": round(label_w + w + 6, 1),
            }
        )
    return {
        "width": width,
        "height": max(row_h, row_h * len(bars)),
        "x": label_w,
        "label_x": label_w - 8,
        "rows": rows,
    }


def _decimal(text: str, comma: bool) -> str:
    return text.replace(".", ",") if comma else text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


# -- the page -------------------------------------------------------------------------------


def add_routes(console: Console, app: web.Application) -> None:
    """Put the statistics page and its CSV exports on *app*."""
    from .app import PREFIX

    page = functools.partial(console.page_route, "stats")

    app.router.add_get(f"{PREFIX}/stats", page(_stats))
    app.router.add_get(f"{PREFIX}/stats/{{name}}.csv", page(_csv))


def _period(console: Console, request: web.Request) -> Period:
    from .app import _Refused

    text = request.query.get("days", str(PERIODS[0]))
    if text not in {str(days) for days in PERIODS}:
        raise _Refused(400, N_("Choose a period of 7, 30 or 90 days."))
    return Period.ending_today(int(text), console.store.now_ms(), console.settings.zone)


async def _figures(console: Console, period: Period) -> dict[str, Any]:
    """Everything the page and the exports show, in the site's days and hours."""
    zone = console.settings.zone
    counts = await console._db(console.store.event_counts, period.since_ms, period.until_ms)
    devices = await console._db(console.store.device_availability, period.since_ms, period.until_ms)
    days = _by_day(counts["checkins"], period, zone)
    denies: dict[str, int] = {}
    for _source, reason, count in counts["denies"]:
        denies[reason] = denies.get(reason, 0) + count
    alarms: dict[tuple[str, str], int] = {}
    for _device, door, alarm, count in counts["alarms"]:
        alarms[(door, alarm)] = alarms.get((door, alarm), 0) + count
    return {
        "days": days,
        "weeks": _by_week(days),
        "hours_checkins": _by_hour(counts["checkins"], zone),
        "hours_entries": _by_hour(counts["entries"], zone),
        "denies": sorted(denies.items(), key=lambda kv: (-kv[1], kv[0])),
        "alarms": sorted(alarms.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])),
        "devices": devices,
    }


def _percent(device: dict[str, Any]) -> float | None:
    if not device["quarters"]:
        return None
    return round(100 * min(device["heard"], device["quarters"]) / device["quarters"], 1)


def _reason(code: str, _: Callable[[str], str]) -> str:
    return reason_label(code, _) if code else _(NO_REASON)


async def _stats(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/stats?days=7|30|90: the charts and their tables."""
    period = _period(console, request)
    figures = await _figures(console, period)
    _ = translations(console._lang(request)).gettext
    days = figures["days"]
    every = 1 if period.days <= 14 else 7
    per_day = bar_chart(
        [(d.isoformat(), n, str(n)) for d, n in days.items()],
        label_every=every,
    )
    for bar in per_day["bars"]:  # under the axis: the day of the month, shorter
        bar["tick"] = bar["tick"][5:]
    weeks = figures["weeks"]
    per_week = bar_chart([(m.isoformat(), n, str(n)) for m, n in weeks.items()])
    hours = [
        (f"{h:02d}:00", figures["hours_entries"][h], str(figures["hours_entries"][h]))
        for h in range(24)
    ]
    peak = bar_chart(hours, label_every=3)
    denies = [(_reason(code, _), n, str(n)) for code, n in figures["denies"]]
    alarm_rows = [
        {"door": door, "alarm": alarm_label(code, _), "count": n}
        for (door, code), n in figures["alarms"]
    ]
    per_door: dict[str, int] = {}
    for row in alarm_rows:
        per_door[row["door"]] = per_door.get(row["door"], 0) + row["count"]
    comma = console._lang(request) == "fr"  # 86,4 % in French
    devices = []
    for device in figures["devices"]:
        percent = _percent(device)
        text = "–" if percent is None else f"{_number(percent)} %"
        devices.append({**device, "percent": percent, "percent_text": _decimal(text, comma)})
    availability = [
        (f"{d['door']} ({d['device_id']})", d["percent"] or 0.0, d["percent_text"]) for d in devices
    ]
    total = sum(days.values())
    busiest = max(days.items(), key=lambda kv: (kv[1], kv[0])) if total else None
    peak_hour = max(range(24), key=lambda h: (figures["hours_entries"][h], -h))
    return console.render(
        request,
        "stats.html",
        operator=operator,
        current="stats",
        period=period,
        periods=PERIODS,
        time_zone=console.settings.time_zone,
        total=total,
        busiest=busiest,
        peak_hour=peak_hour if figures["hours_entries"][peak_hour] else None,
        entries_total=sum(figures["hours_entries"]),
        per_day=per_day,
        per_week=per_week,
        week_rows=[
            {"monday": m, "count": n, "partial": m < period.first or m + _SIX > period.last}
            for m, n in weeks.items()
        ],
        day_rows=list(days.items()),
        peak=peak,
        hour_rows=[
            (f"{h:02d}:00", figures["hours_entries"][h], figures["hours_checkins"][h])
            for h in range(24)
        ],
        denies=hbar_chart(denies),
        deny_total=sum(n for _code, n in figures["denies"]),
        alarms=hbar_chart([(door, n, str(n)) for door, n in per_door.items()]),
        alarm_rows=alarm_rows,
        availability=hbar_chart(availability, top_value=100),
        devices=devices,
    )


_SIX = dt.timedelta(days=6)


async def _csv(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/stats/{name}.csv?days=: one statistic as CSV (UTF-8, a header row)."""
    from .app import _Refused

    name = request.match_info["name"]
    if name not in CSV_NAMES:
        raise _Refused(404, N_("No such statistic."))
    period = _period(console, request)
    figures = await _figures(console, period)
    _ = translations(console._lang(request)).gettext
    out = io.StringIO()
    writer = csv.writer(out)
    for row in _csv_rows(name, figures, _):
        writer.writerow(row)
    filename = f"{name}-{period.first}-{period.last}.csv"
    return web.Response(
        body=out.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _cell(text: object) -> str:
    """A text cell a spreadsheet will not run as a formula (door names come from devices)."""
    value = str(text)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv_rows(
    name: str, figures: dict[str, Any], _: Callable[[str], str]
) -> Iterable[Sequence[object]]:
    """The rows of the CSV *name*, its header first (column names stay English: a file a
    program reads; the words of a reason or an alarm are in the operator's language)."""
    if name == "visits-per-day":
        yield ("date", "check_ins")
        for day, count in figures["days"].items():
            yield (day.isoformat(), count)
    elif name == "visits-per-week":
        yield ("week", "week_start", "check_ins")
        for monday, count in figures["weeks"].items():
            year, week, _day = monday.isocalendar()
            yield (f"{year}-W{week:02d}", monday.isoformat(), count)
    elif name == "peak-hours":
        yield ("hour", "entries", "check_ins")
        for hour in range(24):
            yield (
                f"{hour:02d}:00",
                figures["hours_entries"][hour],
                figures["hours_checkins"][hour],
            )
    elif name == "denies":
        yield ("reason_code", "reason", "count")
        for code, count in figures["denies"]:
            yield (_cell(code), _cell(_reason(code, _)), count)
    elif name == "alarms":
        yield ("door", "alarm_code", "alarm", "count")
        for (door, code), count in figures["alarms"]:
            yield (_cell(door), _cell(code), _cell(alarm_label(code, _)), count)
    else:  # availability
        yield ("device_id", "door", "enabled", "available_percent", "quarters_heard", "quarters")
        for device in figures["devices"]:
            percent = _percent(device)
            yield (
                _cell(device["device_id"]),
                _cell(device["door"]),
                int(device["enabled"]),
                "" if percent is None else percent,
                device["heard"],
                device["quarters"],
            )
