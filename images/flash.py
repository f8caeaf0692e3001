"""Writing an appliance image to an SD card, verified.

Two ways, chosen by what sits next to the image:

* ``IMAGE.bmap`` (made by ``bmaptool create`` at build time): ``bmaptool copy``
  writes only the mapped blocks and checks each range's SHA-256 against the bmap
  while it reads the image, so a damaged or altered image stops the copy.
* otherwise, an equivalent verified write: the image is copied in 4 MiB chunks and
  hashed while it is written; if ``IMAGE.sha256`` exists the hash must match it.

Either way the card is then **read back** (every mapped range against the bmap's
checksums, or the whole image against the hash computed while writing), after
dropping the kernel's cached copy of the device, so a card that silently lost
writes is caught. Before anything is written the target passes
:func:`images.targets.inspect_target` (no mounted, system or fixed disk, no
partition) and must be at least as large as the image; a block device is also
opened with ``O_EXCL``, which the kernel refuses while anything on it is mounted.

Once the card verified, the data partition (the last one, ext4 ``portier-data``) is
extended to the end of the card (:func:`grow_data_partition`): the image carries a
small one (256 MiB) so that it flashes fast, and the journal should have the whole
card. Only its table entry changes, through ``sfdisk -N``; the file system inside
is grown on the device at boot by ``systemd-growfs`` (``x-systemd.growfs`` in
``/etc/fstab``).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from images import disk, targets, tools
from images.errors import FlashError, ImageError, TargetRefused, ToolFailed, ToolMissing

log = logging.getLogger(__name__)

MIB = 1024 * 1024
CHUNK = 4 * MIB
#: The grown data partition ends on a multiple of this, as the image's partitions
#: start on one (:data:`images.assemble.ALIGN`): SD cards erase in blocks of that order.
DATA_END_ALIGN = 4 * MIB
#: Label of the ext4 file system of the data partition (``images/overlay/etc/fstab``).
DATA_LABEL = "portier-data"
#: MBR entries hold 32-bit sector counts: a partition cannot reach past 2 TiB.
_MBR_MAX_SECTORS = 2**32 - 1
_MBR_ENTRY = 446  # offset of the first of the four 16-byte partition entries
#: ``progress(phase, done, total)``: phase is "write" or "verify", sizes in bytes.
Progress = Callable[[str, int, int], None]
_BLKFLSBUF = 0x1261  # linux/fs.h: flush the buffer cache of a block device


@dataclass(frozen=True)
class BmapRange:
    """Blocks ``first``..``last`` (inclusive) of the image and their checksum."""

    first: int
    last: int
    checksum: str


@dataclass(frozen=True)
class Bmap:
    """A parsed bmap file (format 2.x): which blocks of the image hold data."""

    image_size: int
    block_size: int
    checksum_type: str
    ranges: tuple[BmapRange, ...]

    @property
    def mapped_bytes(self) -> int:
        """Return the number of bytes the mapped ranges cover."""
        return sum(
            min((r.last + 1) * self.block_size, self.image_size) - r.first * self.block_size
            for r in self.ranges
        )


def read_bmap(path: str | os.PathLike[str]) -> Bmap:
    """Return the parsed bmap file at ``path``.

    Raises:
        ImageError: not a bmap file, or a version / checksum type this code does not know.
    """
    try:
        root = ET.parse(path).getroot()
        version = root.get("version", "")
        if root.tag != "bmap" or not version.startswith("2."):
            raise ImageError(f"{path}: not a bmap file of format 2.x (version {version!r})")
        ctype = (root.findtext("ChecksumType") or "").strip()
        if ctype not in ("sha256", "sha1", "md5"):
            raise ImageError(f"{path}: unknown checksum type {ctype!r}")
        ranges = []
        for elem in root.iter("Range"):
            first, _, last = (elem.text or "").strip().partition("-")
            ranges.append(BmapRange(int(first), int(last or first), elem.get("chksum", "").strip()))
        return Bmap(
            image_size=int((root.findtext("ImageSize") or "").strip()),
            block_size=int((root.findtext("BlockSize") or "").strip()),
            checksum_type=ctype,
            ranges=tuple(ranges),
        )
    except (ET.ParseError, ValueError) as exc:
        raise ImageError(f"{path}: not a valid bmap file ({exc})") from None


def find_bmap(image: str | os.PathLike[str]) -> Path | None:
    """Return the bmap next to ``image`` (``IMAGE.bmap`` or ``IMAGE`` minus ``.img`` +
    ``.bmap``), or None."""
    image = Path(image)
    for candidate in (image.with_name(image.name + ".bmap"), image.with_suffix(".bmap")):
        if candidate.is_file():
            return candidate
    return None


def read_sha256_file(path: Path) -> str:
    """Return the hex digest in a ``sha256sum``-style file (first field of its first line).

    Raises:
        ImageError: the file does not start with a 64-hex-digit digest.
    """
    first = path.read_text().split()
    digest = first[0].lower() if first else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ImageError(f"{path}: not a SHA-256 checksum file")
    return digest


def write_sidecars(image: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(Re)create ``IMAGE.bmap`` (bmaptool create) and ``IMAGE.sha256``; return both paths.

    Raises:
        ToolMissing, ToolFailed: bmaptool missing or failed.
    """
    image = Path(image)
    bmap = image.with_name(image.name + ".bmap")
    tools.run("bmaptool", ["create", "-o", str(bmap), str(image)])
    digest = hashlib.sha256()
    with open(image, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    sha = image.with_name(image.name + ".sha256")
    sha.write_text(f"{digest.hexdigest()}  {image.name}\n")
    return bmap, sha


@dataclass(frozen=True)
class GrowResult:
    """What happened to the data partition after the image was written.

    ``number`` is the data partition's number (None when the last partition is not
    Portier's data partition); ``old_size`` / ``new_size`` are its sizes in bytes
    before and after (equal when not grown); ``message`` says what was done or why
    not, in words for the installer.
    """

    grown: bool
    number: int | None
    old_size: int
    new_size: int
    message: str


@dataclass(frozen=True)
class FlashResult:
    """What was written: ``method`` is "bmaptool" or "verified-copy"; ``verified_bytes``
    is how much was read back from the target and matched; ``data_partition`` is what
    :func:`grow_data_partition` did (None when growing was not asked for)."""

    image: str
    target: str
    method: str
    image_size: int
    verified_bytes: int
    sha256: str | None
    data_partition: GrowResult | None = None


def _open_target(target: targets.Target, flags: int) -> int:
    """Open the target; a block device exclusively, which fails while it is mounted."""
    if target.is_block_device:
        flags |= os.O_EXCL
    try:
        return os.open(target.path, flags)
    except OSError as exc:
        raise TargetRefused(f"cannot open {target.path} exclusively: {exc.strerror}") from None


def _drop_cache(fd: int, is_block_device: bool) -> None:
    """Make the next read come from the medium, not from the page cache."""
    os.fsync(fd)
    if is_block_device:
        try:
            fcntl.ioctl(fd, _BLKFLSBUF)
        except OSError as exc:  # needs CAP_SYS_ADMIN; fadvise below still helps
            log.warning("could not flush the block device's buffer cache: %s", exc)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _read_exact(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise FlashError(f"short read at offset {offset}: the card ended early")
    return data


def _verify_ranges(target: targets.Target, bmap: Bmap, progress: Progress | None) -> int:
    fd = _open_target(target, os.O_RDONLY)
    done = 0
    total = bmap.mapped_bytes
    if progress:
        progress("verify", 0, total)
    try:
        _drop_cache(fd, target.is_block_device)
        for rng in bmap.ranges:
            start = rng.first * bmap.block_size
            end = min((rng.last + 1) * bmap.block_size, bmap.image_size)
            digest = hashlib.new(bmap.checksum_type)
            for off in range(start, end, CHUNK):
                size = min(CHUNK, end - off)
                digest.update(_read_exact(fd, off, size))
                done += size
                if progress:
                    progress("verify", done, total)
            if digest.hexdigest() != rng.checksum:
                raise FlashError(
                    f"{target.path}: blocks {rng.first}-{rng.last} read back differently "
                    "from the image: the card is faulty or was disturbed; do not use it"
                )
    finally:
        os.close(fd)
    return done


def _copy_with_bmaptool(image: Path, bmap: Path, target: targets.Target, show: bool) -> None:
    cmd = [tools.which("bmaptool"), "copy", "--bmap", str(bmap), str(image), target.path]
    # bmaptool draws its own progress bar on a terminal: let it through when asked.
    proc = subprocess.run(cmd, stderr=None if show else subprocess.PIPE, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace")
        lines = [ln for ln in err.splitlines() if "ERROR" in ln] or err.splitlines()[-1:]
        raise FlashError(
            f"bmaptool could not write {image} to {target.path}"
            + (f": {lines[-1].split('ERROR', 1)[-1].lstrip(':[0m ')}" if lines else "")
            + " -- the image or its bmap is damaged or was altered; do not use this card"
        )


def _verified_copy(
    image: Path, size: int, target: targets.Target, progress: Progress | None
) -> str:
    digest = hashlib.sha256()
    out = _open_target(target, os.O_WRONLY)
    try:
        with open(image, "rb") as src:
            done = 0
            if progress:
                progress("write", 0, size)
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    written = os.write(out, view)
                    view = view[written:]
                done += len(chunk)
                if progress:
                    progress("write", done, size)
        if done != size:
            raise FlashError(f"{image} changed size while it was being written")
        _drop_cache(out, target.is_block_device)
    finally:
        os.close(out)
    return digest.hexdigest()


def _verify_hash(
    target: targets.Target, size: int, expected: str, progress: Progress | None
) -> None:
    fd = _open_target(target, os.O_RDONLY)
    digest = hashlib.sha256()
    if progress:
        progress("verify", 0, size)
    try:
        _drop_cache(fd, target.is_block_device)
        for off in range(0, size, CHUNK):
            n = min(CHUNK, size - off)
            digest.update(_read_exact(fd, off, n))
            if progress:
                progress("verify", off + n, size)
    finally:
        os.close(fd)
    if digest.hexdigest() != expected:
        raise FlashError(
            f"{target.path} reads back differently from the image: the card is faulty; "
            "do not use it"
        )


def format_size(n: int) -> str:
    """Return ``n`` bytes in MiB, or in GiB from 1 GiB on, with one decimal."""
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / MIB:.1f} MiB"


def _read_mbr(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(512)


def find_data_partition(table: disk.PartitionTable, path: str) -> tuple[disk.Partition | None, str]:
    """Return ``(partition, "")`` when the last partition of ``table`` is Portier's data
    partition, else ``(None, why not)``.

    It must be a primary MBR partition of type 83, lie after every other partition
    and hold the ext4 file system labelled ``portier-data``: only then may it take
    the rest of the card without hiding anything else.
    """
    if table.label != "dos":
        return None, f"the partition table is {table.label}, not the MBR of a Portier image"
    if not table.partitions:
        return None, "there is no partition"
    last = table.partitions[-1]
    if last.number > 4 or any(p.type in ("5", "f", "85") for p in table.partitions):
        return None, "the table has an extended partition, which Portier images do not"
    if any(p.end > last.start for p in table.partitions[:-1]):
        return None, f"partition {last.number} is not the last one on the card"
    if last.type != "83":
        return None, f"the last partition (#{last.number}) has type {last.type}, not Linux (83)"
    label = disk.ext4_label(path, last.start)
    if label != DATA_LABEL:
        found = "no ext4 file system" if label is None else f"the ext4 file system {label!r}"
        return None, f"the last partition (#{last.number}) holds {found}, not {DATA_LABEL!r}"
    return last, ""


def _tell_kernel(path: str) -> None:
    """Best effort: have the kernel pick up the changed table of block device ``path``.

    sfdisk already told it about the resized partition (BLKPG); ``partx -u``, or else
    ``blockdev --rereadpt``, makes sure. If neither works the card is still right:
    the kernel only sees the new size once the card is inserted again.
    """
    for program, args in (("partx", ["-u", path]), ("blockdev", ["--rereadpt", path])):
        try:
            if tools.run(program, args, check=False).returncode == 0:
                return
        except ToolMissing:
            continue
    log.warning(
        "the kernel still sees the old partition table of %s until the card is inserted "
        "again; the card itself is right",
        path,
    )


def grow_data_partition(device: str | os.PathLike[str], *, allow_fixed: bool = False) -> GrowResult:
    """Extend the data partition of a freshly written card to the end of the card.

    The partition keeps its start and ends on a :data:`DATA_END_ALIGN` boundary (and
    within the 2 TiB an MBR can address). ``sfdisk -N`` rewrites that one table entry
    and nothing else: the disk identifier (the base of every PARTUUID), the boot
    code and the other entries stay as they were, which is checked by reading the
    table back. The file system is not touched: it stays valid, smaller than its
    partition, until ``systemd-growfs`` grows it at boot.

    When the last partition is not Portier's data partition
    (:func:`find_data_partition`), the card is as large as the image, or the card
    became unsafe to write (mounted since), the table is left alone and the result
    says why: the card is still good.

    Raises:
        FlashError: the table changed other than intended (or sfdisk failed after
            writing); the message says to flash again with ``--no-grow``.
        ImageError: the card has no partition table.
    """
    try:
        target = targets.inspect_target(device, allow_fixed=allow_fixed)
    except TargetRefused as exc:
        return GrowResult(False, None, 0, 0, f"partition table left as written: {exc}")
    path = target.path
    table = disk.read_partition_table(path)
    part, why = find_data_partition(table, path)
    if part is None:
        message = f"partition table left as written: {why}"
        log.warning("%s: %s", path, message)
        return GrowResult(False, None, 0, 0, message)
    sector = table.sector_size
    reach = min(target.size, _MBR_MAX_SECTORS * sector)
    new_end = reach // DATA_END_ALIGN * DATA_END_ALIGN
    if new_end <= part.end:
        return GrowResult(
            False,
            part.number,
            part.size,
            part.size,
            f"nothing to grow: data partition {part.number} ({format_size(part.size)}) "
            f"already ends within {DATA_END_ALIGN // MIB} MiB of the end of the card",
        )

    before = _read_mbr(path)
    args = ["--quiet", "--no-reread", "--wipe", "never", "--wipe-partitions", "never"]
    if not target.is_block_device:
        args.append("--no-tell-kernel")
    script = f"start={part.start // sector}, size={(new_end - part.start) // sector}\n"
    log.info("extending partition %d of %s to end at byte %d", part.number, path, new_end)
    try:
        tools.run("sfdisk", [*args, "-N", str(part.number), path], input=script.encode())
    except ToolFailed as exc:
        if _read_mbr(path) != before:
            raise FlashError(
                f"{path}: sfdisk failed after changing the partition table ({exc}); "
                "flash the card again with --no-grow"
            ) from None
        message = f"data partition {part.number} left at {format_size(part.size)}: {exc}"
        log.warning("%s: %s", path, message)
        return GrowResult(False, part.number, part.size, part.size, message)
    if target.is_block_device:
        _tell_kernel(path)

    after_table = disk.read_partition_table(path)
    after = _read_mbr(path)
    entry = _MBR_ENTRY + 16 * (part.number - 1)
    if not after_table.partitions:
        raise FlashError(
            f"{path}: the partition table is empty after growing the data partition; "
            "flash the card again with --no-grow"
        )
    grown = after_table.partitions[-1]
    problems = []
    if after_table.partitions[:-1] != table.partitions[:-1]:
        problems.append("the other partitions moved")
    if (grown.number, grown.start, grown.type, grown.end) != (
        part.number,
        part.start,
        part.type,
        new_end,
    ):
        problems.append(f"partition {part.number} is not where it should be ({grown})")
    if after_table.disk_id != table.disk_id:
        problems.append(f"the disk identifier changed ({table.disk_id} -> {after_table.disk_id})")
    if before[:entry] + before[entry + 16 :] != after[:entry] + after[entry + 16 :]:
        problems.append("bytes outside the data partition's entry changed")
    if problems:
        raise FlashError(
            f"{path}: after growing the data partition the partition table is wrong: "
            f"{'; '.join(problems)}. Flash the card again with --no-grow"
        )
    message = (
        f"data partition {part.number} ({DATA_LABEL}) grown from {format_size(part.size)} "
        f"to {format_size(grown.size)}; its file system grows to match at boot "
        "(systemd-growfs)"
    )
    log.info("%s: %s", path, message)
    return GrowResult(True, part.number, part.size, grown.size, message)


def flash(
    image: str | os.PathLike[str],
    device: str | os.PathLike[str],
    *,
    bmap: str | os.PathLike[str] | None = None,
    use_bmap: bool = True,
    allow_fixed: bool = False,
    progress: Progress | None = None,
    show_tool_progress: bool = False,
    grow: bool = True,
) -> FlashResult:
    """Write ``image`` to ``device``, verify it by reading it back, then (``grow``)
    extend the data partition to the end of the card (:func:`grow_data_partition`).

    ``bmap`` defaults to the one next to the image (:func:`find_bmap`); with
    ``use_bmap`` false, or when there is none, the verified copy is used.
    ``device`` is a whole-disk block device or, for tests, a regular file at least
    as large as the image; a file stands in for a card and keeps its size.
    Returns a :class:`FlashResult`.

    Raises:
        TargetRefused: the target is unsafe (see :mod:`images.targets`) or too small.
        ImageError: the image is missing, or the bmap does not describe it.
        FlashError: writing failed, the image does not match its bmap or
            ``IMAGE.sha256``, the card read back differently, or growing the data
            partition left an unexpected table.
    """
    image = Path(image)
    if not image.is_file():
        raise ImageError(f"{image}: no such image file")
    size = image.stat().st_size
    bmap_path = (Path(bmap) if bmap is not None else find_bmap(image)) if use_bmap else None
    parsed = read_bmap(bmap_path) if bmap_path else None
    if parsed is not None and parsed.image_size != size:
        raise ImageError(
            f"{bmap_path} describes an image of {parsed.image_size} bytes, {image} has {size}: "
            "they do not belong together (or the image is compressed; decompress it first)"
        )
    target = targets.inspect_target(device, allow_fixed=allow_fixed)
    if target.size < size:
        raise TargetRefused(
            f"{target.path} is too small: {target.size} bytes for an image of {size} bytes"
        )
    if parsed is not None and bmap_path is not None:
        log.info("writing %s to %s with bmaptool (%s)", image, target.path, bmap_path)
        _copy_with_bmaptool(image, bmap_path, target, show_tool_progress)
        if not target.is_block_device and os.path.getsize(target.path) < target.size:
            # bmaptool cuts a regular-file destination to the image's size; a file
            # standing in for a card (tests, a VM's disk) keeps the card's size.
            os.truncate(target.path, target.size)
        verified = _verify_ranges(target, parsed, progress)
        return FlashResult(
            str(image),
            target.path,
            "bmaptool",
            size,
            verified,
            None,
            data_partition=_grow(target, grow, allow_fixed),
        )

    sha_file = image.with_name(image.name + ".sha256")
    expected = read_sha256_file(sha_file) if sha_file.is_file() else None
    log.info("writing %s to %s (verified copy)", image, target.path)
    digest = _verified_copy(image, size, target, progress)
    if expected is not None and digest != expected:
        raise FlashError(
            f"{image} does not match {sha_file.name}: the image was altered or damaged; "
            f"the card written from it must not be used"
        )
    _verify_hash(target, size, digest, progress)
    return FlashResult(
        str(image),
        target.path,
        "verified-copy",
        size,
        size,
        digest,
        data_partition=_grow(target, grow, allow_fixed),
    )


def _grow(target: targets.Target, grow: bool, allow_fixed: bool) -> GrowResult | None:
    # Growing comes after the read-back on purpose: the card was verified against the
    # image exactly as built, partition table included. Growing then rewrites one
    # 16-byte table entry and grow_data_partition checks, by reading the table sector
    # back, that nothing else changed; the partitions' contents are not touched.
    if not grow:
        return None
    return grow_data_partition(target.path, allow_fixed=allow_fixed)
