"""Command line: decode the QR codes in image files.

    python -m hardware.qr IMAGE...

For each IMAGE, in the order given, prints one JSON object on its own line::

    {"file": "IMAGE", "payloads": ["text", ...]}

``file`` is the argument as given; ``payloads`` the decoded texts in the decoder's order (left
to right, then top to bottom), ``[]`` when the image holds no readable code. Non-ASCII text is
written as JSON ``\\u`` escapes, so the output is ASCII whatever the locale.

Exit status: 0 when every file was read as an image (even if no code was found); 2 when any
file is missing, unreadable or not an image. A bad file does not stop the others: every good
file still gets its line on stdout, each bad one gets a ``hardware.qr: FILE: reason`` line on
stderr and no line on stdout, and the exit status is 2. Also 2 for a usage error (no file),
and 1 when the decoder's library is missing (BackendUnavailable).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from hardware.errors import BackendUnavailable, NotAnImage
from hardware.qr import BACKENDS, QRSettings, load_image, open_decoder

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_BAD_FILE = 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m hardware.qr",
        description="Decode QR codes in image files (PNG, JPEG, WEBP...); one JSON line each.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to decode")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="zxing", help="raw decoder (default: zxing)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="the raw decoder alone, without the pipeline's retries"
    )
    args = parser.parse_args(argv)

    try:
        decoder = open_decoder(QRSettings(backend=args.backend, pipeline=not args.raw))
    except BackendUnavailable as exc:
        print(f"hardware.qr: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    status = EXIT_OK
    for name in args.images:
        try:
            frame = load_image(name)
        except NotAnImage as exc:
            print(f"hardware.qr: {exc}", file=sys.stderr)
            status = EXIT_BAD_FILE
            continue
        except OSError as exc:
            print(f"hardware.qr: {name}: cannot open ({exc.strerror or exc})", file=sys.stderr)
            status = EXIT_BAD_FILE
            continue
        payloads = [code.text for code in decoder.decode(frame)]
        print(json.dumps({"file": name, "payloads": payloads}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
