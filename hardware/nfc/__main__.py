"""Command line for installers and developers: read badges, emulate a card, time the udp rig.

``python -m hardware.nfc read [--backend nfcpy] [--device usb] [--count N]``
    prints one JSON object per badge read (uid, technology, tag type, NDEF records).
``python -m hardware.nfc emulate --port 54321 --type 4 --uid 11223344556677 [--uri URL]``
    serves an emulated card on nfcpy's udp driver until interrupted.
``python -m hardware.nfc bench [--reads 200]``
    times reads through nfcpy's udp driver against emulated Type 3 and Type 4 cards
    on loopback and prints a table (median, p95, max, in milliseconds).

Exit status: 0 on success, 2 when the reader cannot be opened (the message says why).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import sys
import threading
import time

from hardware.errors import BackendUnavailable
from hardware.nfc import BadgeRead, Card, NfcSettings, open_reader


def _badge_json(badge: BadgeRead) -> str:
    return json.dumps(
        {
            "uid": badge.uid_hex,
            "technology": badge.technology,
            "tag_type": badge.tag_type,
            "product": badge.product,
            "iso_dep": badge.iso_dep,
            "ndef": [{"type": record.type, "text": str(record)} for record in badge.ndef],
            "wall": round(badge.wall, 3),
        }
    )


def _read(args: argparse.Namespace) -> int:
    options = {"backend": args.backend, "device": args.device, "debounce": args.debounce}
    if args.targets:
        options["targets"] = tuple(args.targets.split(","))
    if args.wedge_device:
        options["wedge_device"] = args.wedge_device
    if args.wedge_format:
        options["wedge_format"] = args.wedge_format
    if args.reversed:
        options["wedge_byte_order"] = "reversed"
    try:
        reader = open_reader(NfcSettings(**options))
    except (BackendUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with reader:
        print(f"reading with {args.backend}; tap a badge (Ctrl-C to stop)", file=sys.stderr)
        seen = 0
        try:
            while args.count == 0 or seen < args.count:
                badge = reader.read(timeout=1.0)
                if badge is not None:
                    print(_badge_json(badge), flush=True)
                    seen += 1
        except KeyboardInterrupt:
            pass
    return 0


def _card(kind: str, uid: str, uri: str | None, responder=None):
    import ndef

    from hardware.nfc.emulator import Type2Card, Type3Card, Type4Card

    records = [ndef.UriRecord(uri)] if uri else []
    if kind == "2":
        return Type2Card(uid, ndef=records)
    if kind == "3":
        return Type3Card(uid, ndef=records)
    return Type4Card(uid, responder=responder, ndef=records)


def _emulate(args: argparse.Namespace) -> int:
    from hardware.nfc.emulator import UdpCardEmulator

    emulator = UdpCardEmulator(_card(args.type, args.uid, args.uri), args.port, host=args.host)
    try:
        emulator.start()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"card on udp:{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bench(args: argparse.Namespace) -> int:
    from hardware.nfc.emulator import SW_OK, UdpCardEmulator

    cases = [
        ("Type 2, UID + NDEF", "2", "53A1B2C3D4E5F6", "106A", False),
        ("Type 2 (04 UID), UID + NDEF", "2", "04A1B2C3D4E5F6", "106A", False),
        ("Type 3, UID + NDEF", "3", "0123456789ABCDEF", "212F", False),
        ("Type 4, UID + NDEF", "4", "11223344556677", "106A", False),
        ("Type 4, UID + NDEF + 2 APDUs", "4", "11223344556677", "106A", True),
    ]
    uri = "https://portier.example/sun?picc=EF963FF7828658A599F3041510671E88"  # 65 bytes

    def on_card(card: Card) -> None:
        card.exchange_apdu(b"\x00\xa4\x04\x00\x07\xf0PORTIER\x00")
        card.exchange_apdu(b"\x80\x10\x00\x00\x10" + bytes(16) + b"\x00")

    print(f"{'case':32} {'reads':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'failed':>6}")
    for name, kind, uid, target, apdus in cases:
        port = _free_port()
        card = _card(kind, uid, uri, responder=lambda apdu: bytes(8) + SW_OK)
        settings = NfcSettings(device=f"udp:127.0.0.1:{port}", targets=(target,), debounce=0)
        times: list[float] = []
        failed = 0
        with UdpCardEmulator(card, port), open_reader(settings) as reader:
            for _ in range(args.reads):
                started = time.perf_counter()
                badge = reader.read(timeout=5.0, on_card=on_card if apdus else None)
                if badge is None:
                    failed += 1
                else:
                    times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))] if times else float("nan")
        median = statistics.median(times) if times else float("nan")
        worst = times[-1] if times else float("nan")
        print(f"{name:32} {len(times):5d} {median:10.2f} {p95:8.2f} {worst:8.2f} {failed:6d}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse *argv* and run the command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hardware.nfc", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    read = commands.add_parser("read", help="print badge reads as JSON lines")
    read.add_argument("--backend", default="nfcpy", help="nfcpy, wedge or sim")
    read.add_argument("--device", default="usb", help="nfcpy device path")
    read.add_argument("--targets", help="comma-separated nfcpy targets, e.g. 106A,212F")
    read.add_argument("--wedge-device", help="evdev device path for the wedge backend")
    read.add_argument("--wedge-format", choices=("hex", "decimal"))
    read.add_argument("--reversed", action="store_true", help="wedge types the UID LSB first")
    read.add_argument("--debounce", type=float, default=1.0)
    read.add_argument("--count", type=int, default=0, help="stop after N reads (0: never)")
    read.set_defaults(func=_read)

    emulate = commands.add_parser("emulate", help="serve an emulated card on nfcpy's udp driver")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=54321)
    emulate.add_argument("--type", choices=("2", "3", "4"), default="4")
    emulate.add_argument(
        "--uid", default="11223344556677", help="UID (types 2 and 4, 7 bytes for 2) or IDm (3)"
    )
    emulate.add_argument("--uri", help="NDEF URI record to serve")
    emulate.set_defaults(func=_emulate)

    bench = commands.add_parser("bench", help="time reads through the udp rig")
    bench.add_argument("--reads", type=int, default=200)
    bench.set_defaults(func=_bench)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
