"""Live events for the console's pages: one reader of the store shared by every listener.

:class:`LiveHub` runs one task while at least one page listens: it reads the events
received since its last read (``store.live_events``) and hands the new ones to every
listener. It reads when an upload committed in this process (:meth:`LiveHub.poke`, called
by the server's ``POST /v1/events``) and every ``interval_s`` otherwise, for the uploads
that land on other central processes sharing the database. However many pages are open,
that is one store read per wake-up.

Events are read ``LAG_MS`` back from the newest reception time seen (an upload that began
before another and committed after it still shows) and told once each (their
``device:seq`` key). A reader that starts tells what arrived in the last ``LAG_MS``; a page
that joins a running reader first gets what it told in that window. Either way the page
may have rendered some of those rows already: it skips the keys it shows, so no event that
arrived between the page's rendering and its stream is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

__all__ = ["LiveHub"]

log = logging.getLogger(__name__)

#: How far back each read looks from the newest reception time seen.
LAG_MS = 15_000
#: At most this many events per read.
BATCH = 200
#: A listener that falls this many batches behind is dropped (its page reconnects).
QUEUE = 64


class LiveHub:
    """Shares the latest events with the listening pages.

    Args:
        read: ``read(since_ms)`` returns the events received at or after *since_ms* (or the
            latest ones when None), newest first (``store.live_events`` on the database
            thread).
        now_ms: the store's clock.
        interval_s: the poll period when no upload of this process wakes the reader.
    """

    def __init__(
        self,
        read: Callable[[int | None], Awaitable[list[dict[str, Any]]]],
        now_ms: Callable[[], int],
        *,
        interval_s: float = 2.0,
    ) -> None:
        self._read = read
        self._now_ms = now_ms
        self.interval_s = interval_s
        self._listeners: set[asyncio.Queue[list[dict[str, Any]] | None]] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[str, int] = {}
        self._recent: list[dict[str, Any]] = []
        self._since: int | None = None
        self._closed = False
        #: Store reads done (tests check the reads are shared).
        self.reads = 0

    def poke(self) -> None:
        """An upload committed in this process: read now (no-op when nobody listens)."""
        if self._wake is not None:
            self._wake.set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[list[dict[str, Any]] | None]]:
        """A queue of the new events' batches (oldest first) while the ``with`` lasts;
        ``None`` in it means the hub closed (or this listener fell too far behind)."""
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(QUEUE)
        if self._closed:
            queue.put_nowait(None)
        elif self._recent and self._task is not None and not self._task.done():
            # What the running reader told lately: the page may have been rendered before.
            queue.put_nowait(list(self._recent))
        self._listeners.add(queue)
        self._start()
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    async def listen(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Yield each batch of new events (oldest first) until the hub closes."""
        with self.subscribe() as queue:
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                yield batch

    async def close(self, *_: object) -> None:
        """End every listener and the reader (the server shuts down)."""
        self._closed = True
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _start(self) -> None:
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        # A new reader tells what arrived in the last LAG_MS (a page rendered meanwhile
        # skips the rows it already shows), nothing older.
        self._since, self._seen, self._recent = self._now_ms(), {}, []
        try:
            while self._listeners and not self._closed:
                await self._fetch()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                self._wake.clear()
        except asyncio.CancelledError:
            raise
        except Exception:  # the pages reconnect; the next listener starts a new reader
            log.exception("console: live events reader failed")
            for queue in list(self._listeners):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def _fetch(self) -> None:
        assert self._since is not None
        events = await self._read(self._since - LAG_MS)
        self.reads += 1
        fresh = [e for e in reversed(events) if e["key"] not in self._seen]
        for event in fresh:
            self._seen[event["key"]] = event["received_at_ms"]
            self._since = max(self._since, event["received_at_ms"])
        floor = self._since - 2 * LAG_MS
        self._seen = {key: at for key, at in self._seen.items() if at >= floor}
        self._recent = [e for e in self._recent + fresh if e["received_at_ms"] >= floor]
        if fresh:
            for queue in list(self._listeners):
                try:
                    queue.put_nowait(fresh)
                except asyncio.QueueFull:  # too slow: end it, its page reconnects
                    self._listeners.discard(queue)
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait(None)
