"""Issue #17: the Pass Office's issuance station against a real central process and an emulated
NTAG 424 DNA. The issued card opens a door through the agent (its cache filled from the central's
signed deltas); a wrong factory key, a card taken away half-way, a card of another site, an active
badge, a revoked badge: each a clear message and nothing half-registered."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.errors import BadgeActive, BadRequest, NotConfigured, NotFound, Unauthorized
from central.station.cli import main as badge_main
from central.station.issue import (
    EmulatedReader,
    IssueRequest,
    StationError,
    issue_badge,
    return_badge,
)
from central.station.pcsc import CardLeft, PcscTransport
from central.testing import CentralProcess, enroll_device
from edge_agent.policy import Credential
from edge_agent.sync.downlink import convert_page
from portier_common.ntag424 import diversify_aes128
from portier_common.ntag424.card import EmulatedNtag424
from portier_common.ntag424.commands import Ntag424
from portier_common.ntag424.personalise import (
    BadgeLayout,
    CardKeys,
    SiteKeys,
    decode_uri_record,
    personalise,
)
from tests.edge_agent.test_agent import rigs

pytestmark = pytest.mark.processes

H = bytes.fromhex
META = H("11" * 16)
FILE_MASTER = H("22" * 16)
CARD_MASTER = H("33" * 16)
DOOR = "gate-a"  # the simulator agent's door


@pytest.fixture(scope="module")
def issuing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralProcess]:
    """A central that holds the site's NTAG 424 master keys (``--ntag424-keys``)."""
    where = tmp_path_factory.mktemp("issuing")
    keys = where / "keys.toml"
    keys.write_text(
        f'[ntag424]\nmeta_read_key = "{META.hex()}"\nfile_read_master_key = "{FILE_MASTER.hex()}"\n'
        f'[issuance]\ncard_master_key = "{CARD_MASTER.hex()}"\n'
    )
    keys.chmod(0o600)
    with CentralProcess(where / "data", extra_args=["--ntag424-keys", str(keys)]) as process:
        yield process


@pytest.fixture
def admin(issuing: CentralProcess) -> Iterator[CentralAdmin]:
    with issuing.admin() as client:
        yield client


_seeds = iter(range(100, 10_000))


def blank(**kw: Any) -> EmulatedNtag424:
    return EmulatedNtag424(random=random.Random(next(_seeds)).randbytes, **kw)


def tap(card: EmulatedNtag424) -> str:
    """What a door reads from the card: a fresh SUN URL."""
    card.power_cycle()
    url = decode_uri_record(Ntag424(card).read_ndef_message())
    assert url is not None
    return url


def request(holder: str = "Grace Hopper", **kw: Any) -> IssueRequest:
    return IssueRequest(holder=holder, doors=(DOOR,), **kw)


def registered(issuing: CentralProcess, door: str = DOOR) -> dict[str, Any]:
    """The signed deltas a door of the site gets, as a device polls them (from the start)."""
    _, session = enroll_device(issuing.url, door=door)
    page = session.get(f"{issuing.url}/v1/deltas", timeout=10).json()
    return page


def badges_at_central(issuing: CentralProcess) -> dict[str, dict[str, Any]]:
    return {b["uid"]: b for b in registered(issuing)["badges"]}


class Removed:
    """A reader from which the card is pulled after ``limit`` APDUs."""

    def __init__(self, card: EmulatedNtag424, limit: int) -> None:
        self.card, self.limit, self.count = card, limit, 0

    def uid(self) -> bytes:
        return self.card.anticollision_uid()

    def transmit(self, apdu: bytes) -> bytes:
        if self.count >= self.limit:
            self.card.power_cycle()
            raise CardLeft("the card left the reader")
        self.count += 1
        return self.card.transmit(apdu)


class FakePyscardConnection:
    """Shaped like pyscard's ``CardConnection``: ``transmit(list[int]) -> (data, sw1, sw2)``, the
    PC/SC GET DATA pseudo-APDU answered by the reader."""

    def __init__(self, card: EmulatedNtag424) -> None:
        self.card = card

    def transmit(self, command: list[int]) -> tuple[list[int], int, int]:
        if bytes(command) == b"\xff\xca\x00\x00\x00":
            return list(self.card.anticollision_uid()), 0x90, 0x00
        answer = self.card.transmit(bytes(command))
        return list(answer[:-2]), answer[-2], answer[-1]


