"""Assemble a partitioned appliance image from directory trees, without loop devices.

Layout (MBR, which every Raspberry Pi boot ROM reads):

====  =====================  ======================================================
 #    file system            content
====  =====================  ======================================================
 1    FAT (label ``BOOTFS``)  firmware, kernel, ``config.txt``, ``cmdline.txt``;
                              the provisioning file is added here later
 2    ext4 (``rootfs``)       the operating system, mounted read-only on the device
 3    ext4 (``portier-data``) persistent data: Portier's journal and state, the
                              configuration, the systemd journal (optional)
====  =====================  ======================================================

The table is written by ``sfdisk``; the FAT file system by ``mkfs.vfat --offset``
straight into the image and filled by ``mcopy``; each ext4 file system by
``mkfs.ext4 -d DIR -E offset=...``, which copies a directory tree (owners, modes,
device nodes) into a file system at a byte offset. The image is sparse. Checks
afterwards use ``fsck.vfat -n`` on a copy of the FAT partition and ``e2fsck -fn``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from images import tools
from images.disk import FatPartition, find_boot_partition, read_partition_table
from images.errors import ImageError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
#: GPT type GUID of a Linux file system partition.
LINUX_GPT_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
#: Partitions start on 4 MiB boundaries: SD cards erase in blocks of that order.
ALIGN = 4 * MIB
#: FAT32 needs more than 65525 clusters, and mkfs.vfat picks 4 KiB clusters for a few
#: hundred MiB: at 256 MiB it makes a FAT32 with too few clusters, which mtools refuses
#: ("No directory slots"). Smaller boot partitions are FAT16 (the Pi firmware reads both).
FAT32_MIN = 512 * MIB
#: Free room left in each ext4 file system beyond its content, as a fraction.
EXT4_HEADROOM = 0.25


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def tree_stats(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return (bytes allocated, number of entries) of the tree at ``path``.

    Hard-linked files count once; each entry adds an inode's 256 bytes.
    """
    seen: set[tuple[int, int]] = set()
    total = entries = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            entries += 1
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512 + 256
    return total, entries


def ext4_size_for(path: str | os.PathLike[str], minimum: int = 8 * MIB) -> int:
    """Return an ext4 partition size (aligned) large enough for the tree at ``path``."""
    used, _ = tree_stats(path)
    need = int(used * (1 + EXT4_HEADROOM)) + 32 * MIB  # journal, bitmaps, inode tables
    return _align(max(need, minimum))


@dataclass(frozen=True)
class ImageLayout:
    """Sizes in bytes of the partitions; ``data_size`` 0 means no data partition."""

    boot_size: int = 512 * MIB
    root_size: int = 0
    data_size: int = 64 * MIB

    def __post_init__(self) -> None:
        """Validate; raises :class:`ValueError` naming the field."""
        if self.boot_size < 4 * MIB or self.boot_size % MIB:
            raise ValueError(f"boot_size: at least 4 MiB, whole MiB (got {self.boot_size})")
        if self.root_size <= 0 or self.root_size % MIB:
            raise ValueError(f"root_size: a positive whole number of MiB (got {self.root_size})")
        if self.data_size < 0 or self.data_size % MIB:
            raise ValueError(f"data_size: a whole number of MiB (got {self.data_size})")


def _mkfs_ext4(image: str, offset: int, size: int, label: str, tree: str | None) -> None:
    args = ["-q", "-F", "-L", label, "-E", f"offset={offset}"]
    if tree is not None:
        # Twice the entries the tree has, so that a small but busy tree still fits.
        inodes = max(2 * tree_stats(tree)[1] + 4096, 8192)
        args += ["-d", tree, "-N", str(inodes)]
    # No reserved blocks: nothing on these file systems runs as a user root must outlive.
    args += ["-m", "0", image, f"{size // 1024}k"]
    tools.run("mkfs.ext4", args)


