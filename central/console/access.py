"""The security office's access pages: badges and guards, access levels (schedules of doors
and zones, the site's holidays), and a person's rights at a door explained (docs/console.md).

Changes go through the store calls of the admin API and are audited with its action names
(``POST /admin/badges``, ``POST /admin/badges/{uid}/revoke``, ``PUT|DELETE
/admin/schedules/{schedule_id}``, ``PUT|DELETE /admin/holidays/{date}``), each with its
audit row in one transaction (``Console._recorded``).

A guard's PIN is typed into the badge form, hashed here at once (scrypt,
:func:`portier_common.pins.hash_pin`, off the event loop) and only the hash is stored and
sent to the doors with a guard console; the PIN is never stored, logged or shown, and neither
is its hash (``store.list_badges`` leaves it out). Editing a guard's badge without a new PIN
keeps the hash it has.

The rights explanation (``/console/rights``) is computed by :func:`central.rights.explain`,
i.e. by the doors' own decision function (:mod:`portier_common.access`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from portier_common.pins import MAX_PIN_DIGITS, MIN_PIN_DIGITS, hash_pin

from ..errors import BadRequest, CentralError, NotFound
from ..rights import explain
from ..settings import NAME_RE
from ..store.validate import normalize_uid
from .i18n import N_, msg, translations
from .refusals import refusal_message
from .words import REASONS

if TYPE_CHECKING:
    from .app import Console

__all__ = ["add_routes"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = (
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
)
BADGE_DONE = {
    "saved": N_("Badge of %(name)s saved: the doors get it at their next sync."),
    "revoked": N_("Badge revoked: the doors refuse it from their next sync."),
}
ACCESS_DONE = {
    "schedule": N_("Schedule of %(name)s saved: the doors get it at their next sync."),
    "schedule_deleted": N_("Schedule of %(name)s removed."),
    "holiday": N_("Holiday of %(name)s saved: every schedule is closed that day."),
    "holiday_deleted": N_("Holiday of %(name)s removed."),
}
#: Why the door refuses, in a sentence (``%(...)s`` from the explanation's facts).
WHY_REFUSED = {
    "revoked": N_("The badge is revoked or disabled."),
    "expired": N_("The badge's validity ended on %(until)s."),
    "not_yet_valid": N_("The badge is valid from %(from)s only."),
    "wrong_door": N_("The badge names neither this door nor a zone this door is in."),
    "lockdown": N_("The door is in lockdown."),
    "outside_schedule": N_("It is outside the hours of schedule %(schedule)s."),
    "holiday": N_("The schedule is closed for a holiday: %(holiday)s."),
    "uid_not_allowed": N_(
        "This door does not take UID-only badges (they can be copied): its settings "
        "do not accept them."
    ),
    "kind_not_accepted": N_("This door does not take this kind of badge."),
}
_RULE_RE = re.compile(r"\s*([A-Za-z, -]+?)\s+(\d{1,2}:\d\d)\s*-\s*(\d{1,2}:\d\d)\s*\Z")
_TIME_RE = re.compile(r"(?:[01]?[0-9]|2[0-3]):[0-5][0-9]\Z")


def add_routes(console: Console, app: web.Application) -> None:
    """Put the access pages' routes on *app*."""
    from .app import PREFIX

    page = console.page_route
    change = console.change_route

    r = app.router
    r.add_get(f"{PREFIX}/badges", page("badges", _badges))
    r.add_post(f"{PREFIX}/badges", change("badges", _save_badge))
    r.add_post(f"{PREFIX}/badges/{{uid}}/revoke", change("badges", _revoke_badge))
    r.add_get(f"{PREFIX}/access", page("access", _access))
    r.add_post(f"{PREFIX}/access/schedules", change("access", _save_schedule))
    r.add_post(f"{PREFIX}/access/schedules/{{schedule_id}}/delete", change("access", _del_schedule))
    r.add_post(f"{PREFIX}/access/holidays", change("access", _save_holiday))
    r.add_post(f"{PREFIX}/access/holidays/{{date}}/delete", change("access", _del_holiday))
    r.add_get(f"{PREFIX}/rights", page("rights", _rights))


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


