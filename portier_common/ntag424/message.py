"""SUN URLs as text: the layout (:class:`SunSettings`) and :func:`parse_sun_url`, which
splits a URL into a :class:`SunMessage` without any cryptography."""

from __future__ import annotations

import re
from dataclasses import dataclass

from portier_common.ntag424.crypto import COUNTER_SIZE, MAC_SIZE, PICC_DATA_SIZE, UID_SIZE
from portier_common.ntag424.errors import MalformedSun

__all__ = ["MAX_FILE_DATA_SIZE", "MAX_URL_LENGTH", "SunMessage", "SunSettings", "parse_sun_url"]

#: LRP-mode PICCData (refused) prefixes an 8-byte PICCRand to the AES block.
_LRP_PICC_DATA_SIZE = 24
#: The NDEF file an NTAG 424 DNA mirrors into holds 256 bytes; phones add the
#: URI prefix back. Anything much longer is not from a tag, and capping it bounds
#: the work an attacker can make the verifier do.
MAX_URL_LENGTH = 1024
MAX_FILE_DATA_SIZE = 128

_HEX = re.compile(r"[0-9A-Fa-f]*")
_PARAM_NAME = re.compile(r"[A-Za-z0-9._~-]{1,32}")


@dataclass(frozen=True)
class SunSettings:
    """How the badge's URL is laid out: it must match the tag's SDM configuration.

    Attributes:
        picc_param: query parameter holding encrypted PICCData (32 hex digits).
        enc_param: query parameter holding SDMENCFileData (hex), if mirrored.
        mac_param: query parameter holding the SDMMAC (16 hex digits).
        uid_param: query parameter of the plain UID mirror (14 hex digits).
        ctr_param: query parameter of the plain SDMReadCtr mirror (6 hex digits,
            most significant byte first, as the tag mirrors it).
        mac_input_from: ``None`` when the MAC is computed over an empty input
            (SDMMACInputOffset == SDMMACOffset); otherwise the name of the
            query parameter whose value starts the MAC input (SDMMACInputOffset
            pointing at it), which then runs up to the MAC value, separators and
            the ``cmac=`` text included. Encrypted file data must lie inside it.
        accept_plain: whether UID and counter mirrored in clear are accepted.
            They are as hard to forge as the encrypted form (the MAC is the
            same) but let any reader track the badge.

    Raises:
        ValueError: naming the field, when a name is not a plain URL query word
            or two parameters share a name.
    """

    picc_param: str = "picc_data"
    enc_param: str = "enc"
    mac_param: str = "cmac"
    uid_param: str = "uid"
    ctr_param: str = "ctr"
    mac_input_from: str | None = None
    accept_plain: bool = True

    def __post_init__(self) -> None:
        names = {
            "picc_param": self.picc_param,
            "enc_param": self.enc_param,
            "mac_param": self.mac_param,
            "uid_param": self.uid_param,
            "ctr_param": self.ctr_param,
        }
        seen: dict[str, str] = {}
        for field_name, value in names.items():
            if not isinstance(value, str) or not _PARAM_NAME.fullmatch(value):
                raise ValueError(
                    f"SunSettings.{field_name}: {value!r} is not a query parameter name "
                    "(1-32 of A-Z a-z 0-9 . _ ~ -)"
                )
            if value in seen:
                raise ValueError(
                    f"SunSettings.{field_name}: {value!r} is already used by {seen[value]}"
                )
            seen[value] = field_name
        if self.mac_input_from is not None:
            if not isinstance(self.mac_input_from, str) or not _PARAM_NAME.fullmatch(
                self.mac_input_from
            ):
                raise ValueError(
                    f"SunSettings.mac_input_from: {self.mac_input_from!r} is not a query "
                    "parameter name"
                )
            if self.mac_input_from == self.mac_param:
                raise ValueError(
                    "SunSettings.mac_input_from: the MAC input cannot start at the MAC itself; "
                    "use None for an empty MAC input"
                )
        if not isinstance(self.accept_plain, bool):
            raise ValueError(
                f"SunSettings.accept_plain: expected a bool, got {self.accept_plain!r}"
            )


_DEFAULT_SETTINGS = SunSettings()


@dataclass(frozen=True)
class SunMessage:
    """A SUN URL split into its parts; nothing in it is verified yet.

    Exactly one of ``picc_data`` (encrypted mode) or ``uid`` + ``counter``
    (plain mode) is set. ``mac_input`` is the exact ASCII text the tag MACed.
    """

    mac: bytes
    mac_input: bytes = b""
    picc_data: bytes | None = None
    uid: bytes | None = None
    counter: int | None = None
    enc_file_data: bytes | None = None

    @property
    def encrypted(self) -> bool:
        """Returns True when UID and counter travel encrypted (PICCData)."""
        return self.picc_data is not None


def _unhex(name: str, value: str, size: int | None = None) -> bytes:
    if not _HEX.fullmatch(value):
        raise MalformedSun(f"{name}: not hexadecimal")
    if size is not None and len(value) != 2 * size:
        raise MalformedSun(f"{name}: expected {2 * size} hex digits, got {len(value)}")
    if len(value) % 2:
        raise MalformedSun(f"{name}: odd number of hex digits")
    return bytes.fromhex(value)


