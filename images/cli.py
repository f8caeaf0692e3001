"""``appliance``: the field installer's command line.

Subcommands:

* ``provision IMAGE_OR_CARD --site --door --central-url --enroll-token [--role]
  [--wifi] [--hostname] [--central-ca FILE]``: write the per-device provisioning file
  into the boot partition, and a stable machine ID onto the kernel command line.
* ``show IMAGE_OR_CARD``: print the provisioning file stored there (token masked, the
  central's CA as fingerprints) and the machine ID.
* ``flash IMAGE DEVICE [--no-grow]``: write an image to a card with bmaptool or a
  verified copy, read it back, then extend the data partition to the end of the card.
* ``assemble --boot DIR --root DIR [--data DIR] OUTPUT``: build a partitioned image
  from directory trees (used by ``images/build.sh``), then check it and write its
  ``.bmap`` and ``.sha256``.
* ``extract IMAGE --boot DIR --root DIR``: the reverse, to layer Portier on an
  existing Raspberry Pi OS image.
* ``firstboot``: present when the first-boot module (:mod:`images.firstboot`) is
  installed; it provides ``add_arguments(parser)`` and ``run(args) -> int``. It runs
  on the device (``portier-firstboot.service``), not on the installer's laptop.

Exit status: 0 on success, 2 for a bad option or value (the message names the
option), 1 when the image, card or a tool failed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TextIO

from images.errors import ApplianceError, InvalidSetting

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class ProgressPrinter:
    """Draws ``phase  42%  120.0/256.0 MiB  35.1 MiB/s`` on stderr.

    On a terminal the line is redrawn in place; otherwise one line per 10%.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._phase = ""
        self._start = 0.0
        self._last_decile = -1

    def __call__(self, phase: str, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` bytes of ``phase`` are finished."""
        if phase != self._phase:
            if self._phase and self.tty:
                self.stream.write("\n")
            self._phase, self._start, self._last_decile = phase, time.monotonic(), -1
        pct = 100 * done // total if total else 100
        elapsed = max(time.monotonic() - self._start, 1e-6)
        line = (
            f"{phase:<7}{pct:4d}%  {done / MIB:8.1f}/{total / MIB:.1f} MiB  "
            f"{done / MIB / elapsed:6.1f} MiB/s"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        elif pct // 10 != self._last_decile:
            self._last_decile = pct // 10
            self.stream.write(line + "\n")
        self.stream.flush()


#: How ``appliance show`` describes each role.
_ROLE_WORDS = {
    "door": "headless: NFC reader and relay, no screen",
    "kiosk": "touch UI on a screen, with the door",
}


def _mask(token: str) -> str:
    return token[:4] + "…" + f" ({len(token)} characters)"


def cmd_provision(args: argparse.Namespace) -> int:
    """Validate the settings, write them into the boot partition, print a summary."""
    from images import flash, provision

    wifi = provision.WifiSettings.parse(args.wifi) if args.wifi is not None else None
    central_ca = provision.read_central_ca(args.central_ca) if args.central_ca else None
    settings = provision.from_options(
        site=args.site,
        door=args.door,
        central_url=args.central_url,
        enroll_token=args.enroll_token,
        wifi=wifi,
        hostname=args.hostname,
        role=args.role,
        central_ca=central_ca,
    )
    done = provision.provision(args.target, settings, allow_fixed=args.allow_fixed_disk)
    print(
        f"provisioned {args.target}: site={settings.site} door={settings.door} role={settings.role}"
    )
    print(f"  central {settings.central_url}, token {_mask(settings.enroll_token)}")
    if settings.central_ca is not None:
        summary, *details = _ca_lines(settings.central_ca)
        print(f"  central CA: {summary}")
        for line in details:
            print("  " + line)
    print(
        f"  written to {provision.BOOT_FILE_NAME} in the boot partition (offset {done.boot.offset})"
    )
    if done.machine_id is not None:
        how = "kept from the card" if done.machine_id_kept else "new"
        print(f"  machine ID {done.machine_id} ({how}; systemd.machine_id= in cmdline.txt)")
    else:
        print(f"  no {provision.CMDLINE_FILE}: the machine ID will change at every boot")
    image = Path(args.target)
    if image.is_file() and (
        flash.find_bmap(image) or image.with_name(image.name + ".sha256").exists()
    ):
        # The boot partition changed, so the build's bmap and checksum no longer describe
        # the image; refresh them so that flashing it still verifies.
        bmap, sha = flash.write_sidecars(image)
        print(f"  refreshed {bmap.name} and {sha.name}")
    return 0


def _ca_lines(pem: str) -> list[str]:
    """Describe the provisioned CA certificates: subject, SHA-256 fingerprint and expiry
    of each (never the PEM: the fingerprint is what an installer compares)."""
    from images import provision

    certs = provision.describe_central_ca(pem)
    plural = "s" if len(certs) > 1 else ""
    lines = [f"{len(certs)} CA certificate{plural}, used instead of the system's CAs"]
    for cert in certs:
        lines.append(f"  subject {cert.subject}")
        lines.append(f"    sha256  {cert.sha256}")
        lines.append(f"    expires {cert.not_after:%Y-%m-%d %H:%M} UTC")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    """Print the provisioning stored on an image or card, with the token masked."""
    from images import provision

    settings = provision.read_provisioning(args.target, allow_fixed=args.allow_fixed_disk)
    print(f"site         {settings.site}")
    print(f"door         {settings.door}")
    print(f"role         {settings.role} ({_ROLE_WORDS[settings.role]})")
    print(f"central_url  {settings.central_url}")
    print(f"enroll_token {_mask(settings.enroll_token)}")
    print(f"hostname     {settings.hostname or '(default)'}")
    print(f"wifi         {settings.wifi.ssid if settings.wifi else '(none: wired)'}")
    if settings.central_ca is None:
        print("central_ca   (none: the system's CAs verify the central)")
    else:
        summary, *details = _ca_lines(settings.central_ca)
        print(f"central_ca   {summary}")
        for line in details:
            print(line)
    try:
        machine_id = provision.read_machine_id(args.target, allow_fixed=args.allow_fixed_disk)
    except FileNotFoundError:
        print(f"machine_id   (no {provision.CMDLINE_FILE}: a new one at every boot)")
    else:
        print(f"machine_id   {machine_id or '(not set: a new one at every boot)'}")
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    """Write and verify; print what was done."""
    from images import flash

    result = flash.flash(
        args.image,
        args.device,
        bmap=args.bmap,
        use_bmap=not args.no_bmap,
        allow_fixed=args.allow_fixed_disk,
        progress=None if args.quiet else ProgressPrinter(),
        show_tool_progress=not args.quiet,
        grow=not args.no_grow,
    )
    print(
        f"wrote {result.image} to {result.target} ({result.method}); "
        f"{result.verified_bytes / MIB:.1f} MiB read back and verified"
    )
    if result.data_partition is not None:
        print(result.data_partition.message)
    else:
        print("partition table kept as in the image (--no-grow)")
    print(
        f"next: appliance provision {result.target} "
        "--site … --door … --central-url … --enroll-token …"
    )
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    """Build the image, check its file systems, write .bmap and .sha256."""
    from images import assemble, flash

    layout = None
    if args.root_size or args.boot_size or args.data_size is not None:
        layout = assemble.ImageLayout(
            boot_size=(args.boot_size or 512) * MIB,
            root_size=(args.root_size * MIB)
            if args.root_size
            else assemble.ext4_size_for(args.root),
            data_size=(64 if args.data_size is None else args.data_size) * MIB,
        )
    image = assemble.assemble_image(
        args.output, boot_dir=args.boot, root_dir=args.root, data_dir=args.data, layout=layout
    )
    for line in assemble.check_image(image):
        print(line)
    bmap, sha = flash.write_sidecars(image)
    print(f"wrote {image}, {bmap.name}, {sha.name}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Copy an image's boot and root partitions into directories."""
    from images import assemble

    assemble.extract_image(args.image, boot_dir=args.boot, root_dir=args.root)
    print(f"extracted {args.image}: boot -> {args.boot}, root -> {args.root}")
    return 0


def _firstboot_module() -> ModuleType | None:
    """Return :mod:`images.firstboot` if installed (it is developed separately)."""
    if importlib.util.find_spec("images.firstboot") is None:
        return None
    return importlib.import_module("images.firstboot")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``appliance`` command."""
    from images.provision import DEFAULT_ROLE, ROLES

    parser = argparse.ArgumentParser(
        prog="appliance",
        description=(
            "Field installation of Portier appliances: assemble the image, flash SD cards "
            "with verification, provision each device's settings and enrollment token."
        ),
        epilog="Workflow: appliance flash IMAGE /dev/sdX, then appliance provision /dev/sdX ...; "
        "see docs/installation.md.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fixed = argparse.ArgumentParser(add_help=False)
    fixed.add_argument(
        "--allow-fixed-disk",
        action="store_true",
        help="accept a block device that is neither removable nor on USB/SD (mounted and "
        "system disks are refused regardless)",
    )

    p = sub.add_parser(
        "provision",
        parents=[fixed],
        help="write a device's settings and enrollment token into the boot partition",
        description="Write the per-device provisioning file (portier-provision.toml) into "
        "the FAT boot partition of an image file or SD card, without mounting it. "
        "The device reads and deletes it on its first boot.",
    )
    p.add_argument("target", metavar="IMAGE_OR_CARD", help="image file or whole card (/dev/sdX)")
    p.add_argument("--site", required=True, help="site identifier (a-z 0-9 - _)")
    p.add_argument("--door", required=True, help="door identifier (a-z 0-9 - _)")
    p.add_argument("--central-url", required=True, help="https:// URL of the central API")
    p.add_argument("--enroll-token", required=True, help="one-time enrollment token")
    p.add_argument(
        "--role",
        choices=ROLES,
        default=DEFAULT_ROLE,
        help="what the device is: 'door' (default), the headless appliance (NFC reader and "
        "relay, no screen); 'kiosk', the same plus the touch UI, for a device with a "
        "display and camera (first boot writes /etc/portier/kiosk.toml, which starts it). "
        "The default is door because the kiosk on a device without a screen would fail "
        "and restart over and over",
    )
    p.add_argument("--wifi", metavar="SSID:PSK", help="Wi-Fi network (split at the first colon)")
    p.add_argument("--hostname", help="host name of the device (default: the image's)")
    p.add_argument(
        "--central-ca",
        metavar="FILE",
        help="PEM file of the CA certificate(s) that issued the central's TLS certificate, "
        "for a central with a private CA (default: the system's CAs); only CA "
        "certificates, currently valid, no private key",
    )
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser(
        "show", parents=[fixed], help="print the provisioning stored on an image or card"
    )
    p.add_argument("target", metavar="IMAGE_OR_CARD")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "flash",
        parents=[fixed],
        help="write an image to a card and verify it by reading it back",
        description="Write IMAGE to DEVICE with bmaptool when IMAGE.bmap exists, else with a "
        "hashed copy (checked against IMAGE.sha256 when present); then read the card back "
        "and compare, and extend the data partition (the last one, ext4 portier-data) to "
        "the end of the card. Mounted disks, system disks and partitions are refused.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("device", metavar="DEVICE", help="whole card (/dev/sdX, /dev/mmcblkN)")
    p.add_argument("--bmap", help="bmap file (default: IMAGE.bmap next to the image)")
    p.add_argument("--no-bmap", action="store_true", help="ignore any bmap: verified copy")
    p.add_argument(
        "--no-grow",
        action="store_true",
        help="keep the image's partition table: do not extend the data partition to the "
        "end of the card",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser(
        "assemble",
        help="build a partitioned image from boot/root/data trees (used by images/build.sh)",
    )
    p.add_argument("output", metavar="OUTPUT")
    p.add_argument("--boot", required=True, help="tree copied into the FAT boot partition")
    p.add_argument("--root", required=True, help="tree copied into the ext4 root partition")
    p.add_argument("--data", help="tree copied into the ext4 data partition (none if omitted)")
    p.add_argument("--boot-size", type=int, metavar="MIB", help="boot partition size (512)")
    p.add_argument("--root-size", type=int, metavar="MIB", help="root size (from the tree)")
    p.add_argument("--data-size", type=int, metavar="MIB", help="data partition size (64)")
    p.set_defaults(func=cmd_assemble)

    p = sub.add_parser(
        "extract",
        help="copy an image's boot and root partitions into directories (no mounting)",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--boot", required=True, help="directory for the FAT boot partition")
    p.add_argument("--root", required=True, help="directory for the ext4 root partition")
    p.set_defaults(func=cmd_extract)

    firstboot = _firstboot_module()
    if firstboot is not None:
        p = sub.add_parser("firstboot", help="on the device: first-boot commissioning")
        firstboot.add_arguments(p)
        p.set_defaults(func=firstboot.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``appliance`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except InvalidSetting as exc:
        parser.exit(2, f"appliance {args.command}: error: {exc}\n")
    except (ApplianceError, OSError) as exc:
        parser.exit(1, f"appliance {args.command}: error: {exc}\n")
    return 1  # pragma: no cover - parser.exit raises


if __name__ == "__main__":
    sys.exit(main())
