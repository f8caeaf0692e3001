"""The full appliance image build (images/build.sh): slow, root only, network needed.

Debootstraps Debian bookworm arm64 under qemu-user emulation, layers Portier on it
and assembles the image (about 26 minutes on two cores, half of it the initramfs),
checks it, then boots it on QEMU's arm64 board and commissions it (about 3 minutes).
It runs only when asked for, with ``pytest -m slow`` (or ``PORTIER_SLOW=1``), so the
default run stays quick; CI runs it in a step of its own (``tools/dev image-test``).
``PORTIER_IMAGE=path/to.img`` checks an image built earlier instead of building one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from images import assemble, disk, flash, provision

REPO = Path(__file__).resolve().parents[2]
TOKEN = "Zx9_-" + "k" * 40


@pytest.fixture(scope="module")
def built_image(request, tmp_path_factory) -> Path:
    wanted = "slow" in (request.config.option.markexpr or "") or os.environ.get("PORTIER_SLOW")
    if not wanted:
        pytest.skip("slow image build: run with -m slow")
    prebuilt = os.environ.get("PORTIER_IMAGE")
    if prebuilt:  # check an image built earlier by images/build.sh instead of building
        return Path(prebuilt)
    # `tools/dev image-test` (and so CI) sets PORTIER_IMAGE_BUILD=required: there, a
    # missing prerequisite is a failure, not a quiet skip.
    required = os.environ.get("PORTIER_IMAGE_BUILD") == "required"
    unavailable = pytest.fail if required else pytest.skip
    if os.geteuid() != 0:
        unavailable("the image build needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts", "bmaptool"):
        if shutil.which(tool, path=os.environ["PATH"] + ":/usr/sbin:/sbin") is None:
            unavailable(f"{tool} missing (Debian: debootstrap qemu-user-static binfmt-support)")
    out = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [str(REPO / "images/build.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    (out / "build.log").write_text(proc.stderr)
    # The stage timings (the build logs elapsed time on every step) for the record.
    print("\n".join(line for line in proc.stderr.splitlines() if "[build " in line))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


# The first test includes the build (fixture), the boot test a QEMU boot: the default
# per-test limit (300 s, pyproject) does not fit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(4800), pytest.mark.processes]


def debugfs(image: Path, offset: int, request: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", request, f"{image}?offset={offset}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_image_layout_and_checks(built_image):
    table = disk.read_partition_table(built_image)
    assert [p.type for p in table.partitions] == ["c", "83", "83"]
    assemble.check_image(built_image)
    assert flash.find_bmap(built_image) is not None
    boot = disk.FatPartition.boot_of(built_image)
    cmdline = boot.read("cmdline.txt").decode()
    assert " ro " in cmdline and "systemd.volatile=state" in cmdline
    names = boot.names()
    assert "config.txt" in names
    assert any(n.startswith("vmlinuz") for n in names), names
    # Built once at the end of the base stage (update-initramfs is deferred while
    # packages install): without it the kernel cannot find the SD card's root.
    assert any(n.startswith("initrd.img") for n in names), names
    assert any(n.endswith(".dtb") for n in names), names


def test_root_has_portier_enabled_and_hardened(built_image):
    root = disk.read_partition_table(built_image).partitions[1].start
    read = lambda path: assemble.ext4_read(built_image, root, path).decode()  # noqa: E731
    assert "portier-kiosk" in read("/etc/passwd")
    assert "LABEL=rootfs" in read("/etc/fstab") and " ro," in read("/etc/fstab")
    assert "RuntimeWatchdogSec=15s" in read("/etc/systemd/system.conf.d/50-portier-watchdog.conf")
    for unit in ("edge-agent.service", "kiosk.service", "portier-firstboot.service"):
        assert read(f"/usr/lib/systemd/system/{unit}") == (REPO / "systemd" / unit).read_text()
    wants = debugfs(built_image, root, "ls -l /etc/systemd/system/multi-user.target.wants")
    assert "edge-agent.service" in wants and "portier-firstboot.service" in wants
    assert "kiosk.service" in debugfs(
        built_image, root, "ls -l /etc/systemd/system/graphical.target.wants"
    )
    assert "getty@tty1.service" in debugfs(built_image, root, "ls -l /etc/systemd/system")
    assert "edge-agent" in debugfs(built_image, root, "ls -l /opt/portier/venv/bin")


def test_data_partition_layout(built_image):
    data = disk.read_partition_table(built_image).partitions[2].start
    listing = debugfs(built_image, data, "ls -l /")
    for name in ("portier", "etc-portier", "journal", "timesync"):
        assert name in listing
    stat = debugfs(built_image, data, "stat /etc-portier")
    assert "Mode:  02751" in stat


def test_built_image_flashes_and_provisions(built_image, tmp_path):
    card = tmp_path / "card.bin"
    extra = 1024 * 1024 * 1024  # a card 1 GiB larger than the image
    with open(card, "wb") as f:
        f.truncate(built_image.stat().st_size + extra)
    result = flash.flash(built_image, card)
    assert result.method == "bmaptool"
    # The data partition now reaches the end of the card; systemd-growfs grows its
    # file system at boot (x-systemd.growfs in the image's fstab).
    before = disk.read_partition_table(built_image).partitions[2]
    after = disk.read_partition_table(card).partitions[2]
    assert after.start == before.start
    assert after.size >= before.size + extra - 4 * 1024 * 1024
    assert after.end <= card.stat().st_size
    settings = provision.Provisioning("hq", "gate-1", "https://central.example.org", TOKEN)
    provision.provision(card, settings)
    assert provision.read_provisioning(card) == settings


def test_kiosk_catalogues_ship_compiled(built_image):
    root = disk.read_partition_table(built_image).partitions[1].start
    found = debugfs(built_image, root, "ls -p /opt/portier/venv/lib")
    python = next(name for name in found.split("/") if name.startswith("python3"))
    locale = f"/opt/portier/venv/lib/{python}/site-packages/kiosk/locale"
    for language in ("en", "fr"):
        mo = assemble.ext4_read(built_image, root, f"{locale}/{language}/LC_MESSAGES/kiosk.mo")
        assert mo[:4] in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde")  # gettext magic


def test_image_has_the_toml_writer(built_image):
    """First boot writes agent.toml with tomli-w (edge_agent.tomlwrite): a runtime
    dependency of the wheel, installed from constraints.txt."""
    root = disk.read_partition_table(built_image).partitions[1].start
    found = debugfs(built_image, root, "ls -p /opt/portier/venv/lib")
    python = next(name for name in found.split("/") if name.startswith("python3"))
    site = debugfs(built_image, root, f"ls -p /opt/portier/venv/lib/{python}/site-packages")
    assert "/tomli_w/" in site


def test_image_carries_this_checkouts_code(built_image, tmp_path):
    """Every Python file of Portier's packages in the image is this checkout's (a
    reused root once kept an older Portier of the same version)."""
    root = disk.read_partition_table(built_image).partitions[1].start
    found = debugfs(built_image, root, "ls -p /opt/portier/venv/lib")
    python = next(name for name in found.split("/") if name.startswith("python3"))
    site = f"/opt/portier/venv/lib/{python}/site-packages"
    for package in ("hardware", "edge_agent", "kiosk", "images", "portier_common"):
        subprocess.run(
            ["debugfs", "-R", f"rdump {site}/{package} {tmp_path}", f"{built_image}?offset={root}"],
            capture_output=True,
            check=True,
        )
        ours = sorted(p.relative_to(REPO) for p in (REPO / package).rglob("*.py"))
        theirs = sorted(p.relative_to(tmp_path) for p in (tmp_path / package).rglob("*.py"))
        assert ours == theirs, package
        for path in ours:
            assert (tmp_path / path).read_bytes() == (REPO / path).read_bytes(), path


def _names(image: Path, offset: int, directory: str) -> set[str]:
    """The entry names of ``directory`` (debugfs ``ls -p``: /inode/mode/uid/gid/name/size/)."""
    listing = debugfs(image, offset, f"ls -p {directory}")
    return {line.split("/")[5] for line in listing.splitlines() if line.count("/") >= 6}


def test_image_has_the_device_distribution_only(built_image):
    """The image installs portier-device (images/devicewheel.py): the reference central
    and the demo, and their commands, never reach a device."""
    root = disk.read_partition_table(built_image).partitions[1].start
    found = debugfs(built_image, root, "ls -p /opt/portier/venv/lib")
    python = next(name for name in found.split("/") if name.startswith("python3"))
    site = f"/opt/portier/venv/lib/{python}/site-packages"
    installed = _names(built_image, root, site)
    for package in ("hardware", "edge_agent", "kiosk", "images", "portier_common"):
        assert package in installed, sorted(installed)
    assert "central" not in installed and "portier_demo" not in installed, sorted(installed)
    dists = {n for n in installed if n.endswith(".dist-info") and n.startswith("portier")}
    assert dists == {"portier_device-0.1.0.dist-info"}, dists
    entry_points = assemble.ext4_read(
        built_image, root, f"{site}/portier_device-0.1.0.dist-info/entry_points.txt"
    ).decode()
    assert "central" not in entry_points and "portier_demo" not in entry_points, entry_points
    commands = _names(built_image, root, "/opt/portier/venv/bin")
    assert {"edge-agent", "kiosk", "appliance"} <= commands, sorted(commands)
    assert not {"portier-central", "portier-demo"} & commands, sorted(commands)


def test_self_test_passed_inside_the_image(built_image):
    report = built_image.parent / "selftest-simulator.json"
    if not report.exists():
        pytest.skip("a prebuilt image without its build's self-test report")
    result = json.loads(report.read_text())
    assert result["ok"] is True, result


# -- the image boots: first boot, enrollment and the agent, in their real sandboxes ----

GUEST_HOST = "10.0.2.2"  # the build machine's loopback, as QEMU's user network shows it


def _mock_hardware_agent_toml() -> str:
    """An installer's agent.toml with simulated hardware (QEMU's virt board has no
    GPIO header or NFC reader); first boot keeps an existing file's hardware tables."""
    return (
        "# Pre-seeded by tests/images/test_images_build.py: simulated door hardware.\n"
        "[hardware.gpio]\n"
        'backend = "mock"\n'
        "lock_relay_pin = 17\n"
        'relay_feedback = { pin = 5, asserted_level = "high" }\n'
        'door_contact = { pin = 27, asserted_level = "high" }\n'
        'rex = { pin = 22, asserted_level = "low" }\n'
        "\n[hardware.nfc]\n"
        'backend = "sim"\n'
    )


