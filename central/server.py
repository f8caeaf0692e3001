"""The reference central's HTTP server (aiohttp), implementing docs/central-api.yaml.

:class:`CentralServer` wires the routes to a :class:`~central.store.CentralStore`
and a :class:`~central.faults.FaultInjector`. Every store call runs on one
worker thread (``run_in_executor``): SQLite work stays off the event loop and
is serialised, which is what the store expects. On PostgreSQL, uploads have a second
worker thread and connection of their own (``_uploads``). :func:`serve` runs a server
until SIGTERM or SIGINT (the ``portier-central serve`` command).

On loopback by default. A deployment's central serves HTTPS itself
(``settings.tls_cert``/``tls_key``, :func:`central.tls.server_context`) or sits
behind a TLS-terminating reverse proxy: :meth:`CentralServer._proxy_mw` then takes
the client's scheme, host and address from ``X-Forwarded-*`` headers, from the
``settings.trusted_proxies`` only (docs/deploying-central.md).

The admin API (``/admin/...``) needs an operator: ``Authorization: Bearer <API token>``
(the CLI) or a session cookie with its CSRF token on changes (a browser, after
``POST /admin/login``); it answers loopback peers and trusted proxies only.
:meth:`CentralServer._admin_mw` also refuses what a browser sends
cross-site (another ``Origin``, ``Sec-Fetch-Site: cross-site``, a form or ``text/plain``
body), and checks the operator's role against :data:`central.auth.ROUTE_ROLES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from portier_common.signing import KID_HEADER, SIGNATURE_HEADER

from .auth import ADMIN_ROLE, PASSWORD_CHANGE_ROUTES, PUBLIC_ADMIN_ROUTES, allowed
from .console import Console
from .errors import (
    BadRequest,
    BatchTooLarge,
    CentralError,
    Forbidden,
    NotFound,
    Throttled,
    Unauthorized,
    Unavailable,
)
from .faults import ENDPOINT_PATHS, FaultInjector, FaultSpec
from .invitations import pdf_response, render_pdf
from .notify import Notifier
from .settings import CentralSettings
from .store import CentralStore
from .store.visits import invitation_ids
from .tls import forwarded, is_trusted, server_context

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "CentralServer", "serve"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERROR_CODES = {500: "internal", 502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout"}
#: What a body may exceed the batch limit by for the envelope ({"events": [...]}).
_ENVELOPE_SLACK = 1024
#: A browser's session cookie and the header that carries its CSRF token on changes.
SESSION_COOKIE = "portier_session"
#: GET /admin/door-modes: a device heard from within this long counts as online.
DOOR_ONLINE_WITHIN_MS = 5 * 60 * 1000
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``request[PEER]``: the address of the connection's peer (the proxy, behind one).
PEER: web.RequestKey[str | None] = web.RequestKey("portier_peer")
#: ``request[OPERATOR]``: the operator behind an admin request (``{"name", "role", "via"}``).
OPERATOR: web.RequestKey[dict[str, Any]] = web.RequestKey("portier_operator")
#: ``request[AUDITED]``: the handler's change was recorded with it (:meth:`CentralServer._change`).
AUDITED: web.RequestKey[bool] = web.RequestKey("portier_audited")


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _error_response(exc: CentralError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, (Throttled, Unavailable)):
        headers["Retry-After"] = str(exc.extra.get("retry_after_s", 1))
    return _json(exc.to_body(), exc.status, headers)


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _same_origin(request: web.Request) -> bool:
    """Whether a browser's ``Origin`` (if any) is this server itself (scheme://Host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


def _route(request: web.Request) -> str:
    """The route template of *request* (``/admin/badges/{uid}``), else its path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def _detail(request: web.Request, answer: object) -> dict[str, Any]:
    """What an audit row says a change was about: the path and its ids, and the ids the
    answer names (a badge's uid, an invitation's id, a key's kid, a device's id): the
    path alone may not say."""
    detail: dict[str, Any] = {"path": request.path, **dict(request.match_info)}
    if isinstance(answer, dict):
        for key in (
            "uid",
            "id",
            "kid",
            "device_id",
            "door",
            "name",
            "token_id",
            "scope",
            "mode",
            "reason",
            "code",  # an acknowledged alarm: which, and what was done
            "note",
            "decision",
        ):
            if isinstance(answer.get(key), str):
                detail.setdefault(key, answer[key])
        for key in (
            "key_version",  # badge issuance (never its "keys")
            "revoked",
            "since_ms",  # an acknowledged alarm
            "serial",  # event packs (never the pack's "file"), merged journals' counts
            "guests",
            "events",
            "accepted",
            "duplicate",
            "rejected",
            "retry_later",
        ):
            if isinstance(answer.get(key), int | list):
                detail.setdefault(key, answer[key])
        invitation = answer.get("invitation")
        if isinstance(invitation, dict) and isinstance(invitation.get("id"), str):
            detail.setdefault("id", invitation["id"])
        if isinstance(answer.get("replaced"), str | list):  # an extension: the old invitation(s)
            detail.setdefault("replaced", answer["replaced"])
        if isinstance(answer.get("held"), list):  # a group's: those left to an approval
            detail.setdefault("held", answer["held"])
        detail.update(invitation_ids(answer))
    return detail


def _abort(request: web.Request) -> web.Response:
    """Reset the connection; the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=204)


