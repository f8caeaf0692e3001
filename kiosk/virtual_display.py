"""A private Xvfb server: the kiosk on a virtual screen (tests, screenshots, benchmarks).

No Kivy here: a caller sets ``DISPLAY`` from it before the kiosk's window exists.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator


class NoXvfb(RuntimeError):
    """Xvfb is not installed (Debian: ``apt install xvfb``)."""


@contextlib.contextmanager
def virtual_display(size: str = "1920x1080x24") -> Iterator[str]:
    """Run an Xvfb server on a free display; yield its name (``":N"``).

    Xvfb picks the display number itself (``-displayfd``), so parallel runs never
    collide; it listens on no TCP port. Raises :class:`NoXvfb` when Xvfb is missing.
    """
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise NoXvfb("Xvfb is not installed (apt install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    try:
        if not number:
            raise RuntimeError("Xvfb did not report a display number")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
