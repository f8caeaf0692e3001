"""The local API: HTTP + JSON on a Unix socket, served by aiohttp.

Only the kiosk and the CLI on the same appliance call it; the socket's file
mode (and its group) decides who may. There is no TCP port. The reference
is ``docs/local-api.md``.

Handlers only translate: every request becomes one call on
:class:`edge_agent.agent.Agent`, run in a worker thread so that a slow disk
never blocks the event loop (and the event stream keeps flowing).

The socket is bounded (``[api]`` in the configuration, docs/local-api.md
"Limits"): at most ``max_connections`` connections (:class:`ConnectionGate`
closes the oldest idle one to make room, so a client holding idle connections
can neither lock the kiosk out nor take the file descriptors the store and the
uplink need), a time limit on the request head, on the body and on idle
keep-alive, and a declared body over :data:`MAX_BODY_BYTES` refused with 413
before a byte of it is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from edge_agent.agent import OPEN_MODES, ActionError, Agent
from edge_agent.client import DEADLINE_HEADER
from edge_agent.config import ApiSection
from edge_agent.guards import GuardDenied
from edge_agent.policy import Credential
from edge_agent.store import StoreError
from portier_common.reasons import Reason
from portier_common.uid import hex_bytes

log = logging.getLogger(__name__)

API_VERSION = "v1"
#: Photos are the largest bodies (a JPEG of a face, well under 2 MB).
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_QR_CHARS = 4096
_JPEG_MAGIC = b"\xff\xd8\xff"
#: A body declared larger than this is answered 413 and the connection closed at once;
#: up to it, a refused body is drained (for at most _LINGER_S) so that the client, still
#: sending, reads the 413.
_DRAIN_MAX_BYTES = 2 * MAX_BODY_BYTES
_LINGER_S = 2.0
KEEPALIVE_S = 15.0

_AGENT = web.AppKey("agent", Agent)
#: The inboxes of the open event streams, ended with a None at shutdown.
_STREAMS: web.AppKey[set[asyncio.Queue[dict[str, Any] | None]]] = web.AppKey("streams", set)
_LIMITS = web.AppKey("limits", ApiSection)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: HTTP status of each guard login refusal (docs/local-api.md); others are 401.
_GUARD_STATUS = {
    "locked_out": 423,
    "rate_limited": 429,
    "console_disabled": 403,
    "bad_request": 400,
}

#: HTTP status of each :class:`~edge_agent.agent.ActionError` code (docs/local-api.md);
#: the agent's refusals carry a code only, their status is chosen here. Others are 400.
ACTION_STATUS = {
    # The caller's deadline passed (Portier-Deadline-Ms): nothing was done.
    "request_expired": 408,
    # Not now, in this door's state.
    "no_door": 409,
    "lockdown": 409,
    "emergency": 409,
    "no_such_alarm": 409,
    "already_checked_in": 409,
    "checkin_refused": 409,
    "not_on_site": 409,
    # Who asks.
    "not_logged_in": 401,
    "guard_required": 401,
    "not_simulated": 403,
    "wrong_pass": 403,
    "unknown_pass": 404,
    # What is asked about.
    "grant_unknown": 404,
    "unknown_invitation": 404,
    "grant_expired": 410,
    "photo_too_large": 413,
    # The pass printer (POST /v1/passes/print).
    "no_printer": 409,
    "printer_unavailable": 503,
}
#: A refused manual check-in whose invitation is not for here: 403 rather than 409.
_NOT_FOR_HERE = frozenset({Reason.WRONG_SITE.value, Reason.WRONG_DOOR.value})


def action_status(exc: ActionError) -> int:
    """The HTTP status answering the agent's refusal ``exc`` (by its code)."""
    if exc.code == "checkin_refused" and exc.extra.get("reason") in _NOT_FOR_HERE:
        return 403
    return ACTION_STATUS.get(exc.code, 400)


#: Error codes of the answers aiohttp itself gives.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


# -- connection limits -------------------------------------------------------------------

#: What a connection is doing, in the order the gate closes them to make room.
_IDLE, _READING, _STREAM, _BUSY = "idle", "reading", "stream", "busy"
_EVICTION_ORDER = (_IDLE, _READING, _STREAM)

