"""``kiosk`` command line: the touch UI on a kiosk, or the demo; ``kiosk pass`` for a pass.

``kiosk pass --demo DIR --token TOKEN --out FILE.pdf [--lang fr]`` writes the visitor pass
the kiosk would print after checking in that invitation of the demo in ``DIR``
(docs/passes.md): exit 0, or 1 with a message when the kiosk would print none (a token
that is not an invitation, or one the agent refuses), 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kiosk.config import DEFAULT_PATH, PASS_LAYOUTS, ConfigError, demo_config, load_config

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
    parser.epilog = (
        "kiosk pass --demo DIR --token TOKEN --out FILE.pdf: a visitor pass (kiosk pass -h)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def build_pass_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``kiosk pass``."""
    parser = argparse.ArgumentParser(
        prog="kiosk pass",
        description=(
            "Write the visitor pass the kiosk would print for an invitation of the demo, "
            "as a PDF, without a printer (docs/passes.md)."
        ),
    )
    parser.add_argument(
        "--demo",
        type=Path,
        required=True,
        metavar="DIR",
        help="the demo directory (written by `edge-agent demo --dir DIR`)",
    )
    parser.add_argument(
        "--token",
        required=True,
        help="the invitation's QR text (PT1:...), as in DIR/demo/demo.json",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.pdf", help="the PDF")
    parser.add_argument("--lang", choices=("en", "fr"), default=None, help="default: the kiosk's")
    parser.add_argument(
        "--layout", choices=PASS_LAYOUTS, default=None, help="default: [passes] layout"
    )
    parser.add_argument(
        "--photo", type=Path, metavar="JPEG", help="the visitor's consented photo (JPEG)"
    )
    return parser


def pass_main(argv: list[str]) -> int:
    """``kiosk pass``: write the pass of a demo invitation to a PDF; returns the exit code."""
    import dataclasses
    import time

    from kiosk.passes import render_pdf
    from kiosk.passes.preview import NoPass, demo_pass

    args = build_pass_parser().parse_args(argv)
    try:
        config = demo_config(args.demo)
    except ConfigError as exc:
        print(f"kiosk pass: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    section = config.passes
    if args.layout:
        section = dataclasses.replace(section, layout=args.layout)
    try:
        photo = args.photo.read_bytes() if args.photo else None
        visitor_pass = demo_pass(
            config.demo_dir or args.demo, args.token, now=time.time(), photo_jpeg=photo
        )
    except NoPass as exc:
        print(f"kiosk pass: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"kiosk pass: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"kiosk pass: {args.photo}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    names = {e.id: {"en": e.en, "fr": e.fr} for e in config.ui.entrances}
    pdf = render_pdf(visitor_pass, section, args.lang or config.ui.language, place_names=names)
    try:
        args.out.write_bytes(pdf)
    except OSError as exc:
        print(f"kiosk pass: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{args.out}: pass of {visitor_pass.visitor} ({section.layout}), QR {visitor_pass.qr_text}"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pass"]:
        return pass_main(argv[1:])
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
