"""The provisioned role (headless door or kiosk): on a real image, through the CLI.

``appliance provision --role`` writes it into the FAT boot partition of a small
synthetic image (sfdisk, mkfs.vfat, mtools, mkfs.ext4), ``appliance show`` prints it,
and the file is read back with the same validation as on the device. The rest of
provisioning is tested in tests/test_images.py; first boot's use of the role in
tests/test_firstboot.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from images import assemble, cli, disk, provision
from images.errors import InvalidSetting

MIB = 1024 * 1024
TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mtype", "mkfs.ext4")
missing = [
    t for t in TOOLS if shutil.which(t, path=os.environ["PATH"] + ":/usr/sbin:/sbin") is None
]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"missing tools: {missing}")

TOKEN = "tK3n_Abcdefghijklmnopqrstuvwxyz0123456789-"
GOOD = [
    "--site", "hq-paris",
    "--door", "lobby",
    "--central-url", "https://central.example.org/api",
    "--enroll-token", TOKEN,
]  # fmt: skip


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("base")
    boot, root = tmp / "boot", tmp / "root"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=serial0,115200 root=LABEL=rootfs ro\n")
    (root / "etc").mkdir(parents=True)
    layout = assemble.ImageLayout(boot_size=16 * MIB, root_size=8 * MIB, data_size=0)
    return assemble.assemble_image(tmp / "portier.img", boot_dir=boot, root_dir=root, layout=layout)


@pytest.fixture
def image(base_image: Path, tmp_path: Path) -> Path:
    out = tmp_path / "portier.img"
    shutil.copyfile(base_image, out)
    return out


def boot_file(image: Path) -> str:
    offset = disk.find_boot_partition(image).start
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::/{provision.BOOT_FILE_NAME}"],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout.decode("utf-8")


def test_kiosk_role_round_trip_and_show(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["provision", str(image), *GOOD, "--role", "kiosk"]) == 0
    assert "role=kiosk" in capsys.readouterr().out
    assert 'role = "kiosk"' in boot_file(image).splitlines()
    assert provision.read_provisioning(image).role == "kiosk"
    assert cli.main(["show", str(image)]) == 0
    assert "role         kiosk (touch UI" in capsys.readouterr().out

    # Provisioned again without --role: a door, and the file says nothing of a role, so
    # that a first-boot program older than the role still reads it.
    assert cli.main(["provision", str(image), *GOOD]) == 0
    assert "role" not in boot_file(image)
    assert provision.read_provisioning(image).role == "door"
    capsys.readouterr()
    assert cli.main(["show", str(image)]) == 0
    assert "role         door (headless" in capsys.readouterr().out


def test_unknown_role_option_exits_2_and_writes_nothing(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["provision", str(image), *GOOD, "--role", "screen"])
    assert exit_.value.code == 2
    assert "--role" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        provision.read_provisioning(image)


def test_role_in_the_file_is_validated_and_defaults_to_door() -> None:
    door = provision.Provisioning("hq", "d1", "https://c.example", TOKEN)
    text = door.to_toml()
    assert provision.parse_provisioning(text).role == "door"  # a file from before roles
    kiosk = provision.parse_provisioning(text + 'role = "kiosk"\n')
    assert kiosk == provision.Provisioning("hq", "d1", "https://c.example", TOKEN, role="kiosk")
    assert provision.parse_provisioning(kiosk.to_toml()) == kiosk
    for bad in ('"screen"', '"Kiosk"', "1", '["kiosk"]'):
        with pytest.raises(InvalidSetting) as exc:
            provision.parse_provisioning(text + f"role = {bad}\n")
        assert exc.value.option == "role"
        assert "door (headless" in exc.value.problem
    with pytest.raises(InvalidSetting, match="--role"):
        provision.Provisioning("hq", "d1", "https://c.example", TOKEN, role="screen")


def test_help_explains_the_default_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["provision", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--role {door,kiosk}" in help_text
    assert "'door' (default), the headless appliance" in help_text
    assert "kiosk on a device without a screen would fail" in help_text
