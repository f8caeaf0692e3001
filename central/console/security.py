"""The security office's pages: live events (pushed with Server-Sent Events), alarms to
acknowledge, the devices and their technical log (docs/console.md).

The handlers are functions of the :class:`~central.console.app.Console` they serve,
wrapped by its ``_page`` / ``_change`` checks; :func:`add_routes` puts them on the app.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import io
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import BadRequest, NotFound, Unauthorized
from ..store.monitor import EVENT_GROUPS, event_in_group
from ..store.operators import ADMIN_ROLE
from .i18n import N_, msg, translations
from .words import alarm_label, describe

if TYPE_CHECKING:
    from .app import Console

__all__ = ["add_routes"]

PREFIX_LIVE = "/console/live"
#: Rows the live page shows (server-rendered, and kept by the page's script).
LIVE_ROWS = 50
#: A device heard from within this long is online.
ONLINE_WITHIN_MS = 5 * 60 * 1000
#: How often an open stream checks that its session is still valid, and sends a comment.
SESSION_CHECK_S = 30.0
#: The technical log's default period, and the alarms page's history.
DEFAULT_DAYS = 7

DONE = {
    "acknowledged": N_("Alarm acknowledged."),
}
#: The live page's filter groups (:data:`central.store.monitor.EVENT_GROUPS`) in words.
GROUP_LABELS = {
    "access": N_("Entries and refusals"),
    "visitors": N_("Visitors and passes"),
    "alarms": N_("Alarms"),
    "guards": N_("Guards"),
    "doors": N_("Doors and modes"),
    "system": N_("Door controllers"),
}
#: A self-test check's status (``SelfTestReport`` results).
STEP_LABELS = {"pass": N_("passed"), "fail": N_("failed"), "skipped": N_("skipped")}
STATE_LABELS = {
    "online": N_("online"),
    "offline": N_("offline"),
    "never": N_("never heard from"),
    "disabled": N_("disabled"),
}


def add_routes(console: Console, app: web.Application) -> None:
    """Put the security pages' routes on *app*."""
    from .app import PREFIX

    page = console.page_route

    r = app.router
    r.add_get(f"{PREFIX}/live", page("live", _live))
    r.add_get(f"{PREFIX}/live/stream", functools.partial(_stream, console))
    r.add_get(f"{PREFIX}/alarms", page("alarms", _alarms))
    r.add_post(f"{PREFIX}/alarms/acknowledge", console.change_route("alarms", _ack))
    r.add_get(f"{PREFIX}/devices", page("devices", _devices))
    r.add_get(f"{PREFIX}/devices/log.csv", page("devices", _log_csv))
    r.add_get(f"{PREFIX}/devices/{{device_id}}", page("devices", _device))
    app.on_shutdown.append(console.live.close)


# -- helpers ----------------------------------------------------------------------------


def _when(console: Console, ms: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, console.settings.zone).strftime(fmt)


def _cell(text: object) -> str:
    """A CSV cell a spreadsheet will not run: text a device sent that starts like a formula
    (``=``, ``+``, ``-``, ``@``) gets a leading ``'``."""
    value = str(text)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _gettext(request: web.Request, console: Console) -> Callable[[str], str]:
    return translations(console._lang(request)).gettext


def _row(console: Console, event: dict[str, Any], _: Callable[[str], str]) -> dict[str, Any]:
    text, warn = describe(event, _)
    return {
        "key": event["key"],
        "time": _when(console, event["at_ms"]),
        "door": event["door"],
        "text": text,
        "warn": warn,
    }


