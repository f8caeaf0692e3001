"""The Pass Office's Visitors page: pre-register a visitor, the invitations with their
status, revoke one with a reason (docs/console.md).

The handlers are functions of the :class:`~central.console.app.Console` they serve,
wrapped by its ``_page`` / ``_change`` checks; :func:`add_routes` puts them on the app.
Every change goes through the store method the admin API calls, with its audit row in the
same transaction (``Console._recorded``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import CentralError, NotFound
from .i18n import LANGUAGES, N_

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
}
#: What the page says after a change (``?done=``).
DONE = {
    "created": N_("Invitation created for %(name)s."),
    "revoked": N_("Invitation revoked."),
}

#: The pre-registration form's fields, in the form's order.
FIELDS = (
    "visitor",
    "host",
    "host_email",
    "not_before",
    "expires",
    "doors",
    "zones",
    "use",
    "lang",
)


def add_routes(console: Console, app: web.Application) -> None:
    """Put the Visitors page's routes on *app*."""
    from .app import PREFIX, _change, _page

    def page(fn: Callable[..., Any]) -> Any:
        fn.__name__ = "visitors"
        return functools.partial(_page(fn), console)

    def change(fn: Callable[..., Any]) -> Any:
        return functools.partial(_change("visitors")(fn), console)

    r = app.router
    r.add_get(f"{PREFIX}/visitors", page(_visitors))
    r.add_post(f"{PREFIX}/visitors", change(_create))
    r.add_post(f"{PREFIX}/visitors/{{invitation_id}}/revoke", change(_revoke))


# -- helpers ----------------------------------------------------------------------------


def _msg(text: str, **args: Any) -> dict[str, Any]:
    """A message for a template: a catalogue string and its ``%(name)s`` arguments."""
    return {"text": text, "args": args}


def _split_names(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


def _refused(status: int, message: str) -> Exception:
    from .app import _Refused

    return _Refused(status, message)


# -- the page ---------------------------------------------------------------------------


async def _visitors(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/visitors: pre-register a visitor; the invitations and their status."""
    done = request.query.get("done")
    message = None
    if done in DONE:
        message = _msg(DONE[done], name=request.query.get("name", ""))
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
        }
        for invitation in invitations
    ]
    defaults = {
        "visitor": "",
        "host": "",
        "host_email": "",
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
        errors.append(_msg(N_("Give the visitor's name.")))
    body["visitor"] = values["visitor"]
    body["host"] = values["host"]
    if values["host_email"]:
        body["host_email"] = values["host_email"]
    not_before = console._parse_local(values["not_before"])
    expires = console._parse_local(values["expires"])
    if not_before is None or expires is None:
        errors.append(_msg(N_("Give the validity as a date and a time.")))
    elif expires <= not_before:
        errors.append(_msg(N_("The end of the validity must come after its start.")))
    else:
        body["not_before"], body["expires"] = not_before, expires
    body["doors"] = _split_names(values["doors"])
    body["zones"] = _split_names(values["zones"])
    if not body["doors"] and not body["zones"]:
        errors.append(_msg(N_("Give at least one door or one zone.")))
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
                console.store.create_invitation,
                body,
            )
        except CentralError as exc:
            errors.append(_msg(N_("The central refused it: %(detail)s"), detail=exc.detail))
            return await _page_view(
                console, request, operator, status=400, values=values, errors=errors
            )
        invitation = created["invitation"]
        query = urlencode({"done": "created", "name": invitation["visitor"]})
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
            errors=[_msg(N_("Give a reason for the revocation."))],
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
