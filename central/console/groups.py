"""The Visitors page's actions on a whole group at once (a group of names, a CSV import,
a recurring visitor's days): revoke every still-valid invitation with a reason, or extend
them to a new end (docs/console.md, "Groups at once").

Each goes through the store method the admin API calls (``revoke_invitation_group``,
``extend_invitation_group``) with ONE audit row naming the invitations, under the admin
API's action name, in the same transaction (``Console._recorded``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import CentralError, NotFound
from .i18n import N_, msg
from .refusals import refusal_message
from .visitors import _page_view, _refused

if TYPE_CHECKING:
    from .app import Console

__all__ = ["add_routes"]


def add_routes(console: Console, app: web.Application) -> None:
    """Put the group actions' routes on *app* (the Visitors page's roles)."""
    from .app import PREFIX

    change = functools.partial(console.change_route, "visitors")

    r = app.router
    r.add_post(f"{PREFIX}/visitors/groups/{{group_id}}/revoke", change(_revoke_group))
    r.add_post(f"{PREFIX}/visitors/groups/{{group_id}}/extend", change(_extend_group))


async def _refusal(
    console: Console, request: web.Request, operator: dict[str, Any], exc: CentralError
) -> web.Response:
    return await _page_view(
        console,
        request,
        operator,
        status=400,
        errors=[refusal_message(exc)],
    )


async def _revoke_group(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/groups/{group_id}/revoke: every still-valid invitation of
    the group, with a reason (as ``POST /admin/invitation-groups/{group_id}/revoke``)."""
    from .app import PREFIX

    group_id = request.match_info["group_id"]
    reason = " ".join(str(form.get("reason", "")).split())
    if not reason:
        return await _page_view(
            console,
            request,
            operator,
            status=400,
            errors=[msg(N_("Give a reason for the revocation."))],
        )
    try:
        done = await console._recorded(
            request,
            operator,
            "POST /admin/invitation-groups/{group_id}/revoke",
            lambda done: {
                "group_id": group_id,
                "id": group_id,
                "kind": done["group"]["kind"],
                "reason": done["reason"],
                "revoked": done["revoked"],
                "held": done["held"],
            },
            200,
            console.store.revoke_invitation_group,
            group_id,
            {"reason": reason},
        )
    except NotFound:
        raise _refused(404, N_("No such group of invitations.")) from None
    except CentralError as exc:
        return await _refusal(console, request, operator, exc)
    query = urlencode(
        {"done": "group_revoked", "count": len(done["revoked"]), "name": done["group"]["label"]}
    )
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")


async def _extend_group(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/visitors/groups/{group_id}/extend: every still-valid invitation of
    the group to a new end, new codes for all (as ``POST
    /admin/invitation-groups/{group_id}/extend``); not a recurring visitor's days."""
    from .app import PREFIX

    group_id = request.match_info["group_id"]
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
            "POST /admin/invitation-groups/{group_id}/extend",
            lambda done: {
                "group_id": group_id,
                "id": group_id,
                "kind": done["group"]["kind"],
                "invitations": [one["invitation"]["id"] for one in done["invitations"]],
                "replaced": done["replaced"],
                "held": done["held"],
            },
            201,
            functools.partial(console.store.extend_invitation_group, by=operator["name"]),
            group_id,
            {"expires": expires},
        )
    except NotFound:
        raise _refused(404, N_("No such group of invitations.")) from None
    except CentralError as exc:
        return await _refusal(console, request, operator, exc)
    query = urlencode(
        {
            "done": "group_extended",
            "count": len(done["invitations"]),
            "name": done["group"]["label"],
            "until": console._local(expires),
        }
    )
    raise web.HTTPSeeOther(f"{PREFIX}/visitors?{query}")
