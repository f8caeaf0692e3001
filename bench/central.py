"""Load on the central: many devices uploading events and polling deltas, PostgreSQL and SQLite.

    .venv/bin/python bench/central.py            # 500 devices, 30 s per backend
    .venv/bin/python bench/central.py --quick    # 20 devices, a few seconds (the test's run)
    .venv/bin/python bench/central.py --rate 8000 --backends postgresql

For each backend, two ``portier-central serve`` processes share one database (PostgreSQL: a
temporary server from :mod:`central.testing_pg`, or ``--pg-url``; SQLite: one file), and the
devices alternate between the two ports (a round-robin balancer without the proxy hop). Each
simulated device is an asyncio client that enrolls through the real path (an enrollment token
from the admin API, then ``POST /v1/enroll``) and holds its own credential; it uploads its own
hash-chained events (``POST /v1/events``, batches of ``--batch`` at its share of ``--rate``)
and polls ``GET /v1/deltas`` every ``--poll-s`` seconds from its cursor. A third of the way in,
an operator revokes a badge (``POST /admin/badges/{uid}/revoke`` with an API token); each
device notes when a poll first brings the revocation.

Printed per backend: events/s sustained (accepted events over the time it took) against the
rate offered, upload latency p50/p99, polls, and the revocation's time to reach each device
(p50/p99/max, measured from the moment the admin request was sent; a poll interval of waiting
is part of it by design). Then it checks every accepted event is stored once.

The load generator runs on the same machine as the centrals and the database and competes
with them for the CPU: the figures are a floor for the central, not its ceiling. Events are
built and serialised before the clock starts, so the generator's own cost is mostly HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and its name would hide
# the ``central`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import aiohttp  # noqa: E402

from central.testing import CentralProcess, ChainBuilder  # noqa: E402

BADGE_UID = "04b3c4d5e6f701"  # as the central writes it (lower case)
#: What each device uploads: a door's access decision.
PAYLOAD = {"door": "door", "source": "nfc", "kind": "badge", "granted": True, "reason": "granted"}


@dataclass
class Device:
    """One simulated door: its credential, its pre-built batches and what it measured."""

    device_id: str
    url: str
    token: str
    bodies: list[bytes] = field(default_factory=list)
    cursor: str = ""
    accepted: int = 0
    uploads: int = 0
    polls: int = 0
    errors: int = 0
    revoked_after_s: float | None = None


@dataclass
class Run:
    """What one backend's run measured."""

    backend: str
    devices: int
    offered: float
    seconds: float = 0.0
    accepted: int = 0
    stored: int = 0
    latencies: list[float] = field(default_factory=list)
    polls: int = 0
    errors: int = 0
    reached: list[float] = field(default_factory=list)
    revoke_request_s: float = 0.0
    poll_seconds: float = 0.0
    #: CPU seconds spent while loaded: "centrals", "database" (PostgreSQL's processes),
    #: "generator" (this process).
    cpu: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return {
            "backend": self.backend,
            "devices": self.devices,
            "offered_events_per_s": round(self.offered),
            "events_per_s": round(self.accepted / self.seconds) if self.seconds else 0,
            "accepted": self.accepted,
            "stored_once": self.stored == self.accepted,
            "upload_p50_ms": _ms(pct(self.latencies, 0.50)),
            "upload_p99_ms": _ms(pct(self.latencies, 0.99)),
            "polls_per_s": round(self.polls / self.poll_seconds) if self.poll_seconds else 0,
            "errors": self.errors,
            "revocation_reached": len(self.reached),
            "revocation_p50_s": _s(pct(self.reached, 0.50)),
            "revocation_p99_s": _s(pct(self.reached, 0.99)),
            "revocation_max_s": _s(max(self.reached) if self.reached else None),
            "revoke_request_ms": _ms(self.revoke_request_s),
            # CPU milliseconds per 1,000 accepted events (uploads, polls and all), by whom.
            "cpu_ms_per_1000_events": {
                who: round(seconds * 1e6 / self.accepted) if self.accepted else None
                for who, seconds in self.cpu.items()
            },
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _s(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def _admin(
    session: aiohttp.ClientSession, url: str, token: str, method: str, path: str, body: Any = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.request(method, url + path, json=body, headers=headers) as response:
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
        return await response.json()


async def _enroll(
    session: aiohttp.ClientSession, urls: list[str], admin_token: str, n: int
) -> Device:
    url = urls[n % len(urls)]
    door = f"door-{n:04d}"
    token = await _admin(session, url, admin_token, "POST", "/admin/enroll-tokens", {"door": door})
    body = {"enroll_token": token["enroll_token"], "device_id": f"bench-{n:04d}"}
    async with session.post(url + "/v1/enroll", json=body) as response:
        if response.status != 201:
            raise RuntimeError(f"enroll {door}: {response.status} {await response.text()}")
        enrolled = await response.json()
    return Device(enrolled["device_id"], url, enrolled["device_token"])


def _build(devices: list[Device], batches: int, batch: int) -> None:
    """Give each device *batches* chained batches of *batch* events, serialised."""
    for device in devices:
        chain = ChainBuilder()
        payload = dict(PAYLOAD, door=device.device_id)
        device.bodies = [
            json.dumps({"events": [chain.event(payload=payload) for _ in range(batch)]}).encode()
            for _ in range(batches)
        ]


async def _uploader(
    device: Device,
    other: str,
    session: aiohttp.ClientSession,
    start: float,
    period: float,
    run: Run,
) -> float:
    """Upload the device's batches on its schedule, alternating ports; return when it ended."""
    loop = asyncio.get_running_loop()
    due = start + random.uniform(0, period)
    urls = [device.url, other]
    headers = {"Authorization": f"Bearer {device.token}", "Content-Type": "application/json"}
    finished = start
    for n, body in enumerate(device.bodies):
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        due += period
        sent = loop.time()
        while True:
            try:
                async with session.post(
                    urls[n % 2] + "/v1/events", data=body, headers=headers
                ) as response:
                    answer = await response.read()
                    if response.status == 200:
                        acks = json.loads(answer)["acks"]
                        device.accepted += sum(1 for ack in acks if ack["status"] == "accepted")
                        break
            except (aiohttp.ClientError, TimeoutError):
                pass
            device.errors += 1
            await asyncio.sleep(0.2)
        finished = loop.time()
        run.latencies.append(finished - sent)
        device.uploads += 1
    return finished


async def _poller(
    device: Device,
    other: str,
    session: aiohttp.ClientSession,
    poll_s: float,
    stop: asyncio.Event,
    revoked_at: list[float],
) -> None:
    """Poll deltas every *poll_s* from the device's cursor; note when the revocation arrives."""
    loop = asyncio.get_running_loop()
    urls = [device.url, other]
    headers = {"Authorization": f"Bearer {device.token}"}
    await asyncio.sleep(random.uniform(0, poll_s))
    while not stop.is_set():
        started = loop.time()
        try:
            more = True
            while more:
                params = {"cursor": device.cursor} if device.cursor else {}
                async with session.get(
                    urls[device.polls % 2] + "/v1/deltas", params=params, headers=headers
                ) as response:
                    device.polls += 1
                    if response.status != 200:
                        device.errors += 1
                        break
                    page = await response.json()
                device.cursor, more = page["cursor"], page["more"]
                if (
                    device.revoked_after_s is None
                    and revoked_at
                    and any(
                        r["kind"] == "badge" and r["id"] == BADGE_UID for r in page["revocations"]
                    )
                ):
                    device.revoked_after_s = loop.time() - revoked_at[0]
        except (aiohttp.ClientError, TimeoutError):
            device.errors += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, poll_s - (loop.time() - started)))


async def _load(
    urls: list[str], admin_token: str, args: argparse.Namespace, run: Run, cpu: Any
) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _admin(
            session,
            urls[0],
            admin_token,
            "POST",
            "/admin/badges",
            {"uid": BADGE_UID, "holder": "Bench Holder", "doors": ["door-0000"], "kind": "uid"},
        )
        devices: list[Device] = []
        for first in range(0, args.devices, 50):  # enroll 50 at a time
            devices += await asyncio.gather(
                *(_enroll(session, urls, admin_token, n)
                  for n in range(first, min(args.devices, first + 50)))
            )  # fmt: skip
        period = args.devices * args.batch / args.rate  # seconds between a device's uploads
        batches = max(1, round(args.seconds / period))
        _build(devices, batches, args.batch)
        others = {url: urls[(i + 1) % len(urls)] for i, url in enumerate(urls)}

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        revoked_at: list[float] = []
        counter = cpu()
        start = loop.time() + 0.5
        pollers = [
            asyncio.create_task(_poller(d, others[d.url], session, args.poll_s, stop, revoked_at))
            for d in devices
        ]
        uploaders = [
            asyncio.create_task(_uploader(d, others[d.url], session, start, period, run))
            for d in devices
        ]

        await asyncio.sleep(max(0.0, start - loop.time()) + args.seconds / 3)
        revoked_at.append(loop.time())
        await _admin(session, urls[1 % len(urls)], admin_token, "POST",
                     f"/admin/badges/{BADGE_UID}/revoke")  # fmt: skip
        run.revoke_request_s = loop.time() - revoked_at[0]

        ends = await asyncio.gather(*uploaders)
        run.seconds = max(ends) - start
        # Let every device's poll bring the revocation (bounded: a poll interval and then some).
        give_up = loop.time() + args.poll_s * 3 + 10
        while loop.time() < give_up and any(d.revoked_after_s is None for d in devices):
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*pollers)
        run.poll_seconds = loop.time() - start
        run.cpu = counter.used()

        run.accepted = sum(d.accepted for d in devices)
        run.polls = sum(d.polls for d in devices)
        run.errors = sum(d.errors for d in devices)
        run.reached = [d.revoked_after_s for d in devices if d.revoked_after_s is not None]
        received = await _admin(session, urls[0], admin_token, "GET", "/admin/events")
        run.stored = sum(
            d["unique_events"] for d in received["devices"] if d["device_id"].startswith("bench-")
        )


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of *pid* so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class _Cpu:
    """CPU time of the centrals, PostgreSQL's server processes and this process."""

    def __init__(self, centrals: list[int], postmaster: int | None) -> None:
        self.centrals, self.postmaster = centrals, postmaster
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        now = {
            "centrals": sum(_cpu_s(pid) for pid in self.centrals),
            "generator": time.process_time(),
        }
        if self.postmaster is not None:
            pids = [self.postmaster, *_children(self.postmaster)]
            now["database"] = sum(_cpu_s(pid) for pid in pids)
        return now

    def used(self) -> dict[str, float]:
        end = self._now()
        return {who: end[who] - self.start.get(who, 0.0) for who in end}


