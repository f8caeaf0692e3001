"""The operators page (the security officer's): accounts, roles, passwords, sessions.

Every change is the store call the admin API makes (``POST /admin/operators`` and
``/admin/operators/{name}/...``, docs/central.md "Operators over HTTP"), which writes its own
audit row in its transaction (``operator.add``, ``operator.role``, ``operator.disable``,
``operator.enable``, ``operator.password_reset``, ``operator.logout``) with the console's
operator as ``by`` and the client as ``remote``, as the admin API's calls do.

A new account's password, and a reset one, is made by the central (120 random bits) and shown
once, on the answer to the form that made it (``Cache-Control: no-store``); the operator must
choose their own at their first login. The last enabled security officer cannot be disabled
or demoted (the store refuses: ``LastAdministrator``): the page says so in words.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ..errors import BadRequest, LastAdministrator, NotFound
from ..store.operators import ROLES
from .i18n import N_, msg
from .refusals import refusal_message

if TYPE_CHECKING:
    from .app import Console

__all__ = ["add_routes"]

#: What the page says after a change (``?done=...&name=...``).
DONE = {
    "role": N_("%(name)s has a new role."),
    "disable": N_("%(name)s is disabled: their sessions ended, their tokens stopped."),
    "enable": N_("%(name)s is enabled again."),
    "logout": N_("Every session of %(name)s ended."),
}


def add_routes(console: Console, app: web.Application) -> None:
    """Put the operators page's routes on *app*."""
    from .app import PREFIX

    page = functools.partial(console.page_route, "operators")
    change = functools.partial(console.change_route, "operators")

    r = app.router
    r.add_get(f"{PREFIX}/operators", page(_operators))
    r.add_post(f"{PREFIX}/operators", change(_add))
    r.add_post(f"{PREFIX}/operators/{{name}}/{{action}}", change(_act))


async def _operators(console: Console, request: web.Request, operator: dict[str, Any]) -> Any:
    """GET /console/operators: every operator, their role and state, and the forms."""
    done = request.query.get("done", "")
    message = msg(DONE[done], name=request.query.get("name", "")) if done in DONE else None
    return await _page_of(console, request, operator, message=message)


async def _page_of(
    console: Console,
    request: web.Request,
    operator: dict[str, Any],
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
    message: Mapping[str, Any] | None = None,
    password: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
) -> web.Response:
    from .app import ROLE_LABELS

    operators = await console._db(console.store.list_operators)
    sessions = await console._db(console.store.list_sessions)
    now_ms = console.store.now_ms()
    counts: dict[str, int] = {}
    for session in sessions:
        counts[session["operator"]] = counts.get(session["operator"], 0) + 1
    rows = []
    for account in operators:
        locked = account["locked_until_ms"] is not None and account["locked_until_ms"] > now_ms
        rows.append(
            {
                **account,
                "role_label": ROLE_LABELS.get(account["role"], account["role"]),
                "created_text": console._local(account["created_at_ms"] // 1000),
                "locked_text": console._local(account["locked_until_ms"] // 1000) if locked else "",
                "sessions": counts.get(account["name"], 0),
                "me": account["name"] == operator["name"],
            }
        )
    return console.render(
        request,
        "operators.html",
        status=status,
        operator=operator,
        current="operators",
        operators=rows,
        roles=[(role, ROLE_LABELS[role]) for role in ROLES],
        errors=errors or [],
        message=message,
        password=password,
        values={"name": "", "role": "pass_office", **(values or {})},
    )


async def _add(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/operators: a new account with a password made here, shown once
    (``store.add_operator`` as ``POST /admin/operators``)."""
    name = str(form.get("name", "")).strip()
    role = str(form.get("role", ""))
    values = {"name": name, "role": role}
    if not name:
        return await _page_of(
            console,
            request,
            operator,
            status=400,
            errors=[msg(N_("Give the new operator's name."))],
            values=values,
        )
    password = secrets.token_urlsafe(15)  # 120 bits, as a reset's
    try:
        await console._db(
            functools.partial(
                console.store.add_operator,
                name,
                role,
                password,
                by=operator["name"],
                remote=request.remote,
                must_change_password=True,
            )
        )
    except BadRequest as exc:
        return await _page_of(
            console, request, operator, status=400, errors=[refusal_message(exc)], values=values
        )
    return await _page_of(
        console,
        request,
        operator,
        message=msg(N_("%(name)s can log in now."), name=name),
        password={"name": name, "password": password},
    )


async def _act(
    console: Console, request: web.Request, operator: dict[str, Any], form: Any
) -> web.StreamResponse:
    """POST /console/operators/{name}/{role|disable|enable|password|logout}."""
    name = request.match_info["name"]
    action = request.match_info["action"]
    store = console.store
    who = {"by": operator["name"], "remote": request.remote}
    calls: dict[str, Callable[[], Any]] = {
        "role": functools.partial(store.set_operator_role, name, str(form.get("role", "")), **who),
        "disable": functools.partial(store.disable_operator, name, **who),
        "enable": functools.partial(store.enable_operator, name, **who),
        "password": functools.partial(store.reset_password, name, **who),
        "logout": functools.partial(store.end_sessions, name, **who),
    }
    if action not in calls:
        raise web.HTTPNotFound()
    try:
        result = await console._db(calls[action])
    except (BadRequest, NotFound, LastAdministrator) as exc:
        status = 409 if isinstance(exc, LastAdministrator) else 400
        if isinstance(exc, NotFound):
            status = 404
        return await _page_of(
            console, request, operator, status=status, errors=[refusal_message(exc)]
        )
    if action == "password":
        return await _page_of(
            console,
            request,
            operator,
            message=msg(N_("%(name)s has a new password: their sessions ended."), name=name),
            password={"name": name, "password": result["password"]},
        )
    if action == "logout" and name == operator["name"]:
        raise web.HTTPSeeOther("/console/login")  # this very session ended too
    raise web.HTTPSeeOther(f"/console/operators?{urlencode({'done': action, 'name': name})}")
