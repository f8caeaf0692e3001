"""Personalise a blank NTAG 424 DNA into a Portier badge, the host side (AN12196 §5), and undo it.

:func:`personalise` takes a :class:`~.session.Transport` to a card in the field, the site's keys
(:class:`SiteKeys`: the SDM meta-read key shared by every badge, and the per-card keys derived for a
UID) and the URL layout the doors read (:class:`BadgeLayout`), and leaves a card that any door of
the site accepts. The steps, in an order chosen so that a card taken away at any moment can be
recognised and finished by the next run:

1. read the card as a door would; a SUN of this site gives the UID (even with Random ID);
2. authenticate key 0 with the factory key (AuthenticateEV2First) and read the real UID
   (GetCardUID); the site's keys for that UID are derived;
3. change keys 1-4 (SDM meta-read, SDM file-read, two spares) to the site's, with the XOR + CRC32
   form: an integrity error (91 1E) means the key already holds the site's value (retried with it
   as the old key) or a stranger's (refused);
4. write the NDEF URL template, then enable SDM on the NDEF file (ChangeFileSettings): encrypted
   PICCData under key 1, SDMMAC under key 2 over an empty input, writes for key 0 only;
5. optionally enable Random ID (SetConfiguration; irreversible);
6. change key 0 last: until then the factory key still opens the card, so a run interrupted
   anywhere before it starts over at step 2, and every step is idempotent;
7. read the card back as a door does and verify the SUN end to end
   (:class:`~.verifier.SunVerifier`).

Which key opens key 0 says where a card stands: the factory key (blank, or stopped before step 6),
the site's key (done: only verified again), neither (a card of another site, or a station
configured with the wrong factory key: :class:`ForeignCard` / :class:`FactoryKeyRefused`).

:func:`reset_to_factory` takes a badge of this site back to the factory keys and settings (the
return of a card); Random ID cannot be undone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from portier_common.ntag424.commands import (
    FREE,
    NDEF_FILE,
    NEVER,
    AccessRights,
    FileSettings,
    Ntag424,
    SdmSettings,
)
from portier_common.ntag424.crypto import UID_SIZE, _check_key
from portier_common.ntag424.errors import SunError
from portier_common.ntag424.message import _DEFAULT_SETTINGS, SunSettings, parse_sun_url
from portier_common.ntag424.session import (
    AuthenticationError,
    CardError,
    CommMode,
    IntegrityError,
    RandomSource,
    Transport,
)
from portier_common.ntag424.verifier import SunTap, SunVerifier

__all__ = [
    "KEY_APP_MASTER",
    "KEY_SDM_FILE_READ",
    "KEY_SDM_META_READ",
    "BadgeLayout",
    "CardKeys",
    "FactoryKeyRefused",
    "ForeignCard",
    "PersonalisationError",
    "Personalised",
    "SiteKeys",
    "VerificationFailed",
    "decode_uri_record",
    "personalise",
    "reset_to_factory",
]

KEY_APP_MASTER = 0
KEY_SDM_META_READ = 1
KEY_SDM_FILE_READ = 2
FACTORY_KEY = bytes(16)

#: NFC Forum URI record prefixes (URI RTD §3.2.2) that a badge URL can use.
_URI_PREFIXES = {0x01: "http://www.", 0x02: "https://www.", 0x03: "http://", 0x04: "https://"}


class PersonalisationError(CardError):
    """The card cannot be made (or unmade) a badge of this site; the message says why."""


class FactoryKeyRefused(PersonalisationError):
    """Key 0 refuses the factory key and the card carries no SUN of any site: the station's
    factory key is wrong (or the card was locked by someone who did not configure SUN)."""


class ForeignCard(PersonalisationError):
    """The card belongs to someone else: another site's keys or SUN."""


class VerificationFailed(PersonalisationError):
    """The card was written but its SUN, read as a door reads it, does not verify."""


@dataclass(frozen=True, repr=False)
class CardKeys:
    """The five application keys of one badge and the version written with them (1-255).

    ``sdm_meta_read`` is the site's (the same on every badge); the others should be per card
    (AN10922 diversification from master keys that stay at the central).
    """

    app_master: bytes
    sdm_meta_read: bytes
    sdm_file_read: bytes
    spare3: bytes
    spare4: bytes
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("app_master", "sdm_meta_read", "sdm_file_read", "spare3", "spare4"):
            if _check_key(f"CardKeys.{name}", getattr(self, name)) == FACTORY_KEY:
                raise ValueError(f"CardKeys.{name}: a badge never keeps the factory key")
        if not 1 <= self.version <= 0xFF:
            raise ValueError("CardKeys.version: expected 1..255 (00h is the factory's)")

    def __repr__(self) -> str:
        return f"CardKeys(version={self.version})"

    def key(self, key_no: int) -> bytes:
        return (self.app_master, self.sdm_meta_read, self.sdm_file_read, self.spare3, self.spare4)[
            key_no
        ]


