"""The Pass Office's Event packs page (issue #14): make an event pack for a kiosk that will
run away from the network, and merge back the journal of one that did not come back online
(docs/console.md "Event packs", docs/sync.md "Event packs").

The pack is made by ``store.create_event_pack`` (signed by the central, encrypted to the
chosen device) and downloaded as a file; the merge is ``store.merge_journal`` (the checks of
an upload). Both are audited under the admin API's action names, in the change's
transaction (``Console._recorded``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import BadRequest, Forbidden, NotConfigured, NotFound
from .i18n import N_, msg
from .refusals import REASONS, refusal_message

if TYPE_CHECKING:
    from .app import Console

__all__ = ["add_routes"]

#: Largest journal export the page takes (bigger ones: ``portier-central event-pack merge``).
MAX_EXPORT_BYTES = 32 * 1024 * 1024
_IDS = re.compile(r"[\s,;]+")


def add_routes(console: Console, app: web.Application) -> None:
    """Put the Event packs page's routes on *app*."""
    from .app import PREFIX

    page = console.page_route

    r = app.router
    r.add_get(f"{PREFIX}/event-packs", page("eventpacks", _packs))
    r.add_post(f"{PREFIX}/event-packs", console.change_route("eventpacks", _make))
    r.add_post(f"{PREFIX}/event-packs/merge", console.change_route("eventpacks", _merge))


def _when(console: Console, seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, console.settings.zone).strftime("%Y-%m-%d %H:%M")


async def _packs(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/event-packs."""
    return await _page_of(console, request, operator)


async def _page_of(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
    merged: dict[str, Any] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    packs = await console._db(console.store.list_event_packs)
    devices = await console._db(console.store.pack_devices)
    now = console.store.now_ms() // 1000
    start = now - now % 3600 + 3600
    defaults = {
        "device_id": devices[0]["device_id"] if devices else "",
        "name": "",
        "starts": console._input_value(start),
        "ends": console._input_value(start + 8 * 3600),
        "invitations": "",
        "language": "en",
        "welcome": "",
    }
    rows = [
        {
            **pack,
            "starts_text": _when(console, pack["starts"]),
            "ends_text": _when(console, pack["ends"]),
            "made_text": _when(console, pack["created_ms"] // 1000),
        }
        for pack in packs
    ]
    return console.render(
        request,
        "eventpacks.html",
        status=status,
        operator=operator,
        current="eventpacks",
        devices=devices,
        packs=rows,
        values={**defaults, **(values or {})},
        errors=errors or [],
        merged=merged,
        time_zone=console.settings.time_zone,
        languages_names={"en": "English", "fr": "Français"},
    )


async def _make(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/event-packs: make the pack and answer it as a file to download."""

    fields = ("device_id", "name", "starts", "ends", "invitations", "language", "welcome")
    values = {key: str(form.get(key, "")).strip() for key in fields}
    errors = []
    starts = console._parse_local(values["starts"])
    ends = console._parse_local(values["ends"])
    if not values["device_id"]:
        errors.append(msg(N_("Choose the kiosk the pack is for.")))
    if not values["name"]:
        errors.append(msg(N_("Give the event's name.")))
    if starts is None or ends is None:
        errors.append(msg(N_("Give the event's start and end.")))
    wanted = [i for i in _IDS.split(values["invitations"]) if i]
    if errors:
        return await _page_of(console, request, operator, status=400, errors=errors, values=values)
    body = {
        "device_id": values["device_id"],
        "event": {"name": values["name"], "starts": starts, "ends": ends},
        "kiosk": {"language": values["language"], "welcome": values["welcome"]},
    }
    if wanted:
        body["invitations"] = wanted
    try:
        made = await console._recorded(
            request,
            operator,
            "POST /admin/event-packs",
            lambda pack: {
                "id": pack["pack_id"],
                "device_id": pack["device_id"],
                "name": pack["name"],
                "serial": pack["serial"],
                "guests": pack["guests"],
            },
            201,
            functools.partial(console.store.create_event_pack, by=operator["name"]),
            body,
        )
    except (BadRequest, NotFound, NotConfigured) as exc:
        return await _page_of(
            console,
            request,
            operator,
            status=exc.status,
            errors=[refusal_message(exc)],
            values=values,
        )
    return web.Response(
        body=made["file"].encode("utf-8"),
        content_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{made["pack_id"]}.portier-pack"',
            "Cache-Control": "no-store",
        },
    )


async def _merge(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/event-packs/merge: a journal export (multipart file) merged back."""

    upload = form.get("journal")
    raw = getattr(upload, "file", None)
    data = raw.read(MAX_EXPORT_BYTES + 1) if raw is not None else b""
    try:
        if len(data) > MAX_EXPORT_BYTES:
            raise ValueError
        export = json.loads(data)
    except ValueError:
        return await _page_of(
            console, request, operator, status=400, errors=[msg(REASONS["malformed"])]
        )
    try:
        result = await console._recorded(
            request,
            operator,
            "POST /admin/event-packs/merge",
            lambda merged: {
                k: merged[k]
                for k in ("device_id", "events", "accepted", "duplicate", "rejected", "retry_later")
            },
            200,
            console.store.merge_journal,
            export,
        )
    except (BadRequest, NotFound, Forbidden) as exc:
        return await _page_of(
            console, request, operator, status=exc.status, errors=[refusal_message(exc)]
        )
    return await _page_of(console, request, operator, merged=result)
