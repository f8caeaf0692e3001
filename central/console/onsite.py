"""Who is on site now, per door and per zone, and the muster list across all doors, ready to
print on A4 (docs/console.md, "Who is on site").

The central works it out from the check-ins and check-outs the doors uploaded
(:meth:`central.store.CentralStore.on_site`), the way each door keeps its own list
(``edge_agent/onsite.py``): what a door has not uploaded yet (it is offline) is not here, and
the page says when it was worked out. A visitor whose invitation has ended is still on the
list until their door checks them out (it does so by itself when its clock is trusted): the
page marks them.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .i18n import N_

if TYPE_CHECKING:
    from .app import Console

__all__ = ["add_routes"]

#: How a visitor was checked in (``by`` of ``visitor.checked_in``).
HOW_LABELS = {"visitor": N_("at the kiosk")}
GUARD = N_("by a guard")


def add_routes(console: Console, app: web.Application) -> None:
    """Put the on-site page and the muster list on *app*."""
    from .app import PREFIX

    page = functools.partial(console.page_route, "onsite")

    app.router.add_get(f"{PREFIX}/onsite", page(_onsite))
    app.router.add_get(f"{PREFIX}/onsite/muster", page(_muster))


def _when(console: Console, ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, console.settings.zone).strftime("%Y-%m-%d %H:%M")


async def _entries(console: Console) -> tuple[list[dict[str, Any]], str]:
    now_ms = console.store.now_ms()
    entries = await console._db(console.store.on_site)
    rows = [
        {
            **entry,
            "entered_text": _when(console, entry["entered_ms"]),
            "until_text": _when(console, entry["not_after"] * 1000)
            if entry["not_after"] is not None
            else "",
            "ended": entry["not_after"] is not None and entry["not_after"] * 1000 <= now_ms,
            "how_label": GUARD
            if entry["how"].startswith("guard:")
            else HOW_LABELS.get(entry["how"], ""),
        }
        for entry in entries
    ]
    return rows, _when(console, now_ms)


async def _onsite(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/onsite?zone=: the visitors on site, by door (one zone's doors, or all),
    and the number on site in each zone."""
    rows, now_text = await _entries(console)
    zone = request.query.get("zone", "")
    doors: dict[str, list[dict[str, Any]]] = {}
    zones: dict[str, dict[str, Any]] = {}
    for row in rows:
        for name in row["zones"]:
            summary = zones.setdefault(name, {"doors": set(), "people": set()})
            summary["doors"].add(row["door"])
            summary["people"].add(row["invitation_id"])
        if not zone or zone in row["zones"]:
            doors.setdefault(row["door"], []).append(row)
    people = {row["invitation_id"] for row in rows}
    return console.render(
        request,
        "onsite.html",
        operator=operator,
        current="onsite",
        doors=sorted(doors.items()),
        zones=[
            {"name": name, "doors": sorted(z["doors"]), "count": len(z["people"])}
            for name, z in sorted(zones.items())
        ],
        zone=zone,
        count=len(people),
        now_text=now_text,
    )


async def _muster(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/onsite/muster: every visitor on site, by name, once (with each door
    where they are checked in), for a roll call: a page that prints on A4."""
    rows, now_text = await _entries(console)
    people: dict[str, dict[str, Any]] = {}
    for row in rows:  # oldest entry first: a person's first door is where they came in
        person = people.get(row["invitation_id"])
        if person is None:
            people[row["invitation_id"]] = {**row, "doors": [row["door"]]}
        elif row["door"] not in person["doors"]:
            person["doors"].append(row["door"])
    listed = sorted(people.values(), key=lambda p: (p["visitor"].casefold(), p["entered_ms"]))
    return console.render(
        request,
        "muster.html",
        operator=operator,
        current="onsite",
        people=listed,
        now_text=now_text,
        site=console.settings.site,
    )
