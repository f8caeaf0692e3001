"""Partition tables and FAT boot partitions of images and cards, without mounting.

The partition table is read with ``sfdisk --json`` (an image file or a whole-disk
block device alike); files inside a FAT partition are read and written with
mtools, addressing the partition as ``TARGET@@OFFSET``. Nothing here mounts a file
system, so it needs no loop device, no vfat kernel module and, for an image file,
no root.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from images import tools
from images.errors import ImageError, ToolFailed

log = logging.getLogger(__name__)

#: MBR partition type codes of FAT file systems (FAT12, FAT16 <32M, FAT16, W95 FAT32,
#: W95 FAT32 LBA, W95 FAT16 LBA, EFI system).
FAT_MBR_TYPES = frozenset({"1", "4", "6", "b", "c", "e", "ef"})
#: GPT partition type GUIDs that hold FAT: EFI system, Microsoft basic data.
FAT_GPT_TYPES = frozenset(
    {"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"}
)


@dataclass(frozen=True)
class Partition:
    """One entry of a partition table.

    ``number`` is the partition's number (``3`` for ``/dev/sdb3``: for MBR, slots 1-4
    are primary, 5 and up logical); ``start`` and ``size`` are in bytes.
    """

    number: int
    start: int
    size: int
    type: str

    @property
    def end(self) -> int:
        """Return the offset of the first byte after the partition."""
        return self.start + self.size


@dataclass(frozen=True)
class PartitionTable:
    """The partition table of an image or card: ``label`` is ``dos`` or ``gpt``.

    ``disk_id`` is the disk identifier as sfdisk prints it (``0x1234abcd`` for MBR,
    a GUID for GPT): PARTUUIDs derive from it, so rewriting a table must keep it.
    """

    label: str
    sector_size: int
    partitions: tuple[Partition, ...]
    disk_id: str = ""


def _partition_number(node: str, index: int) -> int:
    """Return the partition number at the end of ``node`` (``/dev/sdb3``, ``card.img3``),
    or ``index`` (its 1-based position in the table) when the name has none."""
    digits = node[len(node.rstrip("0123456789")) :]
    return int(digits) if digits else index


def read_partition_table(target: str | os.PathLike[str]) -> PartitionTable:
    """Return the partition table of an image file or whole-disk device.

    Raises:
        ImageError: ``target`` has no partition table sfdisk recognises.
        ToolMissing: sfdisk is not installed.
    """
    target = os.fspath(target)
    proc = tools.run("sfdisk", ["--json", target], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        err = proc.stderr.decode(errors="replace").strip()
        raise ImageError(f"{target}: no partition table found ({err or 'sfdisk found none'})")
    table = json.loads(proc.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    parts = tuple(
        Partition(
            number=_partition_number(p.get("node", ""), i),
            start=int(p["start"]) * sector,
            size=int(p["size"]) * sector,
            type=str(p["type"]).upper() if table["label"] == "gpt" else str(p["type"]).lower(),
        )
        for i, p in enumerate(table.get("partitions", []), start=1)
    )
    return PartitionTable(
        label=table["label"], sector_size=sector, partitions=parts, disk_id=str(table.get("id", ""))
    )


#: ext4 superblock: 1024 bytes into the file system; magic at 0x38, volume name at 0x78.
_EXT_SUPERBLOCK = 1024
_EXT_MAGIC = b"\x53\xef"


def ext4_label(target: str | os.PathLike[str], offset: int) -> str | None:
    """Return the volume label of the ext2/3/4 file system at ``offset``, or None if
    there is no such file system there.

    Read straight from the superblock (magic and ``s_volume_name``): the label is
    what tells Portier's data partition (``portier-data``) from any other ext4.
    """
    with open(target, "rb") as f:
        f.seek(offset + _EXT_SUPERBLOCK)
        sb = f.read(0x88)
    if len(sb) < 0x88 or sb[0x38:0x3A] != _EXT_MAGIC:
        return None
    return sb[0x78:0x88].split(b"\0", 1)[0].decode(errors="replace")


def _has_fat_boot_sector(target: str, offset: int) -> bool:
    """Return whether a FAT boot sector (jump, 0x55AA, "FAT" type string) is at ``offset``."""
    with open(target, "rb") as f:
        f.seek(offset)
        sector = f.read(512)
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return False
    if sector[0] not in (0xEB, 0xE9):
        return False
    # FAT12/16 keep the type string at 0x36, FAT32 at 0x52.
    return sector[0x36:0x39] == b"FAT" or sector[0x52:0x57] == b"FAT32"


def find_boot_partition(target: str | os.PathLike[str]) -> Partition:
    """Return the first FAT partition of ``target`` (the Raspberry Pi boot partition).

    The partition type must be a FAT type and the partition must actually hold a
    FAT file system.

    Raises:
        ImageError: no partition table, or no FAT partition in it.
    """
    target = os.fspath(target)
    table = read_partition_table(target)
    fat_types = FAT_GPT_TYPES if table.label == "gpt" else FAT_MBR_TYPES
    for part in table.partitions:
        if part.type in fat_types and _has_fat_boot_sector(target, part.start):
            return part
    raise ImageError(
        f"{target}: no FAT boot partition (partitions: "
        + (", ".join(f"#{p.number} type {p.type}" for p in table.partitions) or "none")
        + "); is this a Portier / Raspberry Pi image?"
    )


class FatPartition:
    """Files in a FAT file system at a byte offset of an image or card, through mtools.

    Paths are relative to the file system's root and use ``/`` separators.
    """

    def __init__(self, target: str | os.PathLike[str], offset: int) -> None:
        self.target = os.fspath(target)
        self.offset = offset

    @classmethod
    def boot_of(cls, target: str | os.PathLike[str]) -> FatPartition:
        """Return the boot partition of ``target``; raises :class:`ImageError` if none."""
        return cls(target, find_boot_partition(target).start)

    @property
    def _drive(self) -> str:
        return f"{self.target}@@{self.offset}"

    def read(self, name: str) -> bytes:
        """Return the contents of file ``name``.

        Raises:
            FileNotFoundError: no such file.
            ToolFailed: mtools could not read the file system.
        """
        proc = tools.run("mtype", ["-i", self._drive, f"::/{name}"], check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if "not found" in err.lower():
                raise FileNotFoundError(f"{name}: not in the boot partition of {self.target}")
            raise ToolFailed(f"mtype {name} on {self.target} failed: {err.strip()}")
        return proc.stdout

    def exists(self, name: str) -> bool:
        """Return whether file ``name`` exists."""
        proc = tools.run("mdir", ["-b", "-i", self._drive, f"::/{name}"], check=False)
        return proc.returncode == 0

    def names(self) -> list[str]:
        """Return the names of the files and directories in the root directory."""
        proc = tools.run("mdir", ["-b", "-i", self._drive, "::/"])
        return [line.removeprefix("::/") for line in proc.stdout.decode().split() if line]

    def write(self, name: str, data: bytes) -> None:
        """Create or replace file ``name`` with ``data`` and check it by reading it back.

        Raises:
            ToolFailed: mtools could not write (full, read-only, corrupt file system).
            ImageError: the file read back differs from what was written.
        """
        with tempfile.TemporaryDirectory(prefix="portier-fat-") as tmp:
            src = Path(tmp) / "data"
            src.write_bytes(data)
            # -o: overwrite without asking; -D o: same for name clashes.
            tools.run("mcopy", ["-o", "-D", "o", "-i", self._drive, str(src), f"::/{name}"])
        if self.read(name) != data:
            raise ImageError(f"{self.target}: {name} reads back differently after writing")
        log.info(
            "wrote %s (%d bytes) into %s at offset %d", name, len(data), self.target, self.offset
        )

    def write_tree(self, source: str | os.PathLike[str]) -> None:
        """Copy the contents of directory ``source`` into the root, recursively.

        Raises:
            ToolFailed: mtools could not write.
        """
        entries = sorted(str(p) for p in Path(source).iterdir())
        if entries:
            tools.run("mcopy", ["-s", "-o", "-D", "o", "-i", self._drive, *entries, "::/"])

    def delete(self, name: str) -> None:
        """Delete file ``name``; raises :class:`FileNotFoundError` if it does not exist."""
        if not self.exists(name):
            raise FileNotFoundError(f"{name}: not in the boot partition of {self.target}")
        tools.run("mdel", ["-i", self._drive, f"::/{name}"])
