"""The live events' shared reader (central/console/live.py): one store read per wake-up
whoever listens, each event told once, nothing older than the reader's window, late
commits still told, a page that joins gets the window, closing ends every listener."""

from __future__ import annotations

import asyncio
from typing import Any

from central.console.live import LAG_MS, LiveHub


def _event(key: str, at: int) -> dict[str, Any]:
    return {"key": key, "received_at_ms": at}


class _Store:
    """Events as ``store.live_events`` answers them (newest first), and the reads asked."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = [_event("d:1", 1000)]
        self.asked: list[int | None] = []

    async def read(self, since: int | None) -> list[dict[str, Any]]:
        self.asked.append(since)
        chosen = [e for e in self.events if since is None or e["received_at_ms"] >= since]
        return sorted(chosen, key=lambda e: -e["received_at_ms"])


async def _take(listener: Any) -> list[str]:
    batch = await asyncio.wait_for(listener.__anext__(), 5)
    return [e["key"] for e in batch]


def test_one_read_serves_every_listener() -> None:
    async def scenario() -> None:
        store = _Store()
        hub = LiveHub(store.read, lambda: 1001 + LAG_MS, interval_s=60)
        listeners = [hub.listen() for _ in range(3)]
        firsts = [asyncio.ensure_future(_take(listener)) for listener in listeners]
        await asyncio.sleep(0.05)
        assert hub.reads == 1  # the first read: older than LAG_MS before the start: not told
        store.events.append(_event("d:2", 2000 + LAG_MS))
        hub.poke()
        assert [await first for first in firsts] == [["d:2"]] * 3
        assert hub.reads == 2  # one read for the three pages

        # An upload that began earlier but committed later (an older reception time):
        # still told, once; what was told before is not told again.
        store.events += [_event("d:3", 2500 + LAG_MS), _event("e:1", 2000 + LAG_MS // 2)]
        hub.poke()
        told = [await _take(listener) for listener in listeners]
        assert told == [["e:1", "d:3"]] * 3
        assert store.asked[-1] == 2000  # LAG_MS back from the newest seen (d:2)

        # A page that joins the running reader gets what it told lately first.
        late = hub.listen()
        assert await _take(late) == ["d:2", "e:1", "d:3"]
        listeners.append(late)

        await hub.close()
        for listener in listeners:
            try:
                await asyncio.wait_for(listener.__anext__(), 5)
            except StopAsyncIteration:
                pass
            else:  # pragma: no cover
                raise AssertionError("the listener was not ended")

    asyncio.run(scenario())


def test_the_reader_stops_when_nobody_listens_and_polls_meanwhile() -> None:
    async def scenario() -> None:
        store = _Store()
        hub = LiveHub(store.read, lambda: 1001 + LAG_MS, interval_s=0.05)
        listener = hub.listen()
        first = asyncio.ensure_future(_take(listener))
        await asyncio.sleep(0.02)
        store.events.append(_event("d:2", 3000 + LAG_MS))  # another process's: no poke
        assert await first == ["d:2"]
        await listener.aclose()
        await asyncio.sleep(0.2)
        reads = hub.reads
        await asyncio.sleep(0.2)
        assert hub.reads == reads  # nobody listens: no more reads
        await hub.close()

    asyncio.run(scenario())
