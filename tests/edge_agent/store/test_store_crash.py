"""kill -9 a writer process at random moments; nothing it reported durable is lost.

The writer appends from several threads (single appends, append_many bursts)
while an "uplink" thread takes batches, acknowledges some and trims. After
every append returns it prints ``seq id`` on stdout: the line is the
writer's claim that the event is durable. The test kills it with SIGKILL at
a random moment, reopens the file and checks every claim, the chain and the
sequence, then starts the next writer on the same file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_agent.store import Store, StoreSettings, SyncStatus

pytestmark = pytest.mark.processes

WRITER = r"""
import random, sys, threading
from pathlib import Path
from edge_agent.store import Store, StoreSettings

path, seed = sys.argv[1], int(sys.argv[2])
store = Store.open(StoreSettings(
    path=Path(path), reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0,
    keep_acked=40, trim_batch=15,
))
out_lock = threading.Lock()

def report(events):
    with out_lock:
        for e in events:
            # One write per line: a pipe write under 4 KiB is atomic.
            sys.stdout.write(f"{e.seq} {e.id}\n")
            sys.stdout.flush()

def single(k):
    i = 0
    while True:
        i += 1
        report([store.journal.append("crash.single", {"k": k, "i": i})])

def many(k):
    rng = random.Random(seed * 10 + k)
    while True:
        n = rng.randint(1, 40)
        report(store.journal.append_many([("crash.many", {"k": k, "j": j}) for j in range(n)]))

def uplink():
    rng = random.Random(seed)
    while True:
        batch = store.journal.next_batch(rng.randint(1, 30))
        if batch:
            # Ack some, requeue some, leave the rest in flight.
            cut = rng.randint(0, len(batch))
            store.journal.mark_acked([e.id for e in batch[:cut]])
            store.journal.requeue([e.id for e in batch[cut:cut + 2]])

threads = [threading.Thread(target=single, args=(k,), daemon=True) for k in range(3)]
threads += [threading.Thread(target=many, args=(k,), daemon=True) for k in range(2)]
threads.append(threading.Thread(target=uplink, daemon=True))
sys.stdout.write("ready\n")
sys.stdout.flush()
for t in threads:
    t.start()
threading.Event().wait()
"""

ITERATIONS = 25


def settings(path: Path) -> StoreSettings:
    return StoreSettings(
        path=path, reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0, keep_acked=40
    )


def run_and_kill(path: Path, seed: int, rng: random.Random) -> list[tuple[int, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
    reader.start()
    time.sleep(rng.uniform(0.02, 0.35))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    assert proc.returncode == -signal.SIGKILL
    claims = []
    for line in lines:
        if line.endswith("\n"):  # a torn last line is not a claim
            seq, event_id = line.split()
            claims.append((int(seq), event_id))
    return claims


def test_kill_9_loses_nothing_reported_durable(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    rng = random.Random(20240607)
    claimed: dict[int, str] = {}
    for iteration in range(ITERATIONS):
        for seq, event_id in run_and_kill(path, iteration, rng):
            assert claimed.setdefault(seq, event_id) == event_id, "a seq was reused"
        with Store.open(settings(path)) as store:
            journal = store.journal
            counts = journal.counts()
            anchor = counts.trimmed_through
            head = journal.head()
            stored = {e.seq: e for e in journal.events(from_seq=anchor + 1, limit=10**7)}
            for seq, event_id in claimed.items():
                if seq <= anchor:
                    continue  # acknowledged, then trimmed: the central has it
                assert seq in stored, f"iteration {iteration}: durable event {seq} lost"
                assert stored[seq].id == event_id
            assert head.seq >= max(claimed, default=0)
            assert sorted(stored) == list(range(anchor + 1, head.seq + 1)), "sequence gap"
            result = journal.verify_chain()
            assert result.ok, f"iteration {iteration}: {result}"
            # Events in flight at the kill are ready again, none is lost.
            assert counts.in_flight == 0
            assert all(e.status is not SyncStatus.IN_FLIGHT for e in stored.values())
            assert counts.ready + counts.acked + counts.dead == head.seq - anchor
    assert len(claimed) > ITERATIONS * 10, "the writer hardly wrote anything"