@dataclass(frozen=True, repr=False)
class SiteKeys:
    """The site's side: its SDM meta-read key and the derivation of a card's keys from its UID.

    ``card_keys(uid)`` must return keys whose ``sdm_meta_read`` is ``meta_read_key``. (The central
    derives them from master keys it keeps; this module never sees the masters.)
    """

    meta_read_key: bytes
    card_keys: Callable[[bytes], CardKeys]

    def for_uid(self, uid: bytes) -> CardKeys:
        keys = self.card_keys(uid)
        if keys.sdm_meta_read != self.meta_read_key:
            raise ValueError(
                "SiteKeys.card_keys: sdm_meta_read differs from the site's meta_read_key"
            )
        return keys

    def verifier(self, settings: SunSettings) -> SunVerifier:
        """The verifier a door of this site uses."""
        return SunVerifier(
            file_read_key=lambda uid: self.for_uid(uid).sdm_file_read,
            meta_read_key=self.meta_read_key,
            settings=settings,
        )

    def __repr__(self) -> str:
        return "SiteKeys(...)"


@dataclass(frozen=True)
class BadgeLayout:
    """The URL a badge carries: ``base_url?<picc>=<PICCData>&<mac>=<SDMMAC>`` (``settings`` names
    the parameters; the doors' ``[ntag424]`` picc_param / mac_param must match)."""

    base_url: str
    settings: SunSettings = _DEFAULT_SETTINGS
    random_id: bool = False

    def __post_init__(self) -> None:
        if self.settings.mac_input_from is not None:
            raise ValueError(
                "BadgeLayout.settings: only an empty MAC input is written (mac_input_from=None)"
            )
        if not self.base_url.isascii() or "#" in self.base_url or "&" in self.base_url:
            raise ValueError(
                "BadgeLayout.base_url: an ASCII URL without a fragment or query parameters"
            )
        if not any(self.base_url.startswith(p) for p in _URI_PREFIXES.values()):
            raise ValueError("BadgeLayout.base_url: expected http:// or https://")
        self.template()

    def url_template(self) -> str:
        separator = "&" if "?" in self.base_url else "?"
        s = self.settings
        return f"{self.base_url}{separator}{s.picc_param}={'0' * 32}&{s.mac_param}={'0' * 16}"

    def template(self) -> tuple[bytes, SdmSettings]:
        """The NDEF file content (NLEN + one URI record) and the SDM settings pointing into it."""
        url = self.url_template()
        code = max(
            (c for c, p in _URI_PREFIXES.items() if url.startswith(p)),
            key=lambda c: len(_URI_PREFIXES[c]),
        )
        rest = url[len(_URI_PREFIXES[code]) :]
        payload = bytes([code]) + rest.encode("ascii")
        if len(payload) > 0xFF:
            raise ValueError("BadgeLayout.base_url: too long for one short NDEF record")
        record = b"\xd1\x01" + bytes([len(payload)]) + b"U" + payload
        content = len(record).to_bytes(2, "big") + record
        if len(content) > 256:
            raise ValueError("BadgeLayout.base_url: too long for the 256-byte NDEF file")
        start = 2 + 4 + 1  # NLEN, record header (D1 01 len 'U'), prefix code
        query = rest.rindex("?") if "?" in rest else 0
        picc = (
            start
            + rest.index(f"{self.settings.picc_param}=", query)
            + len(self.settings.picc_param)
            + 1
        )
        mac = (
            start
            + rest.index(f"&{self.settings.mac_param}=", query)
            + len(self.settings.mac_param)
            + 2
        )
        sdm = SdmSettings(
            meta_read=KEY_SDM_META_READ,
            file_read=KEY_SDM_FILE_READ,
            counter_retrieval=NEVER,
            picc_data_offset=picc,
            mac_input_offset=mac,
            mac_offset=mac,
        )
        return content, sdm

    def file_settings(self) -> FileSettings:
        """The NDEF file's settings on a badge: read free (that is the SUN), the rest key 0."""
        return FileSettings(
            comm_mode=CommMode.PLAIN,
            access=AccessRights(read=FREE, write=0, read_write=0, change=0),
            sdm=self.template()[1],
        )


#: The NDEF file's factory settings (NT4H2421Gx §8.2.2).
FACTORY_NDEF_SETTINGS = FileSettings(
    access=AccessRights(read=FREE, write=FREE, read_write=FREE, change=0)
)