def _rules_text(rules: list[Mapping[str, Any]]) -> str:
    """Rules as the form writes them: one ``mon-fri 08:00-18:00`` a line."""
    lines = []
    for rule in rules:
        days = [DAYS.index(day) for day in rule["days"]]
        runs: list[list[int]] = []
        for day in sorted(days):
            if runs and day == runs[-1][-1] + 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        spec = ",".join(
            DAYS[run[0]] if len(run) == 1 else f"{DAYS[run[0]]}-{DAYS[run[-1]]}" for run in runs
        )
        lines.append(f"{spec} {rule['start']}-{rule['end']}")
    return "\n".join(lines)


def parse_rules(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The schedule's rules from the form's lines (``mon-fri 08:00-18:00``, ``sat,sun
    10:00-12:00``, a range may wrap: ``fri-mon``); returns (rules, errors): each error
    names its line."""
    rules: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _RULE_RE.match(line.lower())
        if match is None:
            errors.append(
                msg(
                    N_("Line %(n)s: write the days, then the hours, like mon-fri 08:00-18:00."),
                    n=n,
                )
            )
            continue
        days: list[str] = []
        bad_day = None
        for part in match.group(1).replace(" ", "").split(","):
            first, _, last = part.partition("-")
            if first not in DAYS or (last and last not in DAYS):
                bad_day = part
                break
            i = DAYS.index(first)
            j = DAYS.index(last) if last else i
            span = range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)]
            days.extend(DAYS[d] for d in span)
        if bad_day is not None:
            errors.append(
                msg(
                    N_("Line %(n)s: %(day)s is not a day: use mon, tue, wed, thu, fri, sat, sun."),
                    n=n,
                    day=bad_day,
                )
            )
            continue
        start, end = (t.zfill(5) for t in match.group(2, 3))
        if not _TIME_RE.match(start) or not (_TIME_RE.match(end) or end == "24:00"):
            errors.append(
                msg(
                    N_("Line %(n)s: a time is 00:00 to 23:59 (24:00 for the end of the day)."),
                    n=n,
                )
            )
            continue
        if end <= start:
            errors.append(
                msg(
                    N_(
                        "Line %(n)s: the end must come after the start. For hours past "
                        "midnight, write two lines (22:00-24:00, then 00:00-06:00 the next day)."
                    ),
                    n=n,
                )
            )
            continue
        rules.append({"days": list(dict.fromkeys(days)), "start": start, "end": end})
    return rules, errors


# -- badges -------------------------------------------------------------------------------


_BADGE_FIELDS = (
    "uid",
    "holder",
    "kind",
    "doors",
    "zones",
    "not_before",
    "not_after",
    "schedule",
    "guard_id",
)


async def _badges(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/badges[?q=][&edit=UID]: search the badges, add or edit one."""
    done = request.query.get("done", "")
    message = (
        msg(BADGE_DONE[done], name=request.query.get("name", "")) if done in BADGE_DONE else None
    )
    values = None
    edit = request.query.get("edit", "")
    if edit:
        try:
            badge = await console._db(console.store.get_badge, edit)
        except (BadRequest, NotFound):
            from .app import _Refused

            raise _Refused(404, N_("No such badge.")) from None
        values = _badge_values(console, badge)
    return await _badges_page(console, request, operator, message=message, values=values)


def _badge_values(console: Console, badge: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "uid": badge["uid"].upper(),
        "holder": badge["holder"],
        "kind": badge["kind"],
        "doors": ", ".join(badge.get("doors", [])),
        "zones": ", ".join(badge.get("zones", [])),
        "not_before": console._input_value(badge["not_before"]) if badge.get("not_before") else "",
        "not_after": console._input_value(badge["not_after"]) if badge.get("not_after") else "",
        "schedule": badge.get("schedule", ""),
        "guard": badge.get("role") == "guard",
        "guard_id": badge.get("guard_id", ""),
        "enabled": badge.get("enabled", True) and not badge.get("revoked"),
        "has_pin": badge.get("has_pin", False),
        "editing": True,
    }


async def _badges_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    values: Mapping[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    message: Mapping[str, Any] | None = None,
) -> web.Response:
    search = request.query.get("q", "").strip()
    badges = await console._db(console.store.list_badges, search or None)
    schedules = await console._db(console.store.list_schedules)
    rows = [
        {
            "schedule": "",
            "role": "",
            "guard_id": "",
            **badge,
            "uid_text": badge["uid"].upper(),
            "from_text": console._local(badge["not_before"]) if badge.get("not_before") else "",
            "until_text": console._local(badge["not_after"]) if badge.get("not_after") else "",
            "state": "revoked"
            if badge["revoked"]
            else ("disabled" if not badge["enabled"] else "active"),
        }
        for badge in badges
    ]
    defaults = {
        "uid": "",
        "holder": "",
        "kind": "ntag424",
        "doors": "",
        "zones": "",
        "not_before": "",
        "not_after": "",
        "schedule": "",
        "guard": False,
        "guard_id": "",
        "enabled": True,
        "has_pin": False,
        "editing": False,
    }
    return console.render(
        request,
        "badges.html",
        status=status,
        operator=operator,
        current="badges",
        badges=rows,
        search=search,
        schedules=[s["id"] for s in schedules],
        values={**defaults, **(values or {})},
        errors=errors or [],
        message=message,
        time_zone=console.settings.time_zone,
        pin_digits=(MIN_PIN_DIGITS, MAX_PIN_DIGITS),
    )


async def _save_badge(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/badges: add or replace a badge (``store.put_badge``, as
    ``POST /admin/badges``), its PIN (a guard's, or card + PIN) hashed here."""
    values: dict[str, Any] = {key: str(form.get(key, "")).strip() for key in _BADGE_FIELDS}
    values["guard"] = form.get("guard") == "on"
    values["clear_pin"] = form.get("clear_pin") == "on"
    values["enabled"] = form.get("enabled") == "on"
    values["editing"] = form.get("editing") == "1"
    pin = str(form.get("pin", "")).strip()
    errors: list[dict[str, Any]] = []
    body: dict[str, Any] = {"site": console.settings.site}
    try:
        body["uid"] = normalize_uid(values["uid"])
    except BadRequest:
        errors.append(msg(N_("The UID is 4, 7 or 10 bytes in hexadecimal, like 04A1B2C3D4E5F6.")))
    if "uid" in body and not values["editing"]:
        # Adding must not replace someone's badge (and a guard's PIN) by a typo: editing does.
        existing = await console._db(console.store.list_badges, body["uid"])
        if any(b["uid"] == body["uid"] for b in existing):
            holder = next(b["holder"] for b in existing if b["uid"] == body["uid"])
            errors.append(
                msg(
                    N_(
                        "A badge with UID %(uid)s exists already (%(holder)s): edit it from "
                        "the list."
                    ),
                    uid=body["uid"].upper(),
                    holder=holder,
                )
            )
    if not values["holder"]:
        errors.append(msg(N_("Give the holder's name.")))
    body["holder"] = values["holder"]
    body["kind"] = values["kind"] if values["kind"] in ("ntag424", "uid") else "ntag424"
    body["doors"], body["zones"] = _names(values["doors"]), _names(values["zones"])
    if not body["doors"] and not body["zones"]:
        errors.append(msg(N_("Give at least one door or one zone.")))
    for name in [*body["doors"], *body["zones"]]:
        if not NAME_RE.match(name) and name != "*":
            errors.append(
                msg(
                    N_(
                        "%(name)s is not a door or zone name: 1 to 64 letters, digits and "
                        ". _ : - (no spaces)."
                    ),
                    name=name,
                )
            )
    if "*" in body["zones"]:
        errors.append(msg(N_("* (every door) goes in the doors, not the zones.")))
    for field in ("not_before", "not_after"):
        if values[field]:
            parsed = console._parse_local(values[field])
            if parsed is None:
                errors.append(msg(N_("Give the validity as a date and a time.")))
            body[field] = parsed
        else:
            body[field] = None
    if body["not_before"] and body["not_after"] and body["not_after"] <= body["not_before"]:
        errors.append(msg(N_("The end of the validity must come after its start.")))
    schedules = {s["id"] for s in await console._db(console.store.list_schedules)}
    if values["schedule"]:
        if values["schedule"] not in schedules:
            errors.append(
                msg(
                    N_("No schedule is set for %(name)s: set it under Access levels first."),
                    name=values["schedule"],
                )
            )
        body["schedule"] = values["schedule"]
    body["enabled"] = values["enabled"]
    if values["guard"]:
        body["role"] = "guard"
        if values["guard_id"]:
            if not NAME_RE.match(values["guard_id"]):
                errors.append(
                    msg(N_("A guard id is 1 to 64 letters, digits and . _ : - (no spaces)."))
                )
            body["guard_id"] = values["guard_id"]
    elif values["guard_id"]:
        errors.append(msg(N_("A guard id is for a guard's badge only: tick Guard.")))
    # Any badge may have a PIN: a guard's console login, anyone's card + PIN wall readers.
    if pin:
        if not (pin.isascii() and pin.isdigit() and MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS):
            errors.append(
                msg(
                    N_("A PIN is %(low)s to %(high)s digits."),
                    low=MIN_PIN_DIGITS,
                    high=MAX_PIN_DIGITS,
                )
            )
    elif "uid" in body and not (values["clear_pin"] and not values["guard"]):
        # Saving without typing a PIN keeps the one set (the form never holds it).
        kept = await console._db(console.store.badge_pin_hash, body["uid"])
        if kept is None and values["guard"]:
            errors.append(
                msg(
                    N_("A guard needs a PIN of %(low)s to %(high)s digits."),
                    low=MIN_PIN_DIGITS,
                    high=MAX_PIN_DIGITS,
                )
            )
        if kept is not None:
            body["pin_hash"] = kept
    if errors:
        return await _badges_page(
            console, request, operator, status=400, values=values, errors=errors
        )
    if pin:
        # scrypt costs 32 MiB and a tenth of a second: not on the event loop.
        body["pin_hash"] = await asyncio.get_running_loop().run_in_executor(None, hash_pin, pin)
    try:
        saved = await console._recorded(
            request,
            operator,
            "POST /admin/badges",
            lambda badge: {"uid": badge["uid"], "role": badge.get("role")},
            200,
            console.store.put_badge,
            body,
        )
    except CentralError as exc:
        return await _badges_page(
            console,
            request,
            operator,
            status=400,
            values=values,
            errors=[refusal_message(exc)],
        )
    query = urlencode({"done": "saved", "name": saved["holder"]})
    raise web.HTTPSeeOther(f"/console/badges?{query}")


async def _revoke_badge(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/badges/{uid}/revoke (``store.revoke_badge``)."""
    from .app import _Refused

    uid = request.match_info["uid"]
    try:
        await console._recorded(
            request,
            operator,
            "POST /admin/badges/{uid}/revoke",
            lambda done: {"uid": done["id"]},
            200,
            console.store.revoke_badge,
            uid,
        )
    except (NotFound, BadRequest):
        raise _Refused(404, N_("No such badge.")) from None
    raise web.HTTPSeeOther("/console/badges?done=revoked")


# -- access levels: schedules and holidays -------------------------------------------------------


async def _access(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/access[?edit=ID]: the schedules of doors and zones, the holidays."""
    done = request.query.get("done", "")
    message = (
        msg(ACCESS_DONE[done], name=request.query.get("name", "")) if done in ACCESS_DONE else None
    )
    values = None
    edit = request.query.get("edit", "")
    if edit:
        found = [s for s in await console._db(console.store.list_schedules) if s["id"] == edit]
        if found:
            values = {
                "schedule_id": edit,
                "timezone": found[0]["timezone"],
                "rules": _rules_text(found[0]["rules"]),
            }
    return await _access_page(console, request, operator, message=message, values=values)


async def _access_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    values: Mapping[str, Any] | None = None,
    holiday: Mapping[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    message: Mapping[str, Any] | None = None,
) -> web.Response:
    from .app import ONLINE_WITHIN_MS

    schedules = await console._db(console.store.list_schedules)
    holidays = await console._db(console.store.list_holidays)
    overview = await console._db(console.store.door_modes, online_within_ms=ONLINE_WITHIN_MS)
    badges = await console._db(console.store.list_badges)
    doors = [d["door"] for d in overview["doors"]]
    zones = [z["zone"] for z in overview["zones"]]
    users: dict[str, int] = {}
    for badge in badges:
        if badge.get("schedule"):
            users[badge["schedule"]] = users.get(badge["schedule"], 0) + 1
    rows = [
        {
            **schedule,
            "what": "door"
            if schedule["id"] in doors
            else ("zone" if schedule["id"] in zones else ""),
            "rules_text": _rules_text(schedule["rules"]).splitlines(),
            "badges": users.get(schedule["id"], 0),
        }
        for schedule in schedules
    ]
    holiday_rows = [
        {**h, "weekday": DAY_NAMES[dt.date.fromisoformat(h["date"]).weekday()]} for h in holidays
    ]
    return console.render(
        request,
        "access.html",
        status=status,
        operator=operator,
        current="access",
        schedules=rows,
        holidays=holiday_rows,
        doors=doors,
        zones=zones,
        values={
            "schedule_id": "",
            "timezone": console.settings.time_zone,
            "rules": "mon-fri 08:00-18:00",
            **(values or {}),
        },
        holiday={"date": "", "name": "", **(holiday or {})},
        errors=errors or [],
        message=message,
    )


async def _save_schedule(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/access/schedules: the schedule of a door or zone
    (``store.put_schedule``, as ``PUT /admin/schedules/{schedule_id}``)."""
    values = {
        "schedule_id": str(form.get("schedule_id", "")).strip(),
        "timezone": str(form.get("timezone", "")).strip(),
        "rules": str(form.get("rules", "")),
    }
    errors: list[dict[str, Any]] = []
    schedule_id = values["schedule_id"]
    if not NAME_RE.match(schedule_id):
        errors.append(
            msg(
                N_(
                    "Give the door or zone the schedule is for (1 to 64 letters, digits and "
                    ". _ : -)."
                )
            )
        )
    try:
        ZoneInfo(values["timezone"])
    except (ValueError, ZoneInfoNotFoundError):
        errors.append(
            msg(
                N_("%(zone)s is not a time zone: write it like Europe/Brussels."),
                zone=values["timezone"],
            )
        )
    rules, rule_errors = parse_rules(values["rules"])
    errors.extend(rule_errors)
    if not rules and not rule_errors:
        errors.append(msg(N_("Give at least one line of hours, like mon-fri 08:00-18:00.")))
    if errors:
        return await _access_page(
            console, request, operator, status=400, values=values, errors=errors
        )
    body = {"site": console.settings.site, "timezone": values["timezone"], "rules": rules}
    try:
        await console._recorded(
            request,
            operator,
            "PUT /admin/schedules/{schedule_id}",
            lambda _: {"schedule_id": schedule_id, "id": schedule_id},
            200,
            console.store.put_schedule,
            schedule_id,
            body,
        )
    except CentralError as exc:
        return await _access_page(
            console,
            request,
            operator,
            status=400,
            values=values,
            errors=[refusal_message(exc)],
        )
    raise web.HTTPSeeOther(
        f"/console/access?{urlencode({'done': 'schedule', 'name': schedule_id})}"
    )


async def _del_schedule(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/access/schedules/{id}/delete (``store.delete_schedule``)."""
    from .app import _Refused

    schedule_id = request.match_info["schedule_id"]
    try:
        await console._recorded(
            request,
            operator,
            "DELETE /admin/schedules/{schedule_id}",
            lambda _: {"schedule_id": schedule_id},
            204,
            console.store.delete_schedule,
            schedule_id,
        )
    except (NotFound, BadRequest):
        raise _Refused(404, N_("No such schedule.")) from None
    query = urlencode({"done": "schedule_deleted", "name": schedule_id})
    raise web.HTTPSeeOther(f"/console/access?{query}")


async def _save_holiday(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/access/holidays: a holiday (``store.put_holiday``, as
    ``PUT /admin/holidays/{date}``)."""
    holiday = {
        "date": str(form.get("date", "")).strip(),
        "name": " ".join(str(form.get("name", "")).split()),
    }
    errors = []
    try:
        dt.date.fromisoformat(holiday["date"])
    except ValueError:
        errors.append(msg(N_("Give the holiday's date.")))
    if not holiday["name"]:
        errors.append(msg(N_("Give the holiday's name.")))
    elif len(holiday["name"]) > 80:
        errors.append(msg(N_("A holiday's name is at most 80 characters.")))
    if errors:
        return await _access_page(
            console, request, operator, status=400, holiday=holiday, errors=errors
        )
    day = holiday["date"]
    try:
        await console._recorded(
            request,
            operator,
            "PUT /admin/holidays/{date}",
            lambda done: {"date": done["date"], "name": done["name"]},
            200,
            console.store.put_holiday,
            day,
            {"site": console.settings.site, "name": holiday["name"]},
        )
    except CentralError as exc:
        return await _access_page(
            console,
            request,
            operator,
            status=400,
            holiday=holiday,
            errors=[refusal_message(exc)],
        )
    raise web.HTTPSeeOther(f"/console/access?{urlencode({'done': 'holiday', 'name': day})}")


async def _del_holiday(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/access/holidays/{date}/delete (``store.delete_holiday``)."""
    from .app import _Refused

    day = request.match_info["date"]
    try:
        await console._recorded(
            request,
            operator,
            "DELETE /admin/holidays/{date}",
            lambda done: {"date": done["date"], "name": done["name"]},
            204,
            console.store.delete_holiday,
            day,
        )
    except (NotFound, BadRequest):
        raise _Refused(404, N_("No such holiday.")) from None
    raise web.HTTPSeeOther(f"/console/access?{urlencode({'done': 'holiday_deleted', 'name': day})}")


# -- rights explained ---------------------------------------------------------------------------


async def _rights(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/rights?uid=&door=: may this badge open this door now, when this week,
    and why, by the doors' own decision."""
    from .app import MODE_LABELS, ONLINE_WITHIN_MS

    badges = await console._db(console.store.list_badges)
    overview = await console._db(console.store.door_modes, online_within_ms=ONLINE_WITHIN_MS)
    doors = [d["door"] for d in overview["doors"]]
    uid = request.query.get("uid", "").strip()
    door = request.query.get("door", "").strip()
    context: dict[str, Any] = {
        "badges": [(b["uid"], f"{b['holder']} ({b['uid'].upper()})") for b in badges],
        "doors": doors,
        "uid": uid,
        "door": door,
        "result": None,
        "errors": [],
    }
    status = 200
    if uid and door:
        try:
            facts = await console._db(console.store.rights_facts, uid, door)
        except NotFound:
            context["errors"] = [msg(N_("No such badge."))]
            status = 404
        except BadRequest:
            context["errors"] = [msg(N_("Choose a badge and a door from the lists."))]
            status = 400
        else:
            now_s = console.store.now_ms() // 1000
            gettext = translations(console._lang(request)).gettext
            modes = {mode: gettext(label) for mode, label in MODE_LABELS.items()}
            context["result"] = _explained(
                console, facts, explain(facts, now_s), modes, now_s, gettext
            )
    return console.render(
        request, "rights.html", status=status, operator=operator, current="rights", **context
    )


def _hhmm(console: Console, seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, console.settings.zone).strftime("%H:%M")


def _explained(
    console: Console,
    facts: Mapping[str, Any],
    result: Mapping[str, Any],
    mode_labels: Mapping[str, str],
    now_s: int,
    gettext: Callable[[str], str],
) -> dict[str, Any]:
    """The explanation as messages: the verdict now, why, and this week day by day."""
    badge = facts["badge"]
    now = result["now"]
    args = {
        "holder": badge["holder"],
        "door": facts["door"],
        "from": console._local(badge["not_before"]) if badge.get("not_before") else "",
        "until": console._local(badge["not_after"]) if badge.get("not_after") else "",
        "schedule": badge.get("schedule") or "",
        "holiday": now.detail.partition(": ")[2],
    }
    if now.granted:
        verdict = msg(N_("%(holder)s may enter at %(door)s now."), **args)
    else:
        verdict = msg(N_("%(holder)s may not enter at %(door)s now."), **args)
    reason = None
    if not now.granted:
        text = WHY_REFUSED.get(now.reason.value)
        if now.reason.value == "outside_schedule" and not result["schedule_known"]:
            text = N_(
                "The badge's schedule %(schedule)s is not set: the door refuses it "
                "(it fails closed)."
            )
        reason = msg(text, **args) if text else msg(REASONS.get(now.reason.value, now.reason.value))
    later = None
    if not now.granted:
        upcoming = [span for span in result["spans"] if span.granted and span.end > now_s]
        if upcoming:
            moment = dt.datetime.fromtimestamp(max(upcoming[0].start, now_s), console.settings.zone)
            later = msg(
                N_("Next time this week: %(day)s %(date)s at %(time)s."),
                day=gettext(DAY_NAMES[moment.weekday()]),
                date=moment.date().isoformat(),
                time=moment.strftime("%H:%M"),
            )
        else:
            later = msg(N_("Not at all for the rest of this week."))
    why: list[dict[str, Any]] = []
    via = result["via"]
    if via["door"]:
        why.append(msg(N_("The badge names this door."), **args))
    for zone in via["zones"]:
        why.append(
            msg(N_("The badge names zone %(zone)s, and %(door)s is in it."), zone=zone, **args)
        )
    if not via["door"] and not via["zones"]:
        why.append(
            msg(
                N_(
                    "The badge names doors %(doors)s and zones %(zones)s; %(door)s is in "
                    "zones %(door_zones)s."
                ),
                doors=", ".join(badge.get("doors", [])) or "-",
                zones=", ".join(badge.get("zones", [])) or "-",
                door_zones=", ".join(facts["zones"]) or "-",
                **args,
            )
        )
    if facts["revoked"]:
        why.append(msg(N_("The badge is revoked.")))
    elif not badge.get("enabled", True):
        why.append(msg(N_("The badge is disabled.")))
    if args["from"] and args["until"]:
        why.append(msg(N_("Valid from %(from)s until %(until)s."), **args))
    elif args["until"]:
        why.append(msg(N_("Valid until %(until)s."), **args))
    elif args["from"]:
        why.append(msg(N_("Valid from %(from)s, with no end."), **args))
    else:
        why.append(msg(N_("No validity limit.")))
    schedule = facts["schedules"].get(badge.get("schedule") or "")
    if schedule is not None:
        why.append(
            msg(
                N_("Hours: schedule %(schedule)s (%(zone)s): %(rules)s."),
                zone=schedule["timezone"],
                rules="; ".join(_rules_text(schedule["rules"]).splitlines()),
                **args,
            )
        )
    elif badge.get("schedule"):
        why.append(msg(N_("Hours: schedule %(schedule)s, which is not set."), **args))
    else:
        why.append(msg(N_("No schedule: at any hour.")))
    for holiday in result["holidays"]:
        why.append(
            msg(
                N_("Holiday this week: %(date)s, %(name)s."),
                date=holiday["date"],
                name=holiday["name"],
            )
        )
    settings = facts.get("door_settings") or {}
    mode_set = settings.get("mode_set") or {}
    mode = result["mode"]
    if mode_set.get("by"):
        why.append(
            msg(
                N_("Door mode: %(mode)s, set by %(by)s: %(reason)s."),
                mode=mode_labels.get(mode, mode),
                by=mode_set["by"],
                reason=mode_set.get("reason", ""),
            )
        )
    else:
        why.append(msg(N_("Door mode: %(mode)s."), mode=mode_labels.get(mode, mode)))
    if badge.get("kind") == "uid":
        why.append(
            msg(N_("A UID-only badge: it opens only doors whose settings accept UID badges."))
        )
    if not facts["door_known"]:
        why.append(
            msg(
                N_(
                    "No device is enrolled at %(door)s: this is what a door of that name "
                    "would decide."
                ),
                **args,
            )
        )
    # This week, day by day (site time).
    days = []
    start = dt.datetime.fromtimestamp(result["week_start"], console.settings.zone)
    for n in range(7):
        day_start = int((start + dt.timedelta(days=n)).timestamp())
        day_end = int((start + dt.timedelta(days=n + 1)).timestamp())
        opened, closed = [], []
        for span in result["spans"]:
            a, b = max(span.start, day_start), min(span.end, day_end)
            if a >= b:
                continue
            if span.granted:
                opened.append(
                    f"{_hhmm(console, a)}–{'24:00' if b == day_end else _hhmm(console, b)}"
                )
            else:
                closed.append(span.reason)
        words = ""
        if not opened and closed:
            most = max(set(closed), key=closed.count)
            words = REASONS.get(most, most)
        date = (start + dt.timedelta(days=n)).date()
        days.append(
            {
                "name": DAY_NAMES[n],
                "date": date.isoformat(),
                "today": day_start <= now_s < day_end,
                "open": opened,
                "closed": words,
            }
        )
    return {
        "granted": now.granted,
        "verdict": verdict,
        "reason": reason,
        "later": later,
        "why": why,
        "days": days,
        "code": now.reason.value,
    }