# -- issue, then the door ---------------------------------------------------------------------


def test_an_issued_card_opens_the_door_and_a_revoked_one_no_longer(
    issuing: CentralProcess, admin: CentralAdmin, tmp_path: Path
) -> None:
    card = blank()
    reader = PcscTransport(FakePyscardConnection(card))  # the PC/SC code path, on the emulator
    said: list[str] = []
    badge = issue_badge(admin, reader, request(), say=said.append)
    uid = card.uid.hex()
    assert (badge["uid"], badge["holder"], badge["kind"], badge["key_version"]) == (
        uid,
        "Grace Hopper",
        "ntag424",
        1,
    )
    assert any("verifies as a door" in line for line in said)
    # The card holds per-card keys, never the factory's; key 0 was changed last.
    assert bytes(16) not in card.keys and card.key_versions == [1] * 5
    assert badges_at_central(issuing)[uid]["holder"] == "Grace Hopper"
    # The audit chain has both calls, and no key material.
    journal = admin.operator_journal()
    actions = [row["action"] for row in journal]
    assert (
        "POST /admin/badges/{uid}/keys" in actions and "POST /admin/badges/{uid}/issue" in actions
    )
    assert all(META.hex() not in str(row) and "app_master" not in str(row) for row in journal)

    door = {"meta_read_key": META.hex(), "file_read_master_key": FILE_MASTER.hex()}
    with rigs(tmp_path) as build:
        page = convert_page(registered(issuing), DOOR)
        rig = build(delta=page.delta, ntag424={**door, "file_read_key": None})
        result = rig.agent.present(Credential.badge(card.uid, tap(card)))
        assert (result["granted"], result["holder"]) == (True, "Grace Hopper"), result

        assert badge_main(["revoke", "--uid", uid, "--url", issuing.url]) == 0
        page = convert_page(registered(issuing), DOOR)
        rig.store.cache.apply_delta(page.delta, synced_at_ms=None)
        result = rig.agent.present(Credential.badge(card.uid, tap(card)))
        assert (result["granted"], result["reason"]) == (False, "revoked")


def test_the_demo_command_says_done_in_plain_words(
    issuing: CentralProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["issue", "--demo", "--holder", "Ada", "--door", DOOR, "--url", issuing.url]
    assert badge_main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("done: badge ") and "issued to Ada" in out


# -- what goes wrong --------------------------------------------------------------------------


def test_a_wrong_factory_key_is_named_and_nothing_is_registered(
    issuing: CentralProcess, admin: CentralAdmin
) -> None:
    card = blank(keys=[H("5A" * 16)] * 5)
    with pytest.raises(StationError, match="refuses the factory key"):
        issue_badge(admin, EmulatedReader(card), request())
    assert card.uid.hex() not in badges_at_central(issuing)
    assert card.keys == [H("5A" * 16)] * 5


@pytest.fixture(scope="module")
def apdus_per_issue(issuing: CentralProcess) -> int:
    """How many APDUs one whole issuance sends."""
    counting = Removed(blank(), 10_000)
    with issuing.admin() as client:
        issue_badge(client, counting, request("Counted"))
    return counting.count


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.8, 0.95, 0.99])
def test_a_card_taken_away_half_way_is_finished_by_the_next_run(
    issuing: CentralProcess, admin: CentralAdmin, fraction: float, apdus_per_issue: int
) -> None:
    card = blank()
    limit = int(apdus_per_issue * fraction)
    with pytest.raises(StationError, match="run the same command again"):
        issue_badge(admin, Removed(card, limit), request("Half Way"))
    assert card.uid.hex() not in badges_at_central(issuing)  # nothing half-registered
    badge = issue_badge(admin, EmulatedReader(card), request("Half Way"))
    assert (badge["uid"], badge["key_version"]) == (card.uid.hex(), 1)
    assert badges_at_central(issuing)[card.uid.hex()]["holder"] == "Half Way"


