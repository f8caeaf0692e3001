"""The Pass Office's Visitors page: pre-register a visitor, the invitations with their
status, revoke one with a reason (docs/console.md).

The handlers are functions of the :class:`~central.console.app.Console` they serve,
wrapped by its ``_page`` / ``_change`` checks; :func:`add_routes` puts them on the app.
Every change goes through the store method the admin API calls, with its audit row in the
same transaction (``Console._recorded``).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import BadRequest, CentralError, NotFound
from ..store.visits import MAX_OCCURRENCES, invitation_ids
from . import csvimport
from .i18n import LANGUAGES, N_, msg
from .refusals import refusal_message

if TYPE_CHECKING:
    from .app import Console

__all__ = ["STATUS_LABELS", "add_routes"]

#: An invitation's status (``central.store.console.invitation_status``) in words.
STATUS_LABELS = {
    "valid": N_("Valid"),
    "upcoming": N_("Not valid yet"),
    "expired": N_("Expired"),
    "revoked": N_("Revoked"),
    "used": N_("Used"),
    "replaced": N_("Replaced (extended)"),
    "pending_approval": N_("Awaiting approval"),
    "refused": N_("Refused"),
}
#: How invitations made together came to be (``central.store.visits.GROUP_KINDS``).
GROUP_LABELS = {
    "group": N_("Group"),
    "recurring": N_("Recurring"),
    "import": N_("CSV import"),
}
#: What the page says after a change (``?done=``).
DONE = {
    "created": N_("Invitation created for %(name)s."),
    "revoked": N_("Invitation revoked."),
    "extended": N_(
        "The invitation of %(name)s now ends %(until)s: give the visitor the new QR code "
        "(the old one is revoked)."
    ),
    "group": N_("%(count)s invitations created: %(name)s."),
    "imported": N_("%(count)s invitations imported: %(name)s."),
    "pending": N_(
        "The invitation of %(name)s awaits a security officer's approval: no code is sent "
        "until then."
    ),
    "resent": N_("The invitation is sent again to %(name)s."),
    "group_revoked": N_("%(count)s invitations of %(name)s revoked."),
    "group_extended": N_(
        "%(count)s invitations of %(name)s now end %(until)s: give each visitor the new QR "
        "code (the old ones are revoked)."
    ),
}

#: The pre-registration form's fields, in the form's order.
FIELDS = (
    "visitor",
    "host",
    "host_email",
    "visitor_email",
    "not_before",
    "expires",
    "doors",
    "zones",
    "use",
    "lang",
)


def add_routes(console: Console, app: web.Application) -> None:
    """Put the Visitors page's routes on *app*."""
    from .app import PREFIX

    page = functools.partial(console.page_route, "visitors")
    change = functools.partial(console.change_route, "visitors")

    r = app.router
    r.add_get(f"{PREFIX}/visitors", page(_visitors))
    r.add_post(f"{PREFIX}/visitors", change(_create))
    r.add_post(f"{PREFIX}/visitors/{{invitation_id}}/revoke", change(_revoke))
    r.add_post(f"{PREFIX}/visitors/{{invitation_id}}/extend", change(_extend))
    r.add_get(f"{PREFIX}/visitors/recurring", page(_recurring_form))
    r.add_post(f"{PREFIX}/visitors/recurring", change(_create_recurring))
    r.add_get(f"{PREFIX}/visitors/group", page(_group_form))
    r.add_post(f"{PREFIX}/visitors/group", change(_create_group))
    r.add_get(f"{PREFIX}/visitors/import", page(_import_form))
    r.add_post(f"{PREFIX}/visitors/import", change(_import_preview))
    r.add_post(f"{PREFIX}/visitors/import/confirm", change(_import_confirm))


# -- helpers ----------------------------------------------------------------------------