@dataclass(frozen=True)
class Personalised:
    """The outcome: the card's UID, the verified tap, whether the card was found half-done or
    already done, and the steps this run performed."""

    uid: bytes
    tap: SunTap
    resumed: bool
    already_done: bool
    steps: tuple[str, ...] = field(default=())


def decode_uri_record(message: bytes) -> str | None:
    """The URI of an NDEF message made of one short URI record (what a badge holds), else None."""
    if len(message) < 5 or message[0] & 0x17 != 0x11 or message[1] != 1 or message[3:4] != b"U":
        return None
    length = message[2]
    payload = message[4 : 4 + length]
    if len(payload) != length or not payload or payload[0] not in (0, *_URI_PREFIXES):
        return None
    try:
        return _URI_PREFIXES.get(payload[0], "") + payload[1:].decode("ascii")
    except UnicodeDecodeError:
        return None


def _read_as_door(tag: Ntag424) -> str | None:
    try:
        return decode_uri_record(tag.read_ndef_message())
    except CardError:
        return None


class _Run:
    def __init__(
        self, tag: Ntag424, site: SiteKeys, layout: BadgeLayout, factory_key: bytes
    ) -> None:
        self.tag, self.site, self.layout, self.factory_key = tag, site, layout, factory_key
        self.steps: list[str] = []
        self.resumed = False

    def auth(self, key: bytes) -> None:
        self.tag.authenticate(KEY_APP_MASTER, key)

    def change_spare_keys(self, keys: CardKeys) -> None:
        for key_no in range(1, 5):
            new = keys.key(key_no)
            # The version hints at the current value; the card's CRC check proves it.
            done = self.tag.get_key_version(key_no) == keys.version
            olds = (new, self.factory_key) if done else (self.factory_key, new)
            for attempt, old in enumerate(olds):
                try:
                    self.tag.change_key(key_no, new, keys.version, old_key=old)
                    break
                except IntegrityError:
                    self.auth(self.factory_key)  # the error ended the session
                    if attempt == 1:
                        raise ForeignCard(
                            f"key {key_no} holds neither the factory key nor this site's: the card "
                            "was being personalised by someone else"
                        ) from None
            if old == new:
                self.resumed = True
            else:
                self.steps.append(f"key {key_no}")

    def write_ndef(self) -> None:
        content, _ = self.layout.template()
        ndef = NDEF_FILE[0]
        current = self.tag.get_file_settings(ndef)
        mode = CommMode.PLAIN
        if not current.access.grants_write(None):
            mode = current.comm_mode
        if self.tag.read_data(ndef, 0, len(content), mode=mode) == content:
            self.resumed = True
        else:
            self.tag.write_data(ndef, 0, content, mode)
            self.steps.append("NDEF template")
        wanted = self.layout.file_settings()
        if current.sdm == wanted.sdm and current.access == wanted.access:
            self.resumed = True
        else:
            self.tag.change_file_settings(ndef, wanted)
            self.steps.append("SDM settings")

    def verify(self, uid: bytes) -> SunTap:
        url = _read_as_door(self.tag)
        if url is None:
            raise VerificationFailed("the card does not hold a badge URL after writing")
        try:
            tap = self.site.verifier(self.layout.settings).verify(url)
        except SunError as error:
            raise VerificationFailed(f"the card's SUN does not verify: {error}") from None
        if tap.uid != uid:
            raise VerificationFailed("the card's SUN names another UID than GetCardUID")
        self.steps.append("verified")
        return tap


def personalise(
    transport: Transport,
    site: SiteKeys,
    layout: BadgeLayout,
    *,
    factory_key: bytes = FACTORY_KEY,
    uid_hint: bytes | None = None,
    random: RandomSource | None = None,
) -> Personalised:
    """Make the card in the field a badge of ``site``, or finish one a previous run left half-done.

    Args:
        transport: the reader's seam to the card.
        site: the site's keys (the card's are derived from its UID).
        layout: the URL the doors expect.
        factory_key: the key 0 blank cards arrive with (NXP: all zero).
        uid_hint: the UID the reader saw at anticollision, if 7 bytes (used to recognise a card
            of this site whose SUN cannot be read).

    Returns:
        :class:`Personalised`, after the card's SUN verified as a door would verify it.

    Raises:
        FactoryKeyRefused: key 0 is not the factory key, and the card carries no SUN.
        ForeignCard: the card carries another site's SUN or keys.
        VerificationFailed: the card was written but does not verify.
        CardError: another card error; the transport's exception if the card leaves the field.
        Any of these leaves the card in a state the next run recognises.
    """
    factory_key = _check_key("factory_key", factory_key)
    tag = Ntag424(transport, random=random)
    run = _Run(tag, site, layout, factory_key)

    url = _read_as_door(tag)
    known_uid: bytes | None = None
    foreign_sun = False
    if url is not None:
        try:
            parse_sun_url(url, layout.settings)
        except SunError:
            pass  # not a SUN URL: a blank card's leftovers, not a badge
        else:
            try:
                known_uid = site.verifier(layout.settings).verify(url).uid
            except SunError:
                foreign_sun = True
    if known_uid is None and uid_hint is not None and len(uid_hint) == UID_SIZE:
        known_uid = bytes(uid_hint)

    try:
        run.auth(factory_key)
    except AuthenticationError:
        return _finish_done_card(run, known_uid, foreign_sun)

    uid = tag.get_card_uid()
    keys = site.for_uid(uid)
    run.change_spare_keys(keys)
    run.write_ndef()
    if layout.random_id:
        tag.enable_random_id()
        run.steps.append("Random ID")
    tag.change_key(KEY_APP_MASTER, keys.app_master, keys.version)
    run.steps.append("key 0")
    tap = run.verify(uid)
    return Personalised(
        uid=uid, tap=tap, resumed=run.resumed, already_done=False, steps=tuple(run.steps)
    )


