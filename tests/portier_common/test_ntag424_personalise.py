"""Personalising an emulated NTAG 424 DNA into a badge the doors accept, and every way it can go
wrong: wrong factory key, a card taken away at each APDU, a card of another site, a return."""

from __future__ import annotations

import random

import pytest

from portier_common.ntag424 import Ntag424Section, diversify_aes128
from portier_common.ntag424.card import EmulatedNtag424
from portier_common.ntag424.commands import NDEF_FILE, Ntag424
from portier_common.ntag424.personalise import (
    BadgeLayout,
    CardKeys,
    FactoryKeyRefused,
    ForeignCard,
    SiteKeys,
    decode_uri_record,
    personalise,
    reset_to_factory,
)
from portier_common.ntag424.session import Transport

H = bytes.fromhex
LAYOUT = BadgeLayout("https://badge.example/s")


def make_site(seed: int) -> tuple[SiteKeys, Ntag424Section]:
    """A site's keys as the central will hold them, and the matching door configuration."""
    rng = random.Random(seed)
    meta, app_master, file_master = rng.randbytes(16), rng.randbytes(16), rng.randbytes(16)

    def card_keys(uid: bytes) -> CardKeys:
        return CardKeys(
            app_master=diversify_aes128(app_master, uid, system_identifier=b"app"),
            sdm_meta_read=meta,
            # What the doors' DiversifiedKeys(file_read_master_key) derives.
            sdm_file_read=diversify_aes128(file_master, uid),
            spare3=diversify_aes128(app_master, uid, system_identifier=b"k3"),
            spare4=diversify_aes128(app_master, uid, system_identifier=b"k4"),
        )

    door = Ntag424Section(meta_read_key=meta.hex(), file_read_master_key=file_master.hex())
    return SiteKeys(meta_read_key=meta, card_keys=card_keys), door


SITE, DOOR = make_site(1)
OTHER_SITE, OTHER_DOOR = make_site(2)


def blank(seed: int = 3) -> EmulatedNtag424:
    return EmulatedNtag424(random=random.Random(seed).randbytes)


class CardRemovedError(OSError):
    pass


class Removed:
    """A reader from which the card is pulled after ``limit`` APDUs."""

    def __init__(self, card: EmulatedNtag424, limit: int) -> None:
        self.card, self.limit, self.count = card, limit, 0

    def transmit(self, apdu: bytes) -> bytes:
        if self.count >= self.limit:
            self.card.power_cycle()
            raise CardRemovedError("card left the field")
        self.count += 1
        return self.card.transmit(apdu)


class Counting:
    def __init__(self, card: EmulatedNtag424) -> None:
        self.card, self.count = card, 0

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        return self.card.transmit(apdu)


def tap(card: EmulatedNtag424, transport: Transport | None = None) -> str:
    """What a door's reader gets: the NDEF URL, read through ISO commands as nfcpy does."""
    message = Ntag424(transport or card).read_ndef_message()
    url = decode_uri_record(message)
    assert url is not None
    return url


def door_accepts(card: EmulatedNtag424, door: Ntag424Section = DOOR) -> int:
    verifier = door.verifier()
    assert verifier is not None
    result = verifier.verify(tap(card))
    assert result.uid == card.uid
    return result.counter


def test_factory_card_becomes_a_badge_the_doors_accept() -> None:
    card = blank()
    done = personalise(card, SITE, LAYOUT)
    assert done.uid == card.uid and not done.resumed and not done.already_done
    assert done.steps == (
        "key 1", "key 2", "key 3", "key 4", "NDEF template", "SDM settings", "key 0", "verified",
    )  # fmt: skip
    keys = SITE.for_uid(card.uid)
    assert card.keys == [keys.key(k) for k in range(5)]
    assert card.key_versions == [1] * 5
    assert tap(card).startswith("https://badge.example/s?picc_data=")
    first = door_accepts(card)
    assert door_accepts(card) == first + 1  # a fresh counter on every tap
    # The NDEF file can no longer be rewritten without key 0.
    tag = Ntag424(card)
    tag.select_application()
    settings = tag.get_file_settings(NDEF_FILE[0])
    assert not settings.access.grants_write(None) and settings.sdm is not None


def test_random_id_and_a_second_run_on_a_finished_card() -> None:
    card = blank()
    done = personalise(card, SITE, BadgeLayout("https://badge.example/s", random_id=True))
    assert card.random_id and "Random ID" in done.steps
    assert card.anticollision_uid() != card.uid
    again = personalise(card, SITE, LAYOUT)
    assert again.already_done and again.uid == card.uid and again.steps == ("verified",)
    door_accepts(card)


