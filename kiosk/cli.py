"""``kiosk`` command line (the touch UI arrives with the kiosk issue)."""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``kiosk`` command."""
    return argparse.ArgumentParser(
        prog="kiosk",
        description=(
            "Portier's touch kiosk: visitor self check-in (QR invitation or badge) and the "
            "guard console, in English and French. It talks to the local edge agent only."
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk`` console script; prints its help for now."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0