_BUSY_BODY = json.dumps(
    {"error": "too_many_connections", "message": "the agent is serving too many connections"}
).encode()
#: The answer of a connection the gate cannot make room for (every other one is busy).
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)


class _Refused(asyncio.Protocol):
    """A connection over the limit with nothing to close for it: 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_ANSWER)
        transport.close()


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's :class:`RequestHandler` behind a thin wrapper
    that tells the gate when it opens, receives bytes and closes.

    Every protocol callback is passed on unchanged; the wrapper only keeps the state
    the gate chooses by (idle, reading a request head or waiting for its body, busy,
    event stream).
    """

    def __init__(self, gate: ConnectionGate, handler: RequestHandler) -> None:
        self.gate = gate
        self.handler = handler
        self.transport: asyncio.BaseTransport | None = None
        self.state = _IDLE
        self.doomed = False
        self._head_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol, passed on to aiohttp.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.handler.connection_made(transport)
        if self.doomed:  # evicted before it was even set up
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self.gate.forget(self)
        self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.state == _IDLE:
            # The first byte of a request head: the whole head must follow in time.
            self.state = _READING
            self._head_timer = asyncio.get_running_loop().call_later(
                self.gate.limits.header_timeout_s, self._head_expired
            )
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.handler.eof_received()  # aiohttp's returns None: the transport closes
        return None

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    # The gate's view.
    def begin(self) -> None:
        """A request head is complete and its handler runs."""
        self._cancel_head_timer()
        self.state = _BUSY

    def end(self) -> None:
        """The handler is done: idle until the next request (or the idle timeout)."""
        self.state = _IDLE

    def close(self) -> None:
        """Close the connection (at once, or as soon as it is set up)."""
        self.doomed = True
        if self.transport is not None:
            self.transport.close()

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.state == _READING:
            log.warning(
                "local API: request head not complete within %g s: connection closed",
                self.gate.limits.header_timeout_s,
            )
            self.gate.timed_out += 1
            self.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


class ConnectionGate:
    """The protocol factory of the local API's socket: at most ``max_connections``.

    A new connection over the limit makes room by closing another one, in this order:
    an idle connection (no request since it connected or since its last answer), then
    one still sending a request head, then an event stream -- the least recently
    active first in each group. Connections whose request is being handled are never
    closed; when every connection is busy the newcomer gets 503 and is closed. So a
    client holding many idle connections only ever holds ``max_connections`` file
    descriptors of the agent, and the kiosk's requests (sent as soon as it connects)
    still get through.
    """

    def __init__(self, limits: ApiSection) -> None:
        self.limits = limits
        self._server: web.Server | None = None
        #: Open connections, least recently active first.
        self._open: dict[_Connection, None] = {}
        self._by_handler: dict[RequestHandler, _Connection] = {}
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0

    def attach(self, server: web.Server) -> None:
        """Build connections with aiohttp's ``server`` (the runner's, once set up)."""
        self._server = server

    def __call__(self) -> asyncio.Protocol:
        """The protocol for a connection just accepted."""
        assert self._server is not None, "attach() the aiohttp server first"
        if len(self._open) >= self.limits.max_connections and not self._make_room():
            self.refused += 1
            log.warning("local API: %d connections, all busy: one refused", len(self._open))
            return _Refused()
        handler = self._server()
        connection = _Connection(self, handler)
        self._open[connection] = None
        self._by_handler[handler] = connection
        return connection

    def _make_room(self) -> bool:
        for state in _EVICTION_ORDER:
            for connection in self._open:
                if connection.state == state:
                    self.forget(connection)
                    connection.close()
                    self.evicted += 1
                    if self.evicted == 1 or self.evicted % 100 == 0:
                        log.warning(
                            "local API: connection limit %d reached: %s connection closed "
                            "(%d so far)",
                            self.limits.max_connections,
                            state,
                            self.evicted,
                        )
                    return True
        return False

    def forget(self, connection: _Connection) -> None:
        """The connection closed (or is being closed): no longer counted."""
        self._open.pop(connection, None)
        if self._by_handler.get(connection.handler) is connection:
            del self._by_handler[connection.handler]

    def lookup(self, handler: RequestHandler) -> _Connection | None:
        """The connection of aiohttp's ``handler`` (None: not through this gate)."""
        return self._by_handler.get(handler)

    def touch(self, connection: _Connection) -> None:
        """The connection was active: it goes to the back of the eviction order."""
        if connection in self._open:
            self._open.pop(connection)
            self._open[connection] = None

    @property
    def open_count(self) -> int:
        """Connections open now."""
        return len(self._open)