def test_a_card_of_another_site_is_refused(issuing: CentralProcess, admin: CentralAdmin) -> None:
    rng = random.Random(7)
    other_meta, other_master = rng.randbytes(16), rng.randbytes(16)

    def other_keys(uid: bytes) -> CardKeys:
        return CardKeys(
            app_master=diversify_aes128(other_master, uid, system_identifier=b"0"),
            sdm_meta_read=other_meta,
            sdm_file_read=diversify_aes128(other_master, uid),
            spare3=diversify_aes128(other_master, uid, system_identifier=b"3"),
            spare4=diversify_aes128(other_master, uid, system_identifier=b"4"),
            version=3,
        )

    card = blank()
    personalise(
        card,
        SiteKeys(meta_read_key=other_meta, card_keys=other_keys),
        BadgeLayout("https://other.example/b"),
    )
    with pytest.raises(StationError, match="another site"):
        issue_badge(admin, EmulatedReader(card), request())
    assert card.uid.hex() not in badges_at_central(issuing)
    # Same with key version 1, one this central hands out too (but never for this card).
    card = blank()
    personalise(
        card,
        SiteKeys(
            meta_read_key=other_meta,
            card_keys=lambda uid: CardKeys(**{**other_keys(uid).__dict__, "version": 1}),
        ),
        BadgeLayout("https://other.example/b"),
    )
    with pytest.raises(StationError, match="another site"):
        issue_badge(admin, EmulatedReader(card), request())
    assert card.uid.hex() not in badges_at_central(issuing)


def test_an_active_badge_is_not_written_again_but_returned_then_reissued(
    issuing: CentralProcess, admin: CentralAdmin
) -> None:
    card = blank()
    issue_badge(admin, EmulatedReader(card), request("First Holder"))
    with pytest.raises(StationError, match="already an active badge"):
        issue_badge(admin, EmulatedReader(card), request("Someone Else"))
    # The station never gets the keys of an active badge without the card: refused.
    with pytest.raises(BadgeActive):
        admin.badge_card_keys(card.uid.hex())
    refused = admin.operator_journal()[-1]  # the refusal is in the audit chain too
    assert (refused["action"], refused["status"]) == ("POST /admin/badges/{uid}/keys", 409)
    # The return: the card's fresh SUN proves it is at the desk; revoked, then factory keys.
    assert return_badge(admin, EmulatedReader(card)) == card.uid.hex()
    assert card.keys == [bytes(16)] * 5 and card.key_versions == [0] * 5
    assert badges_at_central(issuing)[card.uid.hex()]["enabled"] is False
    # Issued again: new keys under a new key version.
    badge = issue_badge(admin, EmulatedReader(card), request("Someone Else"))
    assert (badge["holder"], badge["key_version"]) == ("Someone Else", 2)
    assert badges_at_central(issuing)[card.uid.hex()]["enabled"] is True


def test_a_lost_card_is_revoked_at_once_and_its_replacement_gets_a_new_key_version(
    issuing: CentralProcess, admin: CentralAdmin
) -> None:
    lost, new = blank(), blank()
    issue_badge(admin, EmulatedReader(lost), request("Careless Carl"))
    said: list[str] = []
    badge = issue_badge(
        admin,
        EmulatedReader(new),
        request("Careless Carl", replaces=lost.uid.hex()),
        say=said.append,
    )
    assert badge["key_version"] == 2
    assert f"badge {lost.uid.hex().upper()} revoked" in said
    at_central = badges_at_central(issuing)
    assert at_central[lost.uid.hex()]["enabled"] is False
    assert at_central[new.uid.hex()]["enabled"] is True


def test_the_central_registers_nothing_without_a_verified_card(
    issuing: CentralProcess, admin: CentralAdmin
) -> None:
    card = blank()
    uid = card.uid.hex()
    with pytest.raises(NotFound):  # no keys were handed out for it
        admin.issue_badge(
            uid, key_version=1, sun_url="https://x/b?picc_data=00&cmac=00", holder="X"
        )
    admin.badge_card_keys(uid)
    with pytest.raises(BadRequest, match="does not verify"):
        admin.issue_badge(
            uid,
            key_version=1,
            sun_url=f"https://x/b?picc_data={'00' * 16}&cmac={'00' * 8}",
            holder="X",
            doors=[DOOR],
        )
    # A blank card's SUN cannot be made without writing it: no badge.
    assert uid not in badges_at_central(issuing)