def test_wrong_factory_key_is_a_clear_error_and_leaves_the_card_blank() -> None:
    card = blank()
    with pytest.raises(FactoryKeyRefused, match="factory"):
        personalise(card, SITE, LAYOUT, factory_key=H("AA" * 16))
    assert card.keys == [bytes(16)] * 5 and card.files[2].settings.sdm is None
    personalise(card, SITE, LAYOUT)  # the right key still works
    door_accepts(card)


def test_card_of_another_site_is_refused_and_left_alone() -> None:
    card = blank()
    personalise(card, OTHER_SITE, LAYOUT)
    before = list(card.keys)
    with pytest.raises(ForeignCard, match="another site"):
        personalise(card, SITE, LAYOUT, uid_hint=card.uid)
    assert card.keys == before
    door_accepts(card, OTHER_DOOR)
    with pytest.raises(ForeignCard):
        reset_to_factory(card, SITE, LAYOUT)


def test_a_card_removed_after_any_apdu_is_finished_by_the_next_run() -> None:
    wire = Counting(blank())
    personalise(wire, SITE, LAYOUT)
    total = wire.count
    assert total > 20
    outcomes = set()
    for limit in range(total):
        card = blank()
        with pytest.raises(CardRemovedError):
            personalise(Removed(card, limit), SITE, LAYOUT)
        done = personalise(card, SITE, LAYOUT)
        outcomes.add((done.resumed, done.already_done))
        assert done.uid == card.uid, limit
        assert card.keys == [SITE.for_uid(card.uid).key(k) for k in range(5)], limit
        door_accepts(card)
    # Some runs started from scratch, some resumed a half-done card, some found it done.
    assert outcomes == {(False, False), (True, False), (True, True)}


def test_return_resets_to_factory_and_the_card_can_be_issued_again() -> None:
    card = blank()
    personalise(card, SITE, BadgeLayout("https://badge.example/s", random_id=True))
    uid = reset_to_factory(card, SITE, LAYOUT)
    assert uid == card.uid
    assert card.keys == [bytes(16)] * 5 and card.key_versions == [0] * 5
    assert card.files[2].settings.sdm is None and card.files[2].data[:2] == b"\x00\x00"
    assert card.random_id  # irreversible
    personalise(card, SITE, LAYOUT)
    door_accepts(card)


def test_a_return_interrupted_anywhere_is_finished_by_the_next_run() -> None:
    def issued() -> EmulatedNtag424:
        card = blank()
        personalise(card, SITE, LAYOUT)
        return card

    card = issued()
    wire = Counting(card)
    reset_to_factory(wire, SITE, LAYOUT)
    for limit in range(wire.count):
        card = issued()
        with pytest.raises(CardRemovedError):
            reset_to_factory(Removed(card, limit), SITE, LAYOUT)
        reset_to_factory(card, SITE, LAYOUT, uid_hint=card.uid)
        assert card.keys == [bytes(16)] * 5, limit


def test_layout_and_keys_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="base_url"):
        BadgeLayout("ftp://x/")
    with pytest.raises(ValueError, match="base_url"):
        BadgeLayout("https://x/" + "a" * 300)
    with pytest.raises(ValueError, match="factory key"):
        CardKeys(bytes(16), H("11" * 16), H("22" * 16), H("33" * 16), H("44" * 16))
    keys = CardKeys(H("01" * 16), H("11" * 16), H("22" * 16), H("33" * 16), H("44" * 16))
    assert "01010101" not in repr(keys) and "1111" not in repr(SITE)
    content, sdm = LAYOUT.template()
    url = decode_uri_record(content[2:])
    assert url == LAYOUT.url_template()
    assert content[sdm.picc_data_offset : sdm.picc_data_offset + 32] == b"0" * 32  # type: ignore[operator]
    assert content[sdm.mac_offset : sdm.mac_offset + 16] == b"0" * 16  # type: ignore[operator]


def test_a_card_half_personalised_by_someone_else_is_refused() -> None:
    card = blank()
    card.keys[1], card.key_versions[1] = H("5A" * 16), 1  # key 0 still factory, key 1 a stranger's
    with pytest.raises(ForeignCard, match="key 1 holds neither"):
        personalise(card, SITE, LAYOUT)
    assert card.keys[0] == bytes(16) and card.keys[2] == bytes(16)
