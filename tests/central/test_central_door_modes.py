"""Door modes set from the security office (central/store/doormodes.py), on both backends:
a door's or a zone's mode with who and why, carried in the doors' door settings (the signed
deltas), the overview the console shows, the admin routes and their roles and audit rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from central.admin import CentralAdmin
from central.errors import BadRequest, Forbidden, NotFound
from central.settings import CentralSettings
from central.store import CentralStore
from central.testing import CentralProcess, ContractChecker

PASSWORD = "correct horse battery"

pytestmark = pytest.mark.processes


@pytest.fixture
def store(central_db: Callable[[], str | None], tmp_path: Path) -> Iterator[CentralStore]:
    url = central_db()
    settings = CentralSettings(data_dir=tmp_path / "data", db=url)
    made = CentralStore(settings)
    yield made
    made.close()


def enroll(store: CentralStore, device_id: str, door: str, zones: list[str]) -> None:
    token = store.create_enroll_token(door=door, zones=zones)["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": device_id})


def door_settings(store: CentralStore) -> dict[str, dict]:
    page = store.deltas(store.settings.site, None)
    return {item["door"]: item for item in page["door_settings"]}


def test_a_door_mode_travels_in_its_settings_with_who_and_why(store: CentralStore) -> None:
    store.put_door_settings("lobby", {"settings": {"unlock_s": 7}})
    result = store.set_door_mode(
        "door", "lobby", {"mode": "lockdown", "reason": "  intruder\nreported "}, by="olivia"
    )
    assert result["mode"] == "lockdown" and result["reason"] == "intruder reported"
    assert result["doors"] == ["lobby"] and result["set_by"] == "olivia"
    item = door_settings(store)["lobby"]
    assert item["version"] == 2
    settings = item["settings"]
    assert settings["unlock_s"] == 7  # the door's other settings stay
    assert settings["mode"] == "lockdown"
    assert settings["mode_set"] == {
        "by": "olivia",
        "reason": "intruder reported",
        "at_ms": result["set_at_ms"],
        "scope": "door",
        "name": "lobby",
    }
    overview = store.door_modes(online_within_ms=60_000)
    assert overview["doors"][0]["door"] == "lobby"
    assert overview["doors"][0]["mode"] == "lockdown"
    assert overview["doors"][0]["mode_set"]["by"] == "olivia"


def test_a_zone_mode_goes_to_every_enrolled_door_of_the_zone(store: CentralStore) -> None:
    enroll(store, "dev-a", "lobby", ["north", "public"])
    enroll(store, "dev-b", "lab", ["north"])
    enroll(store, "dev-c", "dock", ["south"])
    result = store.set_door_mode(
        "zone", "north", {"mode": "lockdown", "reason": "drill"}, by="olivia"
    )
    assert result["doors"] == ["lab", "lobby"]
    sent = door_settings(store)
    assert set(sent) == {"lab", "lobby"}
    assert sent["lab"]["settings"]["mode_set"]["scope"] == "zone"
    # The door's own command after the zone's: the most recent wins at that door.
    store.set_door_mode("door", "lab", {"mode": "normal", "reason": "cleared"}, by="sam")
    overview = store.door_modes(online_within_ms=60_000)
    modes = {
        d["door"]: (d["mode"], d["mode_set"]["by"] if d["mode_set"] else None)
        for d in overview["doors"]
    }
    assert modes == {
        "dock": (None, None),
        "lab": ("normal", "sam"),
        "lobby": ("lockdown", "olivia"),
    }
    zones = {z["zone"]: z for z in overview["zones"]}
    assert zones["north"]["doors"] == ["lab", "lobby"] and zones["north"]["mode"] == "lockdown"
    assert zones["south"]["mode"] is None and zones["public"]["doors"] == ["lobby"]
    dev = overview["doors"][1]["devices"][0]
    assert dev["device_id"] == "dev-b" and dev["online"] is False


def test_bad_modes_and_reasons_are_refused(store: CentralStore) -> None:
    for body in (
        {"mode": "lockdown"},
        {"mode": "lockdown", "reason": "   "},
        {"mode": "lockdown", "reason": "x" * 501},
        {"mode": "emergency", "reason": "fire"},
        {"mode": "open", "reason": "x"},
        {"mode": "lockdown", "reason": "x", "extra": 1},
    ):
        with pytest.raises(BadRequest):
            store.set_door_mode("door", "lobby", body, by="olivia")
    with pytest.raises(BadRequest):
        store.set_door_mode("door", "../x", {"mode": "normal", "reason": "x"}, by="olivia")
    with pytest.raises(NotFound):
        store.set_door_mode("zone", "nowhere", {"mode": "lockdown", "reason": "x"}, by="olivia")
    assert door_settings(store) == {}


def test_the_mode_and_its_audit_row_are_one_transaction(store: CentralStore) -> None:
    with pytest.raises(RuntimeError), store.one_transaction():
        store.set_door_mode("door", "lobby", {"mode": "lockdown", "reason": "x"}, by="o")
        raise RuntimeError("the audit row could not be written")
    assert door_settings(store) == {}
    assert store.door_modes(online_within_ms=1)["doors"] == []


# -- the admin routes (a real central) ------------------------------------------------------


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralProcess]:
    data = tmp_path_factory.mktemp("central") / "data"
    process = CentralProcess(data)
    with CentralStore(CentralSettings(data_dir=data)) as made:
        made.add_operator("olivia", "security_officer", PASSWORD)
        made.add_operator("pat", "pass_office", PASSWORD)
        made.add_operator("aud", "auditor", PASSWORD)
        process.tokens = {  # type: ignore[attr-defined]
            name: made.create_api_token(name)["token"] for name in ("olivia", "pat", "aud")
        }
    with process:
        yield process


def test_a_security_officer_sets_a_mode_and_it_is_audited(central: CentralProcess) -> None:
    tokens = central.tokens  # type: ignore[attr-defined]
    with CentralAdmin(central.url, token=tokens["olivia"]) as olivia:
        result = olivia.set_door_mode("vault", "lockdown", "alarm at the vault")
        assert result["set_by"] == "olivia" and result["doors"] == ["vault"]
        with pytest.raises(BadRequest):
            olivia.set_door_mode("vault", "lockdown", "")
        with pytest.raises(NotFound):
            olivia.set_door_mode("nowhere", "lockdown", "x", zone=True)
        overview = olivia.door_modes()
    ContractChecker().check_response("PUT", "/admin/doors/{door}/mode", 200, result)
    ContractChecker().check_response("GET", "/admin/door-modes", 200, overview)
    assert [d["mode"] for d in overview["doors"] if d["door"] == "vault"] == ["lockdown"]
    with CentralAdmin(central.url, token=tokens["aud"]) as auditor:
        assert auditor.door_modes()["doors"]  # reading is an auditor's work
        entries = auditor.operator_journal()
    mine = [
        e for e in entries if e["action"] == "PUT /admin/doors/{door}/mode" and e["status"] == 200
    ]
    assert [e["operator"] for e in mine] == ["olivia"]
    detail = json.loads(mine[0]["detail"])
    assert detail["door"] == "vault" and detail["mode"] == "lockdown"
    assert detail["reason"] == "alarm at the vault"


def test_the_pass_office_and_an_auditor_cannot_set_a_mode(central: CentralProcess) -> None:
    """The attack: a Pass Office account (or a stolen auditor token) locks or frees a door."""
    tokens = central.tokens  # type: ignore[attr-defined]
    for name in ("pat", "aud"):
        with CentralAdmin(central.url, token=tokens[name]) as other:
            with pytest.raises(Forbidden):
                other.set_door_mode("lobby", "free_access", "let them in")
            with pytest.raises(Forbidden):
                other.set_door_mode("north", "normal", "x", zone=True)
    with CentralAdmin(central.url, token=tokens["pat"]) as office, pytest.raises(Forbidden):
        office.door_modes()
    with CentralAdmin(central.url, token=tokens["olivia"]) as olivia:
        assert "lobby" not in {d["door"] for d in olivia.door_modes()["doors"]}


# -- alarms over the admin API (the console's Alarms page calls the same store) -------------


def test_alarms_are_read_and_acknowledged_over_the_admin_api(central: CentralProcess) -> None:
    """A security officer acknowledges with a note (audited under the route's name); the
    Pass Office may neither read nor acknowledge; an auditor reads, cannot acknowledge."""
    import time

    from central.testing import enroll_device

    tokens = central.tokens  # type: ignore[attr-defined]
    _enrolled, session = enroll_device(central.url, door="vault", device_id="alarm-vault")
    now = int(time.time() * 1000)
    beat = {
        "sent_at_ms": now,
        "alarms": [{"code": "door.tamper", "since_ms": now - 5000, "detail": "cover open"}],
    }
    assert session.post(f"{central.url}/v1/heartbeat", json=beat, timeout=10).ok
    with CentralAdmin(central.url, token=tokens["aud"]) as auditor:
        [alarm] = [a for a in auditor.alarms() if a["device_id"] == "alarm-vault"]
        assert alarm["code"] == "door.tamper" and alarm["ack"] is None
        with pytest.raises(Forbidden):
            auditor.acknowledge_alarm("alarm-vault", "door.tamper", alarm["since_ms"], "seen")
    with CentralAdmin(central.url, token=tokens["pat"]) as office:
        with pytest.raises(Forbidden):
            office.alarms()
        with pytest.raises(Forbidden):
            office.acknowledge_alarm("alarm-vault", "door.tamper", alarm["since_ms"], "seen")
    with CentralAdmin(central.url, token=tokens["olivia"]) as olivia:
        with pytest.raises(BadRequest):
            olivia.acknowledge_alarm("alarm-vault", "door.tamper", alarm["since_ms"], " ")
        with pytest.raises(NotFound):
            olivia.acknowledge_alarm("alarm-vault", "door.tamper", now + 600_000, "later")
        ack = olivia.acknowledge_alarm(
            "alarm-vault", "door.tamper", alarm["since_ms"], "Cover screwed back"
        )
        assert ack["operator"] == "olivia" and ack["note"] == "Cover screwed back"
        with pytest.raises(BadRequest):  # once
            olivia.acknowledge_alarm("alarm-vault", "door.tamper", alarm["since_ms"], "again")
        [alarm] = [a for a in olivia.alarms() if a["device_id"] == "alarm-vault"]
        assert alarm["ack"]["operator"] == "olivia"
        entries = olivia.operator_journal()
    ContractChecker().check_response("POST", "/admin/alarms/acknowledge", 200, ack)
    ContractChecker().check_response("GET", "/admin/alarms", 200, {"alarms": [alarm]})
    mine = [
        e for e in entries if e["action"] == "POST /admin/alarms/acknowledge" and e["status"] == 200
    ]
    assert [e["operator"] for e in mine] == ["olivia"]
    assert json.loads(mine[0]["detail"])["note"] == "Cover screwed back"
