"""Drain a journal backlog to the reference central: events per second, total time.

    .venv/bin/python bench/sync.py                  # 100,000 events (target <= 60 s)
    .venv/bin/python bench/sync.py --events 20000   # a quicker run
    .venv/bin/python bench/sync.py --batch 500      # another batch size

Builds a store holding the backlog (access decisions with a realistic payload; not
timed), starts the reference central in a child process (``python -m central serve``,
SQLite in a temporary directory), enrolls a device, and times the agent's own
:class:`~edge_agent.sync.Uplink` draining the journal: batches handed out by the
journal, posted with the agent's HTTP client, every ack recorded durably before the
next batch. Then it checks that the central holds every event once with the chain
verified, and prints the figures as one JSON object as well.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from central.testing import CentralProcess, enroll_device
from edge_agent.store import Store, StoreSettings
from edge_agent.sync import Alarms, Backoff, CentralClient, Uplink

PAYLOAD = {
    "door": "front-gate",
    "source": "nfc",
    "kind": "badge",
    "credential_id": "04A2B3C4D5E6F7",
    "holder": "Holder 000123",
    "granted": True,
    "reason": "granted",
    "detail": "ntag424",
}


def build_backlog(path: Path, events: int) -> float:
    """Journal ``events`` events at ``path``; return the seconds it took."""
    start = time.perf_counter()
    with Store.open(StoreSettings(path=path)) as store:
        left = events
        while left:
            chunk = min(left, 5000)
            store.journal.append_many([("access.decision", PAYLOAD)] * chunk)
            left -= chunk
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    args = parser.parse_args()

    where = Path(tempfile.mkdtemp(prefix="portier-bench-sync-"))
    try:
        db = where / "agent" / "portier.db"
        db.parent.mkdir()
        built_s = build_backlog(db, args.events)
        print(f"backlog: {args.events} events journaled in {built_s:.1f} s (not timed below)")
        with CentralProcess(where / "central") as central:
            enrolled, session = enroll_device(
                central.url, door="front-gate", device_id="bench-1", token=central.token
            )
            session.close()
            limits = enrolled["limits"]
            batch = min(args.batch, limits["max_batch_events"])
            client = CentralClient(central.url, credential=enrolled["device_token"], timeout_s=30)
            with Store.open(StoreSettings(path=db)) as store:
                waits: list[float] = []

                def wait(seconds: float) -> bool:
                    waits.append(seconds)
                    time.sleep(seconds)
                    return False

                uplink = Uplink(
                    store.journal,
                    client,
                    Alarms(store.journal.append),
                    batch_size=batch,
                    backoff=Backoff(0.05, 1.0),
                    wait=wait,
                    max_batch_bytes=limits["max_batch_bytes"],
                )
                start = time.perf_counter()
                acked = uplink.drain()
                elapsed = time.perf_counter() - start
                counts = store.journal.counts()
            client.close()
            with central.admin(timeout=300) as admin:
                verify_start = time.perf_counter()
                view = admin.received(verify=True)
                verify_s = time.perf_counter() - verify_start
        device = view["devices"][0]
        result = {
            "events": args.events,
            "batch_size": batch,
            "requests": uplink.stats.requests,
            "retries": len(waits),
            "seconds": round(elapsed, 2),
            "events_per_s": round(acked / elapsed),
            "target_s": 60,
            "acked_locally": counts.acked + counts.trimmed_through,
            "central_unique_events": device["unique_events"],
            "central_duplicates": device["duplicates_seen"],
            "chain_verified": bool(device["chain_ok"] and device["chain_verified"]),
            "central_verify_s": round(verify_s, 2),
        }
        print(
            f"drained {acked} events in {elapsed:.1f} s: {acked / elapsed:,.0f} events/s "
            f"(batch size {batch}, {uplink.stats.requests} requests, {len(waits)} retries; "
            f"target <= 60 s)"
        )
        print(
            f"central: {device['unique_events']} unique events, "
            f"{device['duplicates_seen']} duplicates, chain "
            f"{'verified' if result['chain_verified'] else 'BROKEN'} "
            f"(walk {verify_s:.1f} s)"
        )
        print(json.dumps(result))
        if device["unique_events"] != args.events or not result["chain_verified"]:
            raise SystemExit("the central does not hold the backlog exactly once")
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