@contextlib.contextmanager
def _postgres(url: str | None, found: list[int]) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from central.testing_pg import PostgresServer

    with PostgresServer() as server:
        assert server.base is not None
        pid_file = server.base / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            found.append(int(pid_file.read_text().split()[0]))
        yield server.create_database()


@contextlib.contextmanager
def _centrals(where: Path, db: str, processes: int) -> Iterator[list[CentralProcess]]:
    centrals = [
        CentralProcess(where / f"central-{n}", extra_args=["--db", db]) for n in range(processes)
    ]
    try:
        for central in centrals:
            central.start()
        yield centrals
    finally:
        for central in centrals:
            central.stop()


def run_backend(backend: str, args: argparse.Namespace, where: Path) -> Run:
    """Start the centrals on *backend*, load them, stop them; return the measures."""
    run = Run(backend, args.devices, float(args.rate))
    with contextlib.ExitStack() as stack:
        postmaster: list[int] = []
        if backend == "postgresql":
            db = stack.enter_context(_postgres(args.pg_url, postmaster))
        else:
            db = f"sqlite:///{where / 'sqlite' / 'central.db'}"
        centrals = stack.enter_context(_centrals(where / backend, db, args.processes))
        token = centrals[0].token
        assert token is not None
        pids = [c.pid for c in centrals if c.pid is not None]

        def cpu() -> _Cpu:
            return _Cpu(pids, postmaster[0] if postmaster else None)

        asyncio.run(_load([c.url for c in centrals], token, args, run, cpu))
    return run


