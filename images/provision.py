"""Per-device provisioning: the settings file ``appliance provision`` writes on a card.

A field installer gives each SD card its site, door, central API URL, one-time
enrollment token, its role (:data:`ROLES`: a headless door appliance or a kiosk
with a screen) and, optionally, Wi-Fi and host name. They are validated here
(:class:`Provisioning`), serialised as a small TOML file and written into the
card's FAT boot partition as :data:`BOOT_FILE_NAME` with mtools, without mounting.

On the device's first boot, ``portier-firstboot.service`` runs only while that file
exists (``ConditionPathExists=/boot/firmware/portier-provision.toml``); the
first-boot program reads it back with :func:`parse_provisioning` (the same
validation), moves it to ``/etc/portier/provision.toml`` (0600) and deletes it
from the boot partition. Enrollment with the central API is the first-boot
program's job, not this module's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass
from typing import Any

from images import targets
from images.disk import FatPartition
from images.errors import ImageError, InvalidSetting

log = logging.getLogger(__name__)

#: Name of the provisioning file in the root of the boot (FAT) partition.
BOOT_FILE_NAME = "portier-provision.toml"
#: Where the boot partition is mounted on the device (Debian / Raspberry Pi OS).
DEVICE_BOOT_DIR = "/boot/firmware"
#: Version of the file's layout; readers refuse a version they do not know.
FORMAT_VERSION = 1

#: Site and door identifiers: lower-case letters, digits, "-" and "_", 1-64 long,
#: starting with a letter or digit (they appear in host names, paths and logs).
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: One-time enrollment tokens: URL-safe base64 (RFC 4648 section 5, no padding), 22 to
#: 256 characters, i.e. at least 128 bits when drawn at random. The central mints
#: them; this only rejects what cannot be a token (typos, truncation, pasted quotes).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,256}")
#: What a device is, which decides what first boot configures. ``door``: the headless
#: edge appliance (NFC reader and relay, no screen), the default, since a kiosk on a
#: device without a screen would fail and restart over and over; ``kiosk``: the same
#: with the touch UI (first boot writes ``/etc/portier/kiosk.toml``, which starts it).
ROLES = ("door", "kiosk")
DEFAULT_ROLE = "door"
#: A host name label (RFC 1123), lower case.
HOSTNAME_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_central_url(url: str, option: str = "--central-url") -> str:
    """Return ``url`` normalised (no trailing slash) if it is a usable central API URL.

    The URL must be ``https://host[:port][/path]`` with no credentials, query or
    fragment. Plain ``http://`` is accepted only for a loopback host (the reference
    central in tests and demos), which a deployed device cannot reach anyway.

    Raises:
        InvalidSetting: naming ``option``.
    """
    if not isinstance(url, str) or not url:
        raise InvalidSetting(option, "a URL is required, e.g. https://central.example.org/api")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidSetting(option, f"not a valid URL ({exc}): {url!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidSetting(option, f"not an absolute https:// URL: {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidSetting(option, f"the central API must be reached over https://, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidSetting(option, "must not carry a user name or password")
    if parts.query or parts.fragment:
        raise InvalidSetting(option, "must not have a query (?...) or fragment (#...)")
    if any(c.isspace() for c in url):
        raise InvalidSetting(option, f"contains white space: {url!r}")
    if port == 0:
        raise InvalidSetting(option, "port 0 is not a port")
    return url.rstrip("/")


@dataclass(frozen=True)
class WifiSettings:
    """A WPA2/WPA3-Personal network: SSID (1-32 bytes) and passphrase or raw 64-hex PSK."""

    ssid: str
    psk: str

    def __post_init__(self) -> None:
        """Validate; raises :class:`InvalidSetting` naming ``--wifi``."""
        if not 1 <= len(self.ssid.encode()) <= 32:
            raise InvalidSetting("--wifi", "the SSID must be 1 to 32 bytes long")
        if any(ord(c) < 32 or ord(c) == 127 for c in self.ssid):
            raise InvalidSetting("--wifi", "the SSID contains control characters")
        printable = all(32 <= ord(c) < 127 for c in self.psk)
        if not (_HEX64.fullmatch(self.psk) or (8 <= len(self.psk) <= 63 and printable)):
            raise InvalidSetting(
                "--wifi",
                "the passphrase must be 8 to 63 printable ASCII characters "
                "(or a raw PSK of 64 hex digits); open networks are not supported",
            )

    @classmethod
    def parse(cls, value: str) -> WifiSettings:
        """Return the settings from ``SSID:PASSPHRASE`` (split at the first colon).

        Raises:
            InvalidSetting: no colon, or a bad SSID or passphrase.
        """
        ssid, sep, psk = value.partition(":")
        if not sep:
            raise InvalidSetting("--wifi", "expected SSID:PASSPHRASE")
        return cls(ssid=ssid, psk=psk)


@dataclass(frozen=True)
class Provisioning:
    """Everything one device needs to commission itself on first boot.

    ``central_url`` is normalised without a trailing slash. ``hostname`` and ``wifi``
    are optional (wired network, default host name); ``role`` is one of :data:`ROLES`.
    """

    site: str
    door: str
    central_url: str
    enroll_token: str
    wifi: WifiSettings | None = None
    hostname: str | None = None
    role: str = DEFAULT_ROLE

    def __post_init__(self) -> None:
        """Validate every field; raises :class:`InvalidSetting` naming the option."""
        for option, value in (("--site", self.site), ("--door", self.door)):
            if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
                raise InvalidSetting(
                    option,
                    f"{value!r} is not an identifier: use 1-64 lower-case letters, digits, "
                    "'-' or '_', starting with a letter or digit",
                )
        object.__setattr__(self, "central_url", validate_central_url(self.central_url))
        token = self.enroll_token
        if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
            length = len(token) if isinstance(token, str) else 0
            raise InvalidSetting(
                "--enroll-token",
                f"not an enrollment token (expected 22-256 characters of A-Z a-z 0-9 - _, "
                f"got {length} characters); paste it exactly as the "
                "central issued it",
            )
        if self.hostname is not None and (
            not isinstance(self.hostname, str) or not HOSTNAME_PATTERN.fullmatch(self.hostname)
        ):
            raise InvalidSetting(
                "--hostname",
                f"{self.hostname!r} is not a host name: 1-63 lower-case letters, digits and "
                "'-', not starting or ending with '-'",
            )
        if self.role not in ROLES:
            raise InvalidSetting("--role", _role_problem(self.role))

    def to_dict(self) -> dict[str, Any]:
        """Return the TOML-ready mapping (``format`` first, ``wifi`` as a table).

        ``role`` is left out for the default (a door): such a file is still read by a
        first-boot program older than the role, so a door card boots any image.
        """
        out: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "site": self.site,
            "door": self.door,
            "central_url": self.central_url,
            "enroll_token": self.enroll_token,
        }
        if self.role != DEFAULT_ROLE:
            out["role"] = self.role
        if self.hostname is not None:
            out["hostname"] = self.hostname
        if self.wifi is not None:
            out["wifi"] = {"ssid": self.wifi.ssid, "psk": self.wifi.psk}
        return out

    def to_toml(self, *, now: dt.datetime | None = None) -> str:
        """Return the provisioning file's text (TOML, UTF-8, with a header comment).

        Strings are written as TOML basic strings, whose escapes are a superset of
        the ones :func:`json.dumps` produces; the result is parsed back before it is
        returned, so a value that does not round-trip can never reach a card.
        """
        stamp = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()
        lines = [
            "# Portier provisioning file, written by `appliance provision` at " + stamp + ".",
            "# Read and deleted on first boot by portier-firstboot.service. It holds a",
            "# one-time enrollment token: keep the card safe until then.",
        ]
        table = self.to_dict()
        wifi = table.pop("wifi", None)
        for key, value in table.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        if wifi is not None:
            lines += ["", "[wifi]"]
            lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in wifi.items()]
        text = "\n".join(lines) + "\n"
        if parse_provisioning(text) != self:
            raise AssertionError("provisioning file does not round-trip")  # pragma: no cover
        return text


def _role_problem(role: object) -> str:
    return (
        f"{role!r} is not a role: door (headless appliance: NFC reader and relay, no "
        "screen) or kiosk (the same with the touch UI on a screen)"
    )


def parse_provisioning(text: str | bytes) -> Provisioning:
    """Return the :class:`Provisioning` in a provisioning file's text.

    A file without ``role`` (written before roles existed, or for a door) is a door.

    Raises:
        InvalidSetting: not TOML, unknown format version, a missing or unknown key,
            or a bad value; ``option`` is the TOML key.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSetting(BOOT_FILE_NAME, "not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSetting(BOOT_FILE_NAME, f"not valid TOML: {exc}") from None
    if data.get("format") != FORMAT_VERSION:
        raise InvalidSetting("format", f"unknown format {data.get('format')!r}")
    known = {"format", "site", "door", "central_url", "enroll_token", "role", "hostname", "wifi"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidSetting(unknown[0], "unknown key")
    for key in ("site", "door", "central_url", "enroll_token"):
        if not isinstance(data.get(key), str):
            raise InvalidSetting(key, "missing, or not a string")
    wifi = data.get("wifi")
    if wifi is not None:
        if not isinstance(wifi, dict) or set(wifi) != {"ssid", "psk"}:
            raise InvalidSetting("wifi", "must be a table with exactly ssid and psk")
        if not all(isinstance(v, str) for v in wifi.values()):
            raise InvalidSetting("wifi", "ssid and psk must be strings")
        wifi = WifiSettings(ssid=wifi["ssid"], psk=wifi["psk"])
    role = data.get("role", DEFAULT_ROLE)
    if role not in ROLES:
        raise InvalidSetting("role", _role_problem(role))
    return Provisioning(
        site=data["site"],
        door=data["door"],
        central_url=data["central_url"],
        enroll_token=data["enroll_token"],
        wifi=wifi,
        hostname=data.get("hostname"),
        role=role,
    )


#: The kernel command line in the boot partition (Raspberry Pi firmware).
CMDLINE_FILE = "cmdline.txt"
_HOSTNAME_ARG = "systemd.hostname="


def set_cmdline_hostname(cmdline: str, hostname: str | None) -> str:
    """Return ``cmdline`` with ``systemd.hostname=`` set to ``hostname`` (removed if None).

    The root file system is read-only, so ``/etc/hostname`` cannot be written on the
    device; PID 1 takes ``systemd.hostname=`` from the kernel command line instead, from
    the very start of boot, before /etc/hostname.
    """
    words = [w for w in cmdline.split() if not w.startswith(_HOSTNAME_ARG)]
    if hostname is not None:
        words.append(_HOSTNAME_ARG + hostname)
    return " ".join(words) + "\n"


def _boot_partition_of(target: str | os.PathLike[str], *, allow_fixed: bool) -> FatPartition:
    checked = targets.inspect_target(target, allow_fixed=allow_fixed)
    if checked.size == 0:
        raise ImageError(f"{checked.path} is empty")
    return FatPartition.boot_of(checked.path)


def provision(
    target: str | os.PathLike[str], settings: Provisioning, *, allow_fixed: bool = False
) -> FatPartition:
    """Write ``settings`` as :data:`BOOT_FILE_NAME` into the boot partition of ``target``.

    ``target`` is an image file or a whole card (block device). A card is checked
    like a flash target first: a mounted card is refused, since writing under a
    mounted FAT file system corrupts it. The file is read back and compared.
    Returns the boot partition written to.

    Raises:
        TargetRefused: the card is mounted, a system disk...
        ImageError: no partition table or no FAT boot partition.
        ToolFailed: mtools failed (full or damaged file system).
    """
    boot = _boot_partition_of(target, allow_fixed=allow_fixed)
    boot.write(BOOT_FILE_NAME, settings.to_toml().encode("utf-8"))
    if boot.exists(CMDLINE_FILE):
        old = boot.read(CMDLINE_FILE).decode("utf-8")
        new = set_cmdline_hostname(old, settings.hostname)
        if new != old:
            boot.write(CMDLINE_FILE, new.encode("utf-8"))
    elif settings.hostname is not None:
        log.warning(
            "%s has no %s: the host name is applied by first boot only", target, CMDLINE_FILE
        )
    return boot


def read_provisioning(target: str | os.PathLike[str], *, allow_fixed: bool = False) -> Provisioning:
    """Return the provisioning settings stored in the boot partition of ``target``.

    Raises:
        FileNotFoundError: the image or card is not provisioned.
        InvalidSetting: the stored file is invalid.
        TargetRefused, ImageError: as for :func:`provision`.
    """
    boot = _boot_partition_of(target, allow_fixed=allow_fixed)
    return parse_provisioning(boot.read(BOOT_FILE_NAME))
