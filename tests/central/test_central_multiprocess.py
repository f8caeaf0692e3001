"""Several central processes, one PostgreSQL: exactly once and per-device order hold when a
device's requests land on different processes, because the database enforces them.

Two ``portier-central serve --db postgresql://...`` processes share one database (the
session's PostgreSQL server, tests/conftest.py). Agents (``edge-agent run``) talk to a
round-robin HTTP proxy in front of them -- the load balancer -- which sends each request
to the other process than the one before (a refused connection is a 502, which a device
retries). Meanwhile credentials are presented at every door, both centrals inject faults
at random (errors, throttling, connections dropped, answers lost after the commit), and
one central after the other is killed with SIGKILL and started again. In the end every
journaled event is at the central exactly once, in order, its chain verified on arrival
and walked again (``assert_exactly_once``).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from central.testing import CentralProcess
from edge_agent.client import AgentClient, AgentUnavailable, ApiError
from tests.support.sync_rig import (
    STAFF_UID,
    AgentProcess,
    assert_exactly_once,
    enroll_with,
    make_config,
    synced_up,
    wait_until,
)

pytestmark = pytest.mark.processes

SEED = 20261205
CHAOS_SECONDS = 25.0
AGENTS = 3

#: Faults on every device endpoint of both centrals, each firing at random (seeded).
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("latency", {"delay_s": 0.05, "probability": 0.3}),
    # Held past the agent's 2 s: the agent resends through the proxy to the other process
    # while this one still works on the first copy (the proxy does not cancel it).
    ("timeout", {"delay_s": 2.5, "probability": 0.03}),
    ("error", {"status": 503, "probability": 0.05}),
    ("throttle", {"retry_after_s": 1, "probability": 0.03}),
    ("drop_mid_body", {"probability": 0.04}),
    ("drop_before_response", {"probability": 0.04}),
    ("lost_after_commit", {"probability": 0.06}),
]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}


class RoundRobinProxy:
    """An HTTP reverse proxy on loopback that alternates requests between *backends*."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self.counts = [0] * len(backends)
        self.failed = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        index = next(self._next)
        self.counts[index] += 1
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                self.backends[index] + request.path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
                auto_decompress=False,
            ) as answer:
                payload = await answer.read()
                out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=answer.status, body=payload, headers=out)
        except (TimeoutError, aiohttp.ClientError):
            self.failed += 1
            return web.Response(status=502, text="bad gateway")

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class Presenter(threading.Thread):
    """Taps badges at one door in a loop (each tap a journaled event)."""

    def __init__(self, config: Any, stop: threading.Event, seed: int) -> None:
        super().__init__(name=f"presenter-{config.device.id}", daemon=True)
        self.client = AgentClient(config.paths.socket, timeout=3.0)
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.answered = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.client.present_badge(self.rng.choice([STAFF_UID, "04DEAD01"]))
                self.answered += 1
            except (AgentUnavailable, ApiError, OSError):
                pass  # the agent is being killed or restarted: the next tap tries again
            self.stop_event.wait(self.rng.uniform(0.0, 0.05))


def _set_faults(central: CentralProcess, seed: int) -> None:
    with central.admin() as admin:
        for n, (name, options) in enumerate(FAULTS):
            admin.set_fault(name, endpoint="*", seed=seed + n, **options)


@pytest.fixture
def database(postgres_server: Any) -> Iterator[str]:
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


def test_two_centrals_on_one_postgresql_store_every_event_once_in_order(
    database: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    centrals = [
        CentralProcess(tmp_path / f"central-{n}", extra_args=["--db", database]) for n in (0, 1)
    ]
    agents: list[AgentProcess] = []
    stop = threading.Event()
    presenters: list[Presenter] = []
    try:
        for central in centrals:
            central.start()
        admin = centrals[0].admin()
        admin.put_badge(
            uid=STAFF_UID,
            holder="Sam Staff",
            doors=[f"gate-{n}" for n in range(AGENTS)],
            kind="uid",
        )
        with RoundRobinProxy([c.url for c in centrals]) as proxy:
            configs = [
                make_config(
                    tmp_path / f"agent-{n}",
                    proxy.url,
                    device=f"gate-{n}",
                    door=f"gate-{n}",
                    central={"timeout_s": 2.0, "batch_size": 10, "backoff_cap_s": 0.3},
                )
                for n in range(AGENTS)
            ]
            for config in configs:
                enroll_with(admin, config)
                agents.append(AgentProcess(config, config.paths.state_dir.parent / "a.log"))
                agents[-1].start()
            for n, central in enumerate(centrals):
                _set_faults(central, SEED + 10 * n)
            presenters = [Presenter(c, stop, SEED + 100 + n) for n, c in enumerate(configs)]
            for presenter in presenters:
                presenter.start()
            kills = 0
            deadline = time.monotonic() + CHAOS_SECONDS
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(1.0, 3.0))
                victim = centrals[kills % 2]
                assert victim.process is not None
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait(10)
                victim.stop()  # reaps and forgets the process
                kills += 1
                time.sleep(rng.uniform(0.2, 1.5))  # the other one serves alone meanwhile
                victim.start()
                _set_faults(victim, SEED + 1000 + kills)
            stop.set()
            for presenter in presenters:
                presenter.join(10)
            for central in centrals:
                with central.admin() as each:
                    each.clear_faults()
            for config in configs:
                wait_until(lambda c=config: synced_up(admin, c), 120, f"{config.device.id}")
            assert kills >= 5 and min(proxy.counts) > 50, (kills, proxy.counts)
            print(f"kills={kills} requests={proxy.counts} refused={proxy.failed}")
            summaries = [assert_exactly_once(admin, config) for config in configs]
            for config in configs:  # the other process sees the same truth
                with centrals[1].admin() as other:
                    assert_exactly_once(other, config)
        assert sum(p.answered for p in presenters) > 100
        assert sum(s["unique_events"] for s in summaries) > 100
    finally:
        stop.set()
        for agent in agents:
            agent.stop()
        for central in centrals:
            central.stop()