def assemble_image(
    output: str | os.PathLike[str],
    *,
    boot_dir: str | os.PathLike[str],
    root_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    layout: ImageLayout | None = None,
) -> Path:
    """Write a partitioned image to ``output`` from the three directory trees.

    ``layout`` defaults to a 512 MiB boot partition, a root partition sized from
    ``root_dir`` and a 64 MiB data partition (none when ``data_dir`` is None).
    Returns the image path.

    Raises:
        ToolMissing, ToolFailed: sfdisk, mkfs.vfat, mcopy or mkfs.ext4 missing/failed.
    """
    if layout is None:
        layout = ImageLayout(
            root_size=ext4_size_for(root_dir), data_size=64 * MIB if data_dir else 0
        )
    if data_dir is None and layout.data_size:
        layout = ImageLayout(boot_size=layout.boot_size, root_size=layout.root_size, data_size=0)
    boot_start = ALIGN
    root_start = _align(boot_start + layout.boot_size)
    data_start = _align(root_start + layout.root_size)
    total = _align(data_start + layout.data_size)
    out = Path(output)
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(total)  # sparse: unwritten ranges cost nothing and bmap skips them

    sector = 512
    script = [
        "label: dos",
        f"start={boot_start // sector}, size={layout.boot_size // sector}, type=c, bootable",
        f"start={root_start // sector}, size={layout.root_size // sector}, type=83",
    ]
    if layout.data_size:
        script.append(f"start={data_start // sector}, size={layout.data_size // sector}, type=83")
    tools.run(
        "sfdisk",
        ["--quiet", "--no-reread", "--no-tell-kernel", str(out)],
        input=("\n".join(script) + "\n").encode(),
    )

    fat_bits = "32" if layout.boot_size >= FAT32_MIN else "16"
    tools.run(
        "mkfs.vfat",
        [
            "-F",
            fat_bits,
            "-n",
            "BOOTFS",
            f"--offset={boot_start // sector}",
            str(out),
            str(layout.boot_size // 1024),
        ],
    )
    FatPartition(out, boot_start).write_tree(boot_dir)
    _mkfs_ext4(str(out), root_start, layout.root_size, "rootfs", os.fspath(root_dir))
    if layout.data_size and data_dir is not None:  # a data size implies a data_dir (above)
        _mkfs_ext4(str(out), data_start, layout.data_size, "portier-data", os.fspath(data_dir))
    log.info("assembled %s (%d MiB)", out, total // MIB)
    return out


def check_image(image: str | os.PathLike[str]) -> list[str]:
    """Check every file system of an assembled image; return one line per partition.

    The FAT partition is copied out (sparsely) for ``fsck.vfat -n``, which takes no
    offset; ext4 partitions are checked in place with ``e2fsck -fn`` (read-only).

    Raises:
        ImageError: a file system has errors (the message carries the checker's output).
    """
    image = os.fspath(image)
    table = read_partition_table(image)
    report = []
    for part in table.partitions:
        if part.type in ("b", "c", "e", "6"):
            with tempfile.TemporaryDirectory(prefix="portier-fsck-") as tmp:
                copy = Path(tmp) / "boot.vfat"
                with open(image, "rb") as src, open(copy, "wb") as dst:
                    src.seek(part.start)
                    remaining = part.size
                    while remaining:
                        chunk = src.read(min(remaining, 4 * MIB))
                        if not chunk:
                            break
                        if chunk.count(0) == len(chunk):
                            dst.seek(len(chunk), os.SEEK_CUR)
                        else:
                            dst.write(chunk)
                        remaining -= len(chunk)
                    dst.truncate(part.size)
                proc = tools.run("fsck.vfat", ["-n", str(copy)], check=False)
        else:
            proc = tools.run("e2fsck", ["-fn", f"{image}?offset={part.start}"], check=False)
        text = (proc.stdout + proc.stderr).decode(errors="replace").strip()
        if proc.returncode != 0:
            raise ImageError(f"{image}: partition {part.number} has errors:\n{text}")
        report.append(f"partition {part.number} ({part.type}): clean")
    return report


def ext4_read(image: str | os.PathLike[str], offset: int, path: str) -> bytes:
    """Return the contents of ``path`` in the ext4 file system at ``offset`` (debugfs).

    Raises:
        FileNotFoundError: no such file in that file system.
    """
    proc = tools.run("debugfs", ["-R", f"cat {path}", f"{os.fspath(image)}?offset={offset}"])
    err = proc.stderr.decode(errors="replace")
    if "File not found" in err:
        raise FileNotFoundError(f"{path}: not in the ext4 file system at offset {offset}")
    return proc.stdout


def extract_image(
    image: str | os.PathLike[str],
    *,
    boot_dir: str | os.PathLike[str],
    root_dir: str | os.PathLike[str],
) -> None:
    """Copy the boot (FAT) and root (first ext4) partitions of ``image`` into directories.

    Used to layer Portier on an existing image (Raspberry Pi OS Lite) without
    mounting it: ``mcopy -s`` for the FAT partition, ``debugfs rdump`` for ext4
    (which keeps modes and, as root, owners).

    Raises:
        ImageError: no FAT or no ext4 partition.
        ToolFailed: mcopy or debugfs failed.
    """
    image = os.fspath(image)
    boot = find_boot_partition(image)
    root = next(
        (p for p in read_partition_table(image).partitions if p.type in ("83", LINUX_GPT_TYPE)),
        None,
    )
    if root is None:
        raise ImageError(f"{image}: no Linux (ext4) root partition")
    Path(boot_dir).mkdir(parents=True, exist_ok=True)
    Path(root_dir).mkdir(parents=True, exist_ok=True)
    tools.run(
        "mcopy", ["-s", "-n", "-m", "-i", f"{image}@@{boot.start}", "::/*", os.fspath(boot_dir)]
    )
    proc = tools.run(
        "debugfs", ["-R", f"rdump / {os.fspath(root_dir)}", f"{image}?offset={root.start}"]
    )
    errors = [
        line
        for line in proc.stderr.decode(errors="replace").splitlines()
        if line and not line.startswith("debugfs ")
    ]
    if errors:
        raise ImageError(f"{image}: extracting the root file system failed: {errors[0]}")
