"""Issue, return and revoke NTAG 424 DNA badges at the Pass Office desk (docs/badges.md).

Issue: read the card's UID → ask the central for the card's keys (it derives them; its master
keys never leave it) → personalise the card → read it back as a door does → register the badge
at the central, which verifies that SUN message itself. Nothing is registered unless the card
verified. Every step can be run again: a card taken away half-way, or a central that did not
answer at the end, is finished by running the same command again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from portier_common.ntag424 import SunError, SunSettings, UnknownBadge
from portier_common.ntag424.commands import Ntag424
from portier_common.ntag424.personalise import (
    BadgeLayout,
    CardKeys,
    FactoryKeyRefused,
    ForeignCard,
    PersonalisationError,
    SiteKeys,
    decode_uri_record,
    personalise,
    reset_to_factory,
)
from portier_common.ntag424.session import AuthenticationError, CardError

from ..admin import CentralAdmin, CentralUnreachable
from ..errors import BadgeActive, BadgeRevoked, BadRequest, CentralError, NotFound

__all__ = [
    "DEFAULT_BADGE_URL",
    "EmulatedReader",
    "IssueRequest",
    "Reader",
    "StationError",
    "issue_badge",
    "return_badge",
]

#: The URL written on badges when the station is not told another (doors read only its query).
DEFAULT_BADGE_URL = "https://badge.portier.invalid/b"


class StationError(Exception):
    """Issuance stopped; the message says why and what to do, in plain words."""


class Reader(Protocol):
    """A desk reader with a card on it: APDUs, and the UID seen at anticollision."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def uid(self) -> bytes: ...


class EmulatedReader:
    """A reader holding an emulated card (``EmulatedNtag424``): ``--demo`` and the tests."""

    def __init__(self, card: Any) -> None:
        self.card = card

    def transmit(self, apdu: bytes) -> bytes:
        response: bytes = self.card.transmit(apdu)
        return response

    def uid(self) -> bytes:
        uid: bytes = self.card.anticollision_uid()
        return uid


@dataclass(frozen=True)
class IssueRequest:
    """Who the badge is for and where it opens (the ``BadgeCreate`` fields of the badge)."""

    holder: str
    doors: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    not_before: int | None = None
    not_after: int | None = None
    guard: dict[str, Any] = field(default_factory=dict)
    replaces: str | None = None


def _card_uid(admin: CentralAdmin, reader: Reader, factory_key: bytes) -> bytes:
    """The card's real UID: the one the reader saw, or with Random ID on (a 4-byte random UID
    at anticollision) GetCardUID under the factory key (a card not finished yet), else the UID
    in its SUN, which the central decrypts (a badge of this site)."""
    uid = reader.uid()
    if len(uid) == 7:
        return uid
    if len(uid) != 4 or uid[0] != 0x08:
        raise StationError(
            f"the card shows a {len(uid)}-byte UID ({uid.hex().upper()}): not an NTAG 424 DNA"
        )
    tag = Ntag424(reader)
    try:
        tag.select_application()
        tag.authenticate(0, factory_key)
        return tag.get_card_uid()
    except AuthenticationError:
        pass  # key 0 is no longer the factory's: a finished badge, ours or not
    except (CardError, OSError) as exc:
        raise StationError(f"the card did not answer as an NTAG 424 DNA ({exc})") from None
    try:
        url = decode_uri_record(tag.read_ndef_message())
    except (CardError, OSError):
        url = None
    if url is None:
        raise StationError(
            "the card hides its UID (Random ID), refuses the factory key and carries no badge "
            "URL: a card of another system, or the wrong factory key"
        )
    try:
        return bytes.fromhex(admin.identify_card(url))
    except BadRequest:
        raise StationError(
            "the card hides its UID (Random ID) and its SUN is not of this site: it belongs to "
            "another site. Use a blank card"
        ) from None


def _held_version_and_url(reader: Reader) -> tuple[int, str | None]:
    tag = Ntag424(reader)
    try:
        url = decode_uri_record(tag.read_ndef_message())
    except CardError:
        url = None
    try:
        tag.select_application()
        held = tag.get_key_version(0)
    except CardError as exc:
        raise StationError(f"this card is not an NTAG 424 DNA ({exc})") from None
    return held, url


def _site(
    answer: dict[str, Any],
    uid: bytes,
    base_url: str = DEFAULT_BADGE_URL,
    random_id: bool = False,
) -> tuple[SiteKeys, BadgeLayout, SunSettings]:
    keys = {name: bytes.fromhex(value) for name, value in answer["keys"].items()}
    card = CardKeys(version=int(answer["key_version"]), **keys)

    def card_keys(asked: bytes) -> CardKeys:
        if asked != uid:  # another card's SUN: the central gave this card's keys only
            raise UnknownBadge(f"no keys for card {asked.hex().upper()} at this station")
        return card

    settings = SunSettings(picc_param=answer["picc_param"], mac_param=answer["mac_param"])
    site = SiteKeys(meta_read_key=keys["sdm_meta_read"], card_keys=card_keys)
    return site, BadgeLayout(base_url, settings, random_id=random_id), settings


