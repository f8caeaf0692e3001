"""Issue #12, one badge-UID type: the same badge, however it is written, gets one answer
everywhere: the central registers it (or refuses it), the agent's cache stores and matches it
(or refuses it), a guard logs in with it (or is refused as ``bad_uid``).

Before :mod:`portier_common.uid` there were three normalisers with three rules, and these
tests failed on that code: the central took a no-break space or a tab inside a byte as a
separator where the agent refused the same text, and the agent's cache stored guard badges
of 11 bytes (any of 1 to 32) that the central would never register and no guard could log in
with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.errors import BadRequest
from central.settings import CentralSettings
from central.store import CentralStore
from edge_agent.guards import GuardDenied
from edge_agent.policy import Credential
from edge_agent.store import Badge, Delta
from edge_agent.sync.downlink import convert_page
from portier_common.pins import hash_pin
from portier_common.uid import UID_LENGTHS, BadgeUid, BadgeUidError, hex_bytes
from tests.edge_agent.test_agent import GUARD_PIN, GUARD_UID, base_delta, rigs

#: Spellings of GUARD_UID (04C0FFEE000001) that are the badge.
SAME = [
    "04C0FFEE000001",
    "04c0ffee000001",
    "04:C0:FF:EE:00:00:01",
    "04-c0-ff-ee-00-00-01",
    "04 C0 FF EE 00 00 01",
    "04:c0-FF ee:00-00 01",
    " 04C0FFEE000001\n",
    ":04C0FFEE000001",
    "0\t4C0FFEE000001",
]
#: Texts that are no badge UID: refused everywhere, the value named.
NOT_A_UID = [
    "",
    "   ",
    "0x04C0FFEE000001",
    "04C0FFEE00000",  # odd number of digits
    "04C0FFEE0000",  # 6 bytes
    "04C0FFEE00000100",  # 8 bytes
    "04C0FFEE000001" + "00" * 4,  # 11 bytes
    "04C0FFEE00000G",
    "04\u00a0C0\u00a0FF\u00a0EE\u00a0000001",  # no-break spaces (pasted from a web page)
    "\uff10\uff14C0FFEE000001",  # full-width digits
    "04.C0.FF.EE.00.00.01",
    "04C0FFEE000001" * 10,
]
BODY = {"holder": "Gail Guard", "doors": ["front"], "kind": "uid"}


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralStore]:
    with CentralStore(CentralSettings(data_dir=tmp_path / "central")) as store:
        yield store


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Any]:
    with rigs(tmp_path) as build:
        yield build(guard={"console": True, "accept_uid_login": True})


def central_answer(central: CentralStore, text: str) -> str | None:
    try:
        return str(central.put_badge({**BODY, "uid": text})["uid"]).upper()
    except BadRequest:
        return None


def cache_answer(rig: Any, text: str) -> str | None:
    try:
        badge = rig.store.cache.badge(text)
    except ValueError:
        return None
    assert badge is not None, f"{text!r} is a UID but the cache does not match the badge"
    return badge.uid.hex().upper()


def guard_answer(rig: Any, text: str) -> str | None:
    try:
        return rig.agent.guard_login(text, GUARD_PIN).guard_id and GUARD_UID
    except GuardDenied as denied:
        assert (denied.code, denied.detail) == ("bad_request", "bad_uid"), denied
        return None


@pytest.mark.parametrize("text", SAME + NOT_A_UID)
def test_one_answer_everywhere(central, rig, text) -> None:
    answers = {
        "central": central_answer(central, text),
        "cache": cache_answer(rig, text),
        "guard": guard_answer(rig, text),
    }
    expected = GUARD_UID if text in SAME else None
    assert answers == dict.fromkeys(answers, expected)


def test_registered_at_the_central_in_one_spelling_matched_at_the_door_in_others(rig) -> None:
    """The whole way: the central registers a guard badge written with colons, the door's
    cache gets it through a delta, matches it written with dashes, and the guard logs in
    with it written in lower case with spaces."""
    with CentralStore(CentralSettings(data_dir=rig.config.paths.state_dir / "central")) as c:
        c.put_badge(
            {
                **BODY,
                "uid": "04:C0:FF:EE:00:00:B2",
                "doors": [rig.config.door.id],
                "role": "guard",
                "guard_id": "gail-b",
                "pin_hash": hash_pin(GUARD_PIN, n=2**10),
            }
        )
        page = convert_page(c.deltas(c.settings.site, None, guard_console=True), rig.config.door.id)
    rig.store.cache.apply_delta(page.delta)
    assert rig.store.cache.badge("04-c0-ff-ee-00-00-b2").holder == "Gail Guard"
    assert rig.agent.guard_login("04 c0 ff ee 00 00 b2", GUARD_PIN).guard_id == "gail-b"


@pytest.mark.parametrize("text", NOT_A_UID)
def test_refusals_name_the_value(text) -> None:
    with pytest.raises(BadgeUidError) as refused:
        BadgeUid.parse(text)
    assert str(refused.value).startswith("uid: ")
    assert repr(text)[:20] in str(refused.value)


def test_the_cache_stores_no_badge_the_central_refuses(central) -> None:
    """An 11-byte guard badge: the central refuses it, so does the cache (it stored it)."""
    uid = "04C0FFEE000001" + "00" * 4
    data = next(b for b in base_delta().badges if b.uid.hex().upper() == GUARD_UID).data
    assert central_answer(central, uid) is None
    with pytest.raises(ValueError, match=uid):
        Delta(cursor="c-2", badges=[Badge(uid, "uid", "Gail Guard", data=data)])


def test_a_read_of_another_length_is_an_unknown_badge(rig) -> None:
    """A reader may read 8 bytes (a FeliCa IDm): no badge, refused as unknown, no error."""
    decision = rig.agent.present(Credential.badge(bytes.fromhex("0123456789ABCDEF")))
    assert decision["granted"] is False and decision["reason"] == "unknown_badge"


def test_the_local_api_reads_the_same_text() -> None:
    """The simulated reader (POST /v1/present) takes a UID's text like everything else."""
    assert {hex_bytes(text) for text in SAME} == {bytes.fromhex(GUARD_UID)}


spelling = st.sampled_from(["", ":", "-", " "])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(min_size=1, max_size=12),
    upper=st.booleans(),
    sep=spelling,
)
def test_any_spelling_of_any_bytes(raw: bytes, upper: bool, sep: str) -> None:
    digits = raw.hex().upper() if upper else raw.hex()
    text = sep.join(digits[i : i + 2] for i in range(0, len(digits), 2))
    if len(raw) in UID_LENGTHS:
        uid = BadgeUid.parse(text)
        assert uid == BadgeUid.parse(raw) == BadgeUid.parse(uid.hex_upper())
        assert (uid.raw, uid.hex(), uid.hex_upper()) == (raw, raw.hex(), raw.hex().upper())
    else:
        for value in (text, raw):
            with pytest.raises(BadgeUidError, match="not a badge UID"):
                BadgeUid.parse(value)
    assert hex_bytes(text) == raw


@given(text=st.text(max_size=40))
def test_parse_never_fails_otherwise(text: str) -> None:
    """Any text is a UID or a BadgeUidError (a ValueError): never another exception."""
    try:
        uid = BadgeUid.parse(text)
    except BadgeUidError:
        return
    assert len(uid.raw) in UID_LENGTHS
