"""A guard's reprint prints the pass the visitor got at check-in (issue #15), with a new id.

A real agent on the simulator (tests.edge_agent.test_agent's rigs): a visitor checks in
with their QR invitation (a contractor: an orange band, two doors, a zone) and a consented
photo; the kiosk renders the first pass from the invitation's claims, a guard's reprint
from the agent's ``POST /v1/guard/passes`` answer. Both images are compared pixel for pixel
under the same pass id: only the id may differ. The agent keeps what the pass printed
through a restart (its journal), and a guard's check-in (no QR) prints from the cache.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from edge_agent.policy import Credential
from edge_agent.store import Invitation
from kiosk.config import PassSection
from kiosk.passes import pass_from_claims, render_image
from kiosk.passes.printing import reprint_from_answer
from portier_common.passes import PASS_REF_CHARS, normalise_pass_ref, pass_ref
from portier_common.settings import build
from portier_common.tokens import read_claims_unverified
from tests.edge_agent.test_agent import DOOR, NOW, Rig, base_delta, invite, rigs

ZONE = "perimeter"


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    with rigs(tmp_path) as build:
        yield build


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (60, 80), (40, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def _settings() -> PassSection:
    return build(PassSection, {})


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


@pytest.mark.parametrize("layout", ["label62", "cr80"])
def test_the_reprint_is_the_first_pass_again_but_for_its_id(make_rig, tmp_path, layout):
    state = tmp_path / "agent"
    rig = make_rig(state=state, delta=base_delta())
    token = invite(doors=(DOOR, "gate-b"), zones=(ZONE,), extra={"category": "contractor"})
    assert rig.agent.present(Credential.qr(token))["granted"]
    photo = _photo()
    answer = rig.agent.checkin("inv-multi", consent=True, photo=photo)
    first = pass_from_claims(
        read_claims_unverified(token),
        issued_at=NOW,
        pass_id=answer["pass_id"],
        photo_jpeg=photo,
    )
    settings = dataclasses.replace(_settings(), layout=layout)
    assert settings.category("contractor").colour != settings.category("visitor").colour
    rig.stack.close()  # the agent restarts between check-in and reprint: its journal keeps it

    again = make_rig(state=state)
    reissued = again.agent.reissue_pass(again.login(), "inv-multi")
    reprint = reprint_from_answer(reissued)
    assert reprint.pass_id != first.pass_id
    assert (reprint.doors, reprint.zones, reprint.category) == (
        (DOOR, "gate-b"),
        (ZONE,),
        "contractor",
    )
    assert reprint.photo_jpeg == photo
    same_id = dataclasses.replace(reprint, pass_id=first.pass_id)
    assert _same(render_image(first, settings), render_image(same_id, settings))
    # With its own id the reprint differs (the QR code and the reference under it).
    assert not _same(render_image(first, settings), render_image(reprint, settings))


def test_a_guards_checkin_prints_from_the_cache_doors_and_all(make_rig):
    """A guard's check-in (no QR grant): the pass's fields come from the door's cache."""
    delta = base_delta()
    grace = Invitation(
        "inv-grace",
        "Grace Hopper",
        host="Alan Turing",
        not_before=NOW - 600,
        not_after=NOW + 600,
        doors=(DOOR,),
        data={"zones": [ZONE], "site": "hq", "category": "vip"},
    )
    rig = make_rig(delta=dataclasses.replace(delta, invitations=(*delta.invitations, grace)))
    answer = rig.agent.checkin("inv-grace", consent=False, photo=None, token=rig.login())
    reissued = rig.agent.reissue_pass(rig.login(), "inv-grace")
    reprint = reprint_from_answer(reissued)
    assert (reprint.doors, reprint.zones, reprint.category, reprint.site) == (
        (DOOR,),
        (ZONE,),
        "vip",
        "hq",
    )
    assert (reprint.valid_from, reprint.valid_until) == (NOW - 600, NOW + 600)
    assert reissued["pass_id"] != answer["pass_id"]


def test_a_guard_finds_the_visit_by_the_reference_printed_under_the_code(make_rig):
    """The 8 characters under the code are on the on-site list (a guard types them); the
    rest of the id is not, and the whole id never is."""
    rig = make_rig()
    answer = rig.agent.checkin("inv-bob", consent=False, photo=None, token=rig.login())
    ref = pass_ref(answer["pass_id"])
    assert len(ref) == PASS_REF_CHARS == 8
    (entry,) = rig.agent.muster()["visitors"]
    assert entry["pass_ref"] == ref
    assert answer["pass_id"] not in str(rig.agent.muster())
    reissued = rig.agent.reissue_pass(rig.login(), "inv-bob")
    (entry,) = rig.agent.muster()["visitors"]
    assert entry["pass_ref"] == pass_ref(reissued["pass_id"])  # the new pass's reference
    typed = " " + reissued["pass_id"][:4].lower() + " " + reissued["pass_id"][4:8] + " "
    assert normalise_pass_ref(typed) == entry["pass_ref"]
    assert normalise_pass_ref("PV1:" + reissued["pass_id"]) == entry["pass_ref"]
    for bad in ("", "abc", "12345678", "ABCD-EFG", None):
        assert normalise_pass_ref(bad) is None  # type: ignore[arg-type]
