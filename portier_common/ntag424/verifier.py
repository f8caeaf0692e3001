"""The door side: :class:`SunVerifier` checks a SUN URL against one door's keys and returns a
:class:`SunTap`; :class:`Ntag424Section` builds it from the keys the agent's ``[ntag424]``
table and the central's keys file give; :func:`counter_verdict` decides freshness."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from portier_common.ntag424.crypto import (
    _check_key,
    _cmac,
    _session_enc_key,
    _session_mac_key,
    decrypt_file_data,
    decrypt_picc_data,
    truncate_mac,
)
from portier_common.ntag424.diversify import DiversifiedKeys
from portier_common.ntag424.errors import BadSunMac, MalformedSun, UnknownBadge
from portier_common.ntag424.message import (
    _DEFAULT_SETTINGS,
    SunMessage,
    SunSettings,
    parse_sun_url,
)
from portier_common.reasons import Reason

log = logging.getLogger("portier_common.ntag424")

__all__ = ["KeyLookup", "Ntag424Section", "SunTap", "SunVerifier", "counter_verdict"]

#: Returns the SDM file-read key for a 7-byte UID, or None when the badge is unknown.
KeyLookup = Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class SunTap:
    """A verified tap: the badge's UID, its read counter and any decrypted file data.

    The counter is authentic but not yet checked for replay: see :func:`counter_verdict`.
    """

    uid: bytes
    counter: int
    file_data: bytes | None = None
    encrypted: bool = True

    @property
    def uid_hex(self) -> str:
        """Returns the UID as upper-case hex, the form the tag mirrors."""
        return self.uid.hex().upper()


class SunVerifier:
    """Verifies SUN URLs against one door's keys and URL layout.

    Args:
        file_read_key: the SDM file-read (MAC) key: one key for every badge,
            a ``Mapping`` from UID bytes to key, or a callable ``uid -> key |
            None`` (e.g. :class:`DiversifiedKeys`, or a credential-cache query).
        meta_read_key: the SDM meta-read key that decrypts PICCData; ``None``
            accepts plain mirroring only.
        settings: the URL layout (:class:`SunSettings`).

    Raises:
        ValueError: naming the argument, for a key that is not 16 bytes or a
            lookup of the wrong type.

    The verifier is stateless and thread-safe as long as the lookup is.
    """

    def __init__(
        self,
        *,
        file_read_key: bytes | Mapping[bytes, bytes] | KeyLookup,
        meta_read_key: bytes | None = None,
        settings: SunSettings | None = None,
    ) -> None:
        self._meta_read_key = (
            None if meta_read_key is None else _check_key("meta_read_key", meta_read_key)
        )
        if isinstance(file_read_key, bytes | bytearray):
            static = _check_key("file_read_key", file_read_key)
            self._lookup: KeyLookup = lambda _uid: static
        elif isinstance(file_read_key, Mapping):
            self._lookup = file_read_key.get
        elif callable(file_read_key):
            self._lookup = file_read_key
        else:
            raise ValueError(
                "file_read_key: expected a 16-byte key, a Mapping of UID to key or a callable"
            )
        if settings is not None and not isinstance(settings, SunSettings):
            raise ValueError("settings: expected a SunSettings")
        self.settings = settings or _DEFAULT_SETTINGS

    def __repr__(self) -> str:
        return (
            f"SunVerifier(settings={self.settings!r}, encrypted={self._meta_read_key is not None})"
        )

    def verify(self, url: object) -> SunTap:
        """Parse and verify a SUN URL.

        Returns:
            The verified :class:`SunTap`. Its counter is not yet checked for
            replay (:func:`counter_verdict`).

        Raises:
            MalformedSun: unreadable input (see :func:`parse_sun_url`), or
                encrypted PICCData when no meta-read key is configured.
            BadSunMac: PICCData or MAC does not verify.
            UnknownBadge: the key lookup does not know the UID.
            ValueError: (not a :class:`SunError`) the key lookup returned
                something that is not a 16-byte key: a configuration error.
        """
        return self.verify_message(parse_sun_url(url, self.settings))

    def verify_message(self, message: SunMessage) -> SunTap:
        """Verify an already parsed message; returns and raises as :meth:`verify`."""
        if message.picc_data is not None:
            if self._meta_read_key is None:
                raise MalformedSun("encrypted PICCData but no meta-read key is configured")
            picc = decrypt_picc_data(self._meta_read_key, message.picc_data)
            if picc.uid is None or picc.counter is None:
                # Without both, a tap cannot name its badge or be checked for replay;
                # random plaintext from a wrong key or altered data lands here too.
                raise BadSunMac(
                    "PICCData does not decrypt to a UID and counter (altered, wrong meta-read "
                    "key, or tag without UID and counter mirroring)"
                )
            uid, counter = picc.uid, picc.counter
        elif message.uid is not None and message.counter is not None:
            uid, counter = message.uid, message.counter
        else:
            raise MalformedSun("message carries neither PICCData nor a plain UID and counter")

        key = self._lookup(uid)
        if key is None:
            raise UnknownBadge(f"no file-read key for badge {uid.hex().upper()}")
        key = _check_key("file_read_key (from the lookup)", key)

        expected = truncate_mac(_cmac(_session_mac_key(key, uid, counter), message.mac_input))
        if not hmac.compare_digest(expected, message.mac):
            log.debug("SUN MAC mismatch for badge %s", uid.hex().upper())
            raise BadSunMac("SDMMAC does not verify")

        file_data = None
        if message.enc_file_data is not None:
            file_data = decrypt_file_data(
                _session_enc_key(key, uid, counter), counter, message.enc_file_data
            )
        return SunTap(uid=uid, counter=counter, file_data=file_data, encrypted=message.encrypted)


def counter_verdict(last_accepted: int | None, counter: int) -> Reason | None:
    """Decide whether a tap's read counter is fresh.

    Returns:
        None when ``counter`` is strictly greater than ``last_accepted`` (or no
        tap of this badge was accepted before); ``Reason.REPLAYED`` otherwise.
    """
    if last_accepted is None or counter > last_accepted:
        return None
    return Reason.REPLAYED


@dataclass(frozen=True)
class Ntag424Section:
    """Keys for NTAG 424 DNA SUN messages (hex). Keep this file mode 0600."""

    meta_read_key: str | None = None
    file_read_key: str | None = None
    #: Per-card file read keys diversified from this master key (AN10922), instead.
    file_read_master_key: str | None = None
    picc_param: str = "picc_data"
    mac_param: str = "cmac"

    def __post_init__(self) -> None:
        for name in ("meta_read_key", "file_read_key", "file_read_master_key"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[0-9A-Fa-f]{32}", value):
                raise ValueError(f"{name}: must be 32 hex digits (an AES-128 key)")
        if self.file_read_key and self.file_read_master_key:
            raise ValueError("file_read_master_key: set either it or file_read_key, not both")

    @property
    def configured(self) -> bool:
        """True when SUN messages can be verified."""
        return bool(self.file_read_key or self.file_read_master_key)

    def verifier(self) -> SunVerifier | None:
        """The SUN verifier of these keys (None when none are configured): the one way
        the agent and the central build it."""
        if not self.configured:
            return None
        file_key: bytes | DiversifiedKeys
        if self.file_read_master_key:
            file_key = DiversifiedKeys(bytes.fromhex(self.file_read_master_key))
        else:
            file_key = bytes.fromhex(self.file_read_key or "")
        meta = bytes.fromhex(self.meta_read_key) if self.meta_read_key else None
        layout = SunSettings(picc_param=self.picc_param, mac_param=self.mac_param)
        return SunVerifier(file_read_key=file_key, meta_read_key=meta, settings=layout)
