"""Ingestion rate of the reference central: ``python -m central.bench [--events N] [--batch B]``.

Starts a server process on loopback, enrolls one device, posts N chained events in batches of B
with requests, then checks that every event was stored once and re-walks the chain. Prints the
figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .testing import CentralProcess, ChainBuilder, enroll_device


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 if the central did not store every event once."""
    parser = argparse.ArgumentParser(prog="python -m central.bench", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, CentralProcess(Path(tmp) / "data") as central:
        _, session = enroll_device(central.url, device_id="bench", token=central.token)
        events = ChainBuilder().events(args.events)
        start = time.perf_counter()
        for i in range(0, args.events, args.batch):
            response = session.post(
                f"{central.url}/v1/events", json={"events": events[i : i + args.batch]}, timeout=60
            )
            response.raise_for_status()
        elapsed = time.perf_counter() - start
        with central.admin() as admin:
            device = admin.received(verify=True)["devices"][0]
    sys.stdout.write(
        f"{args.events} events in batches of {args.batch}: {elapsed:.2f} s, "
        f"{args.events / elapsed:,.0f} events/s; stored {device['unique_events']}, "
        f"chain re-verified: {device['chain_verified']}\n"
    )
    return 0 if device["unique_events"] == args.events and device["chain_verified"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
