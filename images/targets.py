"""Is a flash or provisioning target safe to write?

An SD card reader shows up as a whole-disk block device (``/dev/sdb``,
``/dev/mmcblk0``). Writing the wrong one destroys the installer's own laptop, so a
block device is refused when it (or any partition of it):

* is mounted (``/proc/self/mounts``), used as swap (``/proc/swaps``) or held by
  a device-mapper or RAID device (sysfs ``holders``),
* holds the running system (the disks behind ``/``, ``/boot``, ``/usr``, ``/var``),
* is a partition rather than a whole disk,
* is not removable (sysfs ``removable`` flag) and sits on neither a USB nor an
  MMC/SD bus, unless the caller allows fixed disks explicitly.

A regular file (an image file, or a stand-in for a card in tests) is always
accepted. Everything that touches the kernel goes through the small functions at
the top (:func:`mount_sources`, :func:`swap_sources`, :func:`sysfs_block_dir`), and
the checks take their inputs as arguments, so tests can point them at a fake
``/sys`` and ``/proc``.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from images.errors import TargetRefused

log = logging.getLogger(__name__)

#: Mount points whose backing disks are "the system".
SYSTEM_MOUNT_POINTS = ("/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var", "/home")


def _unescape_mount_field(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_sources(
    mounts_file: str | os.PathLike[str] = "/proc/self/mounts",
) -> list[tuple[str, str]]:
    """Return ``(source, mount point)`` pairs of every mounted file system."""
    pairs = []
    for line in Path(mounts_file).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            pairs.append((_unescape_mount_field(fields[0]), _unescape_mount_field(fields[1])))
    return pairs


def swap_sources(swaps_file: str | os.PathLike[str] = "/proc/swaps") -> list[str]:
    """Return the files and devices in use as swap."""
    try:
        lines = Path(swaps_file).read_text().splitlines()[1:]
    except FileNotFoundError:
        return []
    return [line.split()[0] for line in lines if line.strip()]


def sysfs_block_dir(major: int, minor: int, sys_root: str | os.PathLike[str] = "/sys") -> Path:
    """Return the sysfs directory of block device ``major:minor`` (symlinks resolved)."""
    return (Path(sys_root) / "dev" / "block" / f"{major}:{minor}").resolve()


@dataclass(frozen=True)
class BlockDisk:
    """What sysfs says about a whole disk: its kernel name, size and where it hangs."""

    name: str
    size: int
    removable: bool
    bus: str  # "usb", "mmc" or "" (anything else: SATA, NVMe, virtio...)
    partitions: tuple[str, ...]
    holders: tuple[str, ...] = ()  # device-mapper / RAID devices built on it


def _disk_of(sys_dir: Path) -> Path:
    # A partition's sysfs directory sits inside its disk's and has a "partition" file.
    return sys_dir.parent if (sys_dir / "partition").exists() else sys_dir


def read_disk(sys_dir: Path) -> BlockDisk:
    """Return the :class:`BlockDisk` described by a whole disk's sysfs directory."""
    name = sys_dir.name
    size = int((sys_dir / "size").read_text().strip() or 0) * 512  # always 512-byte units
    removable = (sys_dir / "removable").exists() and (
        (sys_dir / "removable").read_text().strip() == "1"
    )
    real = str(sys_dir.resolve())
    bus = (
        "usb" if "/usb" in real else "mmc" if ("/mmc" in real or name.startswith("mmcblk")) else ""
    )
    parts = tuple(
        sorted(p.name for p in sys_dir.iterdir() if p.is_dir() and (p / "partition").exists())
    )
    holders = tuple(
        sorted(
            h.name
            for d in (sys_dir, *(sys_dir / p for p in parts))
            if (d / "holders").is_dir()
            for h in (d / "holders").iterdir()
        )
    )
    return BlockDisk(
        name=name, size=size, removable=removable, bus=bus, partitions=parts, holders=holders
    )