def test_a_central_without_master_keys_issues_nothing(
    central: CentralProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with central.admin() as client, pytest.raises(NotConfigured, match="card_master_key"):
        client.badge_card_keys("04112233445566")
    argv = ["issue", "--demo", "--holder", "Ada", "--door", DOOR, "--url", central.url]
    assert badge_main(argv) == 1
    assert "issues no badges" in capsys.readouterr().err


def test_reset_and_revoke_say_done(
    issuing: CentralProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        badge_main(["reset", "--demo", "--url", issuing.url]) == 0
    )  # a blank card: nothing to undo
    assert capsys.readouterr().out.splitlines()[-1].endswith("can be issued again")
    assert badge_main(["revoke", "--uid", "04000000000042", "--url", issuing.url]) == 1
    assert "no badge 04000000000042" in capsys.readouterr().err


def test_the_pcsc_transport_turns_a_lost_card_into_card_left() -> None:
    class Gone:
        def transmit(self, command: list[int]) -> tuple[list[int], int, int]:
            raise RuntimeError("Card was removed")

    with pytest.raises(CardLeft, match="left the reader"):
        PcscTransport(Gone()).transmit(b"\x00\xa4\x04\x00")


def test_the_factory_key_file_is_private_and_used(
    issuing: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "factory.key"
    key.write_text("00" * 16 + "\n")
    argv = ["issue", "--demo", "--holder", "Ada", "--door", DOOR, "--url", issuing.url]
    key.chmod(0o644)
    with pytest.raises(SystemExit) as exited:
        badge_main([*argv, "--factory-key-file", str(key)])
    assert exited.value.code == 2 and "--factory-key-file" in capsys.readouterr().err
    key.chmod(0o600)
    assert badge_main([*argv, "--factory-key-file", str(key)]) == 0


def test_an_nfcpy_reader_issues_through_the_same_path(admin: CentralAdmin) -> None:
    from central.station.nfcreader import NfcpyTransport

    class FakeType4Tag:  # what the station uses of nfcpy's Type4Tag
        def __init__(self, card: EmulatedNtag424) -> None:
            self.card, self.identifier = card, card.anticollision_uid()

        def transceive(self, data: bytes, timeout: float | None = None) -> bytes:
            return self.card.transmit(data)

    card = blank()
    badge = issue_badge(admin, NfcpyTransport(FakeType4Tag(card)), request("Nfc Nina"))
    assert badge["uid"] == card.uid.hex()


@pytest.mark.parametrize("fraction", [0.7, 0.9, 0.99])
def test_a_random_id_card_is_found_by_its_sun_issued_finished_and_returned(
    issuing: CentralProcess, admin: CentralAdmin, fraction: float, apdus_per_issue: int
) -> None:
    card = blank()
    with pytest.raises(StationError, match="run the same command again"):
        issue_badge(
            admin, Removed(card, int(apdus_per_issue * fraction)), request(), random_id=True
        )
    assert card.uid.hex() not in badges_at_central(issuing)
    badge = issue_badge(admin, EmulatedReader(card), request("Rita Random"), random_id=True)
    assert badge["uid"] == card.uid.hex() and card.random_id
    assert len(EmulatedReader(card).uid()) == 4  # readers no longer see the real UID
    assert admin.identify_card(tap(card)) == card.uid.hex()
    assert return_badge(admin, EmulatedReader(card)) == card.uid.hex()
    assert card.keys == [bytes(16)] * 5


def test_a_random_id_card_of_another_site_is_refused(admin: CentralAdmin) -> None:
    rng = random.Random(11)
    meta, master = rng.randbytes(16), rng.randbytes(16)
    keys = CardKeys(master, meta, rng.randbytes(16), rng.randbytes(16), rng.randbytes(16))
    card = blank()
    personalise(
        card,
        SiteKeys(meta_read_key=meta, card_keys=lambda _: keys),
        BadgeLayout("https://other.example/b", random_id=True),
    )
    with pytest.raises(StationError, match="another site"):
        issue_badge(admin, EmulatedReader(card), request())


def test_a_revoked_badge_re_presented_stays_revoked_until_returned(
    issuing: CentralProcess, admin: CentralAdmin
) -> None:
    """A lost card, revoked, is found and put on the reader to be issued again: a clear
    message, nothing written, nothing registered (re-registering its keys would lift the
    revocation). Even a caller that proves the card is here (its fresh SUN) and gets its
    keys cannot register them again. Returned, it is issued under new keys."""
    from central.errors import BadgeRevoked

    card = blank()
    uid = card.uid.hex()
    issue_badge(admin, EmulatedReader(card), request("Lost Lucy"))
    admin.revoke_badge(uid)
    keys_before = list(card.keys)
    with pytest.raises(StationError, match="revoked badge") as refused:
        issue_badge(admin, EmulatedReader(card), request("Finder Fred"))
    assert "portier-badge reset" in str(refused.value)
    assert card.keys == keys_before  # nothing written
    last = admin.operator_journal()[-1]  # the refusal is on the record
    assert (last["action"], last["status"]) == ("POST /admin/badges/{uid}/keys", 409)
    at_central = badges_at_central(issuing)[uid]
    assert (at_central["holder"], at_central["enabled"]) == ("Lost Lucy", False)
    # The attack: prove the card is here, get its keys, register them again.
    answer = admin.badge_card_keys(uid, key_version=1, sun_url=tap(card))
    assert answer["key_version"] == 1 and answer["revoked"] == []
    with pytest.raises(BadgeRevoked):
        admin.issue_badge(uid, key_version=1, sun_url=tap(card), holder="Finder Fred", doors=[DOOR])
    assert badges_at_central(issuing)[uid]["enabled"] is False
    # The return takes it back to factory keys; issued again, it gets key version 2.
    assert return_badge(admin, EmulatedReader(card)) == uid
    badge = issue_badge(admin, EmulatedReader(card), request("Finder Fred"))
    assert (badge["holder"], badge["key_version"]) == ("Finder Fred", 2)
    assert badges_at_central(issuing)[uid]["enabled"] is True


# -- the operator's login ---------------------------------------------------------------------


@pytest.fixture
def desk_operator(issuing: CentralProcess, admin: CentralAdmin) -> tuple[str, str]:
    """A Pass Office operator with a password of their own (not one to change)."""
    name, first, own = f"desk{next(_seeds)}", "first-password-123", "desk-password-456"
    admin.add_operator(name, "pass_office", first)
    with CentralAdmin(issuing.url) as client:
        client.login(name, first)
        client.change_password(first, own)
    return name, own


def test_login_asks_the_password_keeps_the_session_0600_and_issues_with_it(
    issuing: CentralProcess,
    desk_operator: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, password = desk_operator
    monkeypatch.delenv("PORTIER_CENTRAL_TOKEN", raising=False)
    session = tmp_path / "conf" / "badge-session.json"
    monkeypatch.setenv("PORTIER_BADGE_SESSION", str(session))
    # Not logged in: the command says how to.
    argv = ["issue", "--demo", "--holder", "Ada", "--door", DOOR]
    with pytest.raises(SystemExit) as usage:
        badge_main(argv)
    assert usage.value.code == 2 and "portier-badge login" in capsys.readouterr().err
    # A wrong password: refused, no file.
    monkeypatch.setattr("getpass.getpass", lambda _prompt: "wrong-password-000")
    assert badge_main(["login", "--url", issuing.url, "--name", name]) == 1
    assert "does not know you" in capsys.readouterr().err and not session.exists()
    # The password is asked (getpass), never an argument; the session is kept 0600.
    asked: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or password)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or name)
    assert badge_main(["login", "--url", issuing.url]) == 0
    assert asked == ["Operator name: ", "Password: "]
    assert f"logged in as {name} (pass_office)" in capsys.readouterr().out
    assert session.stat().st_mode & 0o777 == 0o600
    assert session.parent.stat().st_mode & 0o777 == 0o700
    assert password not in session.read_text()
    # Issue with the session alone (no token, no --url): the audit names the operator.
    assert badge_main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("done: badge ")
    with issuing.admin() as officer:
        rows = [r for r in officer.operator_journal() if r["action"].endswith("/issue")]
    assert rows[-1]["operator"] == name
    # A file others may read is refused, not used.
    session.chmod(0o644)
    with pytest.raises(SystemExit):
        badge_main(argv)
    assert "chmod 0600" in capsys.readouterr().err
    session.chmod(0o600)
    # Logout ends the session at the central too: the same session no longer works.
    kept = json.loads(session.read_text())
    assert badge_main(["logout"]) == 0 and not session.exists()
    stale = CentralAdmin(issuing.url, session=(kept["session"], kept["csrf_token"]))
    with stale, pytest.raises(Unauthorized):
        stale.whoami()


def test_a_password_to_change_is_not_kept(
    issuing: CentralProcess,
    admin: CentralAdmin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"new{next(_seeds)}"
    admin.add_operator(name, "pass_office", "set-by-officer-789")
    monkeypatch.setattr("getpass.getpass", lambda _prompt: "set-by-officer-789")
    session = tmp_path / "s.json"
    argv = ["login", "--url", issuing.url, "--name", name, "--session", str(session)]
    assert badge_main(argv) == 1
    assert "change it in the console first" in capsys.readouterr().err
    assert not session.exists()


# -- the card face ----------------------------------------------------------------------------


def _photo_file(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "face.png"
    Image.new("RGB", (300, 400), (0, 160, 60)).save(path)  # a green stand-in for a photo
    return path


def _green_share(image: Any) -> float:
    """The share of the page that is the photo's green."""
    import numpy as np

    rgb = np.asarray(image.convert("RGB").resize((200, 126))).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((g > 120) & (r < 60) & (b < 100)).mean())


def test_the_face_is_a_cr80_page_with_the_band_photo_and_words(tmp_path: Path) -> None:
    from central.station.cardface import (
        BANDS,
        CardFace,
        FacePrintError,
        face_pdf,
        read_photo,
        render_face,
        validity_text,
    )

    photo = read_photo(_photo_file(tmp_path).read_bytes())
    until = int(dt.datetime(2027, 6, 30, 12, tzinfo=dt.UTC).timestamp())
    face = CardFace("Grace Hopper", site="hq", valid_until=until, photo_jpeg=photo)
    image = render_face(face)
    assert image.size == (1011, 638)  # 85.6 x 53.98 mm at 300 dpi
    assert image.getpixel((500, 10)) == (0x0D, 0x47, 0xA1)  # the staff band
    assert 0.1 < _green_share(image) < 0.3  # the photo, about a sixth of the card
    guard = render_face(CardFace("Grace Hopper", role="guard"))
    assert guard.getpixel((500, 10)) == (0x21, 0x21, 0x21) and _green_share(guard) == 0
    assert BANDS["guard"][0] != BANDS[None][0]
    assert validity_text(face, "en", dt.UTC) == "Valid until 30 Jun 2027"
    assert validity_text(face, "fr", dt.UTC) == "Valable jusqu'au 30 juin 2027"
    assert render_face(face, lang="fr").tobytes() != image.tobytes()
    pdf = face_pdf(face)
    ((w, h),) = re.findall(rb"/MediaBox \[ ?0 0 ([0-9.]+) ([0-9.]+) ?\]", pdf)
    assert float(w) == pytest.approx(85.6 / 25.4 * 72, abs=0.5)
    assert float(h) == pytest.approx(53.98 / 25.4 * 72, abs=0.5)
    with pytest.raises(FacePrintError, match="not an image"):
        read_photo(b"not a picture")
    with pytest.raises(ValueError, match="role"):
        CardFace("X", role="janitor")
    with pytest.raises(ValueError, match="holder"):
        CardFace("  ")


@pytest.fixture(scope="module")
def cups() -> Iterator[Any]:
    from tests.support.cups_rig import CupsRig, missing_tools

    missing = missing_tools()
    if missing:
        pytest.fail(f"apt-get install {' '.join(missing)} (tools/dev test installs them)")
    rig = CupsRig()
    try:
        rig.start()
        yield rig
    finally:
        rig.stop()


@pytest.fixture
def card_queue(cups: Any) -> Iterator[str]:
    name = "Cards" + secrets.token_hex(3)
    if os.geteuid() == 0:
        cups.add_pdf_printer(name)
    else:
        cups.lpadmin("-p", name, "-E", "-v", "file:/dev/null")
    yield name
    cups.lpadmin("-x", name)


@pytest.mark.skipif(os.geteuid() != 0, reason="cups-pdf prints only when cupsd runs as root")
def test_issue_prints_the_face_through_cups(
    issuing: CentralProcess,
    cups: Any,
    card_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The badge issued, its face goes to a real cupsd's cups-pdf queue: the PDF it wrote is
    a CR80 page with the photo on it."""
    from PIL import Image

    from tests.support.cups_rig import CUPS_PDF_ANONYMOUS, JOB_USER
    from tests.support.pdf_kit import pdf_to_image

    monkeypatch.setenv("CUPS_USER", JOB_USER)  # cups-pdf's anonymous folder (cups_rig)
    out = tmp_path / "face.pdf"
    argv = [
        "issue", "--demo", "--holder", "Grace Hopper", "--door", DOOR, "--url", issuing.url,
        "--valid-until", "2027-06-30", "--print-queue", card_queue, "--cups-server",
        cups.server, "--photo", str(_photo_file(tmp_path)), "--face-out", str(out),
    ]  # fmt: skip
    assert badge_main(argv) == 0
    said = capsys.readouterr().out
    assert f"card face sent to {card_queue}" in said and "done: badge " in said
    deadline = time.monotonic() + 60
    found: list[Path] = []
    while not found and time.monotonic() < deadline:
        found = [p for p in CUPS_PDF_ANONYMOUS.glob("badge_Grace_Hopper*.pdf") if p.stat().st_size]
        time.sleep(0.3)
    assert found, f"cups-pdf wrote nothing in {CUPS_PDF_ANONYMOUS}"
    time.sleep(0.3)
    try:
        printed = pdf_to_image(found[0], dpi=100)
    finally:
        for path in found:
            path.unlink()
    # cups-pdf's page is A4 and the card is fitted (turned) to it; a card printer's PPD has
    # CR80 media. The card is what is not white, its band at the top, the photo in it.
    from PIL import ImageChops

    box = ImageChops.difference(printed, Image.new("RGB", printed.size, "white")).getbbox()
    assert box is not None
    card = printed.crop(box)
    if card.height > card.width:  # turned a quarter to fit the portrait page
        card = card.rotate(-90, expand=True)
    assert card.width > card.height  # landscape, like the card
    r, _g, b = card.getpixel((card.width // 2, 3))
    assert b > 120 and r < 60  # the staff band's blue
    assert 0.1 < _green_share(card) < 0.35
    assert out.read_bytes().startswith(b"%PDF")


def test_a_card_printer_that_cannot_print_stops_the_issue_before_the_card_is_written(
    issuing: CentralProcess,
    cups: Any,
    card_queue: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = set(badges_at_central(issuing))
    cups.run("cupsdisable", "-r", "out of cards", card_queue)
    argv = [
        "issue", "--demo", "--holder", "Ada", "--door", DOOR, "--url", issuing.url,
        "--print-queue", card_queue, "--cups-server", cups.server,
    ]  # fmt: skip
    assert badge_main(argv) == 1
    assert "cannot print (stopped: out of cards)" in capsys.readouterr().err
    assert set(badges_at_central(issuing)) == before  # nothing issued
    # The face alone, printed again once the printer is back; or written to a file.
    cups.run("cupsenable", card_queue)
    assert badge_main(["face", "--holder", "Ada", "--face-out", "/dev/null"]) == 0
    with pytest.raises(SystemExit):
        badge_main(["face", "--holder", "Ada"])  # neither a queue nor a file
