"""NTAG 424 DNA Secure Unique NFC (SUN) message verification.

A bare badge UID can be read and cloned by anyone with a phone. An NXP NTAG 424
DNA instead writes, on every tap, a fresh NDEF URL whose query string carries
the badge UID and its read counter (encrypted, or mirrored in clear) and a
truncated AES-CMAC computed with a key that never leaves the tag. This module
checks such a URL offline, following NXP AN12196 ("NTAG 424 DNA and NTAG 424
DNA TagTamper features and hints") and the NT4H2421Gx data sheet §9.3 (Secure
Dynamic Messaging):

1. :func:`parse_sun_url` splits the URL into its parts (parameter names are
   configurable with :class:`SunSettings`), or raises :class:`MalformedSun`.
2. Encrypted mode: :func:`decrypt_picc_data` decrypts PICCData with the SDM
   meta-read key (AES-128 CBC, zero IV) into PICCDataTag, UID (7 bytes) and
   SDMReadCtr (3 bytes, little-endian). Plain mode: UID and counter are read
   from their own parameters (the counter mirrored as big-endian hex).
3. :func:`session_keys` derives the SDM session keys from the SDM file-read
   key: ``KSesSDMFileReadMAC = CMAC(K, 3CC3 0001 0080 || UID || SDMReadCtr)``
   (SV2) and ``KSesSDMFileReadENC = CMAC(K, C33C 0001 0080 || ...)`` (SV1).
4. :func:`sdm_mac` computes the CMAC over the configured MAC input (empty, or
   the ASCII text from a parameter's value up to the MAC value) and keeps its
   8 odd-indexed bytes (MACt); the comparison is constant-time.
5. Only once the MAC verifies is encrypted file data (SDMENCFileData)
   decrypted (:func:`decrypt_file_data`).

:class:`SunVerifier` is the one entry point doing all of this; it returns a
:class:`SunTap` (UID, counter, file data) or raises a :class:`SunError` whose
``reason`` is an :class:`portier_common.reasons.Reason`. Replay protection is a
separate, pure decision (:func:`counter_verdict`): the last accepted counter per
UID is kept by whoever owns durable storage (the agent's replay ledger, the
central's shared counters).

Per-card keys can be derived from a master key with AN10922 AES-128
diversification (:func:`diversify_aes128`, :class:`DiversifiedKeys`). Only the
file-read (MAC) key can be per card: the meta-read key must be shared by every
badge a door reads, because the UID is only known after decrypting with it.

LRP mode (the tag's alternative to AES for SDM) is not supported: its 24-byte
PICCData is refused as malformed.

:func:`emulate_sun_url` computes what a tag would write for given keys, UID and
counter; the simulators and the tests use it in place of a real tag.

The modules, by concern (every public name is importable from this package):

- :mod:`~portier_common.ntag424.errors`: :class:`SunError` and its subclasses;
- :mod:`~portier_common.ntag424.crypto`: AES/CMAC primitives, PICCData, session keys, MACt;
- :mod:`~portier_common.ntag424.diversify`: AN10922 per-card keys;
- :mod:`~portier_common.ntag424.message`: the URL layout and its parser;
- :mod:`~portier_common.ntag424.verifier`: the door side (:class:`SunVerifier`,
  :class:`SunTap`, :func:`counter_verdict`, :class:`Ntag424Section`);
- :mod:`~portier_common.ntag424.emulate`: the tag side, for simulators and tests;
- :mod:`~portier_common.ntag424.session`: EV2 secure messaging, the host side
  (AuthenticateEV2First/NonFirst, session keys, CommMode.MAC/FULL) over a ``Transport``;
- :mod:`~portier_common.ntag424.commands`: :class:`Ntag424`, the card's commands, and the file and
  SDM settings' byte layout;
- :mod:`~portier_common.ntag424.card`: :class:`EmulatedNtag424`, a whole card with real state and
  cryptography (tests, demo);
- :mod:`~portier_common.ntag424.personalise`: :func:`personalise` a blank card into a badge of a
  site (resumable), :func:`reset_to_factory` a returned one.
"""

from portier_common.ntag424.card import EmulatedNtag424
from portier_common.ntag424.commands import Ntag424
from portier_common.ntag424.crypto import (
    KEY_SIZE,
    MAC_SIZE,
    MAX_COUNTER,
    UID_SIZE,
    PiccData,
    decrypt_file_data,
    decrypt_picc_data,
    sdm_mac,
    session_keys,
    truncate_mac,
)
from portier_common.ntag424.diversify import DiversifiedKeys, diversify_aes128
from portier_common.ntag424.emulate import emulate_sun_url
from portier_common.ntag424.errors import BadSunMac, MalformedSun, SunError, UnknownBadge
from portier_common.ntag424.message import SunMessage, SunSettings, parse_sun_url
from portier_common.ntag424.personalise import (
    BadgeLayout,
    CardKeys,
    FactoryKeyRefused,
    ForeignCard,
    PersonalisationError,
    Personalised,
    SiteKeys,
    VerificationFailed,
    personalise,
    reset_to_factory,
)
from portier_common.ntag424.session import CardError, CardStatusError, Transport
from portier_common.ntag424.verifier import (
    KeyLookup,
    Ntag424Section,
    SunTap,
    SunVerifier,
    counter_verdict,
)

__all__ = [
    "KEY_SIZE",
    "MAC_SIZE",
    "MAX_COUNTER",
    "UID_SIZE",
    "BadSunMac",
    "BadgeLayout",
    "CardError",
    "CardKeys",
    "CardStatusError",
    "DiversifiedKeys",
    "EmulatedNtag424",
    "FactoryKeyRefused",
    "ForeignCard",
    "KeyLookup",
    "MalformedSun",
    "Ntag424",
    "Ntag424Section",
    "PersonalisationError",
    "Personalised",
    "PiccData",
    "SiteKeys",
    "SunError",
    "SunMessage",
    "SunSettings",
    "SunTap",
    "SunVerifier",
    "Transport",
    "UnknownBadge",
    "VerificationFailed",
    "counter_verdict",
    "decrypt_file_data",
    "decrypt_picc_data",
    "diversify_aes128",
    "emulate_sun_url",
    "parse_sun_url",
    "personalise",
    "reset_to_factory",
    "sdm_mac",
    "session_keys",
    "truncate_mac",
]