def _debugfs_write(image: Path, offset: int, local: Path, path: str) -> None:
    proc = subprocess.run(
        ["debugfs", "-w", "-R", f"write {local} {path}", f"{image}?offset={offset}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Allocated inode" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _fs_bytes(image: Path, offset: int) -> int:
    """The size of the ext4 file system at ``offset``, from its superblock."""
    fields = dict(
        line.split(":", 1) for line in debugfs(image, offset, "stats").splitlines() if ":" in line
    )
    return int(fields["Block count"]) * int(fields["Block size"])


def _recovered_data_partition(image: Path, where: Path) -> Path:
    """Copy the data partition out of a card whose power was cut and let e2fsck replay
    its journal, as the device's next boot would (fsck.repair=yes); return the copy."""
    part = disk.read_partition_table(image).partitions[2]
    copy = where / "data.ext4"
    mib = 1024 * 1024
    subprocess.run(
        ["dd", f"if={image}", f"of={copy}", "bs=1M", f"skip={part.start // mib}",
         f"count={part.size // mib}", "conv=sparse", "status=none"],
        check=True,
    )  # fmt: skip
    fsck = subprocess.run(["e2fsck", "-fy", str(copy)], capture_output=True, text=True)
    # 0: clean; 1: the journal was replayed / errors corrected. More is damage.
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
    return copy


def test_image_boots_commissions_and_runs_the_agent(built_image, tmp_path):
    """Boot a copy of the image on QEMU's arm64 virt board with its own kernel and
    initrd, provisioned against a reference central behind TLS with a private CA:
    the initramfs finds the root by label, the read-only root, volatile /var and the
    data partition come up, `portier-firstboot.service` enrolls and uploads the
    self-test report from inside its sandbox, and `edge-agent.service` starts in
    its own and syncs its first events."""
    from central.errors import NotFound
    from central.testing import TlsCentral, mint_ca, mint_server_cert, wait_for

    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        missing = "qemu-system-aarch64 missing (Debian: qemu-system-arm)"
        if os.environ.get("PORTIER_IMAGE_BUILD") == "required":
            pytest.fail(missing)
        pytest.skip(missing)
    # Flashed as an installer would, to a card 1 GiB larger: the data partition grows to
    # its end, and systemd-growfs grows its file system when it is first mounted.
    image = tmp_path / "device.img"
    with open(image, "wb") as card:
        card.truncate(built_image.stat().st_size + 1024**3)
    assert flash.flash(built_image, image).data_partition.grown
    table = disk.read_partition_table(image)
    fs_before = _fs_bytes(image, table.partitions[2].start)
    boot_files = disk.FatPartition.boot_of(image)
    names = boot_files.names()
    kernel = tmp_path / "vmlinuz"
    initrd = tmp_path / "initrd.img"
    kernel.write_bytes(boot_files.read(next(n for n in names if n.startswith("vmlinuz"))))
    initrd.write_bytes(boot_files.read(next(n for n in names if n.startswith("initrd.img"))))

    seed = tmp_path / "agent.toml"
    seed.write_text(_mock_hardware_agent_toml())
    _debugfs_write(image, table.partitions[2].start, seed, "/etc-portier/agent.toml")

    ca_file, ca_key, ca_cert = mint_ca(tmp_path, "site")
    cert, key = mint_server_cert(tmp_path, ca_key, ca_cert, ip=GUEST_HOST)
    with TlsCentral(tmp_path / "central", cert, key, host="127.0.0.1") as central:
        port = central.url.rsplit(":", 1)[1]
        token = central.server.store.create_enroll_token(door="gate-q")["enroll_token"]
        settings = provision.Provisioning(
            "hq",
            "gate-q",
            f"https://{GUEST_HOST}:{port}",
            token,
            central_ca=ca_file.read_text(),
        )
        machine_id = provision.provision(image, settings).machine_id
        device_id = "hq-gate-q"
        console = tmp_path / "console.log"
        # The card's own kernel command line (root by label, read-only, volatile /var,
        # the provisioned machine ID), on QEMU's serial port instead of the Pi's and
        # with the units' output on it; emulation is ~20x slower than a Pi 4, so start
        # jobs get ten minutes instead of 90 s.
        cmdline = disk.FatPartition.boot_of(image).read("cmdline.txt").decode().split()
        cmdline = [a for a in cmdline if not a.startswith("console=") and a != "quiet"]
        cmdline = " ".join(
            ["console=ttyAMA0", *cmdline, "systemd.journald.forward_to_console=1",
             "systemd.default_timeout_start_sec=600"]
        )  # fmt: skip
        vm = subprocess.Popen(
            [qemu, "-M", "virt", "-cpu", "max", "-smp", "2", "-m", "1536",
             "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
             "-drive", f"file={image},format=raw,if=virtio",
             "-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0",
             "-display", "none", "-serial", f"file:{console}", "-monitor", "none"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def agent_synced() -> bool:
                assert vm.poll() is None, console.read_text(errors="replace")[-4000:]
                try:
                    events = central.server.store.device_events(device_id, 0, 100)
                except NotFound:  # not enrolled yet
                    return False
                return any(e["type"] == "agent.started" for e in events["events"])

            booted = wait_for(agent_synced, timeout_s=1500, interval_s=5)
            log = console.read_text(errors="replace")
            assert booted, log[-6000:]
            report = central.server.store.selftest(device_id)
        finally:
            # The plug is pulled, as a door appliance's power is: what was committed
            # must be there after the journal replay.
            vm.kill()
            vm.wait(60)
    assert report["report"]["results"], report
    # The boot file is gone and the stored provisioning has no token left.
    assert provision.BOOT_FILE_NAME not in disk.FatPartition.boot_of(image).names()
    data = _recovered_data_partition(image, tmp_path)
    stored = debugfs(data, 0, "cat /etc-portier/provision.toml")
    assert token not in stored and "commissioned_device" in stored
    assert "central_ca" in stored
    # x-systemd.growfs grew the data file system to its partition (+1 GiB).
    grown = _fs_bytes(data, 0) - fs_before
    assert grown > 1024**3 - 8 * 1024**2, grown
    # journald kept its files under the provisioned machine ID (stable across boots),
    # and the agent its journal.
    assert machine_id in debugfs(data, 0, "ls /journal")
    assert "portier.db" in debugfs(data, 0, "ls /portier")