class CentralServer:
    """The reference central: HTTP routes, store, faults.

    Args:
        settings: data directory, address and limits.
        clock: Unix milliseconds, injectable for tests (default: the system clock).

    Use :meth:`start` / :meth:`stop` inside a running event loop, or :func:`serve`.
    """

    def __init__(
        self, settings: CentralSettings, *, clock: Callable[[], int] | None = None
    ) -> None:
        self.settings = settings
        self._proxies = settings.proxies()
        #: The HTTPS context (None: plain HTTP); the files are checked first.
        self.ssl_context = (
            None
            if settings.tls_cert is None or settings.tls_key is None
            else server_context(settings.tls_cert, settings.tls_key)
        )
        self.faults = FaultInjector()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="central-db")
        self.store = (
            CentralStore(settings) if clock is None else CentralStore(settings, clock=clock)
        )
        # Uploads get a worker thread (and a PostgreSQL connection) of their own where the
        # database takes transactions side by side, so polls, credential checks and operators'
        # requests do not queue behind a backlog of batches (a revocation reaches the doors at
        # their next poll). SQLite's one connection keeps one thread.
        self._uploads = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="central-db-uploads")
            if self.store._db.dialect == "postgresql"
            else self._executor
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.notifier: Notifier | None = None
        self._purger: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------

    def make_app(self) -> web.Application:
        """Return the aiohttp application with every route and middleware."""
        app = web.Application(
            middlewares=[self._proxy_mw, self._errors_mw, self._admin_mw, self._faults_mw],
            client_max_size=self.settings.max_batch_bytes + _ENVELOPE_SLACK,
        )
        r = app.router
        r.add_post("/v1/enroll", self.enroll)
        r.add_post("/v1/events", self.events)
        r.add_get("/v1/deltas", self.deltas)
        r.add_post("/v1/heartbeat", self.heartbeat)
        r.add_post("/v1/selftest", self.selftest)
        r.add_get("/admin/info", self.admin_info)
        r.add_post("/admin/login", self.admin_login)
        r.add_post("/admin/logout", self.admin_logout)
        r.add_get("/admin/whoami", self.admin_whoami)
        r.add_get("/admin/operators", self.admin_operators)
        r.add_post("/admin/operators", self.admin_add_operator)
        r.add_post("/admin/operators/{name}/role", self.admin_operator_role)
        r.add_post("/admin/operators/{name}/disable", self.admin_disable_operator)
        r.add_post("/admin/operators/{name}/enable", self.admin_enable_operator)
        r.add_post("/admin/operators/{name}/password", self.admin_reset_password)
        r.add_post("/admin/operators/{name}/logout", self.admin_logout_operator)
        r.add_post("/admin/password", self.admin_change_password)
        r.add_get("/admin/tokens", self.admin_tokens)
        r.add_post("/admin/tokens", self.admin_create_token)
        r.add_delete("/admin/tokens/{token_id}", self.admin_revoke_token)
        r.add_get("/admin/sessions", self.admin_sessions)
        r.add_delete("/admin/sessions/{session_id}", self.admin_end_session)
        r.add_get("/admin/operator-journal", self.admin_operator_journal)
        r.add_get("/admin/audit", self.admin_audit)
        r.add_get("/admin/audit/verify", self.admin_audit_verify)
        r.add_get("/admin/audit/head", self.admin_audit_head)
        r.add_post("/admin/enroll-tokens", self.admin_enroll_token)
        r.add_post("/admin/invitations", self.admin_invitation)
        r.add_post("/admin/invitations/{invitation_id}/revoke", self.admin_revoke_invitation)
        r.add_get("/admin/invitations/{invitation_id}/pdf", self.admin_invitation_pdf)
        r.add_post("/admin/invitations/{invitation_id}/resend", self.admin_resend_invitation)
        r.add_post("/admin/invitations/{invitation_id}/decision", self.admin_decide_invitation)
        r.add_get("/admin/approvals", self.admin_approvals)
        r.add_get("/admin/deny-list", self.admin_deny_list)
        r.add_post("/admin/deny-list", self.admin_add_deny_entry)
        r.add_post("/admin/deny-list/{entry_id}/remove", self.admin_remove_deny_entry)
        r.add_post("/admin/invitations/batch", self.admin_invitation_group)
        r.add_post("/admin/invitations/recurring", self.admin_recurring_invitations)
        r.add_post("/admin/invitations/{invitation_id}/extend", self.admin_extend_invitation)
        r.add_post("/admin/invitation-groups/{group_id}/revoke", self.admin_revoke_group)
        r.add_post("/admin/invitation-groups/{group_id}/extend", self.admin_extend_group)
        r.add_get("/admin/badges", self.admin_list_badges)
        r.add_post("/admin/badges", self.admin_badge)
        r.add_delete("/admin/badges/{uid}", self.admin_delete_badge)
        r.add_post("/admin/badges/{uid}/revoke", self.admin_revoke_badge)
        r.add_post("/admin/badges/{uid}/keys", self.admin_badge_keys)
        r.add_post("/admin/badges/{uid}/issue", self.admin_issue_badge)
        r.add_post("/admin/badges/identify", self.admin_identify_card)
        r.add_get("/admin/keys", self.admin_keys)
        r.add_post("/admin/keys/rotate", self.admin_rotate)
        r.add_put("/admin/schedules/{schedule_id}", self.admin_schedule)
        r.add_delete("/admin/schedules/{schedule_id}", self.admin_delete_schedule)
        r.add_get("/admin/schedules", self.admin_list_schedules)
        r.add_get("/admin/holidays", self.admin_holidays)
        r.add_put("/admin/holidays/{date}", self.admin_put_holiday)
        r.add_delete("/admin/holidays/{date}", self.admin_delete_holiday)
        r.add_get("/admin/rights", self.admin_rights)
        r.add_put("/admin/doors/{door}/settings", self.admin_door_settings)
        r.add_put("/admin/doors/{door}/mode", self.admin_door_mode)
        r.add_put("/admin/zones/{zone}/mode", self.admin_zone_mode)
        r.add_get("/admin/door-modes", self.admin_door_modes)
        r.add_get("/admin/alarms", self.admin_alarms)
        r.add_post("/admin/alarms/acknowledge", self.admin_acknowledge_alarm)
        r.add_post("/admin/devices/{device_id}/disable", self.admin_disable_device)
        r.add_post("/admin/devices/{device_id}/reset", self.admin_reset_device)
        r.add_get("/admin/events", self.admin_events)
        r.add_get("/admin/devices/{device_id}/events", self.admin_device_events)
        r.add_get("/admin/devices/{device_id}/export", self.admin_device_export)
        r.add_get("/admin/devices/{device_id}/selftest", self.admin_device_selftest)
        r.add_get("/admin/event-packs", self.admin_event_packs)
        r.add_post("/admin/event-packs", self.admin_create_event_pack)
        r.add_post("/admin/event-packs/merge", self.admin_merge_journal)
        r.add_get("/admin/faults", self.admin_faults)
        r.add_post("/admin/faults", self.admin_set_fault)
        r.add_delete("/admin/faults", self.admin_clear_faults)
        # The web console (HTML pages at /console/, docs/console.md).
        self.console = Console(
            self.settings,
            lambda: self.store,
            self._db,
            lambda request: request.get(PEER, request.remote),
        )
        self.console.wake_notifier = self.wake_notifier
        self.console.add_routes(app)
        return app

    async def start(self) -> str:
        """Listen on ``settings.host:settings.port``; return the base URL.

        Raises:
            OSError: the address is in use or not available.
        """
        self._runner = web.AppRunner(
            self.make_app(),
            shutdown_timeout=self.settings.shutdown_timeout_s,
            access_log=None,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.host, self.settings.port, ssl_context=self.ssl_context
        )
        await site.start()
        self.port = self._runner.addresses[0][1]
        # The host-notification sender: one task per process; several processes on one
        # PostgreSQL share the outbox by claiming rows (central/store/notify.py).
        self.notifier = Notifier(self.settings, self.store, self._db)
        self.notifier.start()
        # Retention: purge now, then every purge_interval_s (each process; a purge is one
        # transaction under the write lock, so a second one finds nothing left to do).
        self._purger = asyncio.create_task(self._purge_loop(), name="central-retention")
        log.info("reference central listening on %s", self.url)
        return self.url

    @property
    def url(self) -> str:
        """The base URL (after :meth:`start`)."""
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening, finish or cut requests in flight, close the database."""
        if self.notifier is not None:
            await self.notifier.stop()
            self.notifier = None
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._uploads is not self._executor:
            self._uploads.shutdown(wait=True)
        await self._db(self.store.close)
        self._executor.shutdown(wait=True)

    async def _purge_loop(self) -> None:
        """The retention purge (central/store/retention.py), every ``purge_interval_s``."""
        while True:
            try:
                await self._db(self.store.purge)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: log, try again next time
                log.exception("retention purge failed")
            await asyncio.sleep(self.settings.purge_interval_s)

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- middlewares ------------------------------------------------------------

    @web.middleware
    async def _proxy_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Behind a trusted proxy: the client's scheme, host and address from its
        X-Forwarded-* headers. Anyone else's X-Forwarded-* headers are ignored."""
        peer = request.remote
        if not is_trusted(peer, self._proxies):
            request[PEER] = peer
            return await handler(request)
        assert peer is not None
        scheme, host, client = forwarded(request.headers, peer, self._proxies)
        changes: dict[str, str] = {"remote": client}
        if scheme is not None:
            changes["scheme"] = scheme
        if host is not None:
            changes["host"] = host
        clone = request.clone(**changes)  # type: ignore[arg-type]
        clone[PEER] = peer
        return await handler(clone)

    @web.middleware
    async def _errors_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except CentralError as exc:
            return _error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(self._too_large())
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = "not_found" if exc.status == 404 else "bad_request"
            return _json({"error": code, "detail": exc.reason}, exc.status)
        except ConnectionResetError:
            # The client went away while we read its request; nobody gets an answer.
            log.info("client left during %s %s", request.method, request.path)
            return web.Response(status=204)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return _json({"error": "internal", "detail": "internal error"}, 500)

    @web.middleware
    async def _admin_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/admin"):
            return await handler(request)
        peer = request.get(PEER, request.remote)
        if not _is_loopback(peer) and not is_trusted(peer, self._proxies):
            raise Forbidden("the admin API answers loopback clients only", reason="remote")
        unsafe = request.method not in _SAFE_METHODS
        # What a browser sends on another site's behalf: never an admin call.
        if not _same_origin(request) or request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise Forbidden("cross-site request refused", reason="cross_site")
        if unsafe and request.body_exists:
            content_type = request.headers.get("Content-Type", "")
            if content_type.split(";")[0].strip().lower() != "application/json":
                # text/plain, forms: what a page may POST cross-site without a preflight.
                raise Forbidden("admin changes take application/json only", reason="content_type")
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        if (request.method, route) in PUBLIC_ADMIN_ROUTES:
            return await handler(request)
        operator = await self._operator(request, unsafe=unsafe)
        if resource is not None and not allowed(operator["role"], request.method, route):
            refused = Forbidden(
                f"role {operator['role']} may not {request.method} {route}", reason="role"
            )
            if unsafe:  # an attempt beyond one's role: on the record
                await self._journal(request, operator, route, refused.status)
            raise refused
        if (
            operator.get("must_change_password")
            and (
                request.method,
                route,
            )
            not in PASSWORD_CHANGE_ROUTES
        ):
            raise Forbidden(
                "a password set by a security officer: change it first (POST /admin/password)",
                reason="password_change",
            )
        request[OPERATOR] = operator
        try:
            response = await handler(request)
        except CentralError as exc:
            if unsafe:
                await self._journal(request, operator, route, exc.status)
            raise
        if unsafe and not request.get(AUDITED, False):
            await self._journal(request, operator, route, response.status, response)
        return response

    async def _operator(self, request: web.Request, *, unsafe: bool) -> dict[str, Any]:
        """The operator behind a request: its API token, or its session (and CSRF token
        on a change)."""
        header = request.headers.get("Authorization")
        if header is not None:
            token = self._bearer(request)
            if not token:
                raise Unauthorized("Authorization: give 'Bearer <token>'", reason="bad_scheme")
            return await self._db(self.store.authenticate_operator, token)
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            operator = await self._db(
                self.store.session_operator, session, request.headers.get(CSRF_HEADER)
            )
            if unsafe and not operator["csrf_ok"]:
                raise Forbidden(f"a change needs the session's {CSRF_HEADER}", reason="csrf")
            return operator
        raise Unauthorized(
            "the admin API needs an operator: Authorization: Bearer <token>",
            reason="no_credential",
        )

    async def _journal(
        self,
        request: web.Request,
        operator: dict[str, Any],
        route: str,
        status: int,
        response: web.StreamResponse | None = None,
    ) -> None:
        """Record a change that did not record itself (:meth:`_change`): a refusal (its
        action rolled back: there is nothing to lose), fault injection (in memory), logout."""
        answer: object = None
        if isinstance(response, web.Response) and response.content_type == "application/json":
            with contextlib.suppress(ValueError, TypeError):
                answer = json.loads(response.body)  # type: ignore[arg-type]
        await self._db(
            self.store.record_action,
            operator["name"],
            f"{request.method} {route}",
            _detail(request, answer),
            remote=request.remote,
            status=status,
        )

    async def _change(
        self, request: web.Request, status: int, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run the store call of an admin change and append its audit row in ONE
        transaction (``CentralStore.one_transaction``): the change never commits without
        its record, nor the record without the change. Returns what *fn* returns; *status*
        is the answer's status the row records."""
        operator = request[OPERATOR]
        action = f"{request.method} {_route(request)}"

        def run() -> T:
            with self.store.one_transaction():
                result = fn(*args, **kwargs)
                self.store.record_action(
                    operator["name"],
                    action,
                    _detail(request, result),
                    remote=request.remote,
                    status=status,
                )
            return result

        result = await self._db(run)
        request[AUDITED] = True
        return result

    async def _recorded(
        self, request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run a store call that appends its own audit row in its transaction (operators,
        tokens, sessions), as the request's operator (``by``) from its client (``remote``)."""
        result = await self._db(
            fn, *args, by=request[OPERATOR]["name"], remote=request.remote, **kwargs
        )
        request[AUDITED] = True
        return result

    @web.middleware
    async def _faults_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = ENDPOINT_PATHS.get(request.path)
        if endpoint is None:
            return await handler(request)
        latency, action = self.faults.pick(endpoint)
        delayed = latency is not None or (action is not None and action.name == "timeout")
        if delayed and request.body_exists:
            # A slow server has the request before it is slow: read the body now
            # (aiohttp caches it), or a client that gives up would take it along.
            await request.read()
        if latency is not None:
            await asyncio.sleep(latency.effective_delay_s)
        if action is None:
            return await handler(request)
        log.info("fault %s on %s", action.name, endpoint)
        if action.name == "timeout":
            await asyncio.sleep(action.effective_delay_s)
            return await handler(request)
        if action.name == "error":
            status = action.effective_status
            return _json(
                {"error": _ERROR_CODES[status], "detail": "injected fault"},
                status,
            )
        if action.name == "throttle":
            retry = action.effective_retry_after_s
            raise Throttled("injected fault: throttled", retry_after_s=retry)
        if action.name == "drop_mid_body":
            if request.body_exists:
                await request.content.readany()
            return _abort(request)
        if action.name == "drop_before_response":
            await request.read()
            return _abort(request)
        # lost_after_commit: the work is done and committed, the answer is lost.
        with contextlib.suppress(CentralError):
            await handler(request)
        return _abort(request)

    # -- helpers ----------------------------------------------------------------

    def _too_large(self) -> BatchTooLarge:
        return BatchTooLarge(
            "batch too large: halve it",
            max_events=self.settings.max_batch_events,
            max_bytes=self.settings.max_batch_bytes,
        )

    @staticmethod
    async def _body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip() and optional:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("body: must be a JSON object")
        return body

    @staticmethod
    def _bearer(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        return credential.strip() if scheme.lower() == "bearer" else ""

    async def _device(self, request: web.Request) -> dict[str, Any]:
        return await self._db(self.store.authenticate, self._bearer(request))

    @staticmethod
    def _int_query(request: web.Request, name: str, default: int) -> int:
        text = request.query.get(name)
        if text is None:
            return default
        try:
            return int(text)
        except ValueError:
            raise BadRequest(f"{name}: {text!r} is not an integer") from None

    # -- device API -------------------------------------------------------------

    async def enroll(self, request: web.Request) -> web.Response:
        """POST /v1/enroll."""
        body = await self._body(request)
        # The current credential, if sent, proves a re-enrolling device is itself.
        credential = self._bearer(request) or None
        return _json(await self._db(self.store.enroll, body, credential), 201)

    async def events(self, request: web.Request) -> web.Response:
        """POST /v1/events."""
        device = await self._device(request)
        length = request.content_length
        if length is not None and length > self.settings.max_batch_bytes + _ENVELOPE_SLACK:
            raise self._too_large()
        body = await self._body(request)
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise BadRequest("events: must be a non-empty list")
        if len(events) > self.settings.max_batch_events:
            raise self._too_large()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._uploads, self.store.upload_events, device["device_id"], events
        )
        if self.notifier is not None and any(
            ack and ack.get("status") == "accepted" for ack in result["acks"]
        ):
            self.notifier.wake()  # a check-in among them is told now, not at the next poll
        if any(ack and ack.get("status") == "accepted" for ack in result["acks"]):
            self.console.live.poke()  # the console's live pages read it now
        return _json(result)

    async def deltas(self, request: web.Request) -> web.Response:
        """GET /v1/deltas?cursor=C&limit=N."""
        device = await self._device(request)
        limit = self._int_query(request, "limit", min(500, self.settings.max_deltas_limit))
        cursor = request.query.get("cursor")
        page = await self._db(
            self.store.deltas,
            device["site"],
            cursor,
            limit,
            guard_console=device["guard_console"],
        )
        # Signed over the exact bytes sent, bound to the device (portier_common.signing).
        body = _dumps(page).encode("utf-8")
        kid, signature = self.store.sign_deltas(device["device_id"], body)
        return web.Response(
            body=body,
            content_type="application/json",
            headers={KID_HEADER: kid, SIGNATURE_HEADER: signature},
        )

    async def heartbeat(self, request: web.Request) -> web.Response:
        """POST /v1/heartbeat."""
        received_at = self.store.now_ms()
        device = await self._device(request)
        body = await self._body(request)
        return _json(await self._db(self.store.heartbeat, device["device_id"], body, received_at))

    async def selftest(self, request: web.Request) -> web.Response:
        """POST /v1/selftest."""
        received_at = self.store.now_ms()
        device = await self._device(request)
        body = await self._body(request)
        return _json(
            await self._db(self.store.put_selftest, device["device_id"], body, received_at)
        )

    # -- admin API --------------------------------------------------------------

    async def admin_info(self, request: web.Request) -> web.Response:
        """GET /admin/info."""
        return _json(await self._db(self.store.info))

    async def admin_login(self, request: web.Request) -> web.Response:
        """POST /admin/login: a browser's password login; sets the session cookie."""
        body = await self._body(request)
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise BadRequest("login: give name and password (strings)")
        result = await self._db(self.store.login, name, password, remote=request.remote)
        response = _json({k: v for k, v in result.items() if k != "session"})
        response.set_cookie(
            SESSION_COOKIE,
            result["session"],
            max_age=(result["expires_at_ms"] - self.store.now_ms()) // 1000,
            path="/admin",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def admin_logout(self, request: web.Request) -> web.Response:
        """POST /admin/logout: end the browser's session."""
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            await self._db(self.store.logout, session)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/admin")
        return response

    async def admin_whoami(self, request: web.Request) -> web.Response:
        """GET /admin/whoami: the operator behind the credential."""
        operator = request[OPERATOR]
        return _json(
            {
                "name": operator["name"],
                "role": operator["role"],
                "via": operator["via"],
                "must_change_password": bool(operator.get("must_change_password", False)),
            }
        )

    # -- operators, tokens, sessions (central/store/operators.py) ----------------

    @staticmethod
    def _is_admin(request: web.Request) -> bool:
        return bool(request[OPERATOR]["role"] == ADMIN_ROLE)

    def _owner(self, request: web.Request, name: object) -> str:
        """The operator a token or session call is about: the caller, or (a security
        officer only) *name*."""
        me = str(request[OPERATOR]["name"])
        if name is None or name == me:
            return me
        if not isinstance(name, str):
            raise BadRequest("operator: a name")
        if not self._is_admin(request):
            raise Forbidden(
                f"only a {ADMIN_ROLE} may act on another operator's tokens or sessions",
                reason="role",
            )
        return name

    async def admin_operators(self, request: web.Request) -> web.Response:
        """GET /admin/operators."""
        return _json({"operators": await self._db(self.store.list_operators)})

    async def admin_add_operator(self, request: web.Request) -> web.Response:
        """POST /admin/operators {"name", "role", "password"?}: the password (if any) must be
        changed at the first login."""
        body = await self._body(request)
        unknown = set(body) - {"name", "role", "password"}
        if unknown:
            raise BadRequest(f"operator: unknown fields {sorted(unknown)}")
        result = await self._recorded(
            request,
            self.store.add_operator,
            body.get("name"),
            body.get("role"),
            body.get("password"),
            must_change_password=True,
        )
        return _json(result, 201)

    async def admin_operator_role(self, request: web.Request) -> web.Response:
        """POST /admin/operators/{name}/role {"role"}."""
        body = await self._body(request)
        if set(body) != {"role"}:
            raise BadRequest('role: give {"role": ...} only')
        name = request.match_info["name"]
        return _json(
            await self._recorded(request, self.store.set_operator_role, name, body["role"])
        )

    async def admin_disable_operator(self, request: web.Request) -> web.Response:
        """POST /admin/operators/{name}/disable: their tokens and sessions stop at once."""
        name = request.match_info["name"]
        return _json(await self._recorded(request, self.store.disable_operator, name))

    async def admin_enable_operator(self, request: web.Request) -> web.Response:
        """POST /admin/operators/{name}/enable."""
        name = request.match_info["name"]
        return _json(await self._recorded(request, self.store.enable_operator, name))

    async def admin_reset_password(self, request: web.Request) -> web.Response:
        """POST /admin/operators/{name}/password {"password"?}: a new password (random when
        not given, answered once) to change at the next login; their sessions end."""
        body = await self._body(request, optional=True)
        if set(body) - {"password"}:
            raise BadRequest(f"password: unknown fields {sorted(set(body) - {'password'})}")
        name = request.match_info["name"]
        return _json(
            await self._recorded(request, self.store.reset_password, name, body.get("password"))
        )

    async def admin_logout_operator(self, request: web.Request) -> web.Response:
        """POST /admin/operators/{name}/logout: end every session of an operator."""
        name = request.match_info["name"]
        ended = await self._recorded(request, self.store.end_sessions, name)
        return _json({"name": name, "ended": ended})

    async def admin_change_password(self, request: web.Request) -> web.Response:
        """POST /admin/password {"current_password", "new_password"}: one's own password."""
        body = await self._body(request)
        current, new = body.get("current_password"), body.get("new_password")
        if not isinstance(current, str) or not isinstance(new, str) or len(body) != 2:
            raise BadRequest("password: give current_password and new_password (strings)")
        result = await self._db(
            self.store.change_password,
            request[OPERATOR]["name"],
            current,
            new,
            remote=request.remote,
        )
        request[AUDITED] = True
        return _json(result)

    async def admin_tokens(self, request: web.Request) -> web.Response:
        """GET /admin/tokens?operator=: one's own tokens; a security officer's: anyone's
        (everyone's with ``operator=*``)."""
        wanted = request.query.get("operator")
        if wanted == "*" and self._is_admin(request):
            return _json({"tokens": await self._db(self.store.list_api_tokens)})
        owner = self._owner(request, wanted)
        return _json({"tokens": await self._db(self.store.list_api_tokens, owner)})

    async def admin_create_token(self, request: web.Request) -> web.Response:
        """POST /admin/tokens {"label"?, "ttl_s"?, "operator"?}: a token for oneself (a
        security officer: for anyone); the secret is answered once."""
        body = await self._body(request, optional=True)
        unknown = set(body) - {"label", "ttl_s", "operator"}
        if unknown:
            raise BadRequest(f"token: unknown fields {sorted(unknown)}")
        owner = self._owner(request, body.get("operator"))
        kwargs: dict[str, Any] = {"label": body.get("label", "")}
        if "ttl_s" in body:
            kwargs["ttl_s"] = body["ttl_s"]
        result = await self._recorded(request, self.store.create_api_token, owner, **kwargs)
        return _json(result, 201)

    async def admin_revoke_token(self, request: web.Request) -> web.Response:
        """DELETE /admin/tokens/{token_id}: one's own (a security officer: any)."""
        token_id = request.match_info["token_id"]
        only = None if self._is_admin(request) else request[OPERATOR]["name"]
        await self._recorded(request, self.store.revoke_api_token, token_id, operator=only)
        return web.Response(status=204)

    async def admin_sessions(self, request: web.Request) -> web.Response:
        """GET /admin/sessions?operator=: one's own live sessions; a security officer's:
        anyone's (everyone's with ``operator=*``)."""
        wanted = request.query.get("operator")
        if wanted == "*" and self._is_admin(request):
            sessions = await self._db(self.store.list_sessions)
        else:
            sessions = await self._db(self.store.list_sessions, self._owner(request, wanted))
        current = request[OPERATOR].get("session_id")
        for session in sessions:
            session["current"] = session["session_id"] == current
        return _json({"sessions": sessions})

    async def admin_end_session(self, request: web.Request) -> web.Response:
        """DELETE /admin/sessions/{session_id}: log one session out (one's own; a security
        officer: anyone's)."""
        sid = request.match_info["session_id"]
        owner = await self._db(self.store.session_owner, sid)
        if owner != request[OPERATOR]["name"] and not self._is_admin(request):
            raise NotFound(f"no session {sid!r}")
        await self._recorded(request, self.store.end_sessions, owner, only=sid)
        return web.Response(status=204)

    async def admin_operator_journal(self, request: web.Request) -> web.Response:
        """GET /admin/operator-journal?after=&limit=."""
        after = self._int_query(request, "after", 0)
        limit = self._int_query(request, "limit", 1000)
        if after < 0 or not 1 <= limit <= 10_000:
            raise BadRequest("after: >= 0; limit: 1-10000")
        return _json(
            {"entries": await self._db(self.store.operator_journal, after=after, limit=limit)}
        )

    async def admin_audit(self, request: web.Request) -> web.Response:
        """GET /admin/audit?since=&until=: the audit log (Unix ms) with its chain proof."""
        since = self._int_query(request, "since", -1)
        until = self._int_query(request, "until", -1)
        return _json(
            await self._db(
                self.store.audit_export,
                since_ms=None if "since" not in request.query else since,
                until_ms=None if "until" not in request.query else until,
            )
        )

    async def admin_audit_verify(self, request: web.Request) -> web.Response:
        """GET /admin/audit/verify: walk the whole chain; name what was changed or removed."""
        return _json(await self._db(self.store.verify_audit))

    async def admin_audit_head(self, request: web.Request) -> web.Response:
        """GET /admin/audit/head: the chain's head now, signed (an anchor to keep elsewhere)."""
        return _json(await self._db(self.store.audit_head))

    async def admin_enroll_token(self, request: web.Request) -> web.Response:
        """POST /admin/enroll-tokens."""
        body = await self._body(request)
        unknown = set(body) - {"site", "door", "ttl_s", "zones"}
        if unknown:
            raise BadRequest(f"enroll token: unknown fields {sorted(unknown)}")
        result = await self._change(
            request,
            201,
            self.store.create_enroll_token,
            door=body.get("door"),
            site=body.get("site"),
            ttl_s=body.get("ttl_s"),
            zones=body.get("zones"),
        )
        return _json(result, 201)

    async def admin_invitation(self, request: web.Request) -> web.Response:
        """POST /admin/invitations (screened against the deny list by the store)."""
        body = await self._body(request)
        by = request[OPERATOR]["name"]
        result = await self._change(request, 201, self.store.create_invitation, body, by=by)
        self.wake_notifier()
        return _json(result, 201)

    def wake_notifier(self) -> None:
        """Send queued e-mails now rather than at the sender's next poll."""
        if self.notifier is not None:
            self.notifier.wake()

    async def admin_invitation_pdf(self, request: web.Request) -> web.StreamResponse:
        """GET /admin/invitations/{invitation_id}/pdf: the printable invitation."""
        found = await self._db(self.store.invitation_token, request.match_info["invitation_id"])
        pdf = await asyncio.to_thread(
            render_pdf,
            found["invitation"],
            found["token"],
            site_name=self.settings.site,
            zone=self.settings.zone,
        )
        return pdf_response(pdf, found["invitation"]["id"])

    async def admin_resend_invitation(self, request: web.Request) -> web.Response:
        """POST /admin/invitations/{invitation_id}/resend: queue the visitor's e-mail again."""
        invitation_id = request.match_info["invitation_id"]
        result = await self._change(request, 202, self.store.resend_invitation, invitation_id)
        self.wake_notifier()
        return _json(result, 202)

    async def admin_decide_invitation(self, request: web.Request) -> web.Response:
        """POST /admin/invitations/{invitation_id}/decision: a security officer approves or
        refuses an invitation the deny list held (never the operator who created it)."""
        body = await self._body(request)
        result = await self._change(
            request,
            200,
            self.store.decide_invitation,
            request.match_info["invitation_id"],
            body,
            by=request[OPERATOR]["name"],
        )
        self.wake_notifier()
        return _json(result)

    async def admin_approvals(self, request: web.Request) -> web.Response:
        """GET /admin/approvals: the invitations awaiting a security officer."""
        return _json({"invitations": await self._db(self.store.pending_invitations)})

    async def admin_deny_list(self, request: web.Request) -> web.Response:
        """GET /admin/deny-list."""
        return _json({"entries": await self._db(self.store.deny_list)})

    async def admin_add_deny_entry(self, request: web.Request) -> web.Response:
        """POST /admin/deny-list: a name and the reason."""
        body = await self._body(request)
        by = request[OPERATOR]["name"]
        return _json(await self._change(request, 201, self.store.add_deny_entry, body, by=by), 201)

    async def admin_remove_deny_entry(self, request: web.Request) -> web.Response:
        """POST /admin/deny-list/{entry_id}/remove: with the reason."""
        body = await self._body(request)
        entry_id = request.match_info["entry_id"]
        return _json(await self._change(request, 200, self.store.remove_deny_entry, entry_id, body))

    async def admin_revoke_invitation(self, request: web.Request) -> web.Response:
        """POST /admin/invitations/{invitation_id}/revoke."""
        invitation_id = request.match_info["invitation_id"]
        return _json(await self._change(request, 200, self.store.revoke_invitation, invitation_id))

    async def admin_invitation_group(self, request: web.Request) -> web.Response:
        """POST /admin/invitations/batch: several invitations, all or none."""
        body = await self._body(request)
        answer = await self._change(
            request, 201, self.store.create_invitation_group, body, by=request[OPERATOR]["name"]
        )
        return _json(answer, 201)

    async def admin_recurring_invitations(self, request: web.Request) -> web.Response:
        """POST /admin/invitations/recurring: one invitation per day of a recurring visit."""
        body = await self._body(request)
        answer = await self._change(
            request,
            201,
            self.store.create_recurring_invitations,
            body,
            by=request[OPERATOR]["name"],
        )
        return _json(answer, 201)

    async def admin_extend_invitation(self, request: web.Request) -> web.Response:
        """POST /admin/invitations/{invitation_id}/extend: a new invitation with the new end
        replaces the old (revoked)."""
        invitation_id = request.match_info["invitation_id"]
        body = await self._body(request)
        answer = await self._change(
            request,
            201,
            self.store.extend_invitation,
            invitation_id,
            body,
            by=request[OPERATOR]["name"],
        )
        return _json(answer, 201)

    async def admin_revoke_group(self, request: web.Request) -> web.Response:
        """POST /admin/invitation-groups/{group_id}/revoke: every still-valid invitation of
        a group, with the reason; one transaction, one audit row naming them."""
        body = await self._body(request)
        group_id = request.match_info["group_id"]
        return _json(
            await self._change(request, 200, self.store.revoke_invitation_group, group_id, body)
        )

    async def admin_extend_group(self, request: web.Request) -> web.Response:
        """POST /admin/invitation-groups/{group_id}/extend: every still-valid invitation of
        a group to a new end (new invitations and tokens replace the old, revoked)."""
        body = await self._body(request)
        answer = await self._change(
            request,
            201,
            self.store.extend_invitation_group,
            request.match_info["group_id"],
            body,
            by=request[OPERATOR]["name"],
        )
        return _json(answer, 201)

    async def admin_badge(self, request: web.Request) -> web.Response:
        """POST /admin/badges."""
        body = await self._body(request)
        return _json(await self._change(request, 200, self.store.put_badge, body))

    async def admin_delete_badge(self, request: web.Request) -> web.Response:
        """DELETE /admin/badges/{uid}."""
        await self._change(request, 204, self.store.delete_badge, request.match_info["uid"])
        return web.Response(status=204)

    async def admin_revoke_badge(self, request: web.Request) -> web.Response:
        """POST /admin/badges/{uid}/revoke."""
        return _json(
            await self._change(request, 200, self.store.revoke_badge, request.match_info["uid"])
        )

    async def admin_badge_keys(self, request: web.Request) -> web.Response:
        """POST /admin/badges/{uid}/keys: the card's keys for the issuance station. The
        answer holds keys: never cached, never in the audit row (it records the uid, the key
        version and the badges revoked)."""
        body = await self._body(request, optional=True)
        result = await self._change(
            request, 200, self.store.badge_card_keys, request.match_info["uid"], body
        )
        return _json(result, headers={"Cache-Control": "no-store"})

    async def admin_identify_card(self, request: web.Request) -> web.Response:
        """POST /admin/badges/identify: the UID in a card's SUN (a card with Random ID)."""
        body = await self._body(request)
        return _json(await self._change(request, 200, self.store.identify_card, body))

    async def admin_issue_badge(self, request: web.Request) -> web.Response:
        """POST /admin/badges/{uid}/issue: register the card the station wrote and read back."""
        body = await self._body(request)
        return _json(
            await self._change(
                request, 201, self.store.register_issued_badge, request.match_info["uid"], body
            ),
            201,
        )

    async def admin_keys(self, request: web.Request) -> web.Response:
        """GET /admin/keys."""
        return _json(await self._db(self.store.list_keys))

    async def admin_rotate(self, request: web.Request) -> web.Response:
        """POST /admin/keys/rotate."""
        body = await self._body(request, optional=True)
        if set(body) - {"retire_now"}:
            raise BadRequest(f"rotate: unknown fields {sorted(set(body) - {'retire_now'})}")
        retire_now = body.get("retire_now", False)
        if not isinstance(retire_now, bool):
            raise BadRequest("retire_now: must be true or false")
        return _json(await self._change(request, 200, self.store.rotate_key, retire_now=retire_now))

    async def admin_schedule(self, request: web.Request) -> web.Response:
        """PUT /admin/schedules/{schedule_id}."""
        body = await self._body(request)
        schedule_id = request.match_info["schedule_id"]
        return _json(await self._change(request, 200, self.store.put_schedule, schedule_id, body))

    async def admin_delete_schedule(self, request: web.Request) -> web.Response:
        """DELETE /admin/schedules/{schedule_id}?site=."""
        schedule_id = request.match_info["schedule_id"]
        await self._change(
            request, 204, self.store.delete_schedule, schedule_id, request.query.get("site")
        )
        return web.Response(status=204)

    async def admin_list_schedules(self, request: web.Request) -> web.Response:
        """GET /admin/schedules[?site=]: the schedules of the doors and zones."""
        schedules = await self._db(self.store.list_schedules, request.query.get("site"))
        return _json({"schedules": schedules})

    async def admin_holidays(self, request: web.Request) -> web.Response:
        """GET /admin/holidays[?site=]: the site's holidays, by date."""
        return _json(
            {"holidays": await self._db(self.store.list_holidays, request.query.get("site"))}
        )

    async def admin_put_holiday(self, request: web.Request) -> web.Response:
        """PUT /admin/holidays/{date} {"name", "site"?}: every schedule of the site is closed
        that day (published again to the doors)."""
        body = await self._body(request)
        day = request.match_info["date"]
        return _json(await self._change(request, 200, self.store.put_holiday, day, body))

    async def admin_delete_holiday(self, request: web.Request) -> web.Response:
        """DELETE /admin/holidays/{date}?site=."""
        day = request.match_info["date"]
        await self._change(request, 204, self.store.delete_holiday, day, request.query.get("site"))
        return web.Response(status=204)

    async def admin_list_badges(self, request: web.Request) -> web.Response:
        """GET /admin/badges[?q=&site=]: the badges (never a PIN hash), with revocation and
        key version."""
        badges = await self._db(
            functools.partial(
                self.store.list_badges, request.query.get("q"), site=request.query.get("site")
            )
        )
        return _json({"badges": badges})

    async def admin_rights(self, request: web.Request) -> web.Response:
        """GET /admin/rights?uid=&door=: may the badge open the door now, this week's spans,
        by the doors' own decision (central/rights.py)."""
        from .rights import explain

        uid, door = request.query.get("uid", ""), request.query.get("door", "")
        facts = await self._db(self.store.rights_facts, uid, door, request.query.get("site"))
        now_s = self.store.now_ms() // 1000
        explained = explain(facts, now_s)
        return _json(
            {
                "uid": facts["badge"]["uid"],
                "door": door,
                "zones": facts["zones"],
                "mode": explained["mode"],
                "now": explained["now"].to_dict(),
                "schedule": explained["schedule"],
                "via": explained["via"],
                "holidays": explained["holidays"],
                "week": [
                    {
                        "start": span.start,
                        "end": span.end,
                        "granted": span.granted,
                        "reason": span.reason,
                    }
                    for span in explained["spans"]
                ],
            }
        )

    async def admin_door_settings(self, request: web.Request) -> web.Response:
        """PUT /admin/doors/{door}/settings."""
        body = await self._body(request)
        door = request.match_info["door"]
        return _json(await self._change(request, 200, self.store.put_door_settings, door, body))

    async def admin_door_mode(self, request: web.Request) -> web.Response:
        """PUT /admin/doors/{door}/mode: a door's mode, with the reason (door modes)."""
        return await self._set_mode(request, "door", request.match_info["door"])

    async def admin_zone_mode(self, request: web.Request) -> web.Response:
        """PUT /admin/zones/{zone}/mode: the mode of every enrolled door of a zone."""
        return await self._set_mode(request, "zone", request.match_info["zone"])

    async def _set_mode(self, request: web.Request, scope: str, name: str) -> web.Response:
        body = await self._body(request)
        by = request[OPERATOR]["name"]
        result = await self._change(
            request, 200, self.store.set_door_mode, scope, name, body, by=by
        )
        return _json(result)

    async def admin_door_modes(self, request: web.Request) -> web.Response:
        """GET /admin/door-modes[?site=]: the doors and zones with their modes."""
        return _json(
            await self._db(
                self.store.door_modes,
                request.query.get("site"),
                online_within_ms=DOOR_ONLINE_WITHIN_MS,
            )
        )

    async def admin_alarms(self, request: web.Request) -> web.Response:
        """GET /admin/alarms: the alarms the devices' latest heartbeats list, each with its
        acknowledgement (who, when, the note) or null."""
        return _json({"alarms": await self._db(self.store.active_alarms)})

    async def admin_acknowledge_alarm(self, request: web.Request) -> web.Response:
        """POST /admin/alarms/acknowledge ``{"device_id", "code", "since_ms", "note"}``: the
        operator acknowledges an alarm a device reports, with a note (audited)."""
        body = await self._body(request)
        since_ms = body.get("since_ms")
        if isinstance(since_ms, bool) or not isinstance(since_ms, int):
            raise BadRequest(
                "since_ms: the alarm's since_ms (Unix ms), as GET /admin/alarms lists it"
            )
        for field in ("device_id", "code", "note"):
            if not isinstance(body.get(field), str):
                raise BadRequest(f"{field}: must be text")
        result = await self._change(
            request,
            200,
            self.store.acknowledge_alarm,
            body["device_id"],
            body["code"],
            since_ms,
            request[OPERATOR]["name"],
            body["note"],
        )
        return _json(result)

    async def admin_disable_device(self, request: web.Request) -> web.Response:
        """POST /admin/devices/{device_id}/disable."""
        device_id = request.match_info["device_id"]
        return _json(await self._change(request, 200, self.store.disable_device, device_id))

    async def admin_reset_device(self, request: web.Request) -> web.Response:
        """POST /admin/devices/{device_id}/reset."""
        device_id = request.match_info["device_id"]
        return _json(await self._change(request, 200, self.store.reset_device, device_id))

    async def admin_events(self, request: web.Request) -> web.Response:
        """GET /admin/events?verify=true."""
        verify = request.query.get("verify", "false").lower() in ("1", "true", "yes")
        return _json(await self._db(self.store.received, verify=verify))

    async def admin_device_events(self, request: web.Request) -> web.Response:
        """GET /admin/devices/{device_id}/events?after_seq=&limit=."""
        after_seq = self._int_query(request, "after_seq", 0)
        limit = self._int_query(request, "limit", 1000)
        device_id = request.match_info["device_id"]
        return _json(await self._db(self.store.device_events, device_id, after_seq, limit))

    async def admin_device_export(self, request: web.Request) -> web.Response:
        """GET /admin/devices/{device_id}/export?since=&until=: one device's events of a
        period (Unix ms, the device's clock) with the chain proof, for an auditor."""
        since = None if "since" not in request.query else self._int_query(request, "since", -1)
        until = None if "until" not in request.query else self._int_query(request, "until", -1)
        device_id = request.match_info["device_id"]
        exported = await self._db(
            self.store.export_device_events, device_id, since_ms=since, until_ms=until
        )
        # A read, but of personal data: who exported what goes into the audit log.
        await self._db(
            self.store.record_action,
            request[OPERATOR]["name"],
            "GET /admin/devices/{device_id}/export",
            {
                "device_id": device_id,
                "since": since,
                "until": until,
                "events": len(exported["events"]),
            },
            remote=request.remote,
            status=200,
        )
        return _json(exported)

    async def admin_device_selftest(self, request: web.Request) -> web.Response:
        """GET /admin/devices/{device_id}/selftest."""
        return _json(await self._db(self.store.selftest, request.match_info["device_id"]))

    async def admin_event_packs(self, request: web.Request) -> web.Response:
        """GET /admin/event-packs: the packs made (never their content) and the devices a
        pack can be made for."""
        packs = await self._db(self.store.list_event_packs)
        devices = await self._db(self.store.pack_devices)
        return _json({"packs": packs, "devices": devices})

    async def admin_create_event_pack(self, request: web.Request) -> web.Response:
        """POST /admin/event-packs: an event pack for one device (docs/sync.md); the answer's
        ``file`` is the pack to save as it is. Audited without the file."""
        body = await self._body(request)
        by = request[OPERATOR]["name"]
        return _json(
            await self._change(request, 201, self.store.create_event_pack, body, by=by), 201
        )

    async def admin_merge_journal(self, request: web.Request) -> web.Response:
        """POST /admin/event-packs/merge: a journal a device exported, with the checks of
        POST /v1/events (larger journals: ``portier-central event-pack merge --data``)."""
        body = await self._body(request)
        return _json(await self._change(request, 200, self.store.merge_journal, body))

    async def admin_faults(self, request: web.Request) -> web.Response:
        """GET /admin/faults."""
        return _json({"faults": self.faults.list()})

    async def admin_set_fault(self, request: web.Request) -> web.Response:
        """POST /admin/faults."""
        body = await self._body(request)
        try:
            spec = FaultSpec.from_dict(body)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        self.faults.set(spec)
        log.info("fault on: %s", spec.to_dict())
        return _json({"faults": self.faults.list()})

    async def admin_clear_faults(self, request: web.Request) -> web.Response:
        """DELETE /admin/faults?name=&endpoint=."""
        name = request.query.get("name")
        endpoint = request.query.get("endpoint")
        cleared = self.faults.clear(name, endpoint)
        log.info("faults off: %d (name=%s, endpoint=%s)", cleared, name, endpoint)
        return _json({"faults": self.faults.list()})


def serve(
    settings: CentralSettings,
    *,
    ready: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run the reference central until SIGTERM or SIGINT, then stop cleanly.

    *ready* is called once, when the server listens, with
    ``{"ready": True, "url", "port", "pid", "site", "data", "tls"}`` (``url`` is
    ``https://...`` when the central serves TLS itself).

    Raises:
        OSError: the address cannot be bound.
        ValueError: the TLS certificate or key is refused (the message names the option).
        sqlite3.Error: the database in ``settings.data_dir`` cannot be opened.
    """

    async def main() -> None:
        server = CentralServer(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            url = await server.start()
            if ready is not None:
                ready(
                    {
                        "ready": True,
                        "url": url,
                        "port": server.port,
                        "pid": os.getpid(),
                        "site": settings.site,
                        "data": str(settings.data_dir),
                        "tls": server.ssl_context is not None,
                    }
                )
            await stop.wait()
            log.info("stopping")
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
            await server.stop()

    asyncio.run(main())
