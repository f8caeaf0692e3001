"""OSDP card read -> lock relay energised, over the emulated bus, in one run.

    .venv/bin/python bench/osdp.py            # 300 cards
    .venv/bin/python bench/osdp.py --quick    # 40 cards
    .venv/bin/python bench/osdp.py --json     # the figures as one JSON line, last

What runs: the agent (``edge_agent.agent.Agent``, the simulator's configuration with its paths
moved to a work directory, a real store, the MockFactory door) with the door's wall readers
as the ``osdp`` backend, and one reader emulated by libosdp's own Peripheral Device on an
in-memory RS-485 bus (``hardware.reader.emulator``). The reader is commissioned first (SCBK-D,
KEYSET) and every card then crosses the Secure Channel.

Measured, p50/p99/max:

* **grant**: the reader reports a card (``present_card``) -> the DoorIO's lock relay is
  energised. This is the whole path: the reader waits for the controller's next poll
  (libosdp polls every 50 ms), the reply is decrypted, the watcher thread hands the card to
  the agent, the agent decides and journals durably, the relay moves;
* **deny**: an unknown card -> the reader receives the red LED command.

Cards come 0.3 s after the previous card's feedback: sooner, libosdp is still exchanging the
feedback commands and a card waits about 100 ms more.

On a real bus add the frames' time on the wire (about 15 ms for a card reply and the next
poll at 9600 baud); the machine is shared, so run it twice and read the two together.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ first on the path, where this file would shadow
# libosdp's own module ``osdp``: take it off, and put the checkout on instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.decision import percentiles  # noqa: E402
from edge_agent.agent import Agent  # noqa: E402
from edge_agent.config import parse_config, simulator_config_path  # noqa: E402
from edge_agent.devices import open_devices  # noqa: E402
from edge_agent.door import ManualScheduler  # noqa: E402
from edge_agent.store import Badge, Delta, Store, StoreSettings  # noqa: E402
from hardware.reader import (  # noqa: E402
    BUILTIN_FORMATS,
    PeripheralSettings,
    ReaderSettings,
    open_door_reader,
)
from hardware.reader.emulator import EmulatedBus, EmulatedReader  # noqa: E402
from hardware.reader.osdp import commission  # noqa: E402

H10301 = BUILTIN_FORMATS["h10301"]
LED, RED = 2, 1
#: Seconds between one card's feedback and the next card.
PACE_S = 0.3


def card(number: int) -> int:
    """The 26 bits of card ``number`` of facility 42."""
    return H10301.encode(42, number)


def uid_of(value: int) -> bytes:
    """The card's UID as the agent sees it: its 26 bits right-aligned in 4 bytes."""
    return value.to_bytes(4, "big")


def run(samples: int, work: Path) -> dict[str, Any]:
    data = tomllib.loads(simulator_config_path().read_text())
    data["paths"] = {"state_dir": str(work / "state"), "socket": str(work / "agent.sock")}
    for kind in ("camera", "qr", "nfc"):
        data["hardware"].pop(kind, None)
    data["door"] = {**data.get("door", {}), "accept_uid": True}
    cfg = parse_config(data, work)
    cfg.paths.state_dir.mkdir(parents=True, exist_ok=True)
    settings = ReaderSettings(
        backend="osdp", peripherals=(PeripheralSettings("entry", 1, work / "entry.scbk"),)
    )

    bus = EmulatedBus()
    emulated = EmulatedReader(bus, 1, install_mode=True).start()
    started = time.perf_counter()
    commission(settings, "entry", channel=bus.controller_channel(), timeout=10)
    commissioning_s = time.perf_counter() - started

    store = Store.open(StoreSettings(path=cfg.paths.database))
    store.cache.apply_delta(
        Delta(
            cursor="bench",
            badges=[Badge(uid_of(card(n)), "uid", f"Staff {n}") for n in range(100)],
        ),
        synced_at_ms=int(time.time() * 1000),
    )
    devices = open_devices(cfg.hardware, camera=False, nfc=False)
    devices.door_reader = open_door_reader(settings, channel=bus.controller_channel())
    agent = Agent(cfg, store, devices, scheduler=ManualScheduler())
    io = devices.door_io
    energised = threading.Event()
    energised_at: list[float] = []
    real_unlock = io.unlock

    def unlock() -> None:
        real_unlock()
        energised_at.append(time.perf_counter())
        energised.set()

    io.unlock = unlock
    grants: list[float] = []
    denies: list[float] = []
    missed = 0
    try:
        started = time.perf_counter()
        if not devices.door_reader.wait_secure("entry", 5.0):
            raise SystemExit("the reader did not come up over the Secure Channel")
        secure_s = time.perf_counter() - started
        agent.start_reader()
        for i in range(samples):
            grant = i % 4 != 3
            value = card(i % 100) if grant else card(500 + i)
            seen = len(emulated.commands())
            energised.clear()
            energised_at.clear()
            t0 = time.perf_counter()
            emulated.present_card(value, 26)
            if grant:
                if energised.wait(2.0):
                    grants.append(energised_at[0] - t0)
                else:
                    missed += 1
                assert agent.door is not None
                agent.door.safe_state()  # relock: the next grant is a real unlock
            else:
                led = emulated.wait_for(
                    lambda c: c["command"] == LED and c.get("on_color") == RED, 2.0, after=seen
                )
                if led is None:
                    missed += 1
                else:
                    denies.append(time.perf_counter() - t0)
            # Each card comes PACE_S after the previous one's feedback (the buzzer): a card
            # read while libosdp still sends and answers the feedback commands waits about
            # 100 ms more (measured), and nobody presents cards faster than that.
            emulated.wait_for(lambda c: c["command"] == 3, 1.0, after=seen)
            time.sleep(PACE_S)
    finally:
        agent.close()
        devices.close()
        store.close()
        emulated.stop()
    figures: dict[str, Any] = {
        "samples": samples,
        "missed": missed,
        "commissioning_s": round(commissioning_s, 3),
        "secure_channel_s": round(secure_s, 3),
    }
    for name, values in (("grant", grants), ("deny", denies)):
        if values:
            p50, p99, worst = percentiles(values)
            figures[name] = {"n": len(values), "p50_ms": p50, "p99_ms": p99, "max_ms": worst}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 cards instead of 300")
    parser.add_argument("--samples", type=int, default=None, help="number of cards")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON, last")
    args = parser.parse_args(argv)
    samples = args.samples or (40 if args.quick else 300)
    work = Path(tempfile.mkdtemp(prefix="portier-osdp-bench-"))
    try:
        figures = run(samples, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"OSDP over the emulated bus (libosdp {_libosdp_version()}), Secure Channel on")
    print(f"  commissioning (SCBK-D, KEYSET, proof) {figures['commissioning_s'] * 1e3:7.1f} ms")
    print(f"  Secure Channel up after open          {figures['secure_channel_s'] * 1e3:7.1f} ms")
    for name, title in (("grant", "card -> lock relay energised"), ("deny", "card -> red LED")):
        f = figures.get(name)
        if f:
            print(
                f"  {title:<32} n={f['n']:>4}  p50 {f['p50_ms']:6.1f} ms  "
                f"p99 {f['p99_ms']:6.1f} ms  max {f['max_ms']:6.1f} ms"
            )
    print(f"  missed (no relay / no LED in 2 s): {figures['missed']}")
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["missed"] == 0 else 1


def _libosdp_version() -> str:
    from importlib.metadata import version

    return version("libosdp")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
