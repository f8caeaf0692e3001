"""Per-device provisioning: the settings file ``appliance provision`` writes on a card.

A field installer gives each SD card its site, door, central API URL, one-time
enrollment token, its role (:data:`ROLES`: a headless door appliance or a kiosk
with a screen) and, optionally, Wi-Fi, host name and the private CA that issued the
central's TLS certificate. They are validated here (:class:`Provisioning`),
serialised as a small TOML file and written into the card's FAT boot partition as
:data:`BOOT_FILE_NAME` with mtools, without mounting.

The same run gives the card a stable machine ID (``systemd.machine_id=`` in
``cmdline.txt``, :func:`set_cmdline_machine_id`): the image's root is read-only with
an empty ``/etc/machine-id``, so without it systemd would make up a new one at every
boot.

On the device's first boot, ``portier-firstboot.service`` runs only while that file
exists (``ConditionPathExists=/boot/firmware/portier-provision.toml``); the
first-boot program reads it back with :func:`parse_provisioning` (the same
validation, through Portier's one settings loader, :mod:`portier_common.settings`),
moves it to ``/etc/portier/provision.toml`` (0600) and deletes it from the boot
partition. Enrollment with the central API is the first-boot
program's job, not this module's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import tomllib
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from edge_agent.tomlwrite import dumps
from images import targets
from images.disk import FatPartition
from images.errors import ImageError, InvalidSetting
from portier_common import settings as cfg
from portier_common.settings import ConfigError

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


def validate_central_url(url: object, option: str = "--central-url") -> str:
    """Return ``url`` normalised (no trailing slash) if it is a usable central API URL.

    The URL must be ``https://host[:port][/path]`` with no credentials, query or
    fragment. Plain ``http://`` is accepted only for a loopback host (the reference
    central in tests and demos), which a deployed device cannot reach anyway.

    Raises:
        ConfigError: naming ``option`` (the option or the file's key).
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(option, "a URL is required, e.g. https://central.example.org/api")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(option, f"not a valid URL ({exc}): {url!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(option, f"not an absolute https:// URL: {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(option, f"the central API must be reached over https://, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(option, "must not carry a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(option, "must not have a query (?...) or fragment (#...)")
    if any(c.isspace() for c in url):
        raise ConfigError(option, f"contains white space: {url!r}")
    if port == 0:
        raise ConfigError(option, "port 0 is not a port")
    return url.rstrip("/")


def identifier(key: str, value: object) -> str:
    """A site or door identifier (:data:`ID_PATTERN`)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ConfigError(
            key,
            f"{value!r} is not an identifier: use 1-64 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit",
        )
    return value


def enrollment_token(key: str, value: object) -> str:
    """A one-time enrollment token (:data:`TOKEN_PATTERN`); the message never shows it."""
    if not isinstance(value, str) or not TOKEN_PATTERN.fullmatch(value):
        length = len(value) if isinstance(value, str) else 0
        raise ConfigError(
            key,
            f"not an enrollment token (expected 22-256 characters of A-Z a-z 0-9 - _, "
            f"got {length} characters); paste it exactly as the central issued it",
        )
    return value


def host_name(key: str, value: object) -> str:
    """A host name label (:data:`HOSTNAME_PATTERN`)."""
    if not isinstance(value, str) or not HOSTNAME_PATTERN.fullmatch(value):
        raise ConfigError(
            key,
            f"{value!r} is not a host name: 1-63 lower-case letters, digits and "
            "'-', not starting or ending with '-'",
        )
    return value


def role(key: str, value: object) -> str:
    """One of :data:`ROLES`, the message saying what each is."""
    if value not in ROLES:
        raise ConfigError(
            key,
            f"{value!r} is not a role: door (headless appliance: NFC reader and relay, no "
            "screen) or kiosk (the same with the touch UI on a screen)",
        )
    return str(value)


@dataclass(frozen=True)
class WifiSettings:
    """A WPA2/WPA3-Personal network: SSID (1-32 bytes) and passphrase or raw 64-hex PSK."""

    ssid: str
    psk: str

    def __post_init__(self) -> None:
        """Validate; raises :class:`ConfigError` naming ``ssid`` or ``psk``."""
        if not 1 <= len(self.ssid.encode()) <= 32:
            raise ConfigError("ssid", "the SSID must be 1 to 32 bytes long")
        if any(ord(c) < 32 or ord(c) == 127 for c in self.ssid):
            raise ConfigError("ssid", "the SSID contains control characters")
        printable = all(32 <= ord(c) < 127 for c in self.psk)
        if not (_HEX64.fullmatch(self.psk) or (8 <= len(self.psk) <= 63 and printable)):
            raise ConfigError(
                "psk",
                "the passphrase must be 8 to 63 printable ASCII characters "
                "(or a raw PSK of 64 hex digits); open networks are not supported",
            )

    @classmethod
    def parse(cls, value: str) -> WifiSettings:
        """Return the settings from ``SSID:PASSPHRASE`` (split at the first colon).

        Raises:
            InvalidSetting: naming ``--wifi``: no colon, or a bad SSID or passphrase.
        """
        ssid, sep, psk = value.partition(":")
        if not sep:
            raise InvalidSetting("--wifi", "expected SSID:PASSPHRASE")
        try:
            return cls(ssid=ssid, psk=psk)
        except ConfigError as exc:
            raise InvalidSetting("--wifi", exc.problem) from None


# -- the central's private CA -----------------------------------------------------------

#: Largest ``--central-ca`` file accepted: a few CA certificates are a few KiB, and the
#: whole provisioning file goes into the boot partition and the device's /etc.
CENTRAL_CA_MAX_BYTES = 64 * 1024
_CA_OPTION = "--central-ca"
_PEM_LABEL = re.compile(r"-----BEGIN ([^\r\n]*?)-----")


@dataclass(frozen=True)
class CaCertificate:
    """What ``appliance show`` says of one provisioned CA certificate (never its PEM).

    ``sha256`` is the certificate's SHA-256 fingerprint as ``openssl x509 -noout
    -fingerprint -sha256`` prints it, so an installer can compare it with the site's.
    """

    subject: str
    sha256: str
    not_before: dt.datetime
    not_after: dt.datetime


def _describe(cert: x509.Certificate) -> CaCertificate:
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CaCertificate(
        subject=cert.subject.rfc4514_string() or "(empty subject)",
        sha256=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _nth(index: int, count: int, cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    return f"certificate {index + 1} of {count} ({subject})"


def _load_ca_certificates(pem: object, key: str = _CA_OPTION) -> list[x509.Certificate]:
    """Return the CA certificates in ``pem``, checked for everything but the dates.

    Raises:
        InvalidSetting: naming ``key`` (``--central-ca`` by default): empty, too large, private key
            material, a PEM block that is not a certificate, a certificate that does
            not parse, or one that is not a CA.
    """
    if not isinstance(pem, str):
        raise InvalidSetting(key, "must be the PEM text of the CA certificates")
    if len(pem.encode("utf-8")) > CENTRAL_CA_MAX_BYTES:
        raise InvalidSetting(
            key,
            f"larger than {CENTRAL_CA_MAX_BYTES // 1024} KiB: give only the CA certificate(s) "
            "that issued the central's certificate, not a whole system bundle",
        )
    if not pem.strip():
        raise InvalidSetting(
            key, "the file is empty: give the PEM file of the central's CA certificate(s)"
        )
    labels = [label.strip() for label in _PEM_LABEL.findall(pem)]
    for label in labels:
        if "PRIVATE KEY" in label.upper():
            # Loud on purpose: the installer grabbed a key file (the CA's or the
            # server's) instead of the certificate, and it must never reach a card.
            raise InvalidSetting(
                key,
                f"REFUSED: the file holds a private key (-----BEGIN {label}-----). A private "
                "key must never go onto a device; nothing was written. Give only the CA "
                "certificate (-----BEGIN CERTIFICATE-----, e.g. from `openssl x509 -in FILE "
                "-out ca.pem`), and tell whoever owns that key that it was handed around",
            )
    others = sorted({label for label in labels if label != "CERTIFICATE"})
    if others:
        raise InvalidSetting(
            key,
            f"holds a {others[0]} block: only CA certificates (-----BEGIN CERTIFICATE-----) "
            "belong in this file",
        )
    if not labels:
        raise InvalidSetting(
            key,
            "no PEM certificate in the file (no -----BEGIN CERTIFICATE----- line): give the "
            "CA certificate in PEM form (a DER .cer/.crt file converts with `openssl x509 "
            "-inform der -in FILE -out ca.pem`)",
        )
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii", "replace"))
    except ValueError as exc:
        raise InvalidSetting(
            key,
            f"a certificate in the file is damaged ({str(exc).split('. ')[-1]}): copy the "
            "PEM file again, without editing it",
        ) from None
    count = len(certs)
    for index, cert in enumerate(certs):
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            basic = None
        except ValueError as exc:
            raise InvalidSetting(
                key, f"{_nth(index, count, cert)} has a damaged extension: {exc}"
            ) from None
        if basic is None or not basic.ca:
            raise InvalidSetting(
                key,
                f"{_nth(index, count, cert)} is not a CA certificate (no BasicConstraints "
                f"CA:TRUE); it looks like a server's own certificate, issued by "
                f"{cert.issuer.rfc4514_string()!r}: give that issuing CA's certificate",
            )
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise InvalidSetting(
                key,
                f"{_nth(index, count, cert)} may not sign certificates (KeyUsage without "
                "keyCertSign), so it cannot have issued the central's: give the issuing CA",
            )
    return certs


def _check_ca_dates(certs: list[x509.Certificate], now: dt.datetime) -> None:
    for index, cert in enumerate(certs):
        info = _describe(cert)
        span = f"valid {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"
        if now > info.not_after:
            raise InvalidSetting(
                _CA_OPTION,
                f"{_nth(index, len(certs), cert)} has expired ({span}; now "
                f"{now:%Y-%m-%d %H:%M} UTC): get the site's current CA certificate",
            )
        if now < info.not_before:
            raise InvalidSetting(
                _CA_OPTION,
                f"{_nth(index, len(certs), cert)} is not valid yet ({span}; now "
                f"{now:%Y-%m-%d %H:%M} UTC): check this computer's clock, or wait",
            )


def normalise_central_ca(pem: object, key: str = _CA_OPTION) -> str:
    """Return ``pem``'s CA certificates re-encoded as plain PEM, one after the other.

    Text around the certificates (``Bag Attributes``, ``# Subject:`` comments) is
    dropped, so the stored text holds nothing but base64 and the PEM markers.

    Raises:
        InvalidSetting: naming ``key`` (see :func:`read_central_ca`); dates are not
            checked here.
    """
    certs = _load_ca_certificates(pem, key)
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def describe_central_ca(pem: str) -> list[CaCertificate]:
    """Return subject, SHA-256 fingerprint and validity of each certificate in ``pem``."""
    return [_describe(cert) for cert in _load_ca_certificates(pem)]


def check_central_ca_dates(pem: str, now: dt.datetime | None = None) -> None:
    """Refuse ``pem`` unless every certificate is valid at ``now`` (default: this
    computer's clock).

    Done when provisioning, on the installer's computer, and not on the device: a
    Raspberry Pi has no battery-backed clock, so before its first time sync it may
    believe it is still the day the image was built.

    Raises:
        InvalidSetting: naming ``--central-ca``, the certificate, its dates and now.
    """
    _check_ca_dates(_load_ca_certificates(pem), now or dt.datetime.now(dt.UTC))


def read_central_ca(path: str | os.PathLike[str], *, now: dt.datetime | None = None) -> str:
    """Return the normalised PEM of the CA file at ``path``, checked for provisioning.

    The file must hold at least one certificate, every one a CA (BasicConstraints
    CA:TRUE, allowed to sign certificates) and valid at ``now``; no private key, no
    other PEM block; at most :data:`CENTRAL_CA_MAX_BYTES`.

    Raises:
        InvalidSetting: naming ``--central-ca`` and saying what to do.
    """
    file = Path(path)
    try:
        with file.open("rb") as fh:
            raw = fh.read(CENTRAL_CA_MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidSetting(_CA_OPTION, f"cannot read {file}: {exc.strerror or exc}") from None
    if len(raw) > CENTRAL_CA_MAX_BYTES:
        raise InvalidSetting(
            _CA_OPTION,
            f"{file} is larger than {CENTRAL_CA_MAX_BYTES // 1024} KiB: give only the CA "
            "certificate(s) that issued the central's certificate, not a whole system bundle",
        )
    try:
        text = raw.decode("utf-8")  # comments around the certificates may be UTF-8
    except UnicodeDecodeError:
        raise InvalidSetting(
            _CA_OPTION,
            f"{file} is not a PEM text file (binary data: a DER certificate converts with "
            "`openssl x509 -inform der -in FILE -out ca.pem`)",
        ) from None
    pem = normalise_central_ca(text)
    check_central_ca_dates(pem, now)
    return pem


@dataclass(frozen=True)
class Provisioning:
    """Everything one device needs to commission itself on first boot.

    ``central_url`` is normalised without a trailing slash. ``hostname`` and ``wifi``
    are optional (wired network, default host name); ``role`` is one of :data:`ROLES`.
    ``central_ca`` is the PEM text of the CA certificate(s) that verify the central's
    TLS certificate (None: the system's CAs), normalised by
    :func:`normalise_central_ca`; its dates are checked when a card is provisioned
    (:func:`provision`), not here, since the device's clock may be wrong at first boot.
    """

    site: str
    door: str
    central_url: str
    enroll_token: str
    wifi: WifiSettings | None = None
    hostname: str | None = None
    role: str = DEFAULT_ROLE
    central_ca: str | None = None

    def __post_init__(self) -> None:
        """Validate and normalise every field.

        Raises :class:`InvalidSetting` naming the field (``central_url``, ``wifi.ssid``):
        :func:`from_options` turns it into the command-line option, and
        :func:`parse_provisioning` adds the file.
        """
        try:
            identifier("site", self.site)
            identifier("door", self.door)
            object.__setattr__(
                self, "central_url", validate_central_url(self.central_url, "central_url")
            )
            enrollment_token("enroll_token", self.enroll_token)
            if self.hostname is not None:
                host_name("hostname", self.hostname)
            role("role", self.role)
            if self.central_ca is not None:
                pem = normalise_central_ca(self.central_ca, "central_ca")
                object.__setattr__(self, "central_ca", pem)
                if not self.central_url.startswith("https://"):
                    raise ConfigError(
                        "central_ca",
                        f"verifies an https:// central, but the central URL is "
                        f"{self.central_url}: use https:// or leave --central-ca out",
                    )
        except ConfigError as exc:
            raise InvalidSetting(exc.key, exc.problem) from None

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
        if self.central_ca is not None:
            out["central_ca"] = self.central_ca
        if self.wifi is not None:
            out["wifi"] = {"ssid": self.wifi.ssid, "psk": self.wifi.psk}
        return out

    def to_toml(self, *, now: dt.datetime | None = None) -> str:
        """Return the provisioning file's text (TOML, UTF-8, with a header comment).

        Written by :func:`edge_agent.tomlwrite.dumps` (``central_ca`` as a multi-line
        string, so the PEM reads as it does in a ``.pem`` file). The result is parsed
        back before it is returned, so a value that does not round-trip can never
        reach a card.
        """
        stamp = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()
        text = dumps(
            self.to_dict(),
            header=(
                f"Portier provisioning file, written by `appliance provision` at {stamp}.\n"
                "Read and deleted on first boot by portier-firstboot.service. It holds a\n"
                "one-time enrollment token: keep the card safe until then."
            ),
        )
        if parse_provisioning(text) != self:
            raise AssertionError("provisioning file does not round-trip")  # pragma: no cover
        return text


#: The command-line option of each setting of :class:`Provisioning` (``appliance provision``).
OPTIONS = {
    "site": "--site",
    "door": "--door",
    "central_url": "--central-url",
    "enroll_token": "--enroll-token",
    "wifi": "--wifi",
    "hostname": "--hostname",
    "role": "--role",
    "central_ca": "--central-ca",
}


def from_options(**values: Any) -> Provisioning:
    """Return ``Provisioning(**values)`` for values given on the command line.

    Raises:
        InvalidSetting: naming the option (``--central-url``, ``--wifi`` for
            ``wifi.ssid``) rather than the file's key.
    """
    try:
        return Provisioning(**values)
    except ConfigError as exc:
        field = re.split(r"[.\[]", exc.key, maxsplit=1)[0]
        raise InvalidSetting(OPTIONS.get(field, exc.key), exc.problem) from None


def parse_provisioning(
    text: str | bytes, file: str | os.PathLike[str] | None = None
) -> Provisioning:
    """Return the :class:`Provisioning` in a provisioning file's text.

    Read by Portier's one settings loader (:func:`portier_common.settings.build`): keys
    and types checked, then the dataclass's own validation. A file without ``role``
    (written before roles existed, or for a door) is a door. ``file`` is where the text
    came from, for messages.

    Raises:
        InvalidSetting: not UTF-8 or TOML, unknown format version, a missing or unknown
            key, or a bad value; ``key`` is the TOML key (``wifi.psk``), ``file`` is ``file``.
    """
    where = None if file is None else Path(file)
    try:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError("", "not UTF-8 text") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"not valid TOML: {exc}") from None
        if "format" not in data:
            raise ConfigError("format", "required key is missing")
        version = data.pop("format")
        if version != FORMAT_VERSION:
            raise ConfigError(
                "format", f"unknown format {version!r} (this program reads {FORMAT_VERSION})"
            )
        return cfg.build(Provisioning, data)
    except ConfigError as exc:
        raise InvalidSetting(exc.key, exc.problem, where or exc.file) from None


#: The kernel command line in the boot partition (Raspberry Pi firmware).
CMDLINE_FILE = "cmdline.txt"
_HOSTNAME_ARG = "systemd.hostname="
_MACHINE_ID_ARG = "systemd.machine_id="
#: A machine ID as written by provisioning: 32 lower-case hex digits (machine-id(5)).
MACHINE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
#: What systemd accepts in ``systemd.machine_id=`` (sd_id128_from_string): 32 hex
#: digits in either case, or the same as a UUID with dashes.
_ID128 = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _set_cmdline_word(cmdline: str, prefix: str, value: str | None) -> str:
    """Return ``cmdline`` with the word ``prefix + value`` in the place of the first word
    starting with ``prefix`` (appended when there is none), other such words removed;
    with ``value`` None, all of them removed. The result is one line, words separated
    by single spaces, as the Raspberry Pi firmware wants ``cmdline.txt``."""
    words: list[str] = []
    placed = False
    for word in cmdline.split():
        if word.startswith(prefix):
            if value is not None and not placed:
                words.append(prefix + value)
                placed = True
            continue
        words.append(word)
    if value is not None and not placed:
        words.append(prefix + value)
    return " ".join(words) + "\n"


def set_cmdline_hostname(cmdline: str, hostname: str | None) -> str:
    """Return ``cmdline`` with ``systemd.hostname=`` set to ``hostname`` (removed if None).

    The root file system is read-only, so ``/etc/hostname`` cannot be written on the
    device; PID 1 takes ``systemd.hostname=`` from the kernel command line instead, from
    the very start of boot, before /etc/hostname.
    """
    return _set_cmdline_word(cmdline, _HOSTNAME_ARG, hostname)


def cmdline_machine_id(cmdline: str) -> str | None:
    """Return the machine ID that ``systemd.machine_id=`` gives in ``cmdline`` (32
    lower-case hex digits), or None when there is no valid one.

    Like PID 1, the last valid occurrence counts and an invalid or all-zero value is
    ignored.
    """
    found = None
    for word in cmdline.split():
        if word.startswith(_MACHINE_ID_ARG):
            value = word[len(_MACHINE_ID_ARG) :]
            if _ID128.fullmatch(value):
                value = value.replace("-", "").lower()
                if value != "0" * 32:
                    found = value
    return found


def new_machine_id() -> str:
    """Return a new random machine ID (a version 4 UUID's 32 hex digits, as systemd's own)."""
    return uuid.uuid4().hex


def set_cmdline_machine_id(cmdline: str, machine_id: str) -> str:
    """Return ``cmdline`` with ``systemd.machine_id=`` set to ``machine_id``.

    The image's root is read-only and its ``/etc/machine-id`` empty (one image for every
    device), so systemd would make up a new machine ID at every boot, and persistent
    journald storage, kept per machine ID in ``/var/log/journal/ID/``, would start a new
    directory each time. PID 1 takes ``systemd.machine_id=`` (systemd(1), 229 and later)
    in preference to ``/etc/machine-id``.

    Raises:
        ValueError: ``machine_id`` is not 32 lower-case hex digits, or all zeros.
    """
    if not MACHINE_ID_PATTERN.fullmatch(machine_id) or machine_id == "0" * 32:
        raise ValueError(f"not a machine ID (32 lower-case hex digits): {machine_id!r}")
    return _set_cmdline_word(cmdline, _MACHINE_ID_ARG, machine_id)


def _boot_partition_of(target: str | os.PathLike[str], *, allow_fixed: bool) -> FatPartition:
    checked = targets.inspect_target(target, allow_fixed=allow_fixed)
    if checked.size == 0:
        raise ImageError(f"{checked.path} is empty")
    return FatPartition.boot_of(checked.path)


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` did: the boot partition written to and the device's
    machine ID (None when the boot partition has no ``cmdline.txt``); ``machine_id_kept``
    is True when the card already carried it (provisioned before)."""

    boot: FatPartition
    machine_id: str | None
    machine_id_kept: bool


def provision(
    target: str | os.PathLike[str], settings: Provisioning, *, allow_fixed: bool = False
) -> Provisioned:
    """Write ``settings`` as :data:`BOOT_FILE_NAME` into the boot partition of ``target``.

    ``target`` is an image file or a whole card (block device). A card is checked
    like a flash target first: a mounted card is refused, since writing under a
    mounted FAT file system corrupts it. The file is read back and compared.
    A provisioned ``central_ca`` must be valid now, by this computer's clock.

    The kernel command line (``cmdline.txt``) gets ``systemd.hostname=`` (see
    :func:`set_cmdline_hostname`) and ``systemd.machine_id=``: the one already there,
    so that provisioning a card again keeps the device's identity (its journal), else
    a new random one (:func:`set_cmdline_machine_id`). The rest of the line is kept.

    Raises:
        InvalidSetting: ``central_ca`` is expired or not yet valid (nothing written).
        TargetRefused: the card is mounted, a system disk...
        ImageError: no partition table or no FAT boot partition.
        ToolFailed: mtools failed (full or damaged file system).
    """
    if settings.central_ca is not None:
        check_central_ca_dates(settings.central_ca)
    boot = _boot_partition_of(target, allow_fixed=allow_fixed)
    boot.write(BOOT_FILE_NAME, settings.to_toml().encode("utf-8"))
    if not boot.exists(CMDLINE_FILE):
        log.warning(
            "%s has no %s: no stable machine ID (systemd makes a new one at every boot)%s",
            target,
            CMDLINE_FILE,
            ", and the host name is applied by first boot only" if settings.hostname else "",
        )
        return Provisioned(boot, None, False)
    old = boot.read(CMDLINE_FILE).decode("utf-8")
    machine_id = cmdline_machine_id(old)
    kept = machine_id is not None
    if machine_id is None:
        if _MACHINE_ID_ARG in old:
            log.warning("%s: replacing an invalid %s in %s", target, _MACHINE_ID_ARG, CMDLINE_FILE)
        machine_id = new_machine_id()
    new = set_cmdline_machine_id(set_cmdline_hostname(old, settings.hostname), machine_id)
    if new != old:
        boot.write(CMDLINE_FILE, new.encode("utf-8"))
    return Provisioned(boot, machine_id, kept)


def read_machine_id(target: str | os.PathLike[str], *, allow_fixed: bool = False) -> str | None:
    """Return the machine ID on the kernel command line of ``target`` (None: not set).

    Raises:
        FileNotFoundError: the boot partition has no ``cmdline.txt``.
        TargetRefused, ImageError: as for :func:`provision`.
    """
    boot = _boot_partition_of(target, allow_fixed=allow_fixed)
    return cmdline_machine_id(boot.read(CMDLINE_FILE).decode("utf-8"))


def read_provisioning(target: str | os.PathLike[str], *, allow_fixed: bool = False) -> Provisioning:
    """Return the provisioning settings stored in the boot partition of ``target``.

    Raises:
        FileNotFoundError: the image or card is not provisioned.
        InvalidSetting: the stored file is invalid (naming the key and
            ``TARGET::/portier-provision.toml``).
        TargetRefused, ImageError: as for :func:`provision`.
    """
    boot = _boot_partition_of(target, allow_fixed=allow_fixed)
    return parse_provisioning(boot.read(BOOT_FILE_NAME), f"{target}::/{BOOT_FILE_NAME}")
