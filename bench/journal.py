"""Journal, cache and replay-store figures, measured in one run.

    .venv/bin/python bench/journal.py            # full run (about 2-4 minutes here)
    .venv/bin/python bench/journal.py --quick    # smaller sizes (about 1 minute)

Prints:

* raw SQLite (the store's events table and indexes, the store writer's
  pragmas: WAL + synchronous=FULL..., one autocommit INSERT of a row of the
  same shape per commit) single commits/s, Portier ``journal.append`` durable
  appends/s, and the ratio (target >= 0.90). Commits alternate raw / Portier
  one by one (and which goes first alternates) so both see the same disk
  weather; the ratio is the median over repeats of (raw time / Portier time),
  and the median of the pairs' differences says how many microseconds an
  append adds to a commit (less at the mercy of the disk than the ratio);
  and the share of an append the high-water mark (``<db>.hwm``) takes;
* group commit: ``append_many`` bursts of 1,000 against raw ``executemany``
  of the same rows, alternating likewise (target >= 50,000 events/s, ratio
  >= 0.60), and many threads calling ``append`` at once;
* 1,000,000 buffered events: time to write, file size (target <= 1 GB) and
  ``verify_chain`` time;
* badge look-up p50/p99 with 1,000,000 badges and 100,000 revocations
  cached, measured in a fresh process that only opens the store (as the
  agent does), with that process's RSS (target <= 80 MB);
* the time a 5,000-item delta holds the write lock.

The machine is shared and noisy: every figure is a median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from edge_agent.store import (
    Badge,
    Delta,
    Revocation,
    RevocationKind,
    Store,
    StoreSettings,
)
from edge_agent.store.highwater import HighWater
from edge_agent.store.schema import MIGRATIONS

PAYLOAD = {
    "door": "front-gate",
    "credential": "badge",
    "uid": "04a2b3c4d5e6f7",
    "granted": True,
    "reason": "granted",
    "holder": "h-000123",
}


def settings(path: Path, **kw: Any) -> StoreSettings:
    # Benches write far more than a device would: no reserve file, no disk
    # floor, so the figures do not depend on how full the shared disk is.
    return StoreSettings(path=path, reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0, **kw)


# -- single durable appends ---------------------------------------------------------


def raw_connection(path: Path) -> sqlite3.Connection:
    """The baseline: plain SQLite with the store's own events table (same
    columns, CHECKs, UNIQUE id index and partial sync index, from the store's
    first migration) and the store writer's pragmas (page size, WAL,
    synchronous=FULL, autocheckpoint, journal size limit), so the ratio
    measures Portier's own work and nothing the schema or settings cost."""
    defaults = StoreSettings(path=path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {defaults.page_size}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {defaults.checkpoint_pages}")
    conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        for step in MIGRATIONS[0].steps:
            assert isinstance(step, str)
            conn.execute(step)
    return conn


RAW_INSERT = (
    "INSERT INTO events (seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: Stand-ins for the chain hashes: same size, computed once (raw does no hashing).
RAW_PREV, RAW_HASH = os.urandom(32), os.urandom(32)


def raw_row(seq: int, payload_json: str) -> tuple[object, ...]:
    """A row of the same shape as a journaled event: the id is 16 bytes
    growing with seq (as UUIDv7 ids do), the hashes are fixed 32 bytes."""
    return (
        seq,
        seq.to_bytes(16, "big"),
        time.time_ns() // 1_000_000,
        time.monotonic_ns(),
        "access.decision",
        payload_json,
        RAW_PREV,
        RAW_HASH,
    )


def bench_single(work: Path, repeats: int, n: int) -> dict[str, float]:
    """Raw and Portier commits alternate one by one, so both meet the disk
    in the same state; which goes first alternates too, because a commit
    right behind another one's fsync is not timed like the first of a pair.
    The ratio of rates is the ratio of the summed times."""
    raw = raw_connection(work / "raw.sqlite")
    store = Store.open(settings(work / "single.sqlite"))
    insert = RAW_INSERT
    raw_payload = json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":"))
    append = store.journal.append
    clock = time.perf_counter
    raw_rates, our_rates, ratios = [], [], []
    # Portier's time minus raw's, pair by pair: what an append adds to a commit,
    # robust to the disk's weather (which moves the ratios).
    extra: list[float] = []
    seq = 0
    try:
        for repeat in range(repeats + 1):
            raw_s = ours_s = 0.0
            for i in range(n):
                if i % 2:
                    t0 = clock()
                    append("access.decision", PAYLOAD)
                    t1 = clock()
                    seq += 1
                    raw.execute(insert, raw_row(seq, raw_payload))
                    t2 = clock()
                    ours, theirs = t1 - t0, t2 - t1
                else:
                    t0 = clock()
                    seq += 1
                    raw.execute(insert, raw_row(seq, raw_payload))
                    t1 = clock()
                    append("access.decision", PAYLOAD)
                    t2 = clock()
                    ours, theirs = t2 - t1, t1 - t0
                ours_s += ours
                raw_s += theirs
                if repeat:
                    extra.append(ours - theirs)
            if repeat == 0:
                continue  # warm-up
            raw_rates.append(n / raw_s)
            our_rates.append(n / ours_s)
            ratios.append(raw_s / ours_s)
    finally:
        raw.close()
        store.close()
    return {
        "raw_per_s": statistics.median(raw_rates),
        "portier_per_s": statistics.median(our_rates),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "extra_us": statistics.median(extra) * 1e6,
    }


