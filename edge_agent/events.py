"""Live events of the agent, fanned out to the kiosk's event stream (``GET /v1/events``).

:class:`EventBus` is how the agent publishes what it journals (and its door's
events) to whoever listens: the local API's event streams and the central link's
uplink, woken by each new event. It never slows the door down.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class EventBus:
    """Fan-out of live events to subscribers (the kiosk's event stream).

    Each subscriber has a bounded queue; a subscriber that stops reading loses
    the oldest events (and is told with a ``stream.gap`` event) rather than
    slowing the door down.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._subscribers: set[queue.Queue[dict[str, Any]]] = set()
        self._callbacks: set[Callable[[dict[str, Any]], None]] = set()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send one event to every subscriber."""
        event = {"type": kind, "at": time.time(), **data}
        with self._lock:
            subscribers = list(self._subscribers)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed")
        for q in subscribers:
            try:
                q.put_nowait(event)
            except queue.Full:
                # A subscriber that stopped reading loses its oldest event, and is told.
                with contextlib.suppress(queue.Empty, queue.Full):
                    q.get_nowait()
                    q.put_nowait({"type": "stream.gap", "at": time.time()})

    @contextmanager
    def subscribe(self) -> Iterator[queue.Queue[dict[str, Any]]]:
        """A queue receiving events while the ``with`` block lasts."""
        q: queue.Queue[dict[str, Any]] = queue.Queue(self._maxsize)
        with self._lock:
            self._subscribers.add(q)
        try:
            yield q
        finally:
            with self._lock:
                self._subscribers.discard(q)

    @contextmanager
    def subscribe_callback(self, callback: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """Call ``callback(event)`` from the publishing thread while the block lasts.

        For consumers with their own queue (the API's asyncio loop); the
        callback must be quick and must not raise.
        """
        with self._lock:
            self._callbacks.add(callback)
        try:
            yield
        finally:
            with self._lock:
                self._callbacks.discard(callback)

    @property
    def subscriber_count(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._subscribers) + len(self._callbacks)
