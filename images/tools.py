"""Running the external disk tools (mtools, sfdisk, mkfs, bmaptool) with clear errors.

These tools do what no Python library here does as well: mtools edits a FAT file
system inside an image or card at a byte offset without mounting it, ``mkfs.ext4
-d -E offset=`` builds a file system straight into an image, ``bmaptool`` writes
and verifies sparse images. Each is found on ``PATH`` (plus ``/sbin`` and
``/usr/sbin``, which a non-root ``PATH`` often lacks).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

from images.errors import ToolFailed, ToolMissing

log = logging.getLogger(__name__)

#: Debian package providing each program, named in :class:`ToolMissing` messages.
DEBIAN_PACKAGES = {
    "mcopy": "mtools",
    "mtype": "mtools",
    "mdir": "mtools",
    "mdel": "mtools",
    "mmd": "mtools",
    "mattrib": "mtools",
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "fsck.vfat": "dosfstools",
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "bmaptool": "bmap-tools",
    "lsblk": "util-linux",
    "debootstrap": "debootstrap",
}

_EXTRA_PATH = ("/usr/sbin", "/sbin")


def which(program: str) -> str:
    """Return the absolute path of ``program``.

    Raises:
        ToolMissing: the program is not installed; the message names its package.
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_PATH])
    found = shutil.which(program, path=search)
    if found is None:
        package = DEBIAN_PACKAGES.get(program, program)
        raise ToolMissing(
            f"{program} is not installed: install the Debian package {package!r} "
            f"(apt-get install {package})"
        )
    return found


def run(
    program: str,
    args: Sequence[str],
    *,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``program args...`` and return the completed process (stdout/stderr as bytes).

    ``env`` entries are added to the current environment. mtools' geometry sanity
    check is always switched off (``MTOOLS_SKIP_CHECK=1``): it rejects perfectly
    valid file systems that do not start on a "track" boundary of an imaginary disk.

    Raises:
        ToolMissing: the program is not installed.
        ToolFailed: it exited non-zero and ``check`` is true; the message carries
            the command and its stderr.
    """
    path = which(program)
    full_env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C", **(env or {})}
    cmd = [path, *args]
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, input=input, capture_output=True, env=full_env, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace")
        raise ToolFailed(f"{program} {' '.join(args)} failed (exit {proc.returncode}): {err}")
    return proc