def _disk_behind_mount_point(mount_point: str, sys_root: str | os.PathLike[str]) -> str | None:
    try:
        st = os.stat(mount_point)
    except OSError:
        return None
    sys_dir = sysfs_block_dir(os.major(st.st_dev), os.minor(st.st_dev), sys_root)
    if not sys_dir.exists() or not (sys_dir / "size").exists():
        return None  # tmpfs, overlay, NFS...: no disk behind it
    return _disk_of(sys_dir).name


def system_disks(sys_root: str | os.PathLike[str] = "/sys") -> set[str]:
    """Return the kernel names of the disks holding the running system."""
    names = set()
    for mount_point in SYSTEM_MOUNT_POINTS:
        name = _disk_behind_mount_point(mount_point, sys_root)
        if name:
            names.add(name)
    return names


def check_disk(
    disk: BlockDisk,
    *,
    mounts: list[tuple[str, str]],
    swaps: list[str],
    system: set[str],
    allow_fixed: bool = False,
    resolve: Callable[[str], str] = os.path.realpath,
) -> None:
    """Refuse a whole disk that is in use, holds the system or is not removable.

    ``mounts`` and ``swaps`` are what :func:`mount_sources` and :func:`swap_sources`
    return; ``system`` what :func:`system_disks` returns; ``resolve`` maps a mount
    source such as ``/dev/disk/by-uuid/...`` to its ``/dev`` node.

    Raises:
        TargetRefused: the message says why, naming the mount point or the flag.
    """
    names = {disk.name, *disk.partitions}
    if disk.name in system:
        raise TargetRefused(f"/dev/{disk.name} holds the running system: refusing to write it")
    for source, mount_point in mounts:
        if Path(resolve(source)).name in names and source.startswith("/dev/"):
            raise TargetRefused(
                f"/dev/{disk.name} is in use: {source} is mounted at {mount_point}; "
                "unmount it first (udisksctl unmount -b " + source + ")"
            )
    if disk.holders:
        raise TargetRefused(
            f"/dev/{disk.name} is in use by {', '.join(disk.holders)} (LVM, LUKS or RAID): "
            "close those first"
        )
    for source in swaps:
        if Path(resolve(source)).name in names:
            raise TargetRefused(f"/dev/{disk.name} is in use as swap ({source})")
    if not (disk.removable or disk.bus in ("usb", "mmc")) and not allow_fixed:
        raise TargetRefused(
            f"/dev/{disk.name} is a fixed disk (not removable, not on USB or an SD slot); "
            "if it really is the card, pass --allow-fixed-disk"
        )


@dataclass(frozen=True)
class Target:
    """A checked write target: a regular file, or a whole disk with its sysfs facts."""

    path: str
    size: int
    disk: BlockDisk | None

    @property
    def is_block_device(self) -> bool:
        """Return whether the target is a block device (not a regular file)."""
        return self.disk is not None


def inspect_target(
    path: str | os.PathLike[str],
    *,
    allow_fixed: bool = False,
    sys_root: str | os.PathLike[str] = "/sys",
    mounts_file: str | os.PathLike[str] = "/proc/self/mounts",
    swaps_file: str | os.PathLike[str] = "/proc/swaps",
) -> Target:
    """Return the :class:`Target` at ``path`` once it passed every safety check.

    Raises:
        TargetRefused: the target is missing, a partition, a character device,
            mounted, swap, a system disk, or a fixed disk without ``allow_fixed``.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TargetRefused(f"{path} does not exist") from None
    if stat.S_ISREG(st.st_mode):
        return Target(path=path, size=st.st_size, disk=None)
    if not stat.S_ISBLK(st.st_mode):
        raise TargetRefused(f"{path} is neither a block device nor a regular file")
    sys_dir = sysfs_block_dir(os.major(st.st_rdev), os.minor(st.st_rdev), sys_root)
    if (sys_dir / "partition").exists():
        raise TargetRefused(
            f"{path} is a partition of /dev/{sys_dir.parent.name}: give the whole card "
            f"(/dev/{sys_dir.parent.name})"
        )
    disk = read_disk(sys_dir)
    check_disk(
        disk,
        mounts=mount_sources(mounts_file),
        swaps=swap_sources(swaps_file),
        system=system_disks(sys_root),
        allow_fixed=allow_fixed,
    )
    return Target(path=path, size=disk.size, disk=disk)
