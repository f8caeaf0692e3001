"""The downlink: deltas from the reference central into the agent's cache, atomically.

Against a real central process: full then incremental sync of every list the
contract has, 410 resync, shared single use and counters, key rotation seen by the
agent's keyring without a restart. With a scripted client: a page that cannot be
converted or is for another cursor changes nothing. With a child process killed
with SIGKILL while it applies a large page: the cache is at the old cursor or the
new one, never in between.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.testing import CentralProcess, ChainBuilder, enroll_device
from edge_agent.cacheview import StoreCacheView
from edge_agent.door import DoorMode
from edge_agent.policy import Credential, DoorPolicy, decide
from edge_agent.store import Badge, Delta, Store, StoreSettings
from edge_agent.sync import Alarms, CentralClient, DeltaError, DoorSettingsFile, Downlink
from edge_agent.sync.client import CentralUnreachable
from edge_agent.sync.downlink import DeltaTrust, convert_page
from portier_common.pins import verify_pin
from portier_common.reasons import Reason
from portier_common.signing import DeltaKey
from portier_common.tokens import Verified, verify

pytestmark = pytest.mark.processes

DOOR = "gate-a"


_ids = iter(range(1, 10_000))


class Door:
    """A store and a downlink for a device enrolled at ``door``."""

    def __init__(self, central: CentralProcess, where: Path, door: str = DOOR) -> None:
        self.device_id = f"down-{next(_ids)}"
        # A kiosk-like device: guards' PIN hashes reach it (guard console).
        enrolled, session = enroll_device(
            central.url, door=door, device_id=self.device_id, guard_console=True
        )
        session.close()
        self.token = enrolled["device_token"]
        self.client = CentralClient(central.url, credential=self.token, timeout_s=5.0)
        self.store = Store.open(StoreSettings(path=where / f"{self.device_id}.db"))
        self.alarms = Alarms(self.store.journal.append)
        self.settings: list[Any] = []
        self.settings_file = DoorSettingsFile(where / f"{self.device_id}-door.json")
        self.downlink = Downlink(
            self.store,
            self.client,
            self.alarms,
            door=door,
            trust=DeltaTrust(self.device_id, DeltaKey.from_dict(enrolled["delta_key"])),
            page_size=50,
            settings_file=self.settings_file,
            on_door_settings=self.settings.append,
        )

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def door(central: CentralProcess, tmp_path: Path) -> Iterator[Door]:
    d = Door(central, tmp_path)
    yield d
    d.close()


def test_full_then_incremental_sync(admin, door) -> None:
    admin.put_badge(uid="04A1B2C3D4E5F6", holder="Sam Staff", doors=[DOOR], kind="uid")
    admin.put_badge(
        uid="04C0FFEE000001",
        holder="Gail Guard",
        doors=[DOOR],
        kind="uid",
        role="guard",
        pin_hash=_pin_hash("246813"),
        guard_id="gail",
    )
    admin.put_badge(uid="04ABABABABAB01", holder="Zed Zone", zones=["perimeter"])
    created = admin.create_invitation(visitor="Ada Lovelace", doors=[DOOR], single_use=True)
    admin.put_schedule(
        DOOR,
        rules=[
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "00:00",
                "end": "24:00",
            }
        ],
    )
    result = door.downlink.sync()
    assert result.complete and result.pages >= 1
    cache, view = door.store.cache, StoreCacheView(door.store)

    staff = view.badge("04A1B2C3D4E5F6")
    assert staff.holder == "Sam Staff" and staff.kind == "uid" and staff.doors == (DOOR,)
    zoned = view.badge("04ABABABABAB01")
    assert (
        zoned.kind == "ntag424"
        and zoned.zones == ("perimeter",)
        and zoned.allows(DOOR, ("perimeter",))
    )
    guard = view.guard("04C0FFEE000001")
    assert guard is not None and guard.guard_id == "gail" and guard.name == "Gail Guard"
    assert verify_pin("246813", guard.pin_hash) and not verify_pin("135790", guard.pin_hash)
    assert view.guard("04A1B2C3D4E5F6") is None  # an ordinary badge opens no console

    invitation = cache.invitation(created["invitation"]["id"])
    assert invitation.visitor == "Ada Lovelace" and invitation.single_use
    assert invitation.not_after == created["invitation"]["expires"]
    schedule = view.schedule(DOOR)  # converted to the policy's own form
    assert schedule is not None and schedule.allows(time.time())

    # The keyring the agent verifies with holds the central's active key.
    token = created["token"]
    verdict = verify(token, view.keyring(), now=time.time(), site="hq", door=DOOR)
    assert isinstance(verdict, Verified)

    # Incremental: a revocation and a deletion, applied on top, cursor moving on.
    cursor = cache.downlink().cursor
    admin.revoke_invitation(created["invitation"]["id"])
    admin.delete_badge("04ABABABABAB01")
    admin.delete_schedule(DOOR)
    result = door.downlink.sync()
    assert result.complete and int(result.cursor) > int(cursor)
    assert cache.is_revoked("invitation", created["invitation"]["id"])
    assert cache.badge("04ABABABABAB01") is None and cache.badge("04A1B2C3D4E5F6") is not None
    assert cache.schedule(DOOR) is None
    assert door.downlink.last_complete_ms == cache.downlink().last_sync_ms


def test_a_holiday_set_at_the_central_closes_the_door_for_a_scheduled_badge(admin, door) -> None:
    """End to end: the central's holiday reaches the door inside the signed schedule, the
    agent refuses the badge on that day with ``holiday``, and opens again once removed."""
    zone = "holiday-zone"
    admin.put_schedule(
        zone,
        timezone="UTC",
        rules=[
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "00:00",
                "end": "24:00",
            }
        ],
    )
    admin.put_badge(
        uid="04D0D0D0D0D0D0", holder="Hal Holiday", doors=[DOOR], kind="uid", schedule=zone
    )
    now = time.time()
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    policy = DoorPolicy(site="hq", door=DOOR, accept_uid=True)
    tap = Credential.badge(bytes.fromhex("04D0D0D0D0D0D0"))
    door.downlink.sync()
    view = StoreCacheView(door.store)
    assert decide(tap, policy, DoorMode.NORMAL, now, view).granted

    admin.put_holiday(today, "Site closure")
    assert door.downlink.sync().complete
    decision = decide(tap, policy, DoorMode.NORMAL, now, view)
    assert not decision.granted and decision.reason is Reason.HOLIDAY
    assert "Site closure" in decision.detail
    assert admin.list_holidays() == [{"date": today, "name": "Site closure"}]

    admin.delete_holiday(today)
    assert door.downlink.sync().complete
    assert decide(tap, policy, DoorMode.NORMAL, now, view).granted
    admin.delete_badge("04D0D0D0D0D0D0")
    admin.delete_schedule(zone)


def test_pages_follow_more_until_up_to_date(admin, door) -> None:
    for n in range(120):
        admin.put_badge(uid=f"04EE{n:010X}", holder=f"Holder {n}", doors=[DOOR], kind="uid")
    result = door.downlink.sync()  # 50 changes per page
    assert result.complete and result.pages >= 3
    assert door.store.cache.badge("04EE0000000077") is not None


class _DropsAfter:
    """The door's client, with the network gone after ``pages`` delta pages."""

    def __init__(self, client: CentralClient, pages: int) -> None:
        self._client = client
        self.left = pages

    def _page(self, call: Any, cursor: str | None, limit: int) -> Any:
        if self.left <= 0:
            raise CentralUnreachable("network dropped between pages")
        self.left -= 1
        return call(cursor, limit)

    def deltas(self, cursor: str | None, limit: int) -> Any:
        return self._page(self._client.deltas, cursor, limit)

    def signed_deltas(self, cursor: str | None, limit: int) -> Any:
        return self._page(self._client.signed_deltas, cursor, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_first_sync_stopped_between_pages_is_never_fresh(tmp_path: Path) -> None:
    # Issue #18.2: badges in the first page, their revocation in a later one. A door whose
    # first sync stops after page 1 must not call its cache fresh (it said 1 s old).
    # A central of its own: the first page must hold exactly these badges.
    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        _first_sync_stopped(admin, Door(central, tmp_path))


def _first_sync_stopped(admin: CentralAdmin, door: Door) -> None:
    holders = [f"04DD{n:010X}" for n in range(70)]
    for n, uid in enumerate(holders):
        admin.put_badge(uid=uid, holder=f"Holder {n}", doors=[DOOR], kind="uid")
    admin.revoke_badge(holders[0])
    real = door.downlink.client
    door.downlink.client = _DropsAfter(real, pages=1)
    with pytest.raises(CentralUnreachable):
        door.downlink.sync()
    cache = door.store.cache
    assert cache.badge(holders[0]) is not None and not cache.is_revoked("badge", holders[0])
    assert cache.downlink().cursor is not None  # the page was kept: the next sync resumes
    assert cache.downlink().last_sync_ms is None  # ... but the cache never reached the head
    view = StoreCacheView(door.store)
    assert view.staleness_s(time.time()) is None
    bounded = DoorPolicy(site="hq", door=DOOR, accept_uid=True, max_offline_staleness_s=3600)
    badge = Credential.badge(bytes.fromhex(holders[0]))
    decision = decide(badge, bounded, DoorMode.NORMAL, time.time(), view)
    assert not decision.granted and decision.reason is Reason.CACHE_STALE

    door.downlink.client = real
    result = door.downlink.sync()  # resumes from the kept cursor and reaches the head
    assert result.complete and cache.is_revoked("badge", holders[0])
    assert cache.downlink().last_sync_ms is not None
    assert view.staleness_s(time.time()) < 60
    door.close()


def test_a_later_sync_stopped_between_pages_keeps_the_last_complete_time(admin, door) -> None:
    assert door.downlink.sync().complete
    before = door.store.cache.downlink().last_sync_ms
    for n in range(70):
        admin.put_badge(uid=f"04DE{n:010X}", holder=f"Holder {n}", doors=[DOOR], kind="uid")
    time.sleep(0.01)
    real = door.downlink.client
    door.downlink.client = _DropsAfter(real, pages=1)
    with pytest.raises(CentralUnreachable):
        door.downlink.sync()
    assert door.store.cache.downlink().last_sync_ms == before
    door.downlink.client = real


def test_unknown_cursor_resyncs_from_scratch(admin, door) -> None:
    admin.put_badge(uid="04A1B2C3D4E5F6", holder="Sam Staff", doors=[DOOR], kind="uid")
    junk = Badge(uid="04FFFFFFFFFF01", kind="uid", holder="Left over")
    door.store.cache.apply_delta(Delta(cursor="999999999", badges=[junk]))  # unknown there
    result = door.downlink.sync()
    assert result.complete
    assert door.store.cache.badge("04FFFFFFFFFF01") is None  # reset: true emptied the cache
    assert door.store.cache.badge("04A1B2C3D4E5F6") is not None
    assert door.store.cache.downlink().cursor == result.cursor != "999999999"


def test_single_use_and_counters_used_elsewhere_reach_the_replay_ledger(admin, door, central):
    _, session = enroll_device(central.url, door="gate-b", device_id=f"other-{next(_ids)}")
    # The central shares claims for credentials it issued, valid at the claiming door.
    created = admin.create_invitation(visitor="Ada", doors=["gate-b", DOOR], single_use=True)
    inv_id = created["invitation"]["id"]
    admin.put_badge(uid="04DE5F1EACC040", holder="Sam", doors=["gate-b", DOOR])
    chain = ChainBuilder()
    expires = created["invitation"]["expires"]
    events = [
        chain.event(
            "invitation.used",
            {"invitation_id": inv_id, "door": "gate-b", "expires": expires},
        ),
        chain.event(
            "badge.counter",
            {"uid": "04de5f1eacc040", "counter": 41, "door": "gate-b", "sun_url": ""},
        ),
    ]
    answer = session.post(f"{central.url}/v1/events", json={"events": events}, timeout=5)
    assert [a["status"] for a in answer.json()["acks"]] == ["accepted", "accepted"]
    session.close()
    door.downlink.sync()
    assert door.store.replay.is_used(inv_id)
    assert door.store.replay.last_counter("04DE5F1EACC040") == 41
    assert StoreCacheView(door.store).invitation_used(inv_id)


def test_key_rotation_reaches_the_keyring_without_a_restart(admin, door) -> None:
    old = admin.create_invitation(visitor="Before Rotation", doors=[DOOR])["token"]
    door.downlink.sync()
    view = StoreCacheView(door.store)
    now = time.time()
    assert isinstance(verify(old, view.keyring(), now=now, site="hq", door=DOOR), Verified)
    admin.rotate_key(retire_now=True)
    new = admin.create_invitation(visitor="After Rotation", doors=[DOOR])["token"]
    before = verify(new, view.keyring(), now=now, site="hq", door=DOOR)
    assert not isinstance(before, Verified) and before.reason is Reason.UNKNOWN_KEY
    door.downlink.sync()
    # Same StoreCacheView, same process: the keyring follows the cached key set.
    assert isinstance(verify(new, view.keyring(), now=time.time(), site="hq", door=DOOR), Verified)
    retired = verify(old, view.keyring(), now=time.time() + 600, site="hq", door=DOOR)
    assert not isinstance(retired, Verified)


def test_door_settings_are_kept_and_reported(admin, door) -> None:
    admin.put_door_settings(DOOR, {"mode": "lockdown", "max_offline_staleness_s": 600})
    admin.put_door_settings("gate-b", {"mode": "free_access"})  # another door's: ignored
    door.downlink.sync()
    assert door.settings[-1] == {"mode": "lockdown", "max_offline_staleness_s": 600}
    stored = door.settings_file.load()
    assert stored["settings"]["mode"] == "lockdown" and stored["version"] >= 1
    assert os.stat(door.settings_file.path).st_mode & 0o777 == 0o600


# -- pages that must not apply ---------------------------------------------------------


def _page(cursor: str, from_cursor: str = "", **lists: Any) -> dict[str, Any]:
    page: dict[str, Any] = {
        "from_cursor": from_cursor,
        "cursor": cursor,
        "more": False,
        "reset": from_cursor == "",
        "server_time_ms": 0,
        "removed": {},
    }
    for name in (
        "invitations",
        "badges",
        "revocations",
        "signing_keys",
        "schedules",
        "door_settings",
        "used_invitations",
        "badge_counters",
    ):
        page[name] = lists.get(name, [])
    return page


def _badge(uid: str, holder: str = "X") -> dict[str, Any]:
    return {
        "uid": uid,
        "site": "hq",
        "kind": "uid",
        "holder": holder,
        "doors": [DOOR],
        "zones": [],
        "enabled": True,
        "not_before": None,
        "not_after": None,
    }


class ScriptedClient:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.asked: list[str | None] = []

    def deltas(self, cursor: str | None, limit: int) -> dict[str, Any]:
        self.asked.append(cursor)
        return self.pages.pop(0)


def _scripted(tmp_path: Path, pages: list[dict[str, Any]]) -> tuple[Store, Downlink]:
    store = Store.open(StoreSettings(path=tmp_path / "scripted.db"))
    client = ScriptedClient(pages)
    # Scripted pages test the conversion: unsigned (trust=None), as no central signs them.
    downlink = Downlink(store, client, Alarms(store.journal.append), door=DOOR, trust=None)  # type: ignore[arg-type]
    return store, downlink


def test_a_page_that_cannot_be_converted_changes_nothing(tmp_path: Path) -> None:
    bad_key = {
        "kid": "k-bad",
        "alg": "EdDSA",
        "public_key": "AAAA",
        "not_before": None,
        "not_after": None,
    }
    store, downlink = _scripted(
        tmp_path,
        [
            _page("1", badges=[_badge("04000000000001")]),
            _page("2", "1", badges=[_badge("04000000000002")], signing_keys=[bad_key]),
            _page("2", "1", badges=[_badge("04000000000002")]),
        ],
    )
    downlink.sync()
    with pytest.raises(DeltaError, match="public_key"):
        downlink.sync()
    # Nothing of page 2: not its badge (listed before the bad key), not its cursor.
    assert store.cache.badge("04000000000002") is None
    assert store.cache.downlink().cursor == "1"
    assert downlink.alarms.is_active("bad_delta")
    downlink.sync()
    assert store.cache.badge("04000000000002") is not None
    assert not downlink.alarms.is_active("bad_delta")
    store.close()


def test_a_page_for_another_cursor_is_discarded(tmp_path: Path) -> None:
    store, downlink = _scripted(
        tmp_path,
        [
            _page("1", badges=[_badge("04000000000001")]),
            _page("9", "5", badges=[_badge("04000000000009")]),
        ],
    )
    downlink.sync()
    with pytest.raises(DeltaError, match="from_cursor"):
        downlink.sync()
    assert store.cache.badge("04000000000009") is None and store.cache.downlink().cursor == "1"
    store.close()


def test_convert_page_names_the_bad_field() -> None:
    with pytest.raises(DeltaError, match="cursor"):
        convert_page({"cursor": ""}, DOOR)
    with pytest.raises(DeltaError, match=r"badges\[0\]"):
        convert_page(_page("1", badges=["not an object"]), DOOR)
    with pytest.raises(DeltaError, match="schedules"):
        convert_page(_page("1", schedules=[{"id": DOOR, "timezone": "UTC", "rules": [{}]}]), DOOR)
    for holidays in ("2026-12-25", [{"name": "no date"}], [42]):
        bad = {"id": DOOR, "timezone": "UTC", "rules": [], "holidays": holidays}
        with pytest.raises(DeltaError, match=r"schedules\[0\]\.holidays"):
            convert_page(_page("1", schedules=[bad]), DOOR)
    page = convert_page(
        _page("3", door_settings=[{"door": "other", "site": "hq", "version": 1, "settings": {}}]),
        DOOR,
    )
    assert page.door_settings == () and page.delta.reset


_APPLIER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge_agent.store import Store, StoreSettings
    from edge_agent.sync import Alarms, Downlink

    badges = int(sys.argv[2])

    class Client:
        def deltas(self, cursor, limit):
            page = {"from_cursor": cursor or "", "cursor": str(int(cursor or 0) + 1),
                    "more": False, "reset": False, "server_time_ms": 0, "removed": {},
                    "invitations": [], "revocations": [], "signing_keys": [],
                    "schedules": [], "door_settings": [], "used_invitations": [],
                    "badge_counters": []}
            page["badges"] = [
                {"uid": f"04{int(cursor or 0):02X}{n:010X}", "kind": "uid", "holder": "H",
                 "doors": ["gate-a"], "zones": []}
                for n in range(badges)
            ]
            return page

    store = Store.open(StoreSettings(path=Path(sys.argv[1])))
    downlink = Downlink(
        store, Client(), Alarms(store.journal.append), door="gate-a", trust=None
    )
    while True:
        print("applying", flush=True)
        downlink.sync()
    """
)


def test_sigkill_while_a_page_applies_leaves_the_old_or_the_new_cursor(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    per_page = 20_000
    for round_ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", _APPLIER, str(db), str(per_page)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(round_ + 1):
            assert child.stdout.readline() == "applying\n"
        time.sleep(0.05 * round_)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with Store.open(StoreSettings(path=db)) as store:
            cursor = int(store.cache.downlink().cursor or 0)
            badges = store.cache.counts().badges
            # Each page adds per_page badges under a new cursor: all of a page or none.
            assert badges == cursor * per_page, (round_, cursor, badges)
    assert cursor >= 1


def _pin_hash(pin: str) -> str:
    from portier_common.pins import hash_pin

    return hash_pin(pin)
