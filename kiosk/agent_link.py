"""The kiosk's only line to the edge agent: its local API, from worker threads.

:class:`AgentLink` runs every call in a small thread pool and hands the
result back through ``deliver`` (the app passes Kivy's main-thread
scheduler), so no screen ever waits on a socket. Two background threads keep
the UI informed:

* the *health* thread polls ``GET /v1/status`` (every ``status_interval_s``
  while the agent answers, every ``retry_interval_s`` while it does not) and
  reports online/offline transitions and each status;
* the *events* thread follows ``GET /v1/events`` (badge decisions, door state,
  alarms) and reconnects with a capped exponential backoff when the stream
  breaks (the agent restarting), waking the health thread at once.

Only :mod:`edge_agent.client` is used from the edge agent; a test enforces it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.client import AgentClient, AgentUnavailable, ApiError

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Runs a callable on the UI thread (Kivy: ``Clock.schedule_once``); tests may call it directly.
Deliver = Callable[[Callable[[], None]], None]
Status = dict[str, Any]
Event = dict[str, Any]

#: Seconds of silence after which the event stream is considered broken (the agent
#: sends a keepalive every 15 s).
STREAM_SILENCE_S = 35.0
_BACKOFF_FIRST_S = 0.2
_BACKOFF_MAX_S = 5.0


class AgentLink:
    """Worker-thread access to the agent at ``socket_path``; see the module docstring.

    ``online`` is None until the first status poll has finished, then True or
    False. Listeners registered with :meth:`on_online`, :meth:`on_status` and
    :meth:`on_event` are called through ``deliver``.
    """

    def __init__(
        self,
        socket_path: str | Path,
        *,
        deliver: Deliver,
        timeout_s: float = 5.0,
        status_interval_s: float = 5.0,
        retry_interval_s: float = 1.0,
        workers: int = 2,
    ) -> None:
        self.socket_path = Path(socket_path)
        self._deliver = deliver
        self.timeout_s = timeout_s
        self.status_interval_s = status_interval_s
        self.retry_interval_s = retry_interval_s
        #: Calls without a guard session.
        self.client = AgentClient(self.socket_path, timeout=timeout_s)
        #: Calls of the guard session (it keeps the session token).
        self.guard_client = AgentClient(self.socket_path, timeout=timeout_s)
        self.online: bool | None = None
        self.last_status: Status | None = None
        self.stream_connected = False
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._stream_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._online_listeners: list[Callable[[bool], None]] = []
        self._status_listeners: list[Callable[[Status], None]] = []
        self._event_listeners: list[Callable[[Event], None]] = []

    # -- listeners ----------------------------------------------------------------
    def on_online(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(online)`` on the UI thread at every online/offline transition."""
        self._online_listeners.append(callback)

    def on_status(self, callback: Callable[[Status], None]) -> None:
        """Call ``callback(status)`` on the UI thread after every successful status poll."""
        self._status_listeners.append(callback)

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` on the UI thread for every pushed agent event."""
        self._event_listeners.append(callback)

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start the worker pool and the health and event threads. Idempotent."""
        if self._pool is not None:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="kiosk-api")
        for target, name in (
            (self._health_loop, "kiosk-health"),
            (self._event_loop, "kiosk-events"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads; calls not started yet are cancelled. Idempotent.

        The event thread may stay blocked in a read until the next keepalive;
        it is a daemon thread and exits on its own.
        """
        self._stop.set()
        self._poke.set()
        self._stream_wake.set()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for thread in self._threads:
            if thread.name == "kiosk-health":
                thread.join(timeout=self.timeout_s + 1)
        self._threads.clear()

    def check_now(self) -> None:
        """Ask the health thread to poll the status now (after a failed call, say)."""
        self._poke.set()

    # -- calls --------------------------------------------------------------------
    def submit(
        self,
        call: Callable[[], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> Future[T] | None:
        """Run ``call()`` in a worker; deliver its result or exception to the UI thread.

        ``on_error`` receives :class:`~edge_agent.client.AgentUnavailable` or
        :class:`~edge_agent.client.ApiError` (or any other exception, logged).
        An unreachable agent also triggers an immediate status poll. Returns the
        future, or None when the link is stopped (nothing is called then).
        """
        pool = self._pool
        if pool is None:
            return None

        def run() -> T:
            try:
                result = call()
            except Exception as exc:
                if isinstance(exc, AgentUnavailable):
                    self.check_now()
                elif not isinstance(exc, ApiError):
                    log.exception("agent call failed")
                if on_error is not None:
                    self._deliver(functools.partial(on_error, exc))
                raise
            if on_done is not None:
                self._deliver(functools.partial(on_done, result))
            return result

        try:
            return pool.submit(run)
        except RuntimeError:  # shut down between the check and the submit
            return None

    # -- background threads ---------------------------------------------------------
    def _set_online(self, online: bool) -> None:
        if online == self.online:
            return
        self.online = online
        log.warning("agent %s", "reachable" if online else "NOT reachable")
        if online:
            self._stream_wake.set()  # reconnect the event stream now, not after its backoff
        for callback in list(self._online_listeners):
            self._deliver(functools.partial(callback, online))

    def _health_loop(self) -> None:
        status_client = AgentClient(self.socket_path, timeout=self.timeout_s)
        while not self._stop.is_set():
            self._poke.clear()
            try:
                status = status_client.status()
            except (AgentUnavailable, ApiError) as exc:
                # A 5xx (journal unavailable) means no decision can be made either.
                log.debug("status poll failed: %s", exc)
                self._set_online(False)
            else:
                self.last_status = status
                self._set_online(True)
                for callback in list(self._status_listeners):
                    self._deliver(functools.partial(callback, status))
            interval = self.status_interval_s if self.online else self.retry_interval_s
            self._poke.wait(interval)

    def _event_loop(self) -> None:
        stream_client = AgentClient(self.socket_path, timeout=STREAM_SILENCE_S)
        backoff = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                for event in stream_client.events(timeout=STREAM_SILENCE_S):
                    if self._stop.is_set():
                        return
                    if not self.stream_connected:
                        self.stream_connected = True
                    backoff = _BACKOFF_FIRST_S
                    for callback in list(self._event_listeners):
                        self._deliver(functools.partial(callback, event))
            except AgentUnavailable as exc:
                log.debug("event stream: %s", exc)
            self.stream_connected = False
            self.check_now()
            self._stream_wake.wait(backoff)
            self._stream_wake.clear()
            backoff = min(backoff * 2, _BACKOFF_MAX_S)