_GATE = web.AppKey("gate", ConnectionGate)


class _GatedUnixSite(web.BaseSite):
    """aiohttp's UnixSite, with :class:`ConnectionGate` as the protocol factory."""

    __slots__ = ("_gate", "_path")

    def __init__(self, runner: web.AppRunner, path: str, gate: ConnectionGate) -> None:
        super().__init__(runner)
        self._path = path
        self._gate = gate

    @property
    def name(self) -> str:
        """The site's URL, as aiohttp names Unix sites."""
        return f"http://unix:{self._path}:"

    async def start(self) -> None:
        """Listen on the socket (BaseSite.stop closes it)."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._gate, self._path, backlog=self._backlog)


@web.middleware
async def _track(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark the connection busy while its request is handled (never closed to make room)."""
    gate = request.app.get(_GATE)
    connection = gate.lookup(request.protocol) if gate is not None else None
    if connection is None:
        return await handler(request)
    connection.begin()
    try:
        return await handler(request)
    finally:
        connection.end()
        connection.gate.touch(connection)


class _BodyTimeout(Exception):
    """The request body did not arrive within ``[api] body_timeout_s``."""


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response(
        {"error": code, "message": message, **extra}, status=status, headers=headers
    )


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: fn(*args, **kwargs))


async def _json_body(request: web.Request) -> dict[str, Any]:
    limits = request.app.get(_LIMITS) or ApiSection()
    gate = request.app.get(_GATE)
    connection = gate.lookup(request.protocol) if gate is not None else None
    if connection is not None:
        # Waiting for a body is not work: such a connection may be closed to make room
        # (64 slow bodies must not keep the kiosk out for body_timeout_s).
        connection.state = _READING
    try:
        # A client sending its body a byte a minute must not hold a connection for ever.
        async with asyncio.timeout(limits.body_timeout_s):
            raw = await request.read()
    except TimeoutError as exc:
        raise _BodyTimeout(f"request body not complete within {limits.body_timeout_s:g} s") from exc
    finally:
        if connection is not None and connection.state == _READING:
            connection.state = _BUSY
    try:
        body = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest("body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    return body


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class _BadRequest(Exception):
    """The request body or query is malformed: answered 400 with the message."""


def _badge_bytes(uid: str) -> bytes:
    """The bytes a reader read, as hex text (the badge-UID text of :mod:`portier_common.uid`,
    any length from 1 to 16 bytes: a read that is no badge UID is an unknown badge);
    raises _BadRequest."""
    try:
        raw = hex_bytes(uid)
    except ValueError as exc:
        raise _BadRequest(f"'badge_uid' must be hex ({exc})") from exc
    if not 1 <= len(raw) <= 16:
        raise _BadRequest("'badge_uid' must be 1 to 16 bytes")
    return raw


def _closing(response: web.Response) -> web.Response:
    """``response`` with ``Connection: close``: the rest of the request is not read."""
    response.force_close()
    return response


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response`` and close the connection at once, without draining the rest of
    the body (aiohttp would otherwise read and discard it for ``lingering_time``)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        # Refused on the declaration alone, before a byte of the body is read.
        response = _error(413, "too_large", f"body larger than {MAX_BODY_BYTES} bytes declared")
        if request.method == "POST" and request.path == f"/{API_VERSION}/guard/login":
            # Every refused guard login is journaled, this one too.
            await _call(request.app[_AGENT].guard_login_refused, "too_large")
        if declared > _DRAIN_MAX_BYTES:
            # Not worth draining: answer, then close at once. (Up to it, the body is
            # drained a moment, for a client like http.client that sends its whole body
            # before it reads the answer.)
            return await _answer_and_close(request, response)
        return _closing(response)
    try:
        return await handler(request)
    except _BadRequest as exc:
        return _error(400, "bad_request", str(exc))
    except _BodyTimeout as exc:
        # A client this slow is not waited for again (no lingering): closed at once.
        return await _answer_and_close(request, _error(408, "body_timeout", str(exc)))
    except ActionError as exc:
        return _error(action_status(exc), exc.code, str(exc), **exc.extra)
    except GuardDenied as exc:
        status = _GUARD_STATUS.get(exc.code, 401)
        extra: dict[str, Any] = {}
        headers = None
        if exc.retry_after_s:
            extra["retry_after_s"] = round(exc.retry_after_s, 1)
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        if exc.attempts_left is not None:
            extra["attempts_left"] = exc.attempts_left
        return _error(status, exc.code, str(exc), headers=headers, **extra)
    except StoreError as exc:
        # The journal is the door's memory: without it nothing is decided.
        log.exception("store failure while serving %s", request.path)
        return _error(503, "journal_unavailable", f"the journal cannot be written: {exc}")
    except web.HTTPException as exc:
        # aiohttp's own answers (no such route, wrong method, body too large)
        # in the same JSON shape as ours, so a client parses every error alike.
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = f"body larger than {MAX_BODY_BYTES} bytes" if exc.status == 413 else exc.reason
        allow = exc.headers.get("Allow")
        return _error(exc.status, code, message, headers={"Allow": allow} if allow else None)
    except ConnectionError:
        raise  # the caller went away: nobody to answer
    except Exception:
        # A bug: logged with its traceback; the caller gets the usual JSON shape.
        log.exception("unexpected error while serving %s %s", request.method, request.path)
        return _error(500, "internal_error", "unexpected error in the agent (see its log)")


async def status(request: web.Request) -> web.Response:
    """GET /v1/status."""
    return web.json_response(await _call(request.app[_AGENT].status))


def _deadline(request: web.Request) -> float | None:
    """The caller's deadline (``Portier-Deadline-Ms``) as seconds left now; None: none given.

    The header is in milliseconds on the host's CLOCK_MONOTONIC, which every process
    of the host shares (the local API is a Unix socket: the caller is on this host).
    """
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return None
    try:
        deadline_ms = int(raw)
    except ValueError as exc:
        raise _BadRequest(f"{DEADLINE_HEADER} must be an integer (ms, CLOCK_MONOTONIC)") from exc
    return deadline_ms / 1000.0 - time.monotonic()


async def present(request: web.Request) -> web.Response:
    """POST /v1/present: a QR text or a badge (uid hex, optional SUN URL) -> decision."""
    left_s = _deadline(request)
    body = await _json_body(request)
    qr, uid = body.get("qr"), body.get("badge_uid")
    if (qr is None) == (uid is None):
        raise _BadRequest("give exactly one of 'qr' or 'badge_uid'")
    if qr is not None:
        if not isinstance(qr, str) or len(qr) > MAX_QR_CHARS:
            raise _BadRequest(f"'qr' must be a string of at most {MAX_QR_CHARS} characters")
        credential = Credential.qr(qr)
    else:
        sun_url = body.get("sun_url")
        if not isinstance(uid, str) or (sun_url is not None and not isinstance(sun_url, str)):
            raise _BadRequest("'badge_uid' must be hex and 'sun_url' a string")
        credential = Credential.badge(_badge_bytes(uid), sun_url)
    source = body.get("source", "api")
    if source not in ("api", "kiosk-camera", "kiosk", "cli"):
        source = "api"
    open_mode = body.get("open", "now")
    if open_mode not in OPEN_MODES:
        raise _BadRequest(f"'open' must be one of {', '.join(OPEN_MODES)}")
    return web.json_response(
        await _call(request.app[_AGENT].present, credential, source, open_mode, left_s=left_s)
    )


async def open_grant(request: web.Request) -> web.Response:
    """POST /v1/grants/{id}/open: open the door for a grant held since the scan."""
    handle = request.match_info["grant_id"]
    left_s = _deadline(request)
    if not 16 <= len(handle) <= 64:
        raise _BadRequest("the grant id is 16 to 64 characters")
    return web.json_response(await _call(request.app[_AGENT].open_grant, handle, left_s=left_s))


async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: server-sent events, one JSON object per ``data:`` line."""
    agent = request.app[_AGENT]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=512)

    def deliver(event: dict[str, Any]) -> None:
        try:
            inbox.put_nowait(event)
        except asyncio.QueueFull:
            # A reader that stopped reading loses the oldest events, and is told.
            inbox.get_nowait()
            inbox.put_nowait({"type": "stream.gap", "at": time.time()})

    def from_thread(event: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed while shutting down
            loop.call_soon_threadsafe(deliver, event)

    streams: set[asyncio.Queue[dict[str, Any] | None]] = request.app[_STREAMS]
    streams.add(inbox)
    gate = request.app.get(_GATE)
    connection = gate.lookup(request.protocol) if gate is not None else None
    if connection is not None:
        # A stream lasts for ever: it may be closed to make room, after idle connections.
        connection.state = _STREAM
    try:
        with agent.bus.subscribe_callback(from_thread):
            await response.write(b": portier event stream\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(inbox.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if event is None:  # the agent is stopping: end the stream cleanly
                    break
                data = json.dumps(event, separators=(",", ":"))
                await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    except ConnectionError:
        pass  # the kiosk closed the stream
    finally:
        streams.discard(inbox)
    return response


async def _end_streams(app: web.Application) -> None:
    # Without this, shutdown would wait its whole timeout for every open stream.
    streams = app[_STREAMS]
    for inbox in list(streams):
        if inbox.full():
            inbox.get_nowait()
        inbox.put_nowait(None)


async def guard_login(request: web.Request) -> web.Response:
    """POST /v1/guard/login {badge_uid, pin, sun_url?} -> {token, name, expires_in_s}.

    The body's values go to the agent unchecked: it validates them and journals
    every refusal, a malformed or oversized body included.
    """
    agent = request.app[_AGENT]
    try:
        body = await _json_body(request)
    except _BadRequest:
        body = {}
    except web.HTTPRequestEntityTooLarge:
        await _call(agent.guard_login_refused, "too_large")
        raise
    session = await _call(
        agent.guard_login, body.get("badge_uid"), body.get("pin"), body.get("sun_url")
    )
    return web.json_response(
        {
            "token": session.token,
            "guard_id": session.guard_id,
            "name": session.name,
            "expires_in_s": agent.config.guard.session_timeout_s,
        }
    )


async def guard_logout(request: web.Request) -> web.Response:
    """POST /v1/guard/logout (bearer)."""
    token = _token(request)
    if token:
        await _call(request.app[_AGENT].guard_logout, token)
    return web.json_response({"ok": True})


async def guard_action(request: web.Request) -> web.Response:
    """POST /v1/guard/actions {action, reason, alarm?} (bearer) -> door state."""
    left_s = _deadline(request)
    body = await _json_body(request)
    action, reason = body.get("action"), body.get("reason", "")
    alarm = body.get("alarm")
    if not isinstance(action, str) or not isinstance(reason, str):
        raise _BadRequest("'action' and 'reason' must be strings")
    if alarm is not None and not isinstance(alarm, str):
        raise _BadRequest("'alarm' must be a string")
    door = await _call(
        request.app[_AGENT].guard_action,
        _token(request) or "",
        action,
        reason,
        alarm,
        left_s=left_s,
    )
    return web.json_response({"ok": True, "door": door})


async def guard_recent(request: web.Request) -> web.Response:
    """GET /v1/guard/recent?limit=N (bearer): the latest journal events, newest first."""
    agent = request.app[_AGENT]
    await _call(agent.guard_session, _token(request) or "")
    try:
        limit = max(1, min(200, int(request.query.get("limit", "50"))))
    except ValueError as exc:
        raise _BadRequest("limit must be an integer") from exc
    return web.json_response({"events": await _call(agent.recent_events, limit)})


async def visitors(request: web.Request) -> web.Response:
    """GET /v1/visitors?q=NAME (bearer)."""
    query = request.query.get("q", "").strip()
    if not query:
        raise _BadRequest("q is required")
    found = await _call(request.app[_AGENT].visitor_lookup, _token(request) or "", query)
    return web.json_response({"visitors": found})


async def expected(request: web.Request) -> web.Response:
    """GET /v1/guard/expected?limit=N (bearer): the invitations valid today."""
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise _BadRequest("limit must be an integer") from exc
    return web.json_response(
        await _call(request.app[_AGENT].expected_today, _token(request) or "", limit)
    )


async def checkin(request: web.Request) -> web.Response:
    """POST /v1/checkin {invitation_id, consent, photo_jpeg_b64?, override_reason?}
    (bearer for manual)."""
    body = await _json_body(request)
    invitation_id, consent = body.get("invitation_id"), body.get("consent", False)
    if not isinstance(invitation_id, str) or not isinstance(consent, bool):
        raise _BadRequest("'invitation_id' (string) and 'consent' (bool) are required")
    photo = None
    if body.get("photo_jpeg_b64") is not None:
        try:
            photo = base64.b64decode(body["photo_jpeg_b64"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise _BadRequest("'photo_jpeg_b64' is not base64") from exc
        if photo and not photo.startswith(_JPEG_MAGIC):
            raise _BadRequest("'photo_jpeg_b64' is not a JPEG image")
    override = body.get("override_reason")
    if override is not None and not isinstance(override, str):
        raise _BadRequest("'override_reason' must be a string")
    result = await _call(
        request.app[_AGENT].checkin,
        invitation_id,
        consent=consent,
        photo=photo,
        token=_token(request),
        override_reason=override,
    )
    return web.json_response(result)


async def print_pass(request: web.Request) -> web.Response:
    """POST /v1/passes/print {pass_id, invitation_id, pdf_b64} (bearer: a guard's reprint)."""
    body = await _json_body(request)
    pass_id, invitation_id = body.get("pass_id"), body.get("invitation_id")
    if not isinstance(pass_id, str) or not isinstance(invitation_id, str):
        raise _BadRequest("'pass_id' and 'invitation_id' (strings) and 'pdf_b64' are required")
    try:
        pdf = base64.b64decode(body.get("pdf_b64") or "", validate=True)
    except (binascii.Error, TypeError) as exc:
        raise _BadRequest("'pdf_b64' is not base64") from exc
    result = await _call(
        request.app[_AGENT].print_pass,
        pdf,
        pass_id=pass_id,
        invitation_id=invitation_id,
        token=_token(request),
    )
    return web.json_response(result)


async def muster(request: web.Request) -> web.Response:
    """GET /v1/muster: the visitors on site (host, time of entry), and whether the fire
    input is active. No session: the kiosk shows it on the evacuation screen."""
    return web.json_response(await _call(request.app[_AGENT].muster))


async def checkout(request: web.Request) -> web.Response:
    """POST /v1/checkout {pass_id}: a visitor checks out with their pass (QR PV1:<pass id>)."""
    body = await _json_body(request)
    pass_id = body.get("pass_id")
    if not isinstance(pass_id, str):
        raise _BadRequest("'pass_id' (string) is required")
    result = await _call(request.app[_AGENT].checkout_by_pass, pass_id)
    return web.json_response(result)


async def print_muster(request: web.Request) -> web.Response:
    """POST /v1/muster/print {pdf_b64}: print the muster list (no session, as the list)."""
    body = await _json_body(request)
    try:
        pdf = base64.b64decode(body.get("pdf_b64") or "", validate=True)
    except (binascii.Error, TypeError) as exc:
        raise _BadRequest("'pdf_b64' is not base64") from exc
    return web.json_response(await _call(request.app[_AGENT].print_muster, pdf))


async def guard_reissue_pass(request: web.Request) -> web.Response:
    """POST /v1/guard/passes {invitation_id} (bearer): a new pass id for a guard's reprint."""
    body = await _json_body(request)
    result = await _call(
        request.app[_AGENT].reissue_pass, _token(request) or "", body.get("invitation_id")
    )
    return web.json_response(result)


async def guard_checkout(request: web.Request) -> web.Response:
    """POST /v1/guard/checkout {invitation_id, reason} (bearer): a guard checks a visitor out."""
    body = await _json_body(request)
    invitation_id = body.get("invitation_id")
    if not isinstance(invitation_id, str):
        raise _BadRequest("'invitation_id' (string) is required")
    result = await _call(
        request.app[_AGENT].guard_checkout,
        _token(request) or "",
        invitation_id,
        body.get("reason"),
    )
    return web.json_response(result)


async def call_help(request: web.Request) -> web.Response:
    """POST /v1/help {screen, lang}: a visitor calls a guard (one alarm however often)."""
    body = await _json_body(request)
    result = await _call(
        request.app[_AGENT].call_help, body.get("screen", ""), body.get("lang", "")
    )
    return web.json_response(result)


async def simulate(request: web.Request) -> web.Response:
    """POST /v1/sim/{action}: drive the simulated hardware (demo only)."""
    agent = request.app[_AGENT]
    body = await _json_body(request) if request.can_read_body else {}
    try:
        result = await _call(agent.simulate, request.match_info["action"], body)
    except ActionError as exc:
        if exc.code == "unknown_action":  # the path names no simulated action: no such resource
            return _error(404, exc.code, str(exc))
        raise
    return web.json_response(result)


def make_app(
    agent: Agent, limits: ApiSection | None = None, gate: ConnectionGate | None = None
) -> web.Application:
    """Return the aiohttp application serving ``agent`` (``gate``: the socket's
    :class:`ConnectionGate`, told which connections are busy)."""
    app = web.Application(middlewares=[_track, _errors], client_max_size=MAX_BODY_BYTES)
    app[_AGENT] = agent
    app[_STREAMS] = set()
    app[_LIMITS] = limits or ApiSection()
    if gate is not None:
        app[_GATE] = gate
    app.on_shutdown.append(_end_streams)
    prefix = f"/{API_VERSION}"
    app.router.add_get(f"{prefix}/status", status)
    app.router.add_post(f"{prefix}/present", present)
    app.router.add_post(f"{prefix}/grants/{{grant_id}}/open", open_grant)
    app.router.add_get(f"{prefix}/events", events)
    app.router.add_post(f"{prefix}/guard/login", guard_login)
    app.router.add_post(f"{prefix}/guard/logout", guard_logout)
    app.router.add_post(f"{prefix}/guard/actions", guard_action)
    app.router.add_get(f"{prefix}/guard/recent", guard_recent)
    app.router.add_get(f"{prefix}/guard/expected", expected)
    app.router.add_get(f"{prefix}/visitors", visitors)
    app.router.add_post(f"{prefix}/checkin", checkin)
    app.router.add_post(f"{prefix}/checkout", checkout)
    app.router.add_post(f"{prefix}/guard/checkout", guard_checkout)
    app.router.add_post(f"{prefix}/guard/passes", guard_reissue_pass)
    app.router.add_get(f"{prefix}/muster", muster)
    app.router.add_post(f"{prefix}/muster/print", print_muster)
    app.router.add_post(f"{prefix}/sim/{{action}}", simulate)
    app.router.add_post(f"{prefix}/help", call_help)
    app.router.add_post(f"{prefix}/passes/print", print_pass)
    return app


class SocketInUse(RuntimeError):
    """Another agent is serving on the socket path (a second ``edge-agent run``)."""


def _remove_stale_socket(path: Path) -> None:
    """Delete a socket file left by a crashed agent; raise SocketInUse if one still serves."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: a leftover
    else:
        raise SocketInUse(f"another agent is serving on {path}")
    finally:
        probe.close()


async def start_server(
    agent: Agent, path: Path, mode: int, limits: ApiSection | None = None
) -> web.AppRunner:
    """Serve the local API on the Unix socket ``path`` with file mode ``mode``, within
    ``limits`` (``[api]``; default: :class:`~edge_agent.config.ApiSection`'s).

    Returns the started runner (``await runner.cleanup()`` stops it). Raises
    :class:`SocketInUse` if another agent answers on ``path``; a socket file
    left by a crashed agent is removed.
    """
    limits = limits or ApiSection()
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    gate = ConnectionGate(limits)
    runner = web.AppRunner(
        make_app(agent, limits, gate),
        access_log=None,
        shutdown_timeout=2.0,
        # aiohttp closes a connection that has no complete request this long after it
        # connected or after its last answer (idle keep-alive, silent clients).
        keepalive_timeout=limits.idle_timeout_s,
        # A body we did not read (413, early errors) is drained this long at most.
        lingering_time=_LINGER_S,
    )
    await runner.setup()
    assert runner.server is not None
    gate.attach(runner.server)
    site = _GatedUnixSite(runner, str(path), gate)
    await site.start()
    os.chmod(path, mode)
    log.info(
        "local API on %s (mode %o, at most %d connections)", path, mode, limits.max_connections
    )
    return runner
