"""``kiosk`` command line: the touch UI on a kiosk, or the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kiosk.config import DEFAULT_PATH, ConfigError, demo_config, load_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``kiosk`` command."""
    parser = argparse.ArgumentParser(
        prog="kiosk",
        description=(
            "Portier's touch kiosk: visitor self check-in (QR invitation or badge) and the "
            "guard console, in English and French. It talks to the local edge agent only."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the kiosk's TOML configuration (default {DEFAULT_PATH})",
    )
    where.add_argument(
        "--demo",
        type=Path,
        metavar="DIR",
        help="run against the demo in DIR (written by `edge-agent demo --dir DIR`): its "
        "agent.toml, demo camera and demo panel (F12)",
    )
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = demo_config(args.demo) if args.demo else load_config(args.config or DEFAULT_PATH)
    except ConfigError as exc:
        print(f"kiosk: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        source = config.source or args.demo
        print(
            f"{source}: OK (agent socket {config.agent.socket}, camera {config.camera.backend}, "
            f"language {config.ui.language}{', demo' if config.ui.demo else ''})"
        )
        return EXIT_OK
    from kiosk.app import run

    return run(config)