def _split_names(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


def _grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list's entries: an invitation alone (``group`` None), or the invitations made
    together, in their group's place (its newest), oldest day first."""
    entries: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = row.get("group")
        if group is None:
            entries.append({"group": None, "rows": [row]})
        elif group["id"] in groups:
            groups[group["id"]]["rows"].append(row)
        else:
            groups[group["id"]] = {"group": group, "rows": [row]}
            entries.append(groups[group["id"]])
    for entry in groups.values():
        entry["rows"].sort(key=lambda r: (r["not_before"], r["visitor"]))
    return entries


def _session_hash(request: web.Request) -> str:
    """The console session a CSV draft belongs to (its cookie, hashed: the database
    keeps no session in clear)."""
    from .app import SESSION_COOKIE

    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hashlib.sha256(b"portier-import-draft\0" + cookie.encode()).hexdigest()


def _refused(status: int, message: str) -> Exception:
    from .app import _Refused

    return _Refused(status, message)


# -- the page ---------------------------------------------------------------------------


async def _visitors(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/visitors: pre-register a visitor; the invitations and their status."""
    done = request.query.get("done")
    message = None
    if done in DONE:
        message = msg(
            DONE[done],
            name=request.query.get("name", ""),
            until=request.query.get("until", ""),
            count=request.query.get("count", ""),
        )
    return await _page_view(console, request, operator, message=message)


async def _page_view(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    values: Mapping[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    message: Mapping[str, Any] | None = None,
) -> web.Response:
    invitations = await console._db(console.store.list_invitations)
    now_s = console.store.now_ms() // 1000
    rows = [
        {
            **invitation,
            "from_text": console._local(invitation["not_before"]),
            "until_text": console._local(invitation["expires"]),
            "status_label": STATUS_LABELS[invitation["status"]],
            "revocable": invitation["status"] in ("valid", "upcoming"),
            "issued": invitation["status"] in ("valid", "upcoming"),
            "extendable": invitation["status"] in ("valid", "upcoming", "expired"),
            "extend_value": console._input_value(
                max(invitation["expires"], now_s - now_s % 3600) + 86400
            ),
        }
        for invitation in invitations
    ]
    defaults = {
        "visitor": "",
        "host": "",
        "host_email": "",
        "visitor_email": "",
        "not_before": console._input_value(now_s - now_s % 3600),
        "expires": console._input_value(now_s - now_s % 3600 + 9 * 3600),
        "doors": "",
        "zones": "",
        "use": "multiple",
        "lang": console._lang(request),
    }
    return console.render(
        request,
        "visitors.html",
        status=status,
        operator=operator,
        current="visitors",
        invitations=rows,
        entries=_grouped(rows),
        group_labels=GROUP_LABELS,
        values={**defaults, **(values or {})},
        errors=errors or [],
        message=message,
        time_zone=console.settings.time_zone,
        languages_names={"en": "English", "fr": "Français"},
    )


# -- changes ----------------------------------------------------------------------------


async def _create(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors: mint an invitation (``store.create_invitation``)."""
    from .app import PREFIX

    values = {key: str(form.get(key, "")).strip() for key in FIELDS}
    errors: list[dict[str, Any]] = []
    body: dict[str, Any] = {"site": console.settings.site}
    if not values["visitor"]:
        errors.append(msg(N_("Give the visitor's name.")))
    body["visitor"] = values["visitor"]
    body["host"] = values["host"]
    if values["host_email"]:
        body["host_email"] = values["host_email"]
    if values["visitor_email"]:
        body["visitor_email"] = values["visitor_email"]
    not_before = console._parse_local(values["not_before"])
    expires = console._parse_local(values["expires"])
    if not_before is None or expires is None:
        errors.append(msg(N_("Give the validity as a date and a time.")))
    elif expires <= not_before:
        errors.append(msg(N_("The end of the validity must come after its start.")))
    else:
        body["not_before"], body["expires"] = not_before, expires
    body["doors"] = _split_names(values["doors"])
    body["zones"] = _split_names(values["zones"])
    if not body["doors"] and not body["zones"]:
        errors.append(msg(N_("Give at least one door or one zone.")))
    body["single_use"] = values["use"] == "single"
    body["lang"] = values["lang"] if values["lang"] in LANGUAGES else LANGUAGES[0]
    if not errors:
        try:
            created = await console._recorded(
                request,
                operator,
                "POST /admin/invitations",
                lambda made: {"id": made["invitation"]["id"]},
                201,
                functools.partial(console.store.create_invitation, by=operator["name"]),
                body,
            )
        except CentralError as exc:
            errors.append(refusal_message(exc))
            return await _page_view(
                console, request, operator, status=400, values=values, errors=errors
            )
        invitation = created["invitation"]
        console.wake_notifier()  # the visitor's e-mail
        done = "pending" if invitation.get("approval") == "pending" else "created"
        query = urlencode({"done": done, "name": invitation["visitor"]})
        raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")
    return await _page_view(console, request, operator, status=400, values=values, errors=errors)


async def _revoke(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/{id}/revoke: revoke an invitation, with a reason."""
    from .app import PREFIX

    invitation_id = request.match_info["invitation_id"]
    reason = str(form.get("reason", "")).strip()
    if not reason:
        return await _page_view(
            console,
            request,
            operator,
            status=400,
            errors=[msg(N_("Give a reason for the revocation."))],
        )
    try:
        await console._recorded(
            request,
            operator,
            "POST /admin/invitations/{invitation_id}/revoke",
            lambda _: {
                "invitation_id": invitation_id,
                "id": invitation_id,
                "reason": reason[:500],
            },
            200,
            console.store.revoke_invitation,
            invitation_id,
        )
    except NotFound:
        raise _refused(404, N_("No such invitation.")) from None
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?done=revoked")


async def _extend(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/{id}/extend: a new end (``store.extend_invitation``: a new
    invitation and token replace the old, revoked; as ``POST
    /admin/invitations/{invitation_id}/extend``)."""
    from .app import PREFIX

    invitation_id = request.match_info["invitation_id"]
    expires = console._parse_local(str(form.get("expires", "")))
    if expires is None:
        return await _page_view(
            console,
            request,
            operator,
            status=400,
            errors=[msg(N_("Give the new end as a date and a time."))],
        )
    try:
        done = await console._recorded(
            request,
            operator,
            "POST /admin/invitations/{invitation_id}/extend",
            lambda made: {
                "invitation_id": invitation_id,
                "id": made["id"],
                "replaced": made["replaced"],
            },
            201,
            functools.partial(console.store.extend_invitation, by=operator["name"]),
            invitation_id,
            {"expires": expires},
        )
    except NotFound:
        raise _refused(404, N_("No such invitation.")) from None
    except CentralError as exc:
        return await _page_view(
            console,
            request,
            operator,
            status=400,
            errors=[refusal_message(exc)],
        )
    invitation = done["invitation"]
    query = urlencode(
        {
            "done": "extended",
            "name": invitation["visitor"],
            "until": console._local(invitation["expires"]),
        }
    )
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")


# -- recurring visitors and groups ------------------------------------------------------

#: The week's days as the store names them, and in words.
WEEKDAYS = (
    ("mon", N_("Monday")),
    ("tue", N_("Tuesday")),
    ("wed", N_("Wednesday")),
    ("thu", N_("Thursday")),
    ("fri", N_("Friday")),
    ("sat", N_("Saturday")),
    ("sun", N_("Sunday")),
)
#: The fields a recurring visitor's and a group's forms share with the single one.
_SHARED_FIELDS = ("host", "host_email", "lang", "doors", "zones", "use")


def _shared(
    console: Console, request: web.Request, form: Any, errors: list[dict[str, Any]]
) -> tuple[dict[str, str], dict[str, Any]]:
    """The host, language, doors, zones and use of a form: its values (to show again)
    and the invitation fields they make; adds what is wrong to *errors*."""
    values = {key: str(form.get(key, "")).strip() for key in _SHARED_FIELDS}
    body: dict[str, Any] = {"site": console.settings.site, "host": values["host"]}
    if values["host_email"]:
        body["host_email"] = values["host_email"]
    body["doors"] = _split_names(values["doors"])
    body["zones"] = _split_names(values["zones"])
    if not body["doors"] and not body["zones"]:
        errors.append(msg(N_("Give at least one door or one zone.")))
    body["single_use"] = values["use"] == "single"
    body["lang"] = values["lang"] if values["lang"] in LANGUAGES else LANGUAGES[0]
    return values, body


def _series_defaults(console: Console, request: web.Request) -> dict[str, Any]:
    now = dt.datetime.fromtimestamp(console.store.now_ms() / 1000, console.settings.zone)
    now_s = console.store.now_ms() // 1000
    return {
        "visitor": "",
        "label": "",
        "names": "",
        "host": "",
        "host_email": "",
        "lang": console._lang(request),
        "doors": "",
        "zones": "",
        "use": "multiple",
        "first_day": now.date().isoformat(),
        "last_day": (now.date() + dt.timedelta(days=18)).isoformat(),
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "08:00",
        "end": "17:00",
        "not_before": console._input_value(now_s - now_s % 3600),
        "expires": console._input_value(now_s - now_s % 3600 + 9 * 3600),
    }


def _series_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    kind: str,
    *,
    status: int = 200,
    values: Mapping[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> web.Response:
    return console.render(
        request,
        f"visitors_{kind}.html",
        status=status,
        operator=operator,
        current="visitors",
        values={**_series_defaults(console, request), **(values or {})},
        errors=errors or [],
        weekdays=WEEKDAYS,
        max_days=MAX_OCCURRENCES,
        time_zone=console.settings.time_zone,
        languages_names={"en": "English", "fr": "Français"},
    )


async def _recurring_form(
    console: Console, request: web.Request, operator: dict[str, Any]
) -> web.Response:
    """GET /console/visitors/recurring: a visitor who comes on some days, the same hours."""
    return _series_page(console, request, operator, "recurring")


async def _create_recurring(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/recurring: one invitation per day
    (``store.create_recurring_invitations``, as ``POST /admin/invitations/recurring``)."""
    from .app import PREFIX

    errors: list[dict[str, Any]] = []
    values, body = _shared(console, request, form, errors)
    for key in ("visitor", "label", "first_day", "last_day", "start", "end"):
        values[key] = str(form.get(key, "")).strip()
    days = [day for day, _ in WEEKDAYS if day in form.getall("days", [])]
    if not values["visitor"]:
        errors.append(msg(N_("Give the visitor's name.")))
    try:
        first = dt.date.fromisoformat(values["first_day"])
        last = dt.date.fromisoformat(values["last_day"])
        start = dt.time.fromisoformat(values["start"])
        end = dt.time.fromisoformat(values["end"])
    except ValueError:
        errors.append(msg(N_("Give the days as dates and the hours as times.")))
    else:
        if end <= start:
            errors.append(msg(N_("The hours must end after they start, the same day.")))
        count = sum(
            1
            for n in range((last - first).days + 1)
            if WEEKDAYS[(first + dt.timedelta(days=n)).weekday()][0] in days
        )
        if last < first:
            errors.append(msg(N_("The last day must not come before the first.")))
        elif not days or count == 0:
            errors.append(msg(N_("None of the days chosen falls between the first and last.")))
        elif count > MAX_OCCURRENCES:
            errors.append(
                msg(
                    N_("That makes %(count)s days: %(max)s at most."),
                    count=count,
                    max=MAX_OCCURRENCES,
                )
            )
    shown = {**values, "days": days}
    if errors:
        return _series_page(
            console, request, operator, "recurring", status=400, values=shown, errors=errors
        )
    body.update(
        visitor=values["visitor"],
        first_day=values["first_day"],
        last_day=values["last_day"],
        days=days,
        start=values["start"],
        end=values["end"],
    )
    if values["label"]:
        body["label"] = values["label"]
    try:
        made = await console._recorded(
            request,
            operator,
            "POST /admin/invitations/recurring",
            lambda made: {"id": made["id"], **invitation_ids(made)},
            201,
            functools.partial(console.store.create_recurring_invitations, by=operator["name"]),
            body,
        )
    except CentralError as exc:
        errors.append(refusal_message(exc))
        return _series_page(
            console, request, operator, "recurring", status=400, values=shown, errors=errors
        )
    query = urlencode(
        {"done": "group", "count": len(made["invitations"]), "name": made["group"]["label"]}
    )
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")


async def _group_form(
    console: Console, request: web.Request, operator: dict[str, Any]
) -> web.Response:
    """GET /console/visitors/group: several visitors, one host, one validity."""
    return _series_page(console, request, operator, "group")


async def _create_group(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/group: one invitation per name, made together
    (``store.create_invitation_group``, as ``POST /admin/invitations/batch``)."""
    from .app import PREFIX

    errors: list[dict[str, Any]] = []
    values, body = _shared(console, request, form, errors)
    for key in ("label", "names", "not_before", "expires"):
        values[key] = str(form.get(key, "")).strip()
    names = [" ".join(line.split()) for line in values["names"].splitlines() if line.strip()]
    if not values["label"]:
        errors.append(msg(N_("Give the group a name.")))
    if not names:
        errors.append(msg(N_("Give the visitors' names, one a line.")))
    elif len(names) > csvimport.MAX_LINES:
        errors.append(
            msg(N_("%(count)s names: %(max)s at most."), count=len(names), max=csvimport.MAX_LINES)
        )
    not_before = console._parse_local(values["not_before"])
    expires = console._parse_local(values["expires"])
    if not_before is None or expires is None:
        errors.append(msg(N_("Give the validity as a date and a time.")))
    elif expires <= not_before:
        errors.append(msg(N_("The end of the validity must come after its start.")))
    if errors:
        return _series_page(
            console, request, operator, "group", status=400, values=values, errors=errors
        )
    group = {
        "kind": "group",
        "label": values["label"],
        "invitations": [
            {**body, "visitor": name, "not_before": not_before, "expires": expires}
            for name in names
        ],
    }
    try:
        made = await console._recorded(
            request,
            operator,
            "POST /admin/invitations/batch",
            lambda made: {"id": made["id"], **invitation_ids(made)},
            201,
            functools.partial(console.store.create_invitation_group, by=operator["name"]),
            group,
        )
    except CentralError as exc:
        errors.append(refusal_message(exc))
        return _series_page(
            console, request, operator, "group", status=400, values=values, errors=errors
        )
    query = urlencode({"done": "group", "count": len(names), "name": made["group"]["label"]})
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")


# -- CSV import -------------------------------------------------------------------------


def _import_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    label: str = "",
    errors: list[dict[str, Any]] | None = None,
    parsed: csvimport.Parsed | None = None,
    draft: Mapping[str, Any] | None = None,
) -> web.Response:
    lines = []
    for line in parsed.lines if parsed else []:
        good = not line.errors
        lines.append(
            {
                "number": line.number,
                "visitor": line.visitor,
                "host": line.host,
                "from_text": console._local(line.body["not_before"]) if good else line.from_text,
                "until_text": console._local(line.body["expires"]) if good else line.until_text,
                "doors": line.doors,
                "zones": line.zones,
                "single_use": line.single_use,
                "errors": line.errors,
            }
        )
    return console.render(
        request,
        "visitors_import.html",
        status=status,
        operator=operator,
        current="visitors",
        label=label,
        errors=errors or [],
        file_errors=parsed.errors if parsed else [],
        lines=lines,
        bad_lines=sum(1 for line in lines if line["errors"]),
        ok=bool(parsed and parsed.ok),
        draft=draft,
        columns=csvimport.COLUMNS,
        max_lines=csvimport.MAX_LINES,
        max_kb=csvimport.MAX_BYTES // 1024,
        time_zone=console.settings.time_zone,
    )


async def _import_form(
    console: Console, request: web.Request, operator: dict[str, Any]
) -> web.Response:
    """GET /console/visitors/import: upload a special event's guest list."""
    return _import_page(console, request, operator)


async def _read_lines(console: Console, request: web.Request, text: str) -> csvimport.Parsed:
    """*text* read line by line against the site's doors and zones, and each good line
    checked by the store as it would make it (nothing made)."""
    from .app import ONLINE_WITHIN_MS

    places = await console._db(console.store.door_modes, online_within_ms=ONLINE_WITHIN_MS)
    parsed = csvimport.parse(
        text,
        zone=console.settings.zone,
        doors={door["door"] for door in places["doors"]},
        zones={zone["zone"] for zone in places["zones"]},
        lang=console._lang(request),
        site=console.settings.site,
    )
    good = [line for line in parsed.lines if not line.errors]
    answers = await console._db(console.store.check_invitations, [ln.body for ln in good])
    for line, answer in zip(good, answers, strict=True):
        if answer is not None:
            line.errors.append(refusal_message(answer))
    return parsed


async def _import_preview(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/import: read the uploaded file, keep it for this session
    (``store.save_import_draft``) and show each line as it will be made, with its errors."""
    label = " ".join(str(form.get("label", "")).split())[:200]
    upload = form.get("file")
    errors: list[dict[str, Any]] = []
    if not label:
        errors.append(msg(N_("Give the event's name.")))
    data = upload.file.read(csvimport.MAX_BYTES + 1) if isinstance(upload, web.FileField) else b""
    if not data:
        errors.append(msg(N_("Choose the CSV file to import.")))
    elif len(data) > csvimport.MAX_BYTES:
        errors.append(msg(N_("The file is larger than %(kb)s KB."), kb=csvimport.MAX_BYTES // 1024))
    text = csvimport.decode(data) if data else None
    if data and len(data) <= csvimport.MAX_BYTES and text is None:
        errors.append(
            msg(N_("The file is not UTF-8 text: in the spreadsheet, save it as “CSV UTF-8”."))
        )
    if errors or text is None:
        return _import_page(console, request, operator, status=400, label=label, errors=errors)
    parsed = await _read_lines(console, request, text)
    draft = None
    if parsed.ok:
        draft = await console._db(
            console.store.save_import_draft, _session_hash(request), label, text
        )
    return _import_page(
        console,
        request,
        operator,
        status=200 if parsed.ok else 400,
        label=label,
        parsed=parsed,
        draft=draft,
    )


async def _import_confirm(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/import/confirm: make every line of this session's draft in
    ONE transaction with its audit row and the draft's removal (``POST
    /admin/invitations/batch``, ``"source": "csv"``); nothing if one line is refused."""
    from .app import PREFIX

    draft = await console._db(
        console.store.import_draft, str(form.get("draft", "")), _session_hash(request)
    )
    if draft is None or not hmac.compare_digest(draft["sha256"], str(form.get("sha256", ""))):
        return _import_page(
            console,
            request,
            operator,
            status=400,
            errors=[
                msg(
                    N_(
                        "This import is no longer waiting (too old, done already, or "
                        "another session's): upload the file again."
                    )
                )
            ],
        )
    parsed = await _read_lines(console, request, draft["text"])
    if not parsed.ok:  # the site changed since the preview (a door went away...)
        return _import_page(
            console, request, operator, status=400, label=draft["label"], parsed=parsed
        )
    group = {
        "kind": "import",
        "label": draft["label"],
        "invitations": [line.body for line in parsed.lines],
    }

    def make() -> dict[str, Any]:
        made: dict[str, Any] = console.store.create_invitation_group(group, by=operator["name"])
        console.store.drop_import_draft(draft["id"])
        return made

    try:
        made = await console._recorded(
            request,
            operator,
            "POST /admin/invitations/batch",
            lambda made: {
                "id": made["id"],
                **invitation_ids(made),
                "source": "csv",
                "sha256": draft["sha256"],
            },
            201,
            make,
        )
    except BadRequest as exc:
        return _import_page(
            console,
            request,
            operator,
            status=400,
            label=draft["label"],
            errors=[refusal_message(exc)],
        )
    query = urlencode(
        {"done": "imported", "count": len(made["invitations"]), "name": draft["label"]}
    )
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")
