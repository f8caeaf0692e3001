"""``edge-agent`` command line: the door controller daemon and its tools."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from edge_agent.config import DEFAULT_PATH, AgentConfig, load_config, simulator_config_path
from portier_common.settings import ConfigError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _load(args: argparse.Namespace) -> AgentConfig:
    path = simulator_config_path() if getattr(args, "simulator", False) else Path(args.config)
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a configuration file; print what is wrong, naming the key."""
    cfg = load_config(args.file)
    hw = cfg.hardware
    kinds = [k for k in ("gpio", "nfc", "reader", "camera", "qr") if getattr(hw, k) is not None]
    print(
        f"{args.file}: OK (device {cfg.device.id} at site {cfg.device.site}, door {cfg.door.id}; "
        f"hardware: {', '.join(kinds) or 'none'})"
    )
    return EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    """Run the installer self-test against the configured backends."""
    from edge_agent.devices import open_devices
    from hardware.selftest import (
        Operator,
        PromptOperator,
        SelfTest,
        SimulatedInstaller,
        write_test_card,
    )

    if args.print_card:
        write_test_card(args.print_card)
        print(f"wrote the QR test card to {args.print_card}")
        return EXIT_OK
    cfg = _load(args)
    with open_devices(cfg.hardware) as devices:
        operator: Operator
        if devices.simulated:
            operator = SimulatedInstaller(devices.door_sim, devices.reader)
        else:
            operator = PromptOperator(lambda line: print(line, file=sys.stderr, flush=True))
        test = SelfTest(
            operator=operator,
            door_io=devices.door_io,
            reader=devices.reader,
            camera=devices.camera,
            decoder=devices.decoder,
            door_reader=devices.door_reader,
            interactive=not args.no_prompts,
            step_timeout_s=args.step_timeout,
            unavailable=devices.errors,
        )
        report = test.run()
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.to_text())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent daemon until SIGTERM."""
    from edge_agent.api import SocketInUse
    from edge_agent.service import run
    from edge_agent.store import StoreError

    cfg = _load(args)
    try:
        return run(cfg)
    except (StoreError, SocketInUse) as exc:
        # Another agent holds the journal or the socket, or the disk failed:
        # say so in one line for journalctl rather than with a traceback.
        print(f"edge-agent: cannot run: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_safe_state(args: argparse.Namespace) -> int:
    """De-energise the relays."""
    from edge_agent.service import safe_state

    return safe_state(_load(args))


def _client(args: argparse.Namespace):
    from edge_agent.client import AgentClient

    return AgentClient(_load(args).paths.socket, timeout=args.timeout)


def cmd_present(args: argparse.Namespace) -> int:
    """Send a credential through the running agent; print the decision as JSON."""
    from edge_agent.client import AgentUnavailable, ApiError

    client = _client(args)
    try:
        if args.qr is not None:
            decision = client.present_qr(args.qr, source="cli")
        else:
            decision = client.present_badge(args.badge_uid, args.sun_url, source="cli")
    except AgentUnavailable as exc:
        print(
            f"edge-agent: no running agent answered ({exc}); is `edge-agent run` up?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except ApiError as exc:
        print(f"edge-agent: the agent refused the request: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status == 400 else EXIT_FAILED
    print(json.dumps(decision, sort_keys=True))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Print the running agent's status."""
    from edge_agent.client import AgentUnavailable

    try:
        status = _client(args).status()
    except AgentUnavailable as exc:
        if args.json:
            print(json.dumps({"running": False, "error": str(exc)}))
        else:
            print(f"agent not running: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"running": True, **status}, sort_keys=True))
    else:
        door = status.get("door") or {}
        print(
            f"device {status['device']} door {status['door_id']}: mode {door.get('mode')}, "
            f"{'online' if status['online'] else 'offline'}, "
            f"{status['events_waiting']} events waiting, "
            f"alarms: {[a['alarm'] for a in door.get('alarms', [])] or 'none'}"
        )
    return EXIT_OK


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enroll with the central using a one-time token; store the device credential."""
    from edge_agent.enroll import EnrollError, credential_path, enroll

    cfg = _load(args)
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    try:
        credential = enroll(
            cfg,
            token,
            wait_s=args.wait,
            progress=lambda line: print(f"edge-agent: {line}", file=sys.stderr, flush=True),
        )
    except EnrollError as exc:
        print(f"edge-agent: enrollment failed ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"enrolled: device {credential.device_id} at {credential.site}/{credential.door}, "
        f"credential in {credential_path(cfg)}"
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo: reference central + agent on simulated hardware (+ kiosk).

    The demo wires the central, the agent and the kiosk, so it lives above them in
    ``portier_demo``; this subcommand is its thin launcher, kept because ``edge-agent demo``
    is the documented command. The import is lazy: the one edge_agent -> portier_demo
    import the layer contracts allow (pyproject.toml, docs/architecture.md). A device's
    wheel (``portier-device``, images/devicewheel.py) has no demo: one line says so.
    """
    try:
        from portier_demo.cli import run
    except ModuleNotFoundError as exc:
        if exc.name != "portier_demo":
            raise
        print(
            "edge-agent demo: the demo is not installed here (a device's portier-device "
            "wheel has none); run it from a checkout: ./tools/dev demo",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return run(args.dir, headless=args.headless, prog="edge-agent demo")


def cmd_journal_verify(args: argparse.Namespace) -> int:
    """Verify the journal's hash chain; report the first broken link."""
    import sqlite3

    from edge_agent.store import Store, StoreError, StoreSettings

    cfg = _load(args)
    try:
        with Store.open(StoreSettings(path=cfg.paths.database), read_only=True) as store:
            result = store.journal.verify_chain()
            unrecorded = store.unrecorded_loss()
    except (StoreError, sqlite3.DatabaseError) as exc:
        # A structurally damaged (or locked) file: one line, no traceback.
        print(f"journal UNREADABLE: {cfg.paths.database}: {exc}")
        return EXIT_FAILED
    if not result.ok:
        print(f"journal BROKEN at seq {result.broken_seq}: {result.reason}")
        return EXIT_FAILED
    lost = [f"seq {a}..{b} lost (journal.gap at seq {b + 1})" for a, b in result.gaps]
    if unrecorded is not None:
        a, b = unrecorded
        lost.append(
            f"seq {a}..{b} lost: the journal ends at seq {a - 1}, below its high-water "
            "mark (the agent journals the gap when it starts)"
        )
    if lost:
        print(f"journal DAMAGED: {result.checked} events, chain intact; " + "; ".join(lost))
        return EXIT_FAILED
    print(f"journal OK: {result.checked} events, chain intact")
    return EXIT_OK


def cmd_event_pack_load(args: argparse.Namespace) -> int:
    """Install an event pack offline (the agent stopped); exit 1 with the reason code if
    the pack is refused."""
    from edge_agent.eventpack import PackRefused, install_pack
    from edge_agent.store import StoreLocked

    cfg = _load(args)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"edge-agent: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        summary = install_pack(cfg, data)
    except PackRefused as exc:
        print(f"edge-agent: event pack refused ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StoreLocked:
        print(
            "edge-agent: the agent is running: stop it first (systemctl stop portier-agent), "
            "load the pack, start it again",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"event pack {summary['pack_id']} installed: {summary['name']}, "
            f"{summary['guests']} guests, usable until {summary['not_after_ms'] // 1000} "
            "(Unix seconds)"
        )
    return EXIT_OK


def cmd_journal_export(args: argparse.Namespace) -> int:
    """Write the journal (from the first event not acknowledged) for
    ``portier-central event-pack merge``."""
    from edge_agent.eventpack import PackRefused, export_journal
    from edge_agent.fsutil import atomic_write
    from edge_agent.store import StoreError

    cfg = _load(args)
    try:
        export = export_journal(cfg, from_seq=args.from_seq)
    except PackRefused as exc:
        print(f"edge-agent: cannot export ({exc.code}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StoreError as exc:
        print(f"edge-agent: journal unreadable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    text = json.dumps(export, sort_keys=True) + "\n"
    atomic_write(Path(args.out), text.encode("utf-8"), 0o600)
    events = export["events"]
    span = f"seq {events[0]['seq']}..{events[-1]['seq']}" if events else "nothing to merge"
    print(f"journal of {export['device_id']} exported to {args.out}: {len(events)} events ({span})")
    return EXIT_OK


def _wall_readers(args: argparse.Namespace) -> Any:
    cfg = _load(args)
    settings = cfg.hardware.reader
    if settings is None or settings.backend != "osdp":
        raise ConfigError("hardware.reader", "no OSDP readers are configured")
    if args.name not in {pd.name for pd in settings.peripherals}:
        names = ", ".join(pd.name for pd in settings.peripherals)
        raise ConfigError("hardware.reader.peripherals", f"no reader {args.name!r} ({names})")
    return settings


def cmd_reader_commission(args: argparse.Namespace) -> int:
    """Give a factory-fresh OSDP reader (in install mode) its own Secure Channel key."""
    from hardware.errors import HardwareError
    from hardware.reader.osdp import commission

    settings = _wall_readers(args)
    try:
        commission(settings, args.name, timeout=args.timeout)
    except HardwareError as exc:
        print(f"edge-agent: reader {args.name} not commissioned: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"reader {args.name} commissioned: Secure Channel key set with KEYSET and proven")
    return EXIT_OK


def cmd_reader_rekey(args: argparse.Namespace) -> int:
    """Replace a commissioned OSDP reader's key (KEYSET inside its Secure Channel)."""
    from hardware.errors import HardwareError
    from hardware.reader.osdp import OsdpReader

    settings = _wall_readers(args)
    try:
        with OsdpReader(settings) as readers:
            if not readers.wait_secure(args.name, args.timeout):
                print(f"edge-agent: reader {args.name} has no Secure Channel", file=sys.stderr)
                return EXIT_FAILED
            readers.rekey(args.name, timeout=args.timeout)
    except HardwareError as exc:
        print(f"edge-agent: reader {args.name} not rekeyed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"reader {args.name} has a new Secure Channel key")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``edge-agent`` command."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Portier's door controller: offline access decisions, door control, "
        "durable journal, sync with the central API, local API for the kiosk.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file", type=Path, help="the agent's TOML configuration")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser(
        "selftest",
        help="installer hardware self-test",
        description="Check each component (relay, door contact, REX, fire, tamper, NFC reader, "
        "camera, QR test card, clock): pass, fail or skipped, with a hint. Exit 0 when "
        "nothing failed, 1 otherwise.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", default=str(DEFAULT_PATH), help=f"default {DEFAULT_PATH}")
    where.add_argument(
        "--simulator", action="store_true", help="use the packaged simulated-hardware config"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument(
        "--no-prompts",
        action="store_true",
        help="skip the checks that need a person at the door",
    )
    p.add_argument(
        "--step-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="how long to wait for each step (default 30 s)",
    )
    p.add_argument(
        "--print-card",
        metavar="FILE",
        help="write the QR test card (PNG) for the installer kit and exit",
    )
    p.set_defaults(func=cmd_selftest)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=str(DEFAULT_PATH), help=f"default {DEFAULT_PATH}")

    p = sub.add_parser("run", help="run the door controller daemon (systemd Type=notify)")
    with_config(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("safe-state", help="de-energise the relays (for ExecStopPost=)")
    with_config(p)
    p.set_defaults(func=cmd_safe_state)

    p = sub.add_parser(
        "present",
        help="present a credential to the running agent",
        description="Send a QR text or a badge UID through the running agent's local API and "
        "print the decision as one JSON object (granted, reason, ...). Exit 0 whatever the "
        "decision; 1 if the agent cannot be reached.",
    )
    with_config(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--qr", metavar="TEXT", help="the QR code's text")
    what.add_argument("--badge-uid", metavar="HEX", help="a badge UID in hex")
    p.add_argument("--sun-url", metavar="URL", help="the badge's NTAG 424 SUN URL")
    p.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_present)

    p = sub.add_parser("status", help="show the running agent's status")
    with_config(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "enroll",
        help="enroll with the central using a one-time token",
        description="Trade the installer's one-time token for this device's credential "
        "(stored in the state directory, mode 0600). A running agent picks it up without a "
        "restart. Exit 0 when enrolled, 1 when the central refused or could not be reached.",
    )
    with_config(p)
    p.add_argument("--token", required=True, help="the one-time enrollment token ('-': stdin)")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="keep retrying this long while the central cannot be reached (default: one try)",
    )
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser(
        "demo",
        help="run the demo: reference central and an agent on simulated hardware",
        description="Start the reference central and an agent on simulated hardware, write "
        "their configuration into DIR (DIR/agent.toml), enroll the agent, seed credentials, "
        "print one JSON line {central_url, central_token_file, door, config, agent_pid, "
        "central_pid} once both are ready, and run until SIGTERM. Without --headless the "
        "kiosk starts too.",
    )
    p.add_argument("--dir", required=True, help="the demo directory (created)")
    p.add_argument("--headless", action="store_true", help="no kiosk: central and agent only")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("reader", help="OSDP wall reader keys (stop the agent first)")
    rsub = p.add_subparsers(dest="reader_command", required=True, metavar="COMMAND")
    p = rsub.add_parser(
        "commission",
        help="give a reader in install mode its own Secure Channel key",
        description="The one use of the install-mode key SCBK-D: the reader, alone in install "
        "mode on the bus, gets a new random key by KEYSET; a new session proves it; the key "
        "file is written (0600). Refused for a reader that already has a key file.",
    )
    p.add_argument("name", help="the reader's name in [[hardware.reader.peripherals]]")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="default 10 s")
    with_config(p)
    p.set_defaults(func=cmd_reader_commission)
    p = rsub.add_parser(
        "rekey",
        help="replace a commissioned reader's key (KEYSET inside its Secure Channel)",
    )
    p.add_argument("name", help="the reader's name in [[hardware.reader.peripherals]]")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="default 10 s")
    with_config(p)
    p.set_defaults(func=cmd_reader_rekey)

    p = sub.add_parser("journal", help="journal tools")
    jsub = p.add_subparsers(dest="journal_command", required=True, metavar="COMMAND")
    p = jsub.add_parser("verify", help="check the hash chain; report the first broken link")
    with_config(p)
    p.set_defaults(func=cmd_journal_verify)
    p = jsub.add_parser(
        "export",
        help="write the events the central has not acknowledged (for event-pack merge)",
        description="Write the journal from its first event the central has not "
        "acknowledged (or --from-seq) to FILE, as the upload sends events, with a MAC keyed "
        "by this device's credential. Carry it to the central and run `portier-central "
        "event-pack merge`. Works while the agent runs.",
    )
    with_config(p)
    p.add_argument("--out", required=True, metavar="FILE", help="the export to write (0600)")
    p.add_argument("--from-seq", type=int, default=None, metavar="N", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_journal_export)

    p = sub.add_parser("event-pack", help="event packs for off-site events")
    esub = p.add_subparsers(dest="event_pack_command", required=True, metavar="COMMAND")
    p = esub.add_parser(
        "load",
        help="install an event pack offline (stop the agent first)",
        description="Decrypt and verify an event pack made by the central for this device "
        "(portier-central event-pack create, or the console's Event packs page) and install "
        "its guest list, keys and settings into the cache, journaled. Exit 0 when "
        "installed; 1 with the reason (malformed, wrong_device, tampered, bad_signature, "
        "expired, replayed, no_key, not_enrolled) when refused, or while the agent runs.",
    )
    with_config(p)
    p.add_argument("file", help="the pack file")
    p.add_argument("--json", action="store_true", help="print the installed pack as JSON")
    p.set_defaults(func=cmd_event_pack_load)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"edge-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
