"""``appliance flash`` extends the data partition to the end of the card.

The images are small synthetic ones (FAT16 boot + ext4 root + ext4 ``portier-data``
data partition, as :mod:`images.assemble` builds the real one) and the cards regular
files larger than the image, written with the real bmaptool or the verified copy and
grown by the real sfdisk. That the grown partition works is shown as systemd-growfs
would at boot: the partition's extent is copied out, ``resize2fs`` grows the file
system to it, ``e2fsck -fn`` finds it clean and ``dumpe2fs -h`` counts more blocks.
The rest of the flash tests (verification, refusals) are in ``tests/images/test_images.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from images import assemble, cli, disk, flash
from tests.support.image_kit import SEARCH_PATH, blank_card, requires_tools

MIB = 1024 * 1024
TOOLS = (
    "sfdisk",
    "mkfs.vfat",
    "mcopy",
    "mkfs.ext4",
    "e2fsck",
    "resize2fs",
    "dumpe2fs",
    "debugfs",
    "bmaptool",
)
pytestmark = [requires_tools(*TOOLS), pytest.mark.processes]


def tool(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a disk tool with a C locale; return the completed process (not checked)."""
    return subprocess.run(
        [shutil.which(name, path=SEARCH_PATH) or name, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )


def build(tmp: Path, *, data: bool = True) -> Path:
    """Assemble a 40 MiB image (16 MiB boot, 12 MiB root, 8 MiB data) with its sidecars."""
    boot, root, state = tmp / "boot", tmp / "root", tmp / "data"
    boot.mkdir()
    (boot / "config.txt").write_text("dtparam=watchdog=on\n")
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("portier\n")
    (state / "portier").mkdir(parents=True)
    (state / "portier/journal.db").write_bytes(b"journal" * 1000)
    layout = assemble.ImageLayout(
        boot_size=16 * MIB, root_size=12 * MIB, data_size=8 * MIB if data else 0
    )
    image = assemble.assemble_image(
        tmp / "portier.img",
        boot_dir=boot,
        root_dir=root,
        data_dir=state if data else None,
        layout=layout,
    )
    flash.write_sidecars(image)
    return image


@pytest.fixture(scope="module")
def base_image(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("grow"))


def mbr(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(512)


def without_entry(sector: bytes, number: int) -> bytes:
    """The MBR sector minus partition entry ``number`` (16 bytes from offset 446)."""
    at = 446 + 16 * (number - 1)
    return sector[:at] + sector[at + 16 :]


def copy_extent(src: Path, start: int, size: int, dst: Path) -> None:
    """Copy ``size`` bytes at ``start`` of ``src`` into a new sparse file ``dst``."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fin.seek(start)
        remaining = size
        while remaining:
            chunk = fin.read(min(remaining, 4 * MIB))
            assert chunk, "the card ended inside the partition"
            if chunk.count(0) == len(chunk):
                fout.seek(len(chunk), os.SEEK_CUR)
            else:
                fout.write(chunk)
            remaining -= len(chunk)
        fout.truncate(size)


def block_count(fs: Path) -> tuple[int, int]:
    """Return (block count, block size) of the ext4 file system in ``fs`` (dumpe2fs -h)."""
    out = tool("dumpe2fs", "-h", str(fs)).stdout
    count = re.search(r"^Block count:\s+(\d+)", out, re.M)
    bsize = re.search(r"^Block size:\s+(\d+)", out, re.M)
    assert count and bsize, out
    return int(count.group(1)), int(bsize.group(1))


# --- growing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("use_bmap", "extra"),
    [(True, 0), (False, 0), (True, 3 * MIB - 512)],
    ids=["bmaptool", "verified-copy", "unaligned-card"],
)
def test_flash_grows_the_data_partition_to_the_end_of_the_card(image, tmp_path, use_bmap, extra):
    size = image.stat().st_size
    card = blank_card(tmp_path, 3 * size + extra)
    result = flash.flash(image, card, use_bmap=use_bmap)
    assert result.method == ("bmaptool" if use_bmap else "verified-copy")
    assert card.stat().st_size == 3 * size + extra  # a file stands in for a card

    before, after = disk.read_partition_table(image), disk.read_partition_table(card)
    assert after.disk_id == before.disk_id != ""
    assert after.partitions[:2] == before.partitions[:2]
    old, new = before.partitions[2], after.partitions[2]
    assert (
        (new.number, new.start, new.type)
        == (old.number, old.start, old.type)
        == (3, 32 * MIB, "83")
    )
    assert new.end % (4 * MIB) == 0
    assert 0 <= card.stat().st_size - new.end < 4 * MIB
    assert new.end == 3 * size  # 120 MiB: 3 MiB short of 4 MiB more is aligned down
    grown = result.data_partition
    assert grown is not None and grown.grown
    assert (grown.number, grown.old_size, grown.new_size) == (3, 8 * MIB, new.size)

    # Only the data partition's table entry changed: boot code, disk identifier,
    # the other entries and every byte of every partition are as in the image.
    assert without_entry(mbr(card), 3) == without_entry(mbr(image), 3)
    assert mbr(card) != mbr(image)
    with open(image, "rb") as a, open(card, "rb") as b:
        a.seek(512)
        b.seek(512)
        assert a.read() == b.read(size - 512)
    assert disk.ext4_label(card, new.start) == "portier-data"

    # A file system smaller than its partition is valid: e2fsck in place is clean.
    check = tool("e2fsck", "-fn", f"{card}?offset={new.start}")
    assert check.returncode == 0, check.stdout + check.stderr
    assert assemble.check_image(card) == [
        f"partition {n} ({t}): clean" for n, t in ((1, "c"), (2, "83"), (3, "83"))
    ]

    # What systemd-growfs does at boot: grow the file system to its partition.
    data = tmp_path / "data.ext4"
    copy_extent(card, new.start, new.size, data)
    blocks, bsize = block_count(data)
    assert blocks * bsize == 8 * MIB
    resize = tool("resize2fs", str(data))
    assert resize.returncode == 0, resize.stdout + resize.stderr
    check = tool("e2fsck", "-fn", str(data))
    assert check.returncode == 0, check.stdout + check.stderr
    blocks, bsize = block_count(data)
    assert blocks * bsize == new.size > 8 * MIB
    assert assemble.ext4_read(data, 0, "/portier/journal.db") == b"journal" * 1000


def test_cli_prints_the_new_data_partition_size(image, tmp_path, capsys):
    card = blank_card(tmp_path, 3 * image.stat().st_size)
    assert cli.main(["flash", "-q", str(image), str(card)]) == 0
    out = capsys.readouterr().out
    assert "data partition 3 (portier-data) grown from 8.0 MiB to 88.0 MiB" in out
    assert "systemd-growfs" in out


def test_no_grow_keeps_the_image_table(image, tmp_path, capsys):
    card = blank_card(tmp_path, 3 * image.stat().st_size)
    assert cli.main(["flash", "-q", "--no-grow", str(image), str(card)]) == 0
    assert "kept as in the image (--no-grow)" in capsys.readouterr().out
    assert mbr(card) == mbr(image)
    assert disk.read_partition_table(card) == disk.read_partition_table(image)
    result = flash.flash(image, card, use_bmap=False, grow=False)
    assert result.data_partition is None
    assert mbr(card) == mbr(image)


@pytest.mark.parametrize("extra", [0, 4 * MIB - 512])
def test_card_as_large_as_the_image_has_nothing_to_grow(image, tmp_path, capsys, extra):
    card = blank_card(tmp_path, image.stat().st_size + extra)
    assert cli.main(["flash", "-q", str(image), str(card)]) == 0
    assert "nothing to grow: data partition 3 (8.0 MiB) already ends" in capsys.readouterr().out
    assert mbr(card) == mbr(image)
    result = flash.grow_data_partition(card)
    assert (result.grown, result.number, result.old_size, result.new_size) == (
        False,
        3,
        8 * MIB,
        8 * MIB,
    )


def test_growing_is_limited_to_what_an_mbr_addresses(image, tmp_path):
    card = tmp_path / "huge.bin"
    try:
        with open(card, "wb") as f:
            f.truncate(2 * 1024**4 + 64 * MIB)  # sparse: costs nothing
    except OSError as exc:
        pytest.skip(f"this file system cannot hold a 2 TiB sparse file: {exc}")
    result = flash.flash(image, card)
    new = disk.read_partition_table(card).partitions[2]
    assert new.end == (2**32 - 1) * 512 // (4 * MIB) * (4 * MIB)
    assert result.data_partition is not None and result.data_partition.new_size == new.size
    assert f"to {flash.format_size(new.size)};" in result.data_partition.message
    assert flash.format_size(new.size) == "2048.0 GiB"


def test_a_card_sfdisk_cannot_write_keeps_its_table_without_error(image, tmp_path):
    card = blank_card(tmp_path, 3 * image.stat().st_size)
    flash.flash(image, card, grow=False)
    # The immutable flag stands in for a write-protected card; it binds root too.
    if tool("chattr", "+i", str(card)).returncode != 0:
        pytest.skip("chattr +i needs root and a file system that has the flag")
    try:
        result = flash.grow_data_partition(card)
    finally:
        tool("chattr", "-i", str(card))
    assert (result.grown, result.number, result.new_size) == (False, 3, 8 * MIB)
    assert "data partition 3 left at 8.0 MiB: sfdisk" in result.message
    assert "cannot open" in result.message
    assert mbr(card) == mbr(image)


# --- tables that are not Portier's -------------------------------------------------------


def no_data_partition(tmp_path: Path, image: Path) -> None:
    """Replace ``image`` by one without a data partition: the root is last."""
    (tmp_path / "nodata").mkdir()
    other = build(tmp_path / "nodata", data=False)
    for suffix in ("", ".bmap", ".sha256"):
        shutil.copyfile(str(other) + suffix, str(image) + suffix)


def retype_data_partition(tmp_path: Path, image: Path) -> None:
    """Give the data partition the LVM type (8e): the label says data, the type not."""
    proc = tool("sfdisk", "--no-reread", "--no-tell-kernel", "--part-type", str(image), "3", "8e")
    assert proc.returncode == 0, proc.stderr
    flash.write_sidecars(image)


def partition_after_data(tmp_path: Path, image: Path) -> None:
    """Add a fourth partition after the data partition."""
    size = image.stat().st_size
    os.truncate(image, size + 8 * MIB)
    script = f"start={size // 512}, size={8 * MIB // 512}, type=83\n"
    proc = tool("sfdisk", "--no-reread", "--no-tell-kernel", "-N", "4", str(image), stdin=script)
    assert proc.returncode == 0, proc.stderr
    flash.write_sidecars(image)


def ext4_label_swapped(tmp_path: Path, image: Path) -> None:
    """Relabel the data partition's file system: it is no longer portier-data."""
    start = disk.read_partition_table(image).partitions[2].start
    proc = tool(
        "debugfs", "-w", "-R", "set_super_value volume_name scratch", f"{image}?offset={start}"
    )
    assert proc.returncode == 0, proc.stderr
    flash.write_sidecars(image)


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (
            no_data_partition,
            "the last partition (#2) holds the ext4 file system 'rootfs', not 'portier-data'",
        ),
        (retype_data_partition, "the last partition (#3) has type 8e, not Linux (83)"),
        (partition_after_data, "the last partition (#4) holds no ext4 file system"),
        (ext4_label_swapped, "the last partition (#3) holds the ext4 file system 'scratch'"),
    ],
)
def test_a_table_whose_last_partition_is_not_the_data_partition_is_left_alone(
    image, tmp_path, capsys, alter, reason
):
    alter(tmp_path, image)
    card = blank_card(tmp_path, 3 * image.stat().st_size)
    assert cli.main(["flash", "-q", str(image), str(card)]) == 0
    out = capsys.readouterr().out
    assert "read back and verified" in out
    assert f"partition table left as written: {reason}" in out
    assert mbr(card) == mbr(image)
    result = flash.grow_data_partition(card)
    assert not result.grown and result.number is None and reason in result.message


def test_partition_numbers_come_from_the_node_names(image, tmp_path):
    partition_after_data(tmp_path, image)
    named = tmp_path / "card1"  # sfdisk calls its partitions card1p1, card1p2...
    shutil.copyfile(image, named)
    assert [p.number for p in disk.read_partition_table(named).partitions] == [1, 2, 3, 4]
    assert disk.ext4_label(named, disk.read_partition_table(named).partitions[1].start) == "rootfs"
    assert disk.ext4_label(named, 0) is None
