"""The console's pages of the deny list and of the invitations it holds for approval, and the
invitation's PDF and e-mail resend of the Visitors page (docs/console.md).

Every change goes through the store call the admin API makes, recorded in the audit log
with the same action name (``Console._recorded``); the screening itself is in the store
(central/store/screening.py), so an invitation made here is screened like any other.

The handlers are functions of the :class:`~central.console.app.Console` they serve,
wrapped by its ``_page`` / ``_change`` checks; :func:`add_routes` puts them on the app.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import BadRequest, CentralError, Forbidden, NotFound, NotIssued
from ..invitations import pdf_response, render_pdf
from .i18n import N_, msg
from .refusals import refusal_message

if TYPE_CHECKING:
    from .app import Console

__all__ = ["DONE", "add_routes"]

#: What a redirect after a change says (``?done=``).
DONE = {
    "added": N_("%(name)s is on the deny list."),
    "removed": N_("%(name)s is off the deny list."),
    "approve": N_("The invitation of %(name)s is approved: the doors get it at their next sync."),
    "refuse": N_("The invitation of %(name)s is refused: it never reaches the doors."),
}
#: Why the console refuses an invitation's PDF or resend (``NotIssued``).
NOT_ISSUED = N_(
    "This invitation has no code to hand out: it awaits approval, was refused or revoked, "
    "or has expired."
)


def add_routes(console: Console, app: web.Application) -> None:
    """Put the deny list's, the approvals' and the invitation delivery routes on *app*."""
    from .app import PREFIX

    page = console.page_route
    change = console.change_route

    r = app.router
    r.add_get(f"{PREFIX}/deny-list", page("deny_list", _deny_list))
    r.add_post(f"{PREFIX}/deny-list", change("deny_list", _add_entry))
    r.add_post(f"{PREFIX}/deny-list/{{entry_id}}/remove", change("deny_list", _remove_entry))
    r.add_get(f"{PREFIX}/approvals", page("approvals", _approvals))
    r.add_post(f"{PREFIX}/approvals/{{invitation_id}}", change("approvals", _decide))
    r.add_get(f"{PREFIX}/visitors/{{invitation_id}}/pdf", page("visitors", _pdf))
    r.add_post(f"{PREFIX}/visitors/{{invitation_id}}/resend", change("visitors", _resend))


def _done(request: web.Request) -> dict[str, Any] | None:
    done = request.query.get("done", "")
    return msg(DONE[done], name=request.query.get("name", "")) if done in DONE else None


def _local(console: Console, ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, console.settings.zone).strftime("%Y-%m-%d %H:%M")


def _reason(form: Any) -> str:
    return " ".join(str(form.get("reason", "")).split())


# -- the deny list ----------------------------------------------------------------------


async def _deny_list(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/deny-list: the entries (who added them, when, why), the form to add
    one, and a reason to give to take one off."""
    return await _deny_page(console, request, operator, message=_done(request))


async def _deny_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
    values: dict[str, str] | None = None,
    message: dict[str, Any] | None = None,
) -> web.Response:
    entries = await console._db(console.store.deny_list)
    return console.render(
        request,
        "deny_list.html",
        status=status,
        operator=operator,
        current="deny_list",
        entries=[{**e, "added_text": _local(console, e["added_ms"])} for e in entries],
        values=values or {"name": "", "reason": ""},
        errors=errors or [],
        message=message,
    )


