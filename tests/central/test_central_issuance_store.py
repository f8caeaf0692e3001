"""Issue #17, the central's side of badge issuance on SQLite and PostgreSQL: key versions per card
(a re-run gets the same keys, a card written again or a replacement a new version), the keys of an
active badge only against the card's fresh SUN (which revokes it), registration only of a card
whose SUN verifies, and the keys the doors derive."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.errors import BadgeActive, BadRequest, NotConfigured, NotFound
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.issuance import card_keys
from portier_common.ntag424 import DiversifiedKeys, Ntag424Section, SunSettings
from portier_common.ntag424.card import EmulatedNtag424
from portier_common.ntag424.commands import Ntag424
from portier_common.ntag424.personalise import (
    BadgeLayout,
    CardKeys,
    SiteKeys,
    decode_uri_record,
    personalise,
)

pytestmark = pytest.mark.processes  # PostgreSQL: a server the tests start

H = bytes.fromhex
META, FILE_MASTER, CARD_MASTER = H("11" * 16), H("22" * 16), H("33" * 16)
KEYS = Ntag424Section(meta_read_key=META.hex(), file_read_master_key=FILE_MASTER.hex())


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralStore]:
    settings = CentralSettings(
        data_dir=tmp_path / "data", ntag424=KEYS, card_master_key=CARD_MASTER
    )
    if request.param == "sqlite":
        opened = CentralStore(settings)
    else:
        from central.store.postgres import PostgresDatabase

        url = request.getfixturevalue("postgres_server").create_database()
        opened = CentralStore(settings, database=PostgresDatabase(url))
    yield opened
    opened.close()


def write(card: EmulatedNtag424, answer: dict) -> str:
    """What the station does with the central's answer; returns the SUN read back."""
    keys = CardKeys(version=answer["key_version"], **{k: H(v) for k, v in answer["keys"].items()})
    personalise(
        card,
        SiteKeys(meta_read_key=keys.sdm_meta_read, card_keys=lambda _: keys),
        BadgeLayout("https://badge.example/b", SunSettings()),
    )
    card.power_cycle()
    url = decode_uri_record(Ntag424(card).read_ndef_message())
    assert url is not None
    return url


def blank(seed: int) -> EmulatedNtag424:
    return EmulatedNtag424(random=random.Random(seed).randbytes)


def test_keys_are_what_the_doors_derive_and_differ_per_version() -> None:
    uid = H("04112233445566")
    one, two = (card_keys(CARD_MASTER, META, FILE_MASTER, uid, v) for v in (1, 2))
    assert one["sdm_file_read"] == DiversifiedKeys(FILE_MASTER)(uid) == two["sdm_file_read"]
    assert one["sdm_meta_read"] == META
    assert len({one["app_master"], two["app_master"], one["spare3"], one["spare4"]}) == 4


def test_issue_register_and_issue_again(store: CentralStore) -> None:
    card = blank(1)
    uid = card.uid.hex()
    first = store.badge_card_keys(uid, {})
    assert first["key_version"] == 1 and first["revoked"] == []
    assert store.badge_card_keys(uid, {}) == first  # a re-run: the same keys
    url = write(card, first)
    with pytest.raises(NotFound):
        store.register_issued_badge(uid, {"key_version": 2, "sun_url": url, "holder": "A"})
    body = {"key_version": 1, "sun_url": url, "holder": "Ann", "doors": ["lobby"]}
    badge = store.register_issued_badge(uid, body)
    assert (badge["uid"], badge["kind"], badge["key_version"]) == (uid, "ntag424", 1)
    assert store.register_issued_badge(uid, body)["holder"] == "Ann"  # a re-run
    with pytest.raises(BadgeActive):
        store.badge_card_keys(uid, {"key_version": 1})
    with pytest.raises(BadRequest, match="does not verify"):
        store.badge_card_keys(uid, {"key_version": 1, "sun_url": url.replace("cmac=", "cmac=0")})
    # The card at the desk (a fresh SUN): revoked in the same call, the keys handed out.
    card.power_cycle()
    fresh = decode_uri_record(Ntag424(card).read_ndef_message())
    again = store.badge_card_keys(uid, {"key_version": 1, "sun_url": fresh})
    assert (again["key_version"], again["revoked"]) == (1, [uid])
    assert again["keys"] == first["keys"]
    # Blank again (returned): the next issuance is a new key version.
    assert store.badge_card_keys(uid, {})["key_version"] == 2
    with pytest.raises(NotFound, match="never issued"):
        store.badge_card_keys(uid, {"key_version": 3})


def test_a_replacement_revokes_the_lost_card_and_gets_a_higher_version(
    store: CentralStore,
) -> None:
    lost, new = blank(2), blank(3)
    answer = store.badge_card_keys(lost.uid.hex(), {})
    store.register_issued_badge(
        lost.uid.hex(),
        {"key_version": 1, "sun_url": write(lost, answer), "holder": "L", "doors": ["x"]},
    )
    replaced = store.badge_card_keys(new.uid.hex(), {"replaces": lost.uid.hex()})
    assert (replaced["key_version"], replaced["revoked"]) == (2, [lost.uid.hex()])
    with pytest.raises(NotFound):
        store.badge_card_keys(new.uid.hex(), {"replaces": "04000000000099"})


def test_nothing_is_written_when_a_call_fails(store: CentralStore) -> None:
    before = store.head_cursor()
    with pytest.raises(NotFound):
        store.badge_card_keys("04aabbccddeeff", {"key_version": 4})
    with pytest.raises(BadRequest):
        store.badge_card_keys("04aabbcc", {})
    assert store.head_cursor() == before
    assert store.badge_card_keys("04aabbccddeeff", {})["key_version"] == 1


def test_without_master_keys_nothing_is_issued(tmp_path: Path) -> None:
    settings = CentralSettings(data_dir=tmp_path, ntag424=KEYS)
    with CentralStore(settings) as plain, pytest.raises(NotConfigured):
        plain.badge_card_keys("04112233445566", {})