def _ago(ms: int | None, now_ms: int) -> dict[str, Any] | None:
    """A duration as a message: seconds, minutes, hours or days."""
    if ms is None:
        return None
    seconds = max(0, ms) // 1000
    if seconds < 120:
        return {"text": N_("%(n)s s"), "args": {"n": seconds}}
    if seconds < 7200:
        return {"text": N_("%(n)s min"), "args": {"n": seconds // 60}}
    if seconds < 2 * 86400:
        return {"text": N_("%(n)s h"), "args": {"n": seconds // 3600}}
    return {"text": N_("%(n)s days"), "args": {"n": seconds // 86400}}


# -- live events ------------------------------------------------------------------------


def _live_filter(request: web.Request) -> tuple[str | None, str | None]:
    """The live page's ``?door=&group=`` (empty: all); an unknown group is a 400."""
    door = request.query.get("door", "").strip() or None
    group = request.query.get("group", "").strip() or None
    if group is not None and group not in EVENT_GROUPS:
        raise web.HTTPBadRequest(text=f"group: must be one of {list(EVENT_GROUPS)}\n")
    if door is not None and len(door) > 64:
        raise web.HTTPBadRequest(text="door: at most 64 characters\n")
    return door, group


def _matches(event: dict[str, Any], door: str | None, group: str | None) -> bool:
    """The stream's filter: what ``store.live_events(door=, group=)`` selects."""
    return (door is None or event.get("device_door") == door) and event_in_group(
        str(event.get("type") or ""), group
    )


async def _live(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/live[?door=&group=]: the latest events, newest first, of one door or
    group of events when chosen; the page's script adds the new ones as they arrive
    (without it: the refresh link)."""
    door, group = _live_filter(request)
    events = await console._db(console.store.live_events, limit=LIVE_ROWS, door=door, group=group)
    overview = await console._db(console.store.devices_overview)
    _ = _gettext(request, console)
    query = urlencode({k: v for k, v in (("door", door), ("group", group)) if v})
    return console.render(
        request,
        "live.html",
        operator=operator,
        current="live",
        rows=[_row(console, event, _) for event in events],
        max_rows=LIVE_ROWS,
        doors=sorted({d["door"] for d in overview if d.get("door")} | ({door} if door else set())),
        groups=[(name, GROUP_LABELS[name]) for name in EVENT_GROUPS],
        door=door or "",
        group=group or "",
        refresh=PREFIX_LIVE + (f"?{query}" if query else ""),
        stream=f"{PREFIX_LIVE}/stream" + (f"?{query}" if query else ""),
    )


async def _stream(console: Console, request: web.Request) -> web.StreamResponse:
    """GET /console/live/stream[?door=&group=]: ``text/event-stream`` of the new events
    (``event: live``, data ``{"key", "time", "door", "text", "warn"}`` in the session's
    language), of one door or group of events when chosen."""
    from .app import _PAGE, _Refused, _ToLogin

    door, group = _live_filter(request)

    try:
        operator = await console._operator(request)
    except _ToLogin:
        return web.Response(status=401, text="log in first\n")
    except _Refused:
        return web.Response(status=403, text="refused\n")
    if not _PAGE["live"].visible_to(operator["role"]):
        return web.Response(status=403, text="your role may not open this page\n")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    _ = _gettext(request, console)
    session = request.cookies.get("portier_console", "")
    await response.write(b"retry: 3000\n\n")
    with console.live.subscribe() as queue:
        while True:
            try:
                batch = await asyncio.wait_for(queue.get(), SESSION_CHECK_S)
            except TimeoutError:
                try:  # a stream lives no longer than its session
                    await console._db(console.store.session_operator, session, None)
                except Unauthorized:
                    break
                batch = []
            if batch is None:  # the server stops, or this page fell behind: it reconnects
                break
            try:
                if not batch:
                    await response.write(b": keepalive\n\n")
                for event in batch:
                    if not _matches(event, door, group):
                        continue
                    data = json.dumps(_row(console, event, _), ensure_ascii=False)
                    await response.write(
                        f"event: live\nid: {event['key']}\ndata: {data}\n\n".encode()
                    )
            except (ConnectionResetError, ConnectionError):
                break
    return response


# -- alarms ---------------------------------------------------------------------------


async def _alarms(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/alarms: the alarms the devices report now (since when, acknowledged
    or not), the form to acknowledge one, and the alarm events of the last days."""
    done = request.query.get("done")
    return await _alarms_page(
        console,
        request,
        operator,
        message={"text": DONE[done], "args": {}} if done in DONE else None,
    )


async def _alarms_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    error: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
) -> web.Response:
    _ = _gettext(request, console)
    now = console.store.now_ms()
    alarms = await console._db(console.store.active_alarms)
    history = await console._db(
        console.store.technical_log, since_ms=now - DEFAULT_DAYS * 86_400_000
    )
    rows = [
        {
            **alarm,
            "label": alarm_label(alarm["code"], _),
            "since_text": _when(console, alarm["since_ms"], "%Y-%m-%d %H:%M"),
            "ack_text": _when(console, alarm["ack"]["at_ms"], "%Y-%m-%d %H:%M")
            if alarm["ack"]
            else "",
        }
        for alarm in alarms
    ]
    events = [
        {
            "time": _when(console, entry["at_ms"], "%Y-%m-%d %H:%M"),
            "door": entry["door"],
            "device_id": entry["device_id"],
            "text": _log_words(entry, _),
            "detail": entry["detail"],
        }
        for entry in reversed(history)
        if entry["kind"] in ("alarm.raised", "alarm.cleared", "sync.alarm", "alarm.console_ack")
    ][:100]
    return console.render(
        request,
        "alarms.html",
        status=status,
        operator=operator,
        current="alarms",
        alarms=rows,
        history=events,
        may_ack=operator["role"] == ADMIN_ROLE,
        error=error,
        message=message,
        days=DEFAULT_DAYS,
    )


def _log_words(entry: dict[str, Any], _: Callable[[str], str]) -> str:
    """A technical log entry in words."""
    kind = entry["kind"]
    if kind == "selftest":
        return _("Self-test passed") if entry["code"] == "ok" else _("Self-test failed")
    if kind == "alarm.console_ack":
        return _("Acknowledged in the console: %(alarm)s") % {
            "alarm": alarm_label(entry["code"], _)
        }
    event = {
        "type": kind,
        "door": entry["door"],
        "payload": entry["payload"],
        "name": "",
    }
    return describe(event, _)[0]


async def _ack(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/alarms/acknowledge: a security officer acknowledges an alarm with a
    note (``store.acknowledge_alarm``, and its audit row in the same transaction)."""
    from .app import PREFIX, _Refused

    if operator["role"] != ADMIN_ROLE:
        raise _Refused(403, N_("Only a security officer may acknowledge an alarm."))
    device_id = str(form.get("device_id", ""))
    code = str(form.get("code", ""))
    note = str(form.get("note", "")).strip()
    try:
        since_ms = int(str(form.get("since_ms", "")))
    except ValueError:
        since_ms = -1
    if not note:
        return await _alarms_page(
            console,
            request,
            operator,
            status=400,
            error=msg(N_("Say in a note what was done about the alarm.")),
        )
    try:
        await console._recorded(
            request,
            operator,
            "POST /admin/alarms/acknowledge",
            lambda ack: {
                "device_id": ack["device_id"],
                "code": ack["code"],
                "since_ms": ack["since_ms"],
                "note": ack["note"],
            },
            200,
            console.store.acknowledge_alarm,
            device_id,
            code,
            since_ms,
            operator["name"],
            note[:500],
        )
    except NotFound:
        return await _alarms_page(
            console,
            request,
            operator,
            status=404,
            error=msg(N_("This alarm is over or unknown: it cannot be acknowledged.")),
        )
    except BadRequest:
        return await _alarms_page(
            console,
            request,
            operator,
            status=400,
            error=msg(N_("This alarm is acknowledged already.")),
        )
    raise web.HTTPSeeOther(f"{PREFIX}/alarms?done=acknowledged")


# -- devices ----------------------------------------------------------------------------


def _device_row(console: Console, device: dict[str, Any], now: int) -> dict[str, Any]:
    beat = device["heartbeat"]
    contact = device["last_contact_ms"]
    if not device["enabled"]:
        state = "disabled"
    elif contact is None:
        state = "never"
    else:
        state = "online" if now - contact <= ONLINE_WITHIN_MS else "offline"
    backlog = beat.get("backlog") if isinstance(beat.get("backlog"), dict) else {}
    last_sync = beat.get("last_sync_ms")
    offset = beat.get("clock_offset_ms")
    versions = beat.get("versions") if isinstance(beat.get("versions"), dict) else {}
    alarms = beat.get("alarms") if isinstance(beat.get("alarms"), list) else []
    return {
        **device,
        "state": state,
        "state_label": STATE_LABELS[state],
        "contact_text": _when(console, contact, "%Y-%m-%d %H:%M"),
        "contact_ago": _ago(None if contact is None else now - contact, now),
        "pending": backlog.get("pending"),
        "dead": backlog.get("dead_letter"),
        "staleness": _ago(now - last_sync, now) if isinstance(last_sync, int) else None,
        "offset_ms": offset if isinstance(offset, int | float) else None,
        "version": ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        "alarm_count": len(alarms) if device["enabled"] else 0,
        "selftest_text": _when(console, device["selftest"]["received_at_ms"], "%Y-%m-%d %H:%M")
        if device["selftest"]
        else "",
    }


async def _devices(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/devices: every device's state, and the technical log's CSV export."""
    now = console.store.now_ms()
    devices = await console._db(console.store.devices_overview)
    today = dt.datetime.fromtimestamp(now / 1000, console.settings.zone).date()
    return console.render(
        request,
        "devices.html",
        operator=operator,
        current="devices",
        devices=[_device_row(console, d, now) for d in devices],
        log_from=(today - dt.timedelta(days=DEFAULT_DAYS)).isoformat(),
        log_to=today.isoformat(),
        time_zone=console.settings.time_zone,
    )


async def _device(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/devices/{id}: one device, its self-test reports and its technical log
    (alarms over time) of the last days."""
    from .app import _Refused

    device_id = request.match_info["device_id"]
    now = console.store.now_ms()
    devices = await console._db(console.store.devices_overview)
    device = next((d for d in devices if d["device_id"] == device_id), None)
    if device is None:
        raise _Refused(404, N_("No such device."))
    reports = await console._db(console.store.selftest_reports, device_id)
    log = await console._db(
        console.store.technical_log,
        device_id=device_id,
        since_ms=now - 30 * 86_400_000,
    )
    _ = _gettext(request, console)
    return console.render(
        request,
        "device.html",
        operator=operator,
        current="devices",
        device=_device_row(console, device, now),
        reports=[
            {**report, "time": _when(console, report["received_at_ms"], "%Y-%m-%d %H:%M")}
            for report in reports
        ],
        log=[
            {
                "time": _when(console, entry["at_ms"], "%Y-%m-%d %H:%M"),
                "text": _log_words(entry, _),
                "detail": entry["detail"],
                "warn": entry["kind"] == "alarm.raised"
                or (entry["kind"] == "sync.alarm" and str(entry["code"]).endswith("raised"))
                or (entry["kind"] == "selftest" and entry["code"] == "failed"),
            }
            for entry in reversed(log)
        ],
        log_query=urlencode({"device": device_id}),
        step_labels=STEP_LABELS,
    )


async def _log_csv(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/devices/log.csv?device=&from=&to= (site dates, ``to`` included): the
    technical log of one device (or all) over the period, as CSV."""
    from .app import _Refused

    zone = console.settings.zone
    now = console.store.now_ms()
    today = dt.datetime.fromtimestamp(now / 1000, zone).date()
    try:
        start = dt.date.fromisoformat(
            request.query.get("from") or (today - dt.timedelta(days=DEFAULT_DAYS)).isoformat()
        )
        end = dt.date.fromisoformat(request.query.get("to") or today.isoformat())
    except ValueError:
        raise _Refused(400, N_("Give the period as two dates.")) from None
    if end < start:
        raise _Refused(400, N_("The end of the period must not come before its start."))
    since = int(dt.datetime.combine(start, dt.time(), zone).timestamp() * 1000)
    until = int(dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).timestamp() * 1000)
    device_id = request.query.get("device") or None
    log = await console._db(
        console.store.technical_log, device_id=device_id, since_ms=since, until_ms=until
    )
    _ = _gettext(request, console)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["time", "time_ms", "device_id", "door", "kind", "code", "what", "detail", "payload"]
    )
    for entry in log:
        writer.writerow(
            [
                _when(console, entry["at_ms"]),
                entry["at_ms"],
                _cell(entry["device_id"]),
                _cell(entry["door"]),
                _cell(entry["kind"]),
                _cell(entry["code"]),
                _cell(_log_words(entry, _)),
                _cell(entry["detail"]),
                json.dumps(entry["payload"], ensure_ascii=False, sort_keys=True),
            ]
        )
    label = "".join(c for c in (device_id or "all") if c.isalnum() or c in "._-")[:64]
    name = f"technical-log-{label}-{start}-{end}.csv"
    return web.Response(
        body=out.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