async def _add_entry(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/deny-list: a name and the reason (``store.add_deny_entry``)."""
    values = {key: " ".join(str(form.get(key, "")).split()) for key in ("name", "reason")}
    errors = []
    if not values["name"]:
        errors.append(msg(N_("Give the person's name.")))
    if not values["reason"]:
        errors.append(msg(N_("Give a reason.")))
    if not errors:
        try:
            entry = await console._recorded(
                request,
                operator,
                "POST /admin/deny-list",
                lambda made: {"id": made["id"], "name": made["name"], "reason": made["reason"]},
                201,
                functools.partial(console.store.add_deny_entry, by=operator["name"]),
                values,
            )
        except BadRequest as exc:
            errors.append(refusal_message(exc))
        else:
            query = urlencode({"done": "added", "name": entry["name"]})
            raise web.HTTPSeeOther(f"/console/deny-list?{query}")
    return await _deny_page(console, request, operator, status=400, errors=errors, values=values)


async def _remove_entry(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/deny-list/{entry_id}/remove: with the reason."""
    entry_id = request.match_info["entry_id"]
    reason = _reason(form)
    if not reason:
        return await _deny_page(
            console, request, operator, status=400, errors=[msg(N_("Give a reason."))]
        )
    try:
        removed = await console._recorded(
            request,
            operator,
            "POST /admin/deny-list/{entry_id}/remove",
            lambda done: {"entry_id": entry_id, **done},
            200,
            console.store.remove_deny_entry,
            entry_id,
            {"reason": reason},
        )
    except NotFound:
        return await _deny_page(
            console,
            request,
            operator,
            status=404,
            errors=[msg(N_("This entry is no longer on the deny list."))],
        )
    query = urlencode({"done": "removed", "name": removed["name"]})
    raise web.HTTPSeeOther(f"/console/deny-list?{query}")


# -- approvals --------------------------------------------------------------------------


async def _approvals(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/approvals: the invitations the deny list holds, with the entry each
    matched; approve or refuse each with a reason (never one's own)."""
    return await _approvals_page(console, request, operator, message=_done(request))


async def _approvals_page(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
    message: dict[str, Any] | None = None,
) -> web.Response:
    pending = await console._db(console.store.pending_invitations)
    rows = [
        {
            **invitation,
            "requested_text": _local(console, invitation["requested_ms"]),
            "from_text": console._local(invitation["not_before"]),
            "until_text": console._local(invitation["expires"]),
            "own": invitation["requested_by"] == operator["name"],
        }
        for invitation in pending
    ]
    return console.render(
        request,
        "approvals.html",
        status=status,
        operator=operator,
        current="approvals",
        pending=rows,
        errors=errors or [],
        message=message,
    )


async def _decide(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/approvals/{invitation_id}: ``decision`` (approve / refuse), ``reason``
    (``store.decide_invitation``, as ``POST /admin/invitations/{invitation_id}/decision``)."""
    invitation_id = request.match_info["invitation_id"]
    decision = str(form.get("decision", ""))
    reason = _reason(form)
    if decision not in ("approve", "refuse"):
        return await _approvals_page(
            console,
            request,
            operator,
            status=400,
            errors=[msg(N_("This form is not one the console made: reload it."))],
        )
    if not reason:
        return await _approvals_page(
            console, request, operator, status=400, errors=[msg(N_("Give a reason."))]
        )
    try:
        done = await console._recorded(
            request,
            operator,
            "POST /admin/invitations/{invitation_id}/decision",
            lambda made: {
                "invitation_id": invitation_id,
                "id": invitation_id,
                "decision": made["decision"],
                "reason": made["reason"],
            },
            200,
            functools.partial(console.store.decide_invitation, by=operator["name"]),
            invitation_id,
            {"decision": decision, "reason": reason},
        )
    except Forbidden:
        error = N_("You created this invitation: another security officer decides.")
        return await _approvals_page(console, request, operator, status=403, errors=[msg(error)])
    except (NotFound, NotIssued):
        error = N_("This invitation awaits no decision (any more).")
        return await _approvals_page(console, request, operator, status=409, errors=[msg(error)])
    console.wake_notifier()
    query = urlencode({"done": decision, "name": done["visitor"]})
    raise web.HTTPSeeOther(f"/console/approvals?{query}")


# -- the invitation's PDF and e-mail ------------------------------------------------------


async def _pdf(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/visitors/{invitation_id}/pdf: the printable invitation (a download)."""
    from .app import _Refused

    try:
        found = await console._db(
            console.store.invitation_token, request.match_info["invitation_id"]
        )
    except NotFound:
        raise _Refused(404, N_("No such invitation.")) from None
    except NotIssued:
        raise _Refused(409, NOT_ISSUED) from None
    pdf = await asyncio.to_thread(
        render_pdf,
        found["invitation"],
        found["token"],
        site_name=console.settings.site,
        zone=console.settings.zone,
    )
    return pdf_response(pdf, found["invitation"]["id"])


async def _resend(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/{invitation_id}/resend: the visitor's e-mail again (audited
    as ``POST /admin/invitations/{invitation_id}/resend``)."""
    from .app import _Refused

    invitation_id = request.match_info["invitation_id"]
    try:
        sent = await console._recorded(
            request,
            operator,
            "POST /admin/invitations/{invitation_id}/resend",
            lambda made: {"invitation_id": invitation_id, "id": invitation_id},
            202,
            console.store.resend_invitation,
            invitation_id,
        )
    except NotFound:
        raise _Refused(404, N_("No such invitation.")) from None
    except NotIssued:
        raise _Refused(409, NOT_ISSUED) from None
    except CentralError:  # no visitor e-mail
        raise _Refused(400, N_("This invitation has no visitor e-mail.")) from None
    console.wake_notifier()
    query = urlencode({"done": "resent", "name": sent["visitor_email"]})
    raise web.HTTPSeeOther(f"/console/visitors?{query}")