def _print(run: Run) -> None:
    s = run.summary()
    sys.stdout.write(
        f"{s['backend']:<10} {s['devices']} devices: {s['events_per_s']:,} events/s sustained "
        f"(offered {s['offered_events_per_s']:,}), upload p50 {s['upload_p50_ms']} ms "
        f"p99 {s['upload_p99_ms']} ms, {s['polls_per_s']} polls/s, {s['errors']} errors; "
        f"revocation reached {s['revocation_reached']}/{s['devices']} devices: "
        f"p50 {s['revocation_p50_s']} s p99 {s['revocation_p99_s']} s "
        f"max {s['revocation_max_s']} s (admin request {s['revoke_request_ms']} ms); "
        f"stored once: {s['stored_once']}; CPU ms per 1,000 events: "
        + ", ".join(f"{who} {ms}" for who, ms in s["cpu_ms_per_1000_events"].items())
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the bench; return 0, or 1 if an accepted event was not stored once or the
    revocation did not reach every device."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rate", type=float, default=6000, help="events/s offered, in all")
    parser.add_argument("--batch", type=int, default=20, help="events per upload")
    parser.add_argument("--seconds", type=float, default=30.0, help="upload time per backend")
    parser.add_argument("--poll-s", type=float, default=5.0, help="each device's deltas poll")
    parser.add_argument("--processes", type=int, default=2, help="central processes")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--pg-url", help="an empty database to use (default: a temporary server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--quick", action="store_true", help="20 devices, 2 s: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.rate, args.seconds, args.poll_s = 20, 400.0, 2.0, 1.0
    runs = []
    with tempfile.TemporaryDirectory(prefix="portier-bench-central-") as tmp:
        for backend in args.backends.split(","):
            run = run_backend(backend.strip(), args, Path(tmp))
            _print(run)
            runs.append(run)
    if args.json:
        sys.stdout.write(json.dumps([r.summary() for r in runs]) + "\n")
    ok = all(r.stored == r.accepted and len(r.reached) == r.devices for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
