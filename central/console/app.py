"""The console's routes (aiohttp): login, logout, the language switch, and its pages.

:class:`Console` holds what the pages need (the store, the server's database thread, the
site settings) and :meth:`Console.add_routes` puts its routes on the central's application
(``central/server.py`` calls it). Each page is a :class:`Page` in :data:`PAGES`: its
address, its title and the admin route it stands for; an operator sees (and may open) only
the pages whose admin route their role may call (:data:`central.auth.ROUTE_ROLES`).

Security, the same rules as the admin API's browser sessions (docs/central.md):

* loopback peers and trusted proxies only;
* the session is the operator session ``POST /admin/login`` opens (``store.login``), in an
  HttpOnly, ``SameSite=Strict`` cookie scoped to ``/console``; its CSRF token sits in a
  second HttpOnly cookie, and every form carries it in a hidden field: a change is refused
  unless the field is the session's CSRF token (``store.session_operator``);
* the login form carries a pre-session token (a cookie and the same value in the form);
* a POST whose ``Origin`` is not this server, or that a browser marks
  ``Sec-Fetch-Site: cross-site``, is refused;
* pages say ``Content-Security-Policy: default-src 'self'`` (no inline script, nothing
  from elsewhere), ``frame-ancestors 'none'`` and ``Cache-Control: no-store``.

Changes go through the store methods the admin API calls and are written to the audit log
with the same action names (``POST /admin/invitations``, ...) and ``"via": "console"``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from ..auth import allowed
from ..errors import BadRequest, CentralError, NotFound, Unauthorized
from ..settings import CentralSettings
from ..store import CentralStore
from ..store.doormodes import CENTRAL_MODES
from ..tls import is_trusted
from . import access, eventpacks, groups, onsite, operators, screening, security, stats, visitors
from .i18n import LANGUAGES, N_, msg, pick_language, translations
from .live import BATCH, LiveHub
from .refusals import refusal_message

__all__ = ["CSRF_COOKIE", "LANG_COOKIE", "PAGES", "SESSION_COOKIE", "Console", "Page"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Runs a store call on the central's database thread (``CentralServer._db``).
DbCall = Callable[..., Awaitable[Any]]

PREFIX = "/console"
SESSION_COOKIE = "portier_console"
CSRF_COOKIE = "portier_console_csrf"
LOGIN_COOKIE = "portier_console_login"
LANG_COOKIE = "portier_lang"
HERE = Path(__file__).resolve().parent
#: A device heard from within this long counts as online on the home page.
ONLINE_WITHIN_MS = 5 * 60 * 1000
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Role names as people read them.
ROLE_LABELS = {
    "pass_office": N_("Pass Office"),
    "security_officer": N_("Security officer"),
    "auditor": N_("Auditor"),
    "installer": N_("Installer"),
}
#: What a redirect after a change says (``?done=``).
DONE_MESSAGES = {
    "password": N_("Your password is changed."),
}
#: Door modes in words (``central.store.doormodes.CENTRAL_MODES`` and what doors report).
MODE_LABELS = {
    "normal": N_("Normal"),
    "lockdown": N_("Lockdown"),
    "free_access": N_("Free access"),
    "emergency": N_("Emergency (fire)"),
}
#: What the Doors page says after a change (``?done=mode&mode=...&name=...``).
MODE_DONE = {
    "normal": N_("%(name)s is back to normal: the doors get it at their next sync."),
    "lockdown": N_("%(name)s is in lockdown: the doors get it at their next sync."),
    "free_access": N_("%(name)s is in free access: the doors get it at their next sync."),
}


@dataclass(frozen=True)
class Page:
    """A console page: its name (the template's and the navigation's), its address, its
    title, and the admin route it stands for (who may call that route sees the page)."""

    name: str
    path: str
    title: str
    route: tuple[str, str]

    def visible_to(self, role: str) -> bool:
        """Whether an operator with *role* sees and may open this page."""
        return allowed(role, *self.route)


#: The console's pages, in the navigation's order.
PAGES: tuple[Page, ...] = (
    Page("home", f"{PREFIX}/", N_("Home"), ("GET", "/admin/info")),
    Page("visitors", f"{PREFIX}/visitors", N_("Visitors"), ("POST", "/admin/invitations")),
    Page("onsite", f"{PREFIX}/onsite", N_("On site"), ("POST", "/admin/invitations")),
    Page("live", f"{PREFIX}/live", N_("Live events"), ("GET", "/admin/events")),
    Page("alarms", f"{PREFIX}/alarms", N_("Alarms"), ("GET", "/admin/events")),
    Page(
        "devices",
        f"{PREFIX}/devices",
        N_("Devices"),
        ("GET", "/admin/devices/{device_id}/selftest"),
    ),
    Page("doors", f"{PREFIX}/doors", N_("Doors"), ("PUT", "/admin/doors/{door}/mode")),
    Page("deny_list", f"{PREFIX}/deny-list", N_("Deny list"), ("POST", "/admin/deny-list")),
    Page(
        "approvals",
        f"{PREFIX}/approvals",
        N_("Approvals"),
        ("POST", "/admin/invitations/{invitation_id}/decision"),
    ),
    Page("stats", f"{PREFIX}/stats", N_("Statistics"), ("GET", "/admin/events")),
    Page("badges", f"{PREFIX}/badges", N_("Badges"), ("POST", "/admin/badges")),
    Page(
        "access",
        f"{PREFIX}/access",
        N_("Access levels"),
        ("PUT", "/admin/schedules/{schedule_id}"),
    ),
    Page("rights", f"{PREFIX}/rights", N_("Rights"), ("GET", "/admin/rights")),
    Page("operators", f"{PREFIX}/operators", N_("Operators"), ("POST", "/admin/operators")),
    Page("eventpacks", f"{PREFIX}/event-packs", N_("Event packs"), ("POST", "/admin/event-packs")),
)
_PAGE = {page.name: page for page in PAGES}


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _is_loopback(peer: str | None) -> bool:
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _page(
    handler: Callable[[Console, web.Request, dict[str, Any]], Awaitable[web.StreamResponse]],
) -> Callable[[Console, web.Request], Awaitable[web.StreamResponse]]:
    """A page's GET handler: the operator is logged in and may see the page."""

    async def wrapped(self: Console, request: web.Request) -> web.StreamResponse:
        operator = None
        try:
            operator = await self._operator(request)
            page = _PAGE[handler.__name__]
            if not page.visible_to(operator["role"]):
                raise _Refused(403, N_("Your role may not open this page."))
            return await handler(self, request, operator)
        except _ToLogin:
            raise web.HTTPSeeOther(
                f"{PREFIX}/login?{urlencode({'next': request.path_qs})}"
            ) from None
        except _Refused as exc:
            return self._error(request, exc, operator)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _change(
    page_name: str,
) -> Callable[
    [Callable[[Console, web.Request, dict[str, Any], Any], Awaitable[web.StreamResponse]]],
    Callable[[Console, web.Request], Awaitable[web.StreamResponse]],
]:
    """A change (POST from a form): logged in, Origin and CSRF checked, role allowed."""

    def decorate(
        handler: Callable[
            [Console, web.Request, dict[str, Any], Any], Awaitable[web.StreamResponse]
        ],
    ) -> Callable[[Console, web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(self: Console, request: web.Request) -> web.StreamResponse:
            operator = None
            try:
                self._check_peer(request)
                form = await request.post()
                operator = await self._operator(request, form)
                if not _PAGE[page_name].visible_to(operator["role"]):
                    raise _Refused(403, N_("Your role may not do this."))
                return await handler(self, request, operator, form)
            except _ToLogin:
                raise web.HTTPSeeOther(f"{PREFIX}/login") from None
            except _Refused as exc:
                return self._error(request, exc, operator)

        wrapped.__name__ = handler.__name__
        wrapped.__doc__ = handler.__doc__
        return wrapped

    return decorate


class Console:
    """The web console over one central's store.

    Args:
        settings: the central's settings (site, time zone, trusted proxies).
        store: returns the central's store (asked for at each request: the routes can be
            made before the store is opened), called through *db* only.
        db: runs a store call on the central's database thread.
        peer: the connection's peer of a request (the proxy's, behind one).
    """

    def __init__(
        self,
        settings: CentralSettings,
        store: Callable[[], CentralStore],
        db: DbCall,
        peer: Callable[[web.Request], str | None],
    ) -> None:
        self.settings = settings
        self._store = store
        self._db = db
        self._peer = peer
        self._proxies = settings.proxies()
        self._envs: dict[str, Any] = {}
        #: Sends queued e-mails now (the server sets it to its notifier's wake).
        self.wake_notifier: Callable[[], None] = lambda: None
        #: The live events' shared reader (``live.py``); the server pokes it on uploads.
        self.live = LiveHub(
            lambda since: self._db(self.store.live_events, since_ms=since, limit=BATCH),
            lambda: self.store.now_ms(),  # noqa: PLW0108 -- the store opens later
        )

    @property
    def store(self) -> CentralStore:
        """The central's store."""
        return self._store()

    # -- wiring ---------------------------------------------------------------------

    def page_route(
        self,
        name: str,
        handler: Callable[[Console, web.Request, dict[str, Any]], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """*handler* (``handler(console, request, operator)``) as the GET route of the
        page *name* (of :data:`PAGES`): logged in, and the role may see that page."""
        handler.__name__ = name  # _page finds the page by the handler's name
        return partial(_page(handler), self)

    def change_route(
        self,
        name: str,
        handler: Callable[
            [Console, web.Request, dict[str, Any], Any], Awaitable[web.StreamResponse]
        ],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """*handler* (``handler(console, request, operator, form)``) as a form's POST route
        of the page *name*: logged in, Origin and CSRF checked, the role allowed."""
        return partial(_change(name)(handler), self)

    def add_routes(self, app: web.Application) -> None:
        """Put the console's routes on *app*."""
        r = app.router
        r.add_get(PREFIX, self._to_home)
        r.add_get(f"{PREFIX}/", self.home)
        r.add_get(f"{PREFIX}/login", self.login_page)
        r.add_post(f"{PREFIX}/login", self.login)
        r.add_post(f"{PREFIX}/logout", self.logout)
        r.add_get(f"{PREFIX}/lang/{{lang}}", self.switch_language)
        r.add_get(f"{PREFIX}/password", self.password_page)
        r.add_post(f"{PREFIX}/password", self.change_password)
        visitors.add_routes(self, app)
        groups.add_routes(self, app)
        security.add_routes(self, app)
        screening.add_routes(self, app)
        onsite.add_routes(self, app)
        stats.add_routes(self, app)
        r.add_get(f"{PREFIX}/doors", self.doors)
        r.add_post(f"{PREFIX}/doors/mode", self.set_door_mode)
        access.add_routes(self, app)
        operators.add_routes(self, app)
        eventpacks.add_routes(self, app)
        r.add_static(
            f"{PREFIX}/static", HERE / "static", name="console_static", append_version=True
        )

    def _env(self, lang: str) -> Any:
        """The Jinja2 environment of *lang* (one per language, made on first use)."""
        env = self._envs.get(lang)
        if env is None:
            import jinja2

            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(HERE / "templates"),
                autoescape=True,
                extensions=["jinja2.ext.i18n"],
                undefined=jinja2.StrictUndefined,
            )
            env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
            _translate_nested(env)
            self._envs[lang] = env
        return env

    # -- request helpers --------------------------------------------------------------

    def _check_peer(self, request: web.Request) -> None:
        peer = self._peer(request)
        if not _is_loopback(peer) and not is_trusted(peer, self._proxies):
            raise _Refused(403, N_("The console answers this machine and trusted proxies only."))

    @staticmethod
    def _lang(request: web.Request) -> str:
        return pick_language(
            request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language")
        )

    async def _operator(
        self,
        request: web.Request,
        form: Mapping[str, Any] | None = None,
        *,
        before_password_change: bool = False,
    ) -> dict[str, Any]:
        """The operator of the request's session; with *form* (a POST), also checks the
        Origin and the form's CSRF token. Raises :class:`_ToLogin` without a session.

        An operator whose password a security officer set (``must_change_password``) is sent
        to the password page until they change it, as the admin API refuses them
        (``password_change``); only that page and logout pass *before_password_change*."""
        self._check_peer(request)
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            raise _ToLogin
        csrf = None if form is None else str(form.get("csrf", ""))
        try:
            operator = await self._db(self.store.session_operator, session, csrf)
        except Unauthorized:
            raise _ToLogin from None
        if form is not None:
            if not _same_origin(request):
                raise _Refused(403, N_("Cross-site request refused."))
            if not operator["csrf_ok"]:
                raise _Refused(
                    403, N_("This form has expired or did not come from the console: reload it.")
                )
        operator["csrf"] = request.cookies.get(CSRF_COOKIE, "")
        if operator.get("must_change_password") and not before_password_change:
            raise web.HTTPSeeOther(f"{PREFIX}/password")
        return operator

    def render(
        self,
        request: web.Request,
        template: str,
        *,
        status: int = 200,
        operator: Mapping[str, Any] | None = None,
        **context: Any,
    ) -> web.Response:
        """Render *template* in the request's language, with the layout's context."""
        lang = self._lang(request)
        env = self._env(lang)
        role = operator["role"] if operator else None
        html = env.get_template(template).render(
            lang=lang,
            languages=LANGUAGES,
            here=request.path_qs,
            operator=operator,
            role_label=ROLE_LABELS.get(role or "", role or ""),
            pages=[p for p in PAGES if role and p.visible_to(role)],
            current=context.pop("current", None),
            static=lambda name: request.app.router["console_static"].url_for(filename=name),
            **context,
        )
        return web.Response(text=html, content_type="text/html", status=status, headers=_HEADERS)

    def _error(
        self, request: web.Request, exc: _Refused, operator: dict[str, Any] | None = None
    ) -> web.Response:
        """The refusal page (with the navigation when the operator is known)."""
        return self.render(
            request, "error.html", status=exc.status, operator=operator, message=exc.message
        )

    async def _recorded(
        self,
        request: web.Request,
        operator: Mapping[str, Any],
        action: str,
        detail: Callable[[T], dict[str, Any]],
        status: int,
        fn: Callable[..., T],
        *args: Any,
    ) -> T:
        """Run the store call *fn* and write its audit row (the admin API's action name,
        ``"via": "console"``) in ONE transaction, as the admin API does
        (``CentralStore.one_transaction``): the change never commits without its record."""

        def run() -> T:
            with self.store.one_transaction():
                result = fn(*args)
                self.store.record_action(
                    operator["name"],
                    action,
                    {"path": request.path, "via": "console", **detail(result)},
                    remote=request.remote,
                    status=status,
                )
            return result

        return await self._db(run)

    # -- times ------------------------------------------------------------------------

    def _local(self, seconds: int) -> str:
        """Unix seconds as the site's local ``YYYY-MM-DD HH:MM``."""
        moment = dt.datetime.fromtimestamp(seconds, self.settings.zone)
        return moment.strftime("%Y-%m-%d %H:%M")

    def _input_value(self, seconds: int) -> str:
        """Unix seconds as an ``<input type="datetime-local">`` value (site time)."""
        return dt.datetime.fromtimestamp(seconds, self.settings.zone).strftime("%Y-%m-%dT%H:%M")

    def _parse_local(self, text: str) -> int | None:
        """A ``datetime-local`` value (site time) as Unix seconds; None if unreadable."""
        try:
            moment = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.settings.zone)
        return int(moment.timestamp())

    def _today(self) -> tuple[int, int]:
        now = dt.datetime.fromtimestamp(self.store.now_ms() / 1000, self.settings.zone)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
        return int(start.timestamp()), int(end.timestamp())

    # -- routes: session ----------------------------------------------------------------

    async def _to_home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(f"{PREFIX}/")

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        """GET /console/login: the login form (with its pre-session token)."""
        try:
            self._check_peer(request)
        except _Refused as exc:
            return self._error(request, exc)
        return self._login_form(request, next_url=request.query.get("next", ""))

    def _login_form(
        self,
        request: web.Request,
        *,
        next_url: str,
        status: int = 200,
        error: str | None = None,
        name: str = "",
    ) -> web.Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            status=status,
            login_token=token,
            next_url=_safe_next(next_url),
            error=error,
            name=name,
        )
        self._cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /console/login: check the password, open a session, go to the page asked."""
        try:
            self._check_peer(request)
            form = await request.post()
            if not _same_origin(request):
                raise _Refused(403, N_("Cross-site request refused."))
            expected = request.cookies.get(LOGIN_COOKIE, "")
            given = str(form.get("login_token", ""))
            if not expected or not hmac.compare_digest(expected, given):
                raise _Refused(
                    403, N_("This form has expired or did not come from the console: reload it.")
                )
        except _Refused as exc:
            return self._error(request, exc)
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        next_url = _safe_next(str(form.get("next", "")))
        try:
            result = await self._db(self.store.login, name, password, remote=request.remote)
        except Unauthorized as exc:
            reason = exc.extra.get("reason")
            if reason == "locked_out":
                message = N_("Too many failed logins: this account is locked for a while.")
            elif reason == "operator_disabled":
                message = N_("This account is disabled.")
            else:
                message = N_("Wrong name or password.")
            return self._login_form(
                request, next_url=next_url, status=401, error=message, name=name
            )
        except BadRequest:
            return self._login_form(
                request, next_url=next_url, status=400, error=N_("Wrong name or password.")
            )
        response = web.HTTPSeeOther(next_url or f"{PREFIX}/")
        max_age = max(60, (result["expires_at_ms"] - self.store.now_ms()) // 1000)
        self._cookie(request, response, SESSION_COOKIE, result["session"], max_age=max_age)
        self._cookie(request, response, CSRF_COOKIE, result["csrf_token"], max_age=max_age)
        response.del_cookie(LOGIN_COOKIE, path=PREFIX)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /console/logout: end the session (needs the form's CSRF token)."""
        try:
            self._check_peer(request)
            form = await request.post()
            await self._operator(request, form, before_password_change=True)
        except _ToLogin:
            pass  # no session: nothing to end
        except _Refused as exc:
            return self._error(request, exc)
        else:
            await self._db(self.store.logout, request.cookies[SESSION_COOKIE])
        response = web.HTTPSeeOther(f"{PREFIX}/login")
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        response.del_cookie(CSRF_COOKIE, path=PREFIX)
        raise response

    async def password_page(self, request: web.Request) -> web.StreamResponse:
        """GET /console/password: change one's own password (the only page an operator
        whose password was set by someone else may open)."""
        operator = None
        try:
            operator = await self._operator(request, before_password_change=True)
        except _ToLogin:
            raise web.HTTPSeeOther(f"{PREFIX}/login") from None
        except _Refused as exc:
            return self._error(request, exc, operator)
        return self._password_form(request, operator)

    def _password_form(
        self,
        request: web.Request,
        operator: dict[str, Any],
        *,
        status: int = 200,
        error: str | None = None,
    ) -> web.Response:
        return self.render(
            request,
            "password.html",
            status=status,
            operator=operator,
            current="password",
            forced=bool(operator.get("must_change_password")),
            error=error,
        )

    async def change_password(self, request: web.Request) -> web.StreamResponse:
        """POST /console/password: the current password, the new one twice
        (``store.change_password``, which records it in the audit log)."""
        operator = None
        try:
            self._check_peer(request)
            form = await request.post()
            operator = await self._operator(request, form, before_password_change=True)
        except _ToLogin:
            raise web.HTTPSeeOther(f"{PREFIX}/login") from None
        except _Refused as exc:
            return self._error(request, exc, operator)
        current = str(form.get("current", ""))
        new = str(form.get("new", ""))
        if new != str(form.get("confirm", "")):
            return self._password_form(
                request, operator, status=400, error=N_("The two new passwords differ.")
            )
        try:
            await self._db(
                self.store.change_password, operator["name"], current, new, remote=request.remote
            )
        except Unauthorized as exc:
            if exc.extra.get("reason") == "locked_out":
                message = N_("Too many failed logins: this account is locked for a while.")
            else:
                message = N_("The current password is wrong.")
            return self._password_form(request, operator, status=401, error=message)
        except BadRequest:
            return self._password_form(
                request,
                operator,
                status=400,
                error=N_(
                    "Choose a new password of at least 12 characters, different from the "
                    "current one."
                ),
            )
        raise web.HTTPSeeOther(f"{PREFIX}/?done=password")

    async def switch_language(self, request: web.Request) -> web.StreamResponse:
        """GET /console/lang/{lang}?next=: keep the language in a cookie, go back."""
        lang = request.match_info["lang"]
        response = web.HTTPSeeOther(_safe_next(request.query.get("next", "")) or f"{PREFIX}/")
        if lang in LANGUAGES:
            self._cookie(request, response, LANG_COOKIE, lang, max_age=365 * 86400)
        raise response

    @staticmethod
    def _cookie(
        request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    # -- routes: pages ------------------------------------------------------------------

    @_page
    async def home(self, request: web.Request, operator: dict[str, Any]) -> web.StreamResponse:
        """GET /console/: a short summary (devices online, visitors expected today)."""
        start, end = self._today()
        summary = await self._db(
            self.store.console_summary,
            day_start_s=start,
            day_end_s=end,
            online_within_ms=ONLINE_WITHIN_MS,
        )
        return self.render(
            request,
            "home.html",
            operator=operator,
            current="home",
            summary=summary,
            site=self.settings.site,
            message=msg(DONE_MESSAGES["password"])
            if request.query.get("done") == "password"
            else None,
            visitors_page=_PAGE["visitors"].visible_to(operator["role"]),
        )

    @_page
    async def doors(self, request: web.Request, operator: dict[str, Any]) -> web.StreamResponse:
        """GET /console/doors: each door and zone, its mode set centrally (who, why, when)
        and what its devices report; set lockdown, normal or free access with a reason."""
        message = None
        mode = request.query.get("mode", "")
        if request.query.get("done") == "mode" and mode in MODE_DONE:
            message = msg(MODE_DONE[mode], name=request.query.get("name", ""))
        return await self._doors_page(request, operator, message=message)

    async def _doors_page(
        self,
        request: web.Request,
        operator: dict[str, Any],
        *,
        status: int = 200,
        errors: list[dict[str, Any]] | None = None,
        message: Mapping[str, Any] | None = None,
    ) -> web.Response:
        overview = await self._db(self.store.door_modes, online_within_ms=ONLINE_WITHIN_MS)
        doors = []
        for door in overview["doors"]:
            mode_set = door["mode_set"] or {}
            doors.append(
                {
                    **door,
                    "mode_label": MODE_LABELS.get(door["mode"] or ""),
                    "set_at_text": self._local(mode_set["at_ms"] // 1000)
                    if isinstance(mode_set.get("at_ms"), int)
                    else "",
                    "devices": [
                        {
                            **device,
                            "mode_label": MODE_LABELS.get(device["mode"] or ""),
                            "seen_text": self._local(device["last_heartbeat_at_ms"] // 1000)
                            if device["last_heartbeat_at_ms"]
                            else "",
                        }
                        for device in door["devices"]
                    ],
                }
            )
        zones = [
            {
                **zone,
                "mode_label": MODE_LABELS.get(zone["mode"] or ""),
                "set_at_text": self._local(zone["set_at_ms"] // 1000) if zone["set_at_ms"] else "",
            }
            for zone in overview["zones"]
        ]
        return self.render(
            request,
            "doors.html",
            status=status,
            operator=operator,
            current="doors",
            doors=doors,
            zones=zones,
            modes=[(mode, MODE_LABELS[mode]) for mode in CENTRAL_MODES],
            errors=errors or [],
            message=message,
        )

    @_change("doors")
    async def set_door_mode(
        self, request: web.Request, operator: dict[str, Any], form: Any
    ) -> web.StreamResponse:
        """POST /console/doors/mode: a door's or a zone's mode with a reason
        (``store.set_door_mode``, as ``PUT /admin/doors/{door}/mode`` and
        ``PUT /admin/zones/{zone}/mode``)."""
        scope = str(form.get("scope", ""))
        name = str(form.get("name", "")).strip()
        mode = str(form.get("mode", ""))
        reason = " ".join(str(form.get("reason", "")).split())
        if scope not in ("door", "zone") or mode not in CENTRAL_MODES or not name:
            raise _Refused(400, N_("This form is not one the console made: reload it."))
        if not reason:
            return await self._doors_page(
                request, operator, status=400, errors=[msg(N_("Give a reason for the mode."))]
            )
        action = (
            "PUT /admin/doors/{door}/mode" if scope == "door" else "PUT /admin/zones/{zone}/mode"
        )
        body = {"mode": mode, "reason": reason}
        try:
            await self._recorded(
                request,
                operator,
                action,
                lambda done: {
                    scope: name,
                    "scope": scope,
                    "name": name,
                    "mode": mode,
                    "reason": done["reason"],
                    "doors": done["doors"],
                },
                200,
                partial(self.store.set_door_mode, by=operator["name"]),
                scope,
                name,
                body,
            )
        except NotFound:
            return await self._doors_page(
                request,
                operator,
                status=404,
                errors=[msg(N_("No enrolled door is in zone %(name)s."), name=name)],
            )
        except CentralError as exc:
            return await self._doors_page(
                request,
                operator,
                status=400,
                errors=[refusal_message(exc)],
            )
        query = urlencode({"done": "mode", "mode": mode, "name": name})
        raise web.HTTPSeeOther(f"{PREFIX}/doors?{query}")


def _translate_nested(env: Any) -> None:
    """Make the templates' ``_`` translate an argument that is itself a message
    (``{"text", "args"}``) before it goes into the sentence: a store refusal names its
    field in words (central/console/refusals.py), in the page's language too."""
    import jinja2

    plain = env.globals["gettext"]

    @jinja2.pass_context
    def gettext(context: Any, text: str, **args: Any) -> Any:
        for key, value in args.items():
            if isinstance(value, Mapping) and set(value) == {"text", "args"}:
                args[key] = gettext(context, value["text"], **value["args"])
        return plain(context, text, **args)

    env.globals["gettext"] = env.globals["_"] = gettext


def _safe_next(url: str) -> str:
    """*url* if it is a console address on this server, else ''."""
    if url.startswith(f"{PREFIX}/") and not url.startswith("//") and "\\" not in url:
        return url
    return ""


class _ToLogin(Exception):
    """No session (or an expired one): the login page."""


class _Refused(Exception):
    """A request the console refuses: *message* (a catalogue string) with *status*."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
