"""``edge-agent`` command line: the door controller daemon and its tools."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_agent.config import DEFAULT_PATH, AgentConfig, load_config, simulator_config_path
from edge_agent.settings_loader import ConfigError

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
    kinds = [k for k in ("gpio", "nfc", "camera", "qr") if getattr(hw, k) is not None]
    print(
        f"{args.file}: OK (device {cfg.device.id} at site {cfg.device.site}, door {cfg.door.id}; "
        f"hardware: {', '.join(kinds) or 'none'})"
    )
    return EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    """Run the installer self-test against the configured backends."""
    from edge_agent.devices import open_devices
    from hardware.selftest import PromptOperator, SelfTest, SimulatedInstaller, write_test_card

    if args.print_card:
        write_test_card(args.print_card)
        print(f"wrote the QR test card to {args.print_card}")
        return EXIT_OK
    cfg = _load(args)
    with open_devices(cfg.hardware) as devices:
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
