"""``portier-demo [--headless] --dir DIR`` (also ``edge-agent demo``, ``python -m portier_demo``).

``edge-agent demo`` stays the documented command (README, ``tools/dev demo``): the agent's CLI
hands its parsed arguments to :func:`run` here, importing this module only when the ``demo``
subcommand runs, so the agent never loads the demo (nor the kiosk and central it wires) otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, shared by ``portier-demo`` and ``edge-agent demo``."""
    parser.add_argument("--dir", required=True, help="the demo directory (created)")
    parser.add_argument("--headless", action="store_true", help="no kiosk: central and agent only")


def run(directory: str, *, headless: bool, prog: str = "portier-demo") -> int:
    """Run the demo until SIGTERM/SIGINT (or the kiosk closes); return the exit code."""
    from portier_demo.demo import DemoError, run_demo

    try:
        return run_demo(Path(directory), headless=headless)
    except DemoError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="portier-demo",
        description="run the demo: reference central and an agent on simulated hardware",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.dir, headless=args.headless)


if __name__ == "__main__":
    sys.exit(main())