def _ask_keys(admin: CentralAdmin, uid: bytes, **fields: Any) -> dict[str, Any]:
    try:
        return admin.badge_card_keys(uid.hex(), **fields)
    except BadgeActive:
        raise StationError(
            f"card {uid.hex().upper()} is already an active badge. To give it to someone else, "
            "return it first (portier-badge reset); if it was lost and found, it stays revoked"
        ) from None
    except BadgeRevoked:
        raise StationError(
            f"card {uid.hex().upper()} is a revoked badge (reported lost): it stays revoked and "
            "nothing was written or registered. To use this card again, return it first "
            "(portier-badge reset): it is then issued under new keys"
        ) from None
    except NotFound as exc:
        raise StationError(
            f"card {uid.hex().upper()} refused: it carries keys this site never issued, so it "
            f"belongs to another site. Use a blank card. ({exc.detail})"
        ) from None


def _card_step(what: str, run: Callable[[], Any]) -> Any:
    try:
        return run()
    except FactoryKeyRefused:
        raise StationError(
            "the card refuses the factory key this station uses: check the transport key of "
            "this batch of cards (--factory-key-file). Nothing was written or registered"
        ) from None
    except ForeignCard as exc:
        raise StationError(
            f"this card belongs to another site and cannot be {what} here ({exc}). Nothing was "
            "registered"
        ) from None
    except PersonalisationError as exc:
        raise StationError(f"the card could not be {what}: {exc}. Nothing was registered") from None
    except (CardError, SunError, OSError) as exc:
        raise StationError(
            f"the card stopped answering half-way ({exc}). Nothing was registered. Put the same "
            "card back on the reader and run the same command again: it finishes the card"
        ) from None


def issue_badge(
    admin: CentralAdmin,
    reader: Reader,
    request: IssueRequest,
    *,
    factory_key: bytes = bytes(16),
    base_url: str = DEFAULT_BADGE_URL,
    random_id: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Make the card on *reader* a badge for *request* and register it; returns the ``Badge``.

    Raises:
        StationError: what went wrong and what to do (nothing is registered unless the card's
            SUN verified, at the station and again at the central).
    """
    try:
        uid = _card_uid(admin, reader, factory_key)
        held, _ = _card_step("read", lambda: _held_version_and_url(reader))
        say(f"card {uid.hex().upper()} on the reader; asking the central for its keys")
        answer = _ask_keys(admin, uid, key_version=held or None, replaces=request.replaces)
        for old in answer.get("revoked", []):
            say(f"badge {old.upper()} revoked")
        site, layout, settings = _site(answer, uid, base_url, random_id)
        say(f"writing the card (key version {answer['key_version']})")
        done = _card_step(
            "issued",
            lambda: personalise(reader, site, layout, factory_key=factory_key, uid_hint=uid),
        )
        if done.uid != uid:
            raise StationError("the card changed during issuance: put one card on the reader")
        # Read back as a door: a fresh SUN message, verified here and then by the central.
        url = _card_step(
            "read back", lambda: decode_uri_record(Ntag424(reader).read_ndef_message())
        )
        if url is None:
            raise StationError("the card holds no badge URL after writing: run the command again")
        try:
            site.verifier(settings).verify(url)
        except SunError as exc:
            raise StationError(f"the card does not verify as a door reads it ({exc})") from None
        say("the card verifies as a door reads it; registering the badge")
        return admin.issue_badge(
            uid.hex(),
            key_version=answer["key_version"],
            sun_url=url,
            holder=request.holder,
            doors=list(request.doors),
            zones=list(request.zones),
            not_before=request.not_before,
            not_after=request.not_after,
            **request.guard,
        )
    except CentralUnreachable as exc:
        raise StationError(
            f"the central did not answer ({exc}). If the card was written, it is not registered "
            "yet: run the same command again to finish"
        ) from None
    except CentralError as exc:
        if isinstance(exc, StationError):  # pragma: no cover - not a CentralError
            raise
        raise StationError(f"the central refused: {exc.detail}") from None


def return_badge(
    admin: CentralAdmin,
    reader: Reader,
    *,
    factory_key: bytes = bytes(16),
    say: Callable[[str], None] = lambda _: None,
) -> str:
    """A returned badge: the central revokes it (the card's fresh SUN proves it is here) and
    the card goes back to factory keys and an empty NDEF file. Returns the card's UID (hex)."""
    try:
        uid = _card_uid(admin, reader, factory_key)
        held, url = _card_step("read", lambda: _held_version_and_url(reader))
        answer = _ask_keys(admin, uid, key_version=held or None, sun_url=url if held else None)
        for old in answer.get("revoked", []):
            say(f"badge {old.upper()} revoked")
        site, layout, _ = _site(answer, uid)
        _card_step(
            "reset",
            lambda: reset_to_factory(reader, site, layout, factory_key=factory_key, uid_hint=uid),
        )
        return uid.hex()
    except CentralUnreachable as exc:
        raise StationError(f"the central did not answer ({exc}): nothing changed") from None
    except CentralError as exc:
        raise StationError(f"the central refused: {exc.detail}") from None
