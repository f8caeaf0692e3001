"""The store's event packs and journal merge on SQLite AND PostgreSQL (issue #14): the
device's key from enrollment, what a pack holds (the event's guests only, the kiosk's
offline bound), serials, refusals, and a merge with the upload's checks, exactly once."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from central.errors import BadRequest, Forbidden, NotConfigured, NotFound
from central.settings import CentralSettings
from central.store import CentralStore
from central.testing import ChainBuilder
from portier_common import eventpack
from portier_common.signing import b64url

pytestmark = pytest.mark.processes

StoreFactory = Callable[[], CentralStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    settings = CentralSettings(data_dir=tmp_path / "data")
    opened: list[CentralStore] = []
    if request.param == "sqlite":

        def make() -> CentralStore:
            opened.append(CentralStore(settings))
            return opened[-1]

    else:
        from central.store.postgres import PostgresDatabase

        url = request.getfixturevalue("postgres_server").create_database()

        def make() -> CentralStore:
            opened.append(CentralStore(settings, database=PostgresDatabase(url)))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


def _enroll(store: CentralStore, device_id: str, key: Any = None, door: str = "hall") -> dict:
    token = store.create_enroll_token(door=door, zones=["expo"])["enroll_token"]
    body: dict[str, Any] = {"enroll_token": token, "device_id": device_id}
    if key is not None:
        body["event_pack_key"] = b64url(eventpack.public_key_bytes(key))
    return store.enroll(body)


def _open(store: CentralStore, enrolled: dict, key: Any, text: str) -> dict[str, Any]:
    delta = enrolled["delta_key"]
    public = base64.urlsafe_b64decode(delta["public_key"] + "==")
    return eventpack.open_pack(
        text.encode(),
        device_id=enrolled["device_id"],
        private_key=key,
        delta_kid=delta["kid"],
        delta_public_key=public,
        now_ms=store.now_ms(),
        last_serial=None,
    )


def test_a_pack_holds_the_events_guests_for_that_device_only(open_store: StoreFactory) -> None:
    store = open_store()
    key = eventpack.generate_key()
    enrolled = _enroll(store, "kiosk-1", key)
    now = store.now_ms() // 1000
    window = {"not_before": now, "expires": now + 7200}
    guest = store.create_invitation({"visitor": "Ana", "doors": ["hall"], **window})
    zoned = store.create_invitation({"visitor": "Zoe", "zones": ["expo"], **window})
    store.create_invitation({"visitor": "Bob", "doors": ["dock"], **window})  # another door
    later = {"not_before": now + 86400, "expires": now + 90000}
    store.create_invitation({"visitor": "Tim", "doors": ["hall"], **later})  # after the event
    event = {"name": "Expo", "starts": now, "ends": now + 3600}
    made = store.create_event_pack({"device_id": "kiosk-1", "event": event}, by="paul")
    body = _open(store, enrolled, key, made["file"])
    names = {i["visitor"] for i in body["deltas"]["invitations"]}
    assert names == {"Ana", "Zoe"} and made["guests"] == 2
    assert body["deltas"]["reset"] is True and body["deltas"]["signing_keys"]
    assert body["door"] == "hall" and body["not_after_ms"] == (now + 3600) * 1000
    settings = body["deltas"]["door_settings"]
    # Until the event's end + 1 h, counted from when the pack was made (a second later).
    assert 7200 - 2 <= settings[0]["settings"]["max_offline_staleness_s"] <= 7200
    # Named guests: exactly those.
    named = store.create_event_pack(
        {"device_id": "kiosk-1", "event": event, "invitations": [guest["invitation"]["id"]]},
        by="paul",
    )
    assert named["serial"] == made["serial"] + 1
    only = _open(store, enrolled, key, named["file"])["deltas"]["invitations"]
    assert [i["visitor"] for i in only] == ["Ana"]
    assert zoned["invitation"]["id"] not in named["file"]  # encrypted: no id in clear
    # Sealed to kiosk-1: another device's key does not open it.
    with pytest.raises(eventpack.PackRefused) as other:
        _open(store, enrolled, eventpack.generate_key(), made["file"])
    assert other.value.code == "tampered"
    listed = store.list_event_packs()
    assert [p["serial"] for p in listed] == [named["serial"], made["serial"]]
    assert listed[0]["created_by"] == "paul" and "file" not in listed[0]
    assert [d["device_id"] for d in store.pack_devices()] == ["kiosk-1"]


def test_what_the_central_refuses_to_pack(open_store: StoreFactory) -> None:
    store = open_store()
    key = eventpack.generate_key()
    _enroll(store, "kiosk-1", key)
    _enroll(store, "old-door")  # no key: an agent before event packs
    now = store.now_ms() // 1000
    event = {"name": "Expo", "starts": now, "ends": now + 3600}

    def refused(body: dict[str, Any]) -> Any:
        with pytest.raises((BadRequest, NotConfigured, NotFound)) as exc:
            store.create_event_pack(body, by="paul")
        return exc.value

    assert refused({"device_id": "old-door", "event": event}).extra["reason"] == "no_pack_key"
    assert isinstance(refused({"device_id": "nobody", "event": event}), NotFound)
    past = {"name": "Expo", "starts": now - 7200, "ends": now - 3600}
    assert refused({"device_id": "kiosk-1", "event": past}).extra["reason"] == "bad_event"
    far = {"name": "Expo", "starts": now, "ends": now + 40 * 86400}
    assert refused({"device_id": "kiosk-1", "event": far}).extra["reason"] == "bad_event"
    unknown = refused({"device_id": "kiosk-1", "event": event, "invitations": ["nope"]})
    assert unknown.extra["reason"] == "unknown_invitation"
    bad_kiosk = {"device_id": "kiosk-1", "event": event, "kiosk": {"language": "de"}}
    assert isinstance(refused(bad_kiosk), BadRequest)
    with pytest.raises(BadRequest):  # a key that is not 32 bytes
        token = store.create_enroll_token(door="hall")["enroll_token"]
        store.enroll({"enroll_token": token, "device_id": "x-1", "event_pack_key": "AAAA"})
    store.disable_device("kiosk-1")
    assert refused({"device_id": "kiosk-1", "event": event}).extra["reason"] == "disabled"
    assert store.list_event_packs() == []


def test_re_enrollment_keeps_the_key_unless_it_sends_another(open_store: StoreFactory) -> None:
    store = open_store()
    key = eventpack.generate_key()
    first = _enroll(store, "kiosk-1", key)
    token = store.create_enroll_token(door="hall")["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": "kiosk-1"}, first["device_token"])
    now = store.now_ms() // 1000
    event = {"name": "Expo", "starts": now, "ends": now + 3600}
    made = store.create_event_pack({"device_id": "kiosk-1", "event": event}, by="paul")
    assert _open(store, first, key, made["file"])["device_id"] == "kiosk-1"


def _export(device_token: str, device_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "format": eventpack.EXPORT_FORMAT,
        "device_id": device_id,
        "exported_ms": int(time.time() * 1000),
        "events": events,
    }
    key = hashlib.sha256(device_token.encode()).digest()
    return {**body, "mac": eventpack.export_mac(key, body)}


def test_a_merge_has_the_uploads_checks_and_happens_once(open_store: StoreFactory) -> None:
    store = open_store()
    enrolled = _enroll(store, "kiosk-1", eventpack.generate_key())
    token = enrolled["device_token"]
    events = ChainBuilder().events(7)
    # Online before leaving: the first two went up the usual way.
    store.upload_events("kiosk-1", events[:2])
    merged = store.merge_journal(_export(token, "kiosk-1", events))
    assert (merged["accepted"], merged["duplicate"], merged["rejected"]) == (5, 2, 0)
    assert merged["next_seq"] == 8 and merged["chain_ok"] is True
    again = store.merge_journal(_export(token, "kiosk-1", events))
    assert (again["accepted"], again["duplicate"]) == (0, 7)
    assert store.verify_chain("kiosk-1") == (True, None)
    # Events past a hole wait, as an upload's would.
    more = ChainBuilder(8, bytes.fromhex(events[-1]["hash"])).events(3)
    waiting = store.merge_journal(_export(token, "kiosk-1", more[1:]))
    assert waiting["retry_later"] == 2 and waiting["reasons"] == {"gap": 2}
    # Another device's credential, a changed event, a made-up device: refused.
    other = _enroll(store, "kiosk-2", eventpack.generate_key())
    with pytest.raises(Forbidden) as wrong:
        store.merge_journal(_export(other["device_token"], "kiosk-1", more))
    assert wrong.value.extra["reason"] == "bad_mac"
    changed = _export(token, "kiosk-1", more)
    changed["events"][0]["wall_ms"] += 1
    with pytest.raises(Forbidden):
        store.merge_journal(changed)
    with pytest.raises(NotFound):
        store.merge_journal(_export(token, "nobody", more))
    with pytest.raises(BadRequest):
        store.merge_journal({"format": "something else"})
    assert store.device_events("kiosk-1", 0, 100)["events"][-1]["seq"] == 7