def _finish_done_card(run: _Run, known_uid: bytes | None, foreign_sun: bool) -> Personalised:
    """Key 0 refused the factory key: the card is ours and done, someone else's, or the station's
    factory key is wrong."""
    if known_uid is not None:
        keys = run.site.for_uid(known_uid)
        try:
            run.auth(keys.app_master)
        except AuthenticationError:
            pass
        else:
            uid = run.tag.get_card_uid()
            if uid == known_uid:
                if run.layout.random_id:
                    run.tag.enable_random_id()
                    run.steps.append("Random ID")
                tap = run.verify(uid)
                return Personalised(
                    uid=uid, tap=tap, resumed=True, already_done=True, steps=tuple(run.steps)
                )
    if foreign_sun:
        raise ForeignCard(
            "the card carries a SUN this site's keys do not verify and refuses the factory key: "
            "it is a badge of another site (or of this site under other keys); it cannot be issued"
        )
    raise FactoryKeyRefused(
        "the card refuses the factory key configured at this station and carries no badge URL: "
        "check the factory (transport) key of this batch of cards"
    )


def reset_to_factory(
    transport: Transport,
    site: SiteKeys,
    layout: BadgeLayout,
    *,
    factory_key: bytes = FACTORY_KEY,
    uid_hint: bytes | None = None,
    random: RandomSource | None = None,
) -> bytes:
    """Take a badge of this site back to factory keys (version 00h), settings and an empty NDEF
    file, for the return of a card. Random ID stays on. Key 0 goes back first, so a run
    interrupted anywhere is finished by the next one (or by :func:`personalise`).

    Returns:
        The card's UID.

    Raises:
        ForeignCard: the card is not a badge of this site (key 0 refuses its key).
        CardError: as :func:`personalise`.
    """
    factory_key = _check_key("factory_key", factory_key)
    tag = Ntag424(transport, random=random)
    url = _read_as_door(tag)
    uid = uid_hint if uid_hint is not None and len(uid_hint) == UID_SIZE else None
    if url is not None:
        with contextlib.suppress(SunError):
            uid = site.verifier(layout.settings).verify(url).uid
    keys = site.for_uid(uid) if uid is not None else None
    key0 = None
    for candidate in (keys.app_master if keys else None, factory_key):
        if candidate is None:
            continue
        try:
            tag.authenticate(KEY_APP_MASTER, candidate)
            key0 = candidate
            break
        except AuthenticationError:
            continue
    if key0 is None:
        raise ForeignCard(
            "key 0 refuses this site's key and the factory key: not a badge of this site"
        )
    uid = tag.get_card_uid()
    keys = site.for_uid(uid)
    if key0 != factory_key:
        # Key 0 first: from here on the factory key opens the card, so an interrupted reset is
        # finished by the next run whatever state the rest is in.
        tag.change_key(KEY_APP_MASTER, factory_key, 0)
        tag.authenticate(KEY_APP_MASTER, factory_key)
    ndef = NDEF_FILE[0]
    if tag.get_file_settings(ndef) != replace(FACTORY_NDEF_SETTINGS, size=256):
        tag.change_file_settings(ndef, FACTORY_NDEF_SETTINGS)
    tag.write_data(ndef, 0, b"\x00\x00", CommMode.PLAIN)
    for key_no in range(1, 5):
        for old in (keys.key(key_no), factory_key):
            try:
                tag.change_key(key_no, factory_key, 0, old_key=old)
                break
            except IntegrityError:
                tag.authenticate(KEY_APP_MASTER, factory_key)
        else:
            raise ForeignCard(f"key {key_no} holds neither this site's key nor the factory key")
    return uid