def _query_params(url: str, wanted: set[str]) -> dict[str, tuple[int, str]]:
    """Returns {name: (offset of the value in url, value)} for the wanted names."""
    hash_at = url.find("#")
    base = url if hash_at < 0 else url[:hash_at]
    query_at = base.find("?")
    if query_at < 0:
        raise MalformedSun("no query string")
    found: dict[str, tuple[int, str]] = {}
    position = query_at + 1
    for piece in base[query_at + 1 :].split("&"):
        name, separator, value = piece.partition("=")
        if name in wanted:
            if name in found:
                # Two copies would let an attacker choose which one each step reads.
                raise MalformedSun(f"parameter {name!r} appears more than once")
            found[name] = (position + len(name) + len(separator), value)
        position += len(piece) + 1
    return found


def parse_sun_url(url: object, settings: SunSettings | None = None) -> SunMessage:
    """Split a SUN URL into its parts, without any cryptography.

    Accepts the URL as text (or ASCII bytes). Parameters are found by name in
    the query string; the values are kept exactly as the tag wrote them (no
    percent-decoding: the MAC covers the raw text).

    Returns:
        A :class:`SunMessage`.

    Raises:
        MalformedSun: for anything that is not a well-formed SUN URL under
            ``settings``: no query string, a missing, repeated, non-hex or
            wrong-length parameter, both or neither of the encrypted and plain
            forms, plain mirroring when not accepted, LRP-mode PICCData, or
            encrypted file data outside the MAC input.
    """
    settings = settings or _DEFAULT_SETTINGS
    if isinstance(url, bytes | bytearray):
        try:
            url = bytes(url).decode("ascii")
        except UnicodeDecodeError:
            raise MalformedSun("URL is not ASCII") from None
    if not isinstance(url, str):
        raise MalformedSun(f"expected the URL as text, got {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise MalformedSun(f"URL longer than {MAX_URL_LENGTH} characters")
    if not url.isascii():
        raise MalformedSun("URL is not ASCII")

    wanted = {
        settings.picc_param,
        settings.enc_param,
        settings.mac_param,
        settings.uid_param,
        settings.ctr_param,
    }
    if settings.mac_input_from is not None:
        wanted.add(settings.mac_input_from)
    params = _query_params(url, wanted)

    if settings.mac_param not in params:
        raise MalformedSun(f"no {settings.mac_param!r} parameter (SDMMAC)")
    mac_at, mac_text = params[settings.mac_param]
    mac = _unhex(settings.mac_param, mac_text, MAC_SIZE)

    if settings.mac_input_from is None:
        input_at = mac_at
    else:
        if settings.mac_input_from not in params:
            raise MalformedSun(f"no {settings.mac_input_from!r} parameter to start the MAC input")
        input_at = params[settings.mac_input_from][0]
        if input_at > mac_at:
            raise MalformedSun(
                f"{settings.mac_input_from!r} comes after {settings.mac_param!r}: "
                "the MAC input would be negative"
            )
    mac_input = url[input_at:mac_at].encode("ascii")

    enc_file_data: bytes | None = None
    if settings.enc_param in params:
        enc_at, enc_text = params[settings.enc_param]
        enc_file_data = _unhex(settings.enc_param, enc_text)
        if not enc_file_data or len(enc_file_data) % 16 or len(enc_file_data) > MAX_FILE_DATA_SIZE:
            raise MalformedSun(
                f"{settings.enc_param}: expected 16 to {MAX_FILE_DATA_SIZE} bytes in whole "
                "AES blocks"
            )
        if not (input_at <= enc_at and enc_at + len(enc_text) <= mac_at):
            # The data sheet requires this; without it the file data would be
            # unauthenticated and could be swapped freely.
            raise MalformedSun(
                f"{settings.enc_param}: encrypted file data is outside the MAC input"
            )

    has_plain = settings.uid_param in params or settings.ctr_param in params
    if settings.picc_param in params:
        if has_plain:
            raise MalformedSun("both encrypted PICCData and a plain UID/counter mirror")
        picc_text = params[settings.picc_param][1]
        if len(picc_text) == 2 * _LRP_PICC_DATA_SIZE and _HEX.fullmatch(picc_text):
            raise MalformedSun("LRP-mode PICCData is not supported; configure the tag for AES")
        picc_data = _unhex(settings.picc_param, picc_text, PICC_DATA_SIZE)
        return SunMessage(
            mac=mac, mac_input=mac_input, picc_data=picc_data, enc_file_data=enc_file_data
        )
    if not has_plain:
        raise MalformedSun(
            f"neither {settings.picc_param!r} nor {settings.uid_param!r}/{settings.ctr_param!r}"
        )
    if not settings.accept_plain:
        raise MalformedSun("plain UID/counter mirroring is not accepted here")
    if settings.uid_param not in params or settings.ctr_param not in params:
        raise MalformedSun(
            f"plain mirroring needs both {settings.uid_param!r} and {settings.ctr_param!r}"
        )
    uid = _unhex(settings.uid_param, params[settings.uid_param][1], UID_SIZE)
    # The tag mirrors the counter most significant byte first, unlike in SV1/SV2.
    counter = int.from_bytes(
        _unhex(settings.ctr_param, params[settings.ctr_param][1], COUNTER_SIZE), "big"
    )
    return SunMessage(
        mac=mac, mac_input=mac_input, uid=uid, counter=counter, enc_file_data=enc_file_data
    )
