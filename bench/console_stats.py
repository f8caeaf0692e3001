"""The console's statistics and on-site page on a year of events: how long their queries take.

    .venv/bin/python bench/console_stats.py                      # 1,000,000 events, SQLite
    .venv/bin/python bench/console_stats.py --backends sqlite postgresql
    .venv/bin/python bench/console_stats.py --events 100000 --without-index

A new database per backend (SQLite: a file in a temporary directory; PostgreSQL: a temporary
server from :mod:`central.testing_pg`) gets 10 enrolled doors and ``--events`` events spread
over the past 365 days, written straight into the ``events`` table (uploading a million
hash-chained events through ``POST /v1/events`` would measure the upload, not the page): 70 %
granted entries, 4 % refusals (five reasons), 8 % check-ins and 8 % check-outs (a few visitors
stay on site), 1 % door alarms, the rest door opened/closed; mostly in working hours; payloads
in canonical JSON as devices send them. Each door's heartbeats of the year fill
``device_contact`` (a quarter hour in twenty missed).

Printed per backend: the median and the slowest of ``--runs`` runs, in ms, of what the
statistics page reads for a period of 7, 30 and 90 days (``event_counts`` +
``device_availability``, the store calls the page makes) and of ``on_site`` (the on-site page
and the muster list: the open visits the upload keeps, schema 12's ``onsite_visits``).
``--without-index`` drops schema 12's ``events_kind_time`` and measures again, to see what
the index is worth.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and its name would hide
# the ``central`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from central.settings import CentralSettings  # noqa: E402
from central.store import CentralStore  # noqa: E402
from central.store.base import dumps  # noqa: E402
from central.store.stats import QUARTER_MS, rebuild_onsite_visits  # noqa: E402

DOORS = 10
DAY_MS = 86_400_000
REASONS = ("expired", "revoked", "wrong_door", "outside_schedule", "not_yet_valid")
ALARMS = ("held_open", "forced_open", "tamper")


def _moment(draw: random.Random, now_ms: int) -> int:
    """A time in the past year, four in five in working hours (UTC: close enough here)."""
    day = now_ms - now_ms % DAY_MS - draw.randrange(365) * DAY_MS
    if draw.random() < 0.8:
        return day + int(draw.uniform(7, 19) * 3_600_000)
    return day + draw.randrange(DAY_MS)


def _events(count: int, now_ms: int) -> Iterator[tuple[Any, ...]]:
    """The rows of *count* events over the year, each device's in time order (seq)."""
    draw = random.Random(12)
    per_device: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    visit = 0
    made = 0
    while made < count:
        device = f"bench-{draw.randrange(DOORS)}"
        door = device.replace("bench-", "door-")
        at = _moment(draw, now_ms)
        roll = draw.random()
        items: list[tuple[int, str, dict[str, Any]]]
        if roll < 0.70:
            items = [
                (
                    at,
                    "access.decision",
                    {
                        "door": door,
                        "granted": True,
                        "kind": "badge",
                        "reason": "granted",
                        "source": "nfc",
                    },
                )
            ]
        elif roll < 0.74:
            items = [
                (
                    at,
                    "access.decision",
                    {
                        "door": door,
                        "granted": False,
                        "kind": "badge",
                        "reason": draw.choice(REASONS),
                        "source": "nfc",
                    },
                )
            ]
        elif roll < 0.90:
            visit += 1
            ident = f"bench-inv-{visit}"
            checkin = {
                "by": "visitor",
                "door": door,
                "host": "Host",
                "invitation_id": ident,
                "visitor": f"Visitor {visit}",
            }
            items = [(at, "visitor.checked_in", checkin)]
            if at < now_ms - DAY_MS or draw.random() < 0.5:
                items.append(
                    (
                        at + 4 * 3_600_000,
                        "visitor.checked_out",
                        {"how": "kiosk", "invitation_id": ident},
                    )
                )
        elif roll < 0.91:
            items = [(at, "alarm.raised", {"alarm": draw.choice(ALARMS), "door": door})]
        else:
            items = [(at, draw.choice(("door.opened", "door.closed")), {"door": door})]
        per_device.setdefault(device, []).extend(items)
        made += len(items)
    for device, items in sorted(per_device.items()):
        items.sort(key=lambda item: item[0])
        for seq, (at, kind, payload) in enumerate(items, start=1):
            ident = str(uuid.UUID(int=draw.getrandbits(128)))
            yield (device, seq, ident, at, seq * 1000, kind, dumps(payload),
                   "0" * 64, "0" * 64, at + 500, 1, "stored", None)  # fmt: skip