# -- group commit -----------------------------------------------------------------------


def bench_bursts(work: Path, repeats: int, burst: int, total: int) -> dict[str, float]:
    """``append_many`` bursts against the ceiling: plain ``executemany`` of rows
    of the same shape (payload JSON-encoded per row, as the caller hands
    dicts) into the same table with the same pragmas (:func:`raw_connection`).
    Raw and Portier bursts alternate one by one (which goes first alternates
    too), like the single commits; the ratio is the median over repeats."""
    store = Store.open(settings(work / "burst.sqlite"))
    raw = raw_connection(work / "raw-burst.sqlite")
    items = [("access.decision", PAYLOAD)] * burst
    append_many = store.journal.append_many
    clock = time.perf_counter
    seq = 0

    def raw_burst() -> None:
        nonlocal seq
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(
            RAW_INSERT, (raw_row(seq + i, json.dumps(PAYLOAD)) for i in range(1, burst + 1))
        )
        raw.execute("COMMIT")
        seq += burst

    raw_rates, our_rates, ratios = [], [], []
    try:
        for repeat in range(repeats + 1):
            raw_s = ours_s = 0.0
            for i in range(total // burst):
                if i % 2:
                    t0 = clock()
                    append_many(items)
                    t1 = clock()
                    raw_burst()
                    t2 = clock()
                    ours_s += t1 - t0
                    raw_s += t2 - t1
                else:
                    t0 = clock()
                    raw_burst()
                    t1 = clock()
                    append_many(items)
                    t2 = clock()
                    raw_s += t1 - t0
                    ours_s += t2 - t1
            if repeat == 0:
                continue  # warm-up
            raw_rates.append(total / raw_s)
            our_rates.append(total / ours_s)
            ratios.append(raw_s / ours_s)
    finally:
        raw.close()
        store.close()
    return {
        "raw_per_s": statistics.median(raw_rates),
        "portier_per_s": statistics.median(our_rates),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def bench_high_water(work: Path, n: int) -> float:
    """Microseconds one ``HighWater.record`` takes (written after every commit,
    no fsync on the append path): its share of an append."""
    mark = HighWater(work / "bench.hwm")
    mark.open()
    digest, raw_id = os.urandom(32), os.urandom(16)
    times = []
    try:
        for _ in range(5):
            start = time.perf_counter()
            for seq in range(n):
                mark.record(seq, digest, raw_id)
            times.append((time.perf_counter() - start) / n)
    finally:
        mark.close()
    return statistics.median(times) * 1e6


def bench_threads(work: Path, repeats: int, threads: int, per_thread: int) -> float:
    store = Store.open(settings(work / "threads.sqlite"))
    rates = []
    try:
        for _ in range(repeats):
            barrier = threading.Barrier(threads + 1)

            def worker(barrier: threading.Barrier = barrier) -> None:
                append = store.journal.append
                barrier.wait()
                for _ in range(per_thread):
                    append("access.decision", PAYLOAD)

            pool = [threading.Thread(target=worker) for _ in range(threads)]
            for t in pool:
                t.start()
            barrier.wait()
            start = time.perf_counter()
            for t in pool:
                t.join()
            rates.append(threads * per_thread / (time.perf_counter() - start))
        assert store.journal.verify_chain().ok
    finally:
        store.close()
    return statistics.median(rates)


# -- buffered events ------------------------------------------------------------------------


def bench_buffer(work: Path, count: int) -> dict[str, float]:
    path = work / "buffer.sqlite"
    store = Store.open(settings(path))
    chunk = 5_000
    start = time.perf_counter()
    try:
        written = 0
        while written < count:
            n = min(chunk, count - written)
            store.journal.append_many(
                [("access.decision", {**PAYLOAD, "n": written + i}) for i in range(n)]
            )
            written += n
        elapsed = time.perf_counter() - start
        store.checkpoint()
        db_bytes = path.stat().st_size
        wal = path.with_name(path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        start = time.perf_counter()
        result = store.journal.verify_chain()
        verify_s = time.perf_counter() - start
        assert result.ok and result.checked == count, result
        backlog = store.journal.backlog_count()
        assert backlog == count, backlog
    finally:
        store.close()
    return {
        "events": count,
        "write_s": elapsed,
        "db_bytes": db_bytes,
        "wal_bytes": wal_bytes,
        "verify_s": verify_s,
    }


# -- credential cache ------------------------------------------------------------------------


def uid_of(i: int) -> bytes:
    return b"\x04" + i.to_bytes(6, "big")


def fill_cache(path: Path, badges: int, revocations: int) -> dict[str, float]:
    store = Store.open(settings(path))
    page = 10_000
    start = time.perf_counter()
    try:
        cursor = 0
        for first in range(0, badges, page):
            cursor += 1
            store.cache.apply_delta(
                Delta(
                    cursor=f"c{cursor}",
                    badges=[
                        Badge(
                            uid_of(i),
                            "ntag424",
                            f"h-{i:07d}",
                            doors=("front-gate", "lab"),
                            not_after=1_900_000_000,
                        )
                        for i in range(first, min(first + page, badges))
                    ],
                )
            )
        for first in range(0, revocations, page):
            cursor += 1
            store.cache.apply_delta(
                Delta(
                    cursor=f"c{cursor}",
                    revocations=[
                        Revocation(
                            RevocationKind.BADGE, uid_of(i * 7).hex(), revoked_at=1_700_000_000
                        )
                        for i in range(first, min(first + page, revocations))
                    ],
                )
            )
        fill_s = time.perf_counter() - start
        # How long one delta page of 5,000 changes holds the write lock.
        lock_times = []
        for k in range(5):
            cursor += 1
            delta = Delta(
                cursor=f"c{cursor}",
                badges=[
                    Badge(uid_of(badges + k * 5_000 + i), "uid", f"n-{i}") for i in range(4_000)
                ],
                revocations=[
                    Revocation(RevocationKind.BADGE, uid_of(badges + 10**6 + k * 1000 + i).hex())
                    for i in range(1_000)
                ],
            )
            start = time.perf_counter()
            store.cache.apply_delta(delta)
            lock_times.append(time.perf_counter() - start)
        store.checkpoint()
    finally:
        store.close()
    return {
        "fill_s": fill_s,
        "delta_5000_ms": statistics.median(lock_times) * 1000,
        "db_bytes": path.stat().st_size,
    }


def lookup_child(path: str, badges: int, samples: int) -> None:
    """Run in a fresh process: open the store as the agent does, look up."""
    store = Store.open(settings(Path(path)))
    rng = random.Random(7)
    cache = store.cache
    for _ in range(2000):  # warm the page cache a little, as a running agent is
        cache.badge(uid_of(rng.randrange(badges)))
    times = []
    found = 0
    for _ in range(samples):
        i = rng.randrange(badges * 11 // 10)  # ~9% unknown badges
        uid = uid_of(i)
        start = time.perf_counter()
        badge = cache.badge(uid)
        revoked = cache.is_revoked("badge", uid)
        times.append(time.perf_counter() - start)
        found += badge is not None and not revoked
    times.sort()
    rss = psutil.Process().memory_info().rss
    store.close()
    print(
        json.dumps(
            {
                "p50_us": times[len(times) // 2] * 1e6,
                "p99_us": times[int(len(times) * 0.99)] * 1e6,
                "found": found,
                "rss": rss,
            }
        )
    )


def bench_lookups(path: Path, badges: int, samples: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--lookup-child", str(path), str(badges), str(samples)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--journal-only", action="store_true", help="single appends and bursts only"
    )
    parser.add_argument("--lookup-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lookup_child:
        lookup_child(args.lookup_child[0], int(args.lookup_child[1]), int(args.lookup_child[2]))
        return

    quick = args.quick
    single_repeats = 7 if quick else 15
    single_n = 300 if quick else 500
    events = 200_000 if quick else 1_000_000
    badges = 200_000 if quick else 1_000_000
    revocations = 20_000 if quick else 100_000

    work = args.dir or Path(tempfile.mkdtemp(prefix="portier-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"work directory {work} (SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]})"
    )
    try:
        single = bench_single(work, single_repeats, single_n)
        print(
            f"single durable appends: raw SQLite WAL+FULL {single['raw_per_s']:,.0f}/s, "
            f"Portier append() {single['portier_per_s']:,.0f}/s, "
            f"ratio {single['ratio']:.3f} (median of {single_repeats} runs of {single_n} "
            "alternating raw/Portier commits; "
            f"range {single['ratio_min']:.2f}-{single['ratio_max']:.2f}; target >= 0.90); "
            f"an append takes {single['extra_us']:.0f} us more than a raw commit "
            "(median of the pairs' differences)"
        )
        hwm_us = bench_high_water(work, 20_000)
        print(
            f"high-water mark record: {hwm_us:.1f} us per commit, "
            f"{hwm_us * single['portier_per_s'] / 1e4:.1f} % of a Portier append"
        )
        burst = bench_bursts(work, repeats=5, burst=1_000, total=50_000 if quick else 100_000)
        print(
            f"group commit, append_many bursts of 1,000: {burst['portier_per_s']:,.0f} events/s "
            f"(target >= 50,000), raw SQLite executemany of the same rows "
            f"{burst['raw_per_s']:,.0f}/s, ratio {burst['ratio']:.3f} (median of 5 runs of "
            f"alternating raw/Portier bursts; range {burst['ratio_min']:.2f}-"
            f"{burst['ratio_max']:.2f}; target >= 0.60)"
        )
        if args.journal_only:
            return
        threaded = bench_threads(work, repeats=3, threads=32, per_thread=500 if quick else 1_500)
        print(f"group commit, 32 threads calling append(): {threaded:,.0f} events/s")
        buf = bench_buffer(work, events)
        per_million = buf["db_bytes"] / buf["events"] * 1_000_000
        print(
            f"buffered events: {buf['events']:,} written in {buf['write_s']:.1f} s, "
            f"file {buf['db_bytes'] / 1e6:,.0f} MB (+ WAL {buf['wal_bytes'] / 1e6:,.0f} MB), "
            f"{per_million / 1e6:,.0f} MB per million (target <= 1,000 MB); "
            f"verify_chain {buf['verify_s']:.1f} s"
        )
        cache_path = work / "cache.sqlite"
        filled = fill_cache(cache_path, badges, revocations)
        print(
            f"cache: {badges:,} badges + {revocations:,} revocations applied in "
            f"{filled['fill_s']:.1f} s (file {filled['db_bytes'] / 1e6:,.0f} MB); "
            f"a 5,000-item delta holds the write lock {filled['delta_5000_ms']:.0f} ms"
        )
        looks = bench_lookups(cache_path, badges, 20_000 if quick else 50_000)
        print(
            f"badge look-up + revocation check ({badges:,} badges, {revocations:,} revocations), "
            f"fresh process: p50 {looks['p50_us']:.0f} us, p99 {looks['p99_us']:.0f} us; "
            f"process RSS {looks['rss'] / 2**20:.1f} MiB (target <= 80 MiB)"
        )
        print(f"bench process RSS {psutil.Process().memory_info().rss / 2**20:.1f} MiB")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
