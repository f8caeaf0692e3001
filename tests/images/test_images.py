"""Appliance images: assembly without loop devices, provisioning, verified flashing.

Every test works on small synthetic images built here (FAT16 boot + ext4 root + ext4
data partitions) with the real tools: sfdisk, mkfs.vfat, mtools, mkfs.ext4, e2fsck,
fsck.vfat, debugfs and bmaptool. Flash targets are regular files; the checks that
protect real disks are exercised on a fake sysfs, and on this machine's own root disk
(read-only: it must be refused before anything is opened for writing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from images import assemble, cli, disk, flash, provision, targets
from images.errors import FlashError, ImageError, InvalidSetting, TargetRefused
from tests.support.image_kit import blank_card, requires_tools

MIB = 1024 * 1024
TOOLS = ("sfdisk", "mkfs.vfat", "fsck.vfat", "mcopy", "mtype", "mkfs.ext4", "e2fsck", "debugfs")
pytestmark = requires_tools(*TOOLS)

TOKEN = "tK3n_Abcdefghijklmnopqrstuvwxyz0123456789-"
GOOD = [
    "--site", "hq-paris",
    "--door", "gate_1",
    "--central-url", "https://central.example.org/api/",
    "--enroll-token", TOKEN,
]  # fmt: skip


def build_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    boot, root, data = tmp_path / "boot", tmp_path / "root", tmp_path / "data"
    (boot / "overlays").mkdir(parents=True)
    (boot / "config.txt").write_text("dtparam=watchdog=on\n")
    (boot / "cmdline.txt").write_text("console=serial0,115200 root=LABEL=rootfs ro\n")
    (boot / "overlays" / "README").write_text("overlays\n")
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("portier\n")
    (root / "etc/fstab").write_text("LABEL=rootfs / ext4 ro 0 1\n")
    (data / "state").mkdir(parents=True)
    return boot, root, data


@pytest.fixture(scope="module")
def base_image(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("base")
    boot, root, data = build_tree(tmp)
    layout = assemble.ImageLayout(boot_size=16 * MIB, root_size=12 * MIB, data_size=8 * MIB)
    image = assemble.assemble_image(
        tmp / "portier.img", boot_dir=boot, root_dir=root, data_dir=data, layout=layout
    )
    flash.write_sidecars(image)
    return image


def mtype(image: Path, name: str) -> bytes:
    offset = disk.find_boot_partition(image).start
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::/{name}"],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout


# --- assembly --------------------------------------------------------------------------


@pytest.mark.processes
def test_assembled_image_layout_and_contents(base_image):
    table = disk.read_partition_table(base_image)
    assert table.label == "dos"
    assert [p.type for p in table.partitions] == ["c", "83", "83"]
    assert [p.size for p in table.partitions] == [16 * MIB, 12 * MIB, 8 * MIB]
    assert all(p.start % (4 * MIB) == 0 for p in table.partitions)
    assert assemble.check_image(base_image) == [
        "partition 1 (c): clean",
        "partition 2 (83): clean",
        "partition 3 (83): clean",
    ]
    assert mtype(base_image, "config.txt") == b"dtparam=watchdog=on\n"
    assert mtype(base_image, "overlays/README") == b"overlays\n"
    root = table.partitions[1]
    assert assemble.ext4_read(base_image, root.start, "/etc/hostname") == b"portier\n"
    with pytest.raises(FileNotFoundError):
        assemble.ext4_read(base_image, root.start, "/etc/nope")
    # Sparse: the empty parts of the partitions cost no disk space.
    assert base_image.stat().st_blocks * 512 < base_image.stat().st_size // 2


@pytest.mark.processes
def test_check_image_detects_damage(image):
    root = disk.read_partition_table(image).partitions[1]
    with open(image, "r+b") as f:
        f.seek(root.start + 1024)  # the ext4 superblock
        f.write(b"\xff" * 256)
    with pytest.raises(ImageError, match="partition 2 has errors"):
        assemble.check_image(image)


def test_layout_is_validated():
    with pytest.raises(ValueError, match="root_size"):
        assemble.ImageLayout(root_size=0)
    with pytest.raises(ValueError, match="boot_size"):
        assemble.ImageLayout(boot_size=MIB, root_size=8 * MIB)


# --- provisioning ----------------------------------------------------------------------


@pytest.mark.processes
def test_provision_writes_validated_file_into_boot_partition(image, capsys):
    rc = cli.main(
        ["provision", str(image), *GOOD, "--wifi", "Gate Net:s3cret:pass", "--hostname", "gate-1"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert TOKEN not in out  # never printed in full
    text = mtype(image, provision.BOOT_FILE_NAME).decode()
    import tomllib

    data = tomllib.loads(text)
    assert data == {
        "format": 1,
        "site": "hq-paris",
        "door": "gate_1",
        "central_url": "https://central.example.org/api",
        "enroll_token": TOKEN,
        "hostname": "gate-1",
        "wifi": {"ssid": "Gate Net", "psk": "s3cret:pass"},
    }
    assert provision.read_provisioning(image).wifi == provision.WifiSettings(
        "Gate Net", "s3cret:pass"
    )
    # The FAT file system is still clean and the other files untouched.
    assemble.check_image(image)
    assert mtype(image, "config.txt") == b"dtparam=watchdog=on\n"


@pytest.mark.processes
def test_provision_again_replaces_the_file(image):
    assert cli.main(["provision", str(image), *GOOD]) == 0
    args = [*GOOD]
    args[args.index("gate_1")] = "gate_2"
    assert cli.main(["provision", str(image), *args]) == 0
    assert provision.read_provisioning(image).door == "gate_2"
    names = disk.FatPartition.boot_of(image).names()
    assert names.count(provision.BOOT_FILE_NAME) == 1


@pytest.mark.processes
def test_hostname_goes_on_the_kernel_command_line(image):
    base = "console=serial0,115200 root=LABEL=rootfs ro"
    assert cli.main(["provision", str(image), *GOOD, "--hostname", "gate-1"]) == 0
    # Provisioning also gives the card a machine ID (tests/images/test_provision.py), kept after.
    machine_id = provision.read_machine_id(image)
    assert machine_id is not None
    mid = f" systemd.machine_id={machine_id}"
    assert mtype(image, "cmdline.txt").decode() == base + " systemd.hostname=gate-1" + mid + "\n"
    assert cli.main(["provision", str(image), *GOOD, "--hostname", "gate-2"]) == 0
    assert mtype(image, "cmdline.txt").decode() == base + " systemd.hostname=gate-2" + mid + "\n"
    assert cli.main(["provision", str(image), *GOOD]) == 0
    assert mtype(image, "cmdline.txt").decode() == base + mid + "\n"


@pytest.mark.processes
def test_show_masks_the_token(image, capsys):
    cli.main(["provision", str(image), *GOOD])
    capsys.readouterr()
    assert cli.main(["show", str(image)]) == 0
    out = capsys.readouterr().out
    assert "hq-paris" in out and "gate_1" in out
    assert TOKEN not in out and TOKEN[:4] in out


@pytest.mark.processes
def test_show_unprovisioned_image_fails(image, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["show", str(image)])
    assert exc.value.code == 1
    assert "not in the boot partition" in capsys.readouterr().err


@pytest.mark.processes
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--site", "HQ", "not an identifier"),
        ("--site", "-hq", "not an identifier"),
        ("--door", "gate 1", "not an identifier"),
        ("--door", "", "not an identifier"),
        ("--central-url", "http://central.example.org", "must be reached over https://"),
        ("--central-url", "ftp://central.example.org", "not an absolute https:// URL"),
        ("--central-url", "central.example.org", "not an absolute https:// URL"),
        ("--central-url", "https://user:pw@central.example.org", "user name or password"),
        ("--central-url", "https://central.example.org/?a=1", "query"),
        ("--central-url", "https://central.example.org:99999", "not a valid URL"),
        ("--enroll-token", "short", "not an enrollment token"),
        ("--enroll-token", "a" * 30 + "!", "not an enrollment token"),
        ("--enroll-token", '"' + TOKEN + '"', "not an enrollment token"),
        ("--wifi", "no-colon", "expected SSID:PASSPHRASE"),
        ("--wifi", "net:short", "8 to 63 printable"),
        ("--wifi", ":longenough", "SSID must be 1 to 32 bytes"),
        ("--wifi", "x" * 33 + ":longenough", "SSID must be 1 to 32 bytes"),
        ("--hostname", "Gate_1", "not a host name"),
        ("--hostname", "gate-", "not a host name"),
    ],
)
def test_provision_refuses_bad_values_naming_the_option(image, capsys, option, value, message):
    args = [*GOOD]
    if option in args:
        del args[args.index(option) : args.index(option) + 2]
    args.append(f"{option}={value}")  # "=" so that values starting with "-" get through
    with pytest.raises(SystemExit) as exc:
        cli.main(["provision", str(image), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {option}: " in err and message in err
    with pytest.raises(FileNotFoundError):
        provision.read_provisioning(image)  # nothing was written


def test_loopback_http_central_is_accepted():
    # The reference central used by tests and the demo runs on loopback without TLS.
    for url in ("http://127.0.0.1:8080", "http://[::1]:9000/api", "http://localhost"):
        assert provision.validate_central_url(url) == url


@pytest.mark.processes
def test_provision_refuses_image_without_fat_partition(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    img = tmp_path / "nofat.img"
    with open(img, "wb") as f:
        f.truncate(16 * MIB)
    subprocess.run(
        ["sfdisk", "-q", str(img)], input=b"label: dos\nstart=2048, type=83\n", check=True
    )
    subprocess.run(
        ["mkfs.ext4", "-q", "-d", str(root), "-E", f"offset={2048 * 512}", str(img), "8M"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(SystemExit) as exc:
        cli.main(["provision", str(img), *GOOD])
    assert exc.value.code == 1
    assert "no FAT boot partition" in capsys.readouterr().err


@pytest.mark.processes
def test_provision_refuses_fat_type_without_fat_file_system(tmp_path):
    img = tmp_path / "fake.img"
    with open(img, "wb") as f:
        f.truncate(8 * MIB)
    subprocess.run(
        ["sfdisk", "-q", str(img)], input=b"label: dos\nstart=2048, type=c\n", check=True
    )
    with pytest.raises(ImageError, match="no FAT boot partition"):
        provision.provision(img, provision.Provisioning("hq", "d1", "https://c.example", TOKEN))


@pytest.mark.processes
def test_provision_refuses_file_without_partition_table(tmp_path):
    img = tmp_path / "blank.img"
    img.write_bytes(b"\0" * MIB)
    with pytest.raises(ImageError, match="no partition table"):
        provision.provision(img, provision.Provisioning("hq", "d1", "https://c.example", TOKEN))


def test_parse_refuses_tampered_files():
    good = provision.Provisioning("hq", "d1", "https://c.example", TOKEN).to_toml()
    assert provision.parse_provisioning(good).site == "hq"
    with pytest.raises(InvalidSetting, match="format"):
        provision.parse_provisioning(good.replace("format = 1", "format = 2"))
    with pytest.raises(InvalidSetting, match="extra: unknown key"):
        provision.parse_provisioning(good + 'extra = "x"\n')
    with pytest.raises(InvalidSetting, match=r"^central_url: the central API must be reached"):
        provision.parse_provisioning(good.replace("https://", "http://"))
    with pytest.raises(InvalidSetting, match="not valid TOML"):
        provision.parse_provisioning(good + "[[[")
    with pytest.raises(InvalidSetting, match=r"^door: required key is missing"):
        provision.parse_provisioning(good.replace('door = "d1"', ""))
    with pytest.raises(InvalidSetting, match=r"^wifi\.psk: the passphrase .* \(in x\.toml\)$"):
        provision.parse_provisioning(good + '[wifi]\nssid = "n"\npsk = "short"\n', "x.toml")
    with pytest.raises(InvalidSetting, match=r"^wifi\.ssid: required key is missing"):
        provision.parse_provisioning(good + '[wifi]\npsk = "longenough"\n')


ssids = st.text(
    st.characters(min_codepoint=32, exclude_categories=("Cs",), exclude_characters="\x7f:"),
    min_size=1,
    max_size=10,
)
passphrases = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=8, max_size=63)


@settings(max_examples=200, deadline=None)
@given(ssid=ssids, psk=passphrases)
def test_toml_round_trip_with_any_wifi_text(ssid, psk):
    settings_ = provision.Provisioning(
        "hq", "d1", "https://c.example", TOKEN, wifi=provision.WifiSettings(ssid, psk)
    )
    assert provision.parse_provisioning(settings_.to_toml()) == settings_


# --- flashing --------------------------------------------------------------------------


needs_bmaptool = pytest.mark.skipif(shutil.which("bmaptool") is None, reason="bmap-tools missing")


@pytest.mark.processes
@needs_bmaptool
def test_flash_with_bmap_then_provision_card(image, tmp_path, capsys):
    card = blank_card(tmp_path, 64 * MIB)
    assert cli.main(["flash", "-q", str(image), str(card)]) == 0
    out = capsys.readouterr().out
    assert "(bmaptool)" in out and "read back and verified" in out
    size = image.stat().st_size
    with open(image, "rb") as a, open(card, "rb") as b:
        # Past the table sector, whose data partition entry grew (tests/images/test_flash.py).
        assert a.read()[512:] == b.read(size)[512:]
    assert assemble.check_image(card)
    assert cli.main(["provision", str(card), *GOOD]) == 0
    assert provision.read_provisioning(card).site == "hq-paris"


@pytest.mark.processes
def test_flash_verified_copy_reports_progress(image, tmp_path):
    card = blank_card(tmp_path, image.stat().st_size)
    seen: list[tuple[str, int, int]] = []
    result = flash.flash(image, card, use_bmap=False, progress=lambda *a: seen.append(a))
    assert result.method == "verified-copy"
    assert result.verified_bytes == image.stat().st_size
    assert result.sha256 == flash.read_sha256_file(Path(str(image) + ".sha256"))
    assert card.read_bytes() == image.read_bytes()
    phases = [s[0] for s in seen]
    assert phases.index("verify") > phases.index("write")
    assert seen[-1] == ("verify", result.image_size, result.image_size)


@pytest.mark.processes
@needs_bmaptool
def test_flash_refuses_tampered_image_with_bmap(image, tmp_path, capsys):
    boot = disk.find_boot_partition(image)
    with open(image, "r+b") as f:
        f.seek(boot.start + 600)  # inside the FAT boot sector area: a mapped block
        f.write(b"tampered")
    card = blank_card(tmp_path, 64 * MIB)
    with pytest.raises(SystemExit) as exc:
        cli.main(["flash", "-q", str(image), str(card)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "do not use this card" in err


@pytest.mark.processes
def test_flash_refuses_tampered_image_with_sha256(image, tmp_path):
    with open(image, "r+b") as f:
        f.seek(5 * MIB)
        f.write(b"tampered")
    card = blank_card(tmp_path, 64 * MIB)
    with pytest.raises(FlashError, match=r"does not match portier\.img\.sha256"):
        flash.flash(image, card, use_bmap=False)


@pytest.mark.processes
def test_flash_refuses_short_target_without_writing(image, tmp_path):
    card = blank_card(tmp_path, image.stat().st_size - 4096)
    with pytest.raises(TargetRefused, match="too small"):
        flash.flash(image, card)
    assert card.read_bytes().count(0) == card.stat().st_size


@pytest.mark.processes
def test_flash_detects_card_that_reads_back_differently(image, tmp_path, monkeypatch):
    card = blank_card(tmp_path, image.stat().st_size)
    real_drop = flash._drop_cache

    def lossy_card(fd, is_block_device):
        # A card that acknowledged a write but lost it: one byte differs on read-back.
        with open(card, "r+b") as f:
            f.seek(3 * MIB)
            f.write(b"\x5a")
        real_drop(fd, is_block_device)

    monkeypatch.setattr(flash, "_drop_cache", lossy_card)
    with pytest.raises(FlashError, match="reads back differently"):
        flash.flash(image, card, use_bmap=False)


@pytest.mark.processes
@needs_bmaptool
def test_bmap_read_back_detects_lost_writes(image, tmp_path, monkeypatch):
    card = blank_card(tmp_path, image.stat().st_size)
    real_copy = flash._copy_with_bmaptool

    def lossy(image_, bmap_, target, show):
        real_copy(image_, bmap_, target, show)
        with open(target.path, "r+b") as f:
            f.seek(disk.find_boot_partition(target.path).start + 100)
            f.write(b"\0\0\0\0")

    monkeypatch.setattr(flash, "_copy_with_bmaptool", lossy)
    with pytest.raises(FlashError, match="read back differently"):
        flash.flash(image, card)


@pytest.mark.processes
@needs_bmaptool
def test_provisioning_an_image_file_refreshes_its_bmap(image, tmp_path):
    assert cli.main(["provision", str(image), *GOOD]) == 0
    card = blank_card(tmp_path, 64 * MIB)
    result = flash.flash(image, card)
    assert result.method == "bmaptool"
    assert provision.read_provisioning(card).door == "gate_1"


@pytest.mark.processes
def test_bmap_parsing(base_image):
    if shutil.which("bmaptool") is None:
        pytest.skip("bmap-tools missing")
    bmap = flash.read_bmap(flash.find_bmap(base_image))
    assert bmap.image_size == base_image.stat().st_size
    assert bmap.checksum_type == "sha256"
    assert 0 < bmap.mapped_bytes < bmap.image_size


@pytest.mark.processes
def test_flash_refuses_bmap_of_another_image(image, tmp_path):
    with open(image, "ab") as f:
        f.truncate(image.stat().st_size + 4096)
    card = blank_card(tmp_path, 64 * MIB)
    with pytest.raises(ImageError, match="do not belong together"):
        flash.flash(image, card)


# --- target safety ---------------------------------------------------------------------


def fake_disk(sys_root: Path, name: str, *, removable: bool, bus: str, parts: int = 2) -> Path:
    real = sys_root / "devices" / ("usb1/1-1/host0" if bus == "usb" else "pci0000:00/ata1") / name
    real.mkdir(parents=True)
    (real / "size").write_text(str(64 * MIB // 512))
    (real / "removable").write_text("1\n" if removable else "0\n")
    for i in range(1, parts + 1):
        (real / f"{name}{i}").mkdir()
        (real / f"{name}{i}" / "partition").write_text(f"{i}\n")
    (sys_root / "block").mkdir(parents=True, exist_ok=True)
    (sys_root / "block" / name).symlink_to(real)
    return sys_root / "block" / name


def identity(path: str) -> str:
    return path


@pytest.mark.parametrize(
    ("mounts", "swaps", "system", "message"),
    [
        (
            [("/dev/sdz1", "/media/installer/bootfs")],
            [],
            set(),
            "mounted at /media/installer/bootfs",
        ),
        ([("/dev/sdz", "/mnt")], [], set(), "mounted at /mnt"),
        ([], ["/dev/sdz2"], set(), "in use as swap"),
        ([], [], {"sdz"}, "holds the running system"),
    ],
)
def test_disk_in_use_is_refused(tmp_path, mounts, swaps, system, message):
    sdz = targets.read_disk(fake_disk(tmp_path, "sdz", removable=True, bus="usb"))
    assert sdz.partitions == ("sdz1", "sdz2") and sdz.bus == "usb" and sdz.size == 64 * MIB
    with pytest.raises(TargetRefused, match=message):
        targets.check_disk(sdz, mounts=mounts, swaps=swaps, system=system, resolve=identity)


def test_disk_held_by_device_mapper_is_refused(tmp_path):
    path = fake_disk(tmp_path, "sdx", removable=True, bus="usb")
    (path / "sdx2" / "holders").mkdir()
    (path / "sdx2" / "holders" / "dm-0").mkdir()
    sdx = targets.read_disk(path)
    assert sdx.holders == ("dm-0",)
    with pytest.raises(TargetRefused, match="in use by dm-0"):
        targets.check_disk(sdx, mounts=[], swaps=[], system=set(), resolve=identity)


def test_fixed_disk_needs_explicit_permission(tmp_path):
    sdy = targets.read_disk(fake_disk(tmp_path, "sdy", removable=False, bus="sata"))
    kwargs = {"mounts": [("/dev/sda1", "/")], "swaps": [], "system": {"sda"}, "resolve": identity}
    with pytest.raises(TargetRefused, match="fixed disk"):
        targets.check_disk(sdy, **kwargs)
    targets.check_disk(sdy, allow_fixed=True, **kwargs)
    # A removable USB card next to a mounted system disk is fine.
    sdz = targets.read_disk(fake_disk(tmp_path, "sdz", removable=True, bus="usb"))
    targets.check_disk(sdz, **kwargs)


def test_mounts_table_unescaping(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sdz1 /media/my\\040card vfat rw 0 0\nproc /proc proc rw 0 0\n")
    assert targets.mount_sources(mounts) == [("/dev/sdz1", "/media/my card"), ("proc", "/proc")]


def root_block_device() -> str | None:
    for source, mount_point in targets.mount_sources():
        if mount_point == "/" and source.startswith("/dev/") and Path(source).is_block_device():
            return source
    return None


def test_the_running_system_disk_is_refused():
    # Read-only: inspect_target never opens the device; it must refuse it outright.
    device = root_block_device()
    if device is None:
        pytest.skip("the root file system is not on a block device here")
    with pytest.raises(TargetRefused, match=r"running system|in use|partition"):
        targets.inspect_target(device, allow_fixed=True)


def test_character_devices_and_missing_paths_are_refused(tmp_path):
    with pytest.raises(TargetRefused, match="neither a block device"):
        targets.inspect_target("/dev/null")
    with pytest.raises(TargetRefused, match="does not exist"):
        targets.inspect_target(tmp_path / "nope")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("provision", "show", "flash", "assemble"):
        assert command in out


@pytest.mark.processes
def test_extract_then_reassemble_round_trip(base_image, tmp_path, capsys):
    # The path used to layer Portier on an existing (Raspberry Pi OS) image.
    boot, root = tmp_path / "boot", tmp_path / "root"
    assert cli.main(["extract", str(base_image), "--boot", str(boot), "--root", str(root)]) == 0
    assert (boot / "config.txt").read_text() == "dtparam=watchdog=on\n"
    assert (boot / "overlays/README").read_text() == "overlays\n"
    assert (root / "etc/hostname").read_text() == "portier\n"
    (root / "etc/portier").mkdir()
    out = tmp_path / "layered.img"
    rc = cli.main(
        ["assemble", str(out), "--boot", str(boot), "--root", str(root), "--boot-size", "16"]
    )
    assert rc == 0
    assert "clean" in capsys.readouterr().out
    assert flash.find_bmap(out) is not None and Path(str(out) + ".sha256").is_file()
    assert len(disk.read_partition_table(out).partitions) == 2  # no --data: no data partition
    assert mtype(out, "cmdline.txt").startswith(b"console=serial0")


def test_firstboot_subcommand_is_wired_when_its_module_exists(monkeypatch):
    import types

    calls = []
    module = types.SimpleNamespace(
        add_arguments=lambda p: p.add_argument("--boot-dir"),
        run=lambda args: calls.append(args.boot_dir) or 0,
    )
    monkeypatch.setattr(cli, "_firstboot_module", lambda: module)
    assert cli.main(["firstboot", "--boot-dir", "/boot/firmware"]) == 0
    assert calls == ["/boot/firmware"]


def test_progress_printer_without_terminal():
    import io

    stream = io.StringIO()
    printer = cli.ProgressPrinter(stream)
    for done in range(0, 101, 5):
        printer("write", done * MIB, 100 * MIB)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # one line per 10 %
    assert lines[-1].startswith("write   100%") and "100.0/100.0 MiB" in lines[-1]