def _seed(store: CentralStore, count: int) -> None:
    now = store.now_ms()
    for n in range(DOORS):
        token = store.create_enroll_token(door=f"door-{n}", zones=["site"])["enroll_token"]
        store.enroll({"enroll_token": token, "device_id": f"bench-{n}"})
    rows = _events(count, now)
    sql = (
        "INSERT INTO events (device_id, seq, id, wall_ms, mono_ns, type, payload, prev_hash, "
        "hash, received_at_ms, link_ok, status, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == 20_000:
            with store._tx() as conn:
                conn.executemany(sql, chunk)
            chunk = []
    if chunk:
        with store._tx() as conn:
            conn.executemany(sql, chunk)
    with store._tx() as conn:  # what the upload keeps for who is on site (record_visit)
        rebuild_onsite_visits(conn)
    draw = random.Random(13)
    first = (now - 365 * DAY_MS) // QUARTER_MS
    with store._tx() as conn:
        conn.execute(
            "UPDATE devices SET enrolled_at_ms = ?, next_seq = 1000000000", (now - 366 * DAY_MS,)
        )
        for n in range(DOORS):
            conn.executemany(
                "INSERT INTO device_contact (device_id, quarter) VALUES (?, ?)",
                [
                    (f"bench-{n}", q)
                    for q in range(first, now // QUARTER_MS + 1)
                    if draw.random() > 0.05
                ],
            )


def _time(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent), max(spent)


def _measure(store: CentralStore, runs: int, label: str) -> None:
    now = store.now_ms()
    for days in (7, 30, 90):
        since, until = now - days * DAY_MS, now + DAY_MS

        def page(since: int = since, until: int = until) -> None:
            store.event_counts(since, until)
            store.device_availability(since, until)

        median, worst = _time(page, runs)
        print(f"  {label}statistics page, {days:2d} days: {median:8.1f} ms median, "
              f"{worst:8.1f} ms slowest")  # fmt: skip
    median, worst = _time(store.on_site, runs)
    people = len(store.on_site())
    print(f"  {label}on site ({people} on site):   {median:8.1f} ms median, "
          f"{worst:8.1f} ms slowest")  # fmt: skip


@contextmanager
def _store(backend: str, where: Path) -> Iterator[CentralStore]:
    if backend == "sqlite":
        with CentralStore(CentralSettings(data_dir=where / "sqlite")) as store:
            yield store
        return
    from central.testing_pg import PostgresServer

    with PostgresServer() as server:
        url = server.create_database()
        with CentralStore(CentralSettings(data_dir=where / "pg", db=url)) as store:
            yield store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--without-index", action="store_true", help="also measure without it")
    args = parser.parse_args(argv)
    for backend in args.backends:
        with (
            tempfile.TemporaryDirectory(prefix="portier-bench-") as where,
            _store(backend, Path(where)) as store,
        ):
            started = time.perf_counter()
            _seed(store, args.events)
            if backend == "postgresql":
                with store._tx() as conn:
                    conn.execute("ANALYZE")
            else:
                store._conn.execute("ANALYZE")
            print(f"{backend}: {args.events} events over 365 days, {DOORS} doors "
                  f"(seeded in {time.perf_counter() - started:.0f} s)")  # fmt: skip
            _measure(store, args.runs, "")
            if args.without_index:
                with store._tx() as conn:
                    conn.execute("DROP INDEX events_kind_time")
                _measure(store, args.runs, "no index: ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
