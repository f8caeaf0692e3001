"""The Agent in process, on the simulator: real store, real door (MockFactory), sim reader.

Every reason code end to end through :meth:`Agent.present`, the journal-before-relay
promise, replay (sequential, across a restart, concurrent), guards, alarms, modes,
fire, visitors and check-in, the NFC reader loop and key rotation without restart.
The credential cache is filled the way the sync fills it: ``store.cache.apply_delta``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ndef
import pytest

from edge_agent.agent import ActionError, Agent
from edge_agent.api import action_status
from edge_agent.config import AgentConfig, parse_config, simulator_config_path
from edge_agent.devices import Devices, open_devices
from edge_agent.door import DoorMode, ManualScheduler
from edge_agent.events import EventBus
from edge_agent.guards import GuardDenied
from edge_agent.policy import Credential
from edge_agent.store import (
    Badge,
    CachedSchedule,
    CachedSigningKey,
    Delta,
    Invitation,
    Revocation,
    Store,
    StoreIOError,
    StoreSettings,
)
from edge_agent.timefloor import record_floor
from edge_agent.visitors import CHECKIN_WINDOW_S
from portier_common.ntag424 import emulate_sun_url
from portier_common.passes import pass_hash
from portier_common.pins import hash_pin
from portier_common.reasons import Reason
from portier_common.tokens import PREFIX, InvitationClaims, SigningKey, b45encode, mint
from portier_common.tokens.cose import (
    HEADER_ALG,
    HEADER_KID,
    encode_protected,
    encode_sign1,
    sig_structure,
)
from portier_common.tokens.cose import dumps as cbor_dumps

# Wednesday 2026-11-18 10:00 UTC: inside the "office" schedule, outside "weekend".
NOW = int(dt.datetime(2026, 11, 18, 10, 0, tzinfo=dt.UTC).timestamp())
SITE, DOOR, ZONE = "hq", "gate-a", "perimeter"

KEY = SigningKey.from_private_bytes("k1", bytes(range(32)))
FORGER = SigningKey.from_private_bytes("k1", bytes(range(1, 33)))  # same kid, other key
UNPINNED = SigningKey.from_private_bytes("k9", bytes(range(2, 34)))
NEXT_KEY = SigningKey.from_private_bytes("k2", bytes(range(3, 35)))

META_KEY = bytes(range(16, 32))
FILE_KEY = bytes(range(16))
WRONG_FILE_KEY = bytes(16)
SUN_BASE = "https://badge.example/s"

STAFF_UID = "04A1B2C3D4E5F6"  # UID-only badge, every door
NTAG_UID = "04DE5F1EACC040"  # NTAG 424 DNA badge
GUARD_UID = "04C0FFEE000001"
GUARD_PIN = "246813"


def sun_url(counter: int, uid: str = NTAG_UID, key: bytes = FILE_KEY) -> str:
    """The URL an NTAG 424 DNA with our keys writes on one tap."""
    return emulate_sun_url(
        SUN_BASE,
        uid=bytes.fromhex(uid),
        counter=counter,
        file_read_key=key,
        meta_read_key=META_KEY,
    )


def invite(key: SigningKey = KEY, **changes: Any) -> str:
    """A signed QR invitation, valid now at this door unless ``changes`` say otherwise."""
    claims: dict[str, Any] = {
        "invitation_id": "inv-multi",
        "visitor": "Ada Lovelace",
        "host": "Charles Babbage",
        "site": SITE,
        "not_before": NOW - 3600,
        "expires": NOW + 3600,
        "single_use": False,
        "doors": (DOOR,),
    }
    claims.update(changes)
    return mint(InvitationClaims(**claims), key)


def alg_swapped() -> str:
    """A token whose protected header claims ES256 (-7), signed with the pinned key."""
    protected = encode_protected({HEADER_ALG: -7, HEADER_KID: KEY.kid.encode()})
    claims = InvitationClaims(
        invitation_id="inv-alg",
        visitor="Mallory",
        site=SITE,
        not_before=NOW - 60,
        expires=NOW + 60,
        single_use=False,
        doors=(DOOR,),
    )
    payload = cbor_dumps(claims.to_cbor_map())
    signature = KEY.sign(sig_structure(protected, payload))
    return PREFIX + b45encode(encode_sign1(protected, {}, payload, signature))


def cached_key(key: SigningKey, **kw: Any) -> CachedSigningKey:
    return CachedSigningKey(key.kid, "EdDSA", key.public_bytes(), **kw)


def base_delta() -> Delta:
    """What the central would have pushed to this door."""
    guard_data = {
        "role": "guard",
        "guard_id": "g-7",
        "pin_hash": hash_pin(GUARD_PIN, salt=b"fixed-test-salt!", n=2**10),
    }
    return Delta(
        cursor="c-1",
        signing_keys=[cached_key(KEY)],
        badges=[
            Badge(STAFF_UID, "uid", "Sam Staff"),
            Badge(NTAG_UID, "ntag424", "Nina Ntag", doors=(DOOR,)),
            Badge(GUARD_UID, "uid", "Gail Guard", data=guard_data),
            Badge("04000000000010", "uid", "Ophelia Other", doors=("gate-b",)),
            Badge("04000000000011", "uid", "Ed Expired", not_after=NOW - 1),
            Badge("04000000000012", "uid", "Nora Notyet", not_before=NOW + 3600),
            Badge("04000000000013", "uid", "Rex Revoked"),
            Badge("04000000000014", "uid", "Wendy Weekend", data={"schedule": "weekend"}),
            Badge("04000000000015", "uid", "Olga Office", data={"schedule": "office"}),
            Badge("04000000000016", "uid", "Zed Zone", doors=(), data={"zones": [ZONE]}),
            Badge("04000000000017", "uid", "Dee Disabled", data={"enabled": False}),
            Badge("04000000000018", "uid", "Hal Holiday", data={"schedule": "closed-today"}),
        ],
        revocations=[
            Revocation("invitation", "inv-revoked"),
            Revocation("badge", "04000000000013"),
        ],
        invitations=[
            Invitation("inv-multi", "Ada Lovelace", host="Charles Babbage"),
            Invitation("inv-once", "Adam Smith", host="Charles Babbage"),
            Invitation("inv-bob", "Bob Builder"),
        ],
        schedules=[
            CachedSchedule(
                "office",
                {"tz": "UTC", "windows": [{"days": "mon-fri", "from": "07:00", "to": "19:00"}]},
            ),
            CachedSchedule(
                "closed-today",
                {
                    "tz": "UTC",
                    "windows": [{"days": "mon-sun", "from": "00:00", "to": "24:00"}],
                    "holidays": [{"date": "2026-11-18", "name": "Site closure"}],
                },
            ),
            CachedSchedule(
                "weekend",
                {"tz": "UTC", "windows": [{"days": "sat-sun", "from": "00:00", "to": "24:00"}]},
            ),
        ],
        used_invitations=[("inv-used", NOW + 3600)],
    )


@dataclass
class Clock:
    """Wall and monotonic time that move only when a test says so."""

    wall: float = float(NOW)
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    # The store's Clock protocol: the journal stamps events with the agent's time, as
    # on a device (the time floor reads the journal head at start-up).
    def wall_ms(self) -> int:
        return int(self.wall * 1000)

    def mono_ns(self) -> int:
        return int(self.mono * 1e9)


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> AgentConfig:
    """The simulator configuration with paths under ``tmp_path`` and ``sections`` merged in."""
    data = tomllib.loads(simulator_config_path().read_text())
    data["paths"] = {"state_dir": str(tmp_path / "state"), "socket": str(tmp_path / "agent.sock")}
    for kind in ("camera", "qr"):
        data["hardware"].pop(kind, None)  # the agent never opens the kiosk's camera
    data["hardware"]["gpio"]["debounce_s"] = 0  # inputs act at once: no sleeping in tests
    data["hardware"]["nfc"]["debounce"] = 0
    data["ntag424"] = {"meta_read_key": META_KEY.hex(), "file_read_key": FILE_KEY.hex()}
    # A kiosk's agent: a guard console, and the test guard's bare-UID badge may log in.
    data["guard"] = {"console": True, "accept_uid_login": True}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, tmp_path)


@dataclass
class Rig:
    """One agent on simulated hardware, and what a test needs to look at it."""

    agent: Agent
    store: Store
    devices: Devices
    scheduler: ManualScheduler
    clock: Clock
    config: AgentConfig
    stack: ExitStack = field(repr=False)

    @property
    def relay(self) -> bool:
        return self.devices.door_sim.relay_energised

    @property
    def sim(self) -> Any:
        return self.devices.door_sim

    def events(self, kind: str | None = None) -> list[Any]:
        found = self.store.journal.events(limit=100_000)
        return [e for e in found if kind is None or e.type == kind]

    def decisions(self) -> list[dict[str, Any]]:
        return [e.payload for e in self.events("access.decision")]

    def login(self) -> str:
        return self.agent.guard_login(GUARD_UID, GUARD_PIN).token


@contextmanager
def rigs(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Build rigs under ``tmp_path``; all are closed when the block ends.

    ``delta`` replaces the base delta, other keyword arguments are config sections.
    """
    stacks: list[ExitStack] = []
    counter = iter(range(1000))

    def build(
        *,
        delta: Delta | None = None,
        synced_at: float | None = NOW - 600,
        state: Path | None = None,
        clock: Clock | None = None,
        time_floor: float | None = None,
        **sections: dict[str, Any],
    ) -> Rig:
        where = state or tmp_path / f"rig{next(counter)}"
        where.mkdir(parents=True, exist_ok=True)
        config = make_config(where, **sections)
        stack = ExitStack()
        stacks.append(stack)
        config.paths.state_dir.mkdir(parents=True, exist_ok=True)
        clock = clock or Clock()
        store = stack.enter_context(
            Store.open(StoreSettings(path=config.paths.database, reserve_bytes=0), clock=clock)
        )
        if time_floor is not None:  # a trusted time seen before (a previous run, the central)
            record_floor(store, time_floor, "central")
        if state is None or delta is not None:
            store.cache.apply_delta(
                delta or base_delta(),
                synced_at_ms=None if synced_at is None else int(synced_at * 1000),
            )
        devices = stack.enter_context(open_devices(config.hardware, camera=False))
        scheduler = ManualScheduler()
        agent = Agent(
            config,
            store,
            devices,
            scheduler=scheduler,
            wall_clock=lambda: clock.wall,
            mono_clock=lambda: clock.mono,
        )
        stack.callback(agent.close)
        return Rig(agent, store, devices, scheduler, clock, config, stack)

    try:
        yield build
    finally:
        for stack in reversed(stacks):
            stack.close()


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Build a rig (see :func:`rigs`)."""
    with rigs(tmp_path) as build:
        yield build


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    pytest.fail(f"condition not met within {timeout} s")


# -- every reason code, end to end ---------------------------------------------------------

UID_DOOR = {"door": {"accept_uid": True}}


def qr(text_fn: Callable[[], str]) -> Callable[[], Credential]:
    return lambda: Credential.qr(text_fn())


def uid(hex_uid: str) -> Callable[[], Credential]:
    return lambda: Credential.badge(bytes.fromhex(hex_uid))


def ntag(counter: int, **kw: Any) -> Callable[[], Credential]:
    return lambda: Credential.badge(bytes.fromhex(NTAG_UID), sun_url(counter, **kw))


CASES: list[tuple[str, dict[str, Any], Callable[[], Credential], Reason]] = [
    ("qr multi-use", {}, qr(invite), Reason.GRANTED),
    (
        "qr single-use",
        {},
        qr(lambda: invite(invitation_id="inv-once", single_use=True)),
        Reason.GRANTED,
    ),
    ("qr for a zone of the door", {}, qr(lambda: invite(doors=(), zones=(ZONE,))), Reason.GRANTED),
    ("uid badge", UID_DOOR, uid(STAFF_UID), Reason.GRANTED),
    ("uid badge by zone", UID_DOOR, uid("04000000000016"), Reason.GRANTED),
    ("uid badge inside its schedule", UID_DOOR, uid("04000000000015"), Reason.GRANTED),
    ("ntag424 badge", {}, ntag(7), Reason.GRANTED),
    (
        "qr expired",
        {},
        qr(lambda: invite(not_before=NOW - 7200, expires=NOW - 301)),
        Reason.EXPIRED,
    ),
    ("badge expired", UID_DOOR, uid("04000000000011"), Reason.EXPIRED),
    (
        "qr not yet valid",
        {},
        qr(lambda: invite(not_before=NOW + 301, expires=NOW + 7200)),
        Reason.NOT_YET_VALID,
    ),
    ("badge not yet valid", UID_DOOR, uid("04000000000012"), Reason.NOT_YET_VALID),
    ("qr other door", {}, qr(lambda: invite(doors=("gate-b",))), Reason.WRONG_DOOR),
    ("badge other door", UID_DOOR, uid("04000000000010"), Reason.WRONG_DOOR),
    ("qr other site", {}, qr(lambda: invite(site="branch")), Reason.WRONG_SITE),
    ("qr revoked", {}, qr(lambda: invite(invitation_id="inv-revoked")), Reason.REVOKED),
    ("badge revoked", UID_DOOR, uid("04000000000013"), Reason.REVOKED),
    ("badge disabled", UID_DOOR, uid("04000000000017"), Reason.REVOKED),
    (
        "qr used at another door",
        {},
        qr(lambda: invite(invitation_id="inv-used", single_use=True)),
        Reason.REPLAYED,
    ),
    ("qr forged", {}, qr(lambda: invite(FORGER)), Reason.BAD_SIGNATURE),
    ("ntag424 MAC under another key", {}, ntag(7, key=WRONG_FILE_KEY), Reason.BAD_SIGNATURE),
    ("qr unknown key", {}, qr(lambda: invite(UNPINNED)), Reason.UNKNOWN_KEY),
    ("qr alg swapped", {}, qr(alg_swapped), Reason.BAD_ALGORITHM),
    ("qr garbage", {}, qr(lambda: "https://example.org/not-a-token"), Reason.MALFORMED),
    ("badge with no UID", UID_DOOR, lambda: Credential.badge(b""), Reason.MALFORMED),
    (
        "sun url garbage",
        {},
        lambda: Credential.badge(bytes.fromhex(NTAG_UID), "https://x/?cmac=zz"),
        Reason.MALFORMED,
    ),
    ("qr in lockdown", {"door": {"mode": "lockdown"}}, qr(invite), Reason.LOCKDOWN),
    (
        "qr, clock behind the time floor",
        {"time_floor": NOW + 3 * 86_400},
        qr(invite),
        Reason.CLOCK_UNTRUSTED,
    ),
    ("ntag424 in lockdown", {"door": {"mode": "lockdown"}}, ntag(7), Reason.LOCKDOWN),
    # "fire": the simulated fire input is asserted before the presentation.
    ("qr during a fire alarm", {"fire": True}, qr(invite), Reason.EMERGENCY),
    ("ntag424 during a fire alarm", {"fire": True}, ntag(7), Reason.EMERGENCY),
    ("badge outside its schedule", UID_DOOR, uid("04000000000014"), Reason.OUTSIDE_SCHEDULE),
    ("badge on a holiday of its schedule", UID_DOOR, uid("04000000000018"), Reason.HOLIDAY),
    (
        "qr outside the visitor schedule",
        {"door": {"visitor_schedule": "weekend"}},
        qr(invite),
        Reason.OUTSIDE_SCHEDULE,
    ),
    (
        "unknown schedule fails closed",
        {"door": {"visitor_schedule": "typo"}},
        qr(invite),
        Reason.OUTSIDE_SCHEDULE,
    ),
    ("cache too stale", {"door": {"max_offline_staleness_s": 60}}, qr(invite), Reason.CACHE_STALE),
    ("uid badge on a crypto-only door", {}, uid(STAFF_UID), Reason.UID_NOT_ALLOWED),
    ("ntag424 badge without its SUN", UID_DOOR, uid(NTAG_UID), Reason.UID_NOT_ALLOWED),
    ("badge not in the cache", UID_DOOR, uid("04999999999999"), Reason.UNKNOWN_BADGE),
    (
        "qr on a badge-only door",
        {"door": {"accept_qr": False}},
        qr(invite),
        Reason.KIND_NOT_ACCEPTED,
    ),
]


@pytest.mark.parametrize(
    ("sections", "credential", "reason"),
    [pytest.param(s, c, r, id=name) for name, s, c, r in CASES],
)
def test_reason_end_to_end(make_rig, sections, credential, reason):
    sections = dict(sections)
    fire = bool(sections.pop("fire", False))
    rig = make_rig(**sections)
    if fire:
        rig.sim.fire_alarm(True)  # the relay is released by the fire input, not by a grant
    before = len(rig.events())
    result = rig.agent.present(credential())

    assert result["reason"] == reason.value
    assert result["granted"] is (reason is Reason.GRANTED)
    assert rig.relay is (reason is Reason.GRANTED or fire)
    journaled = rig.store.journal.get(result["seq"])
    assert journaled.type == "access.decision"
    assert journaled.payload["reason"] == reason.value
    assert journaled.payload["granted"] is result["granted"]
    assert journaled.payload["door"] == DOOR
    new_types = [e.type for e in rig.events()[before:]]
    expected = ["access.decision", "door.unlocked"] if result["granted"] else ["access.decision"]
    assert new_types == expected
    assert rig.store.journal.verify_chain().ok


#: Decided after the policy at card + PIN wall readers, end to end in
#: tests/edge_agent/test_agent_wall_readers.py (libosdp's reader emulator, its keypad).
CARD_PIN_REASONS = {
    Reason.PIN_REQUIRED,
    Reason.WRONG_PIN,
    Reason.PIN_TIMEOUT,
    Reason.PIN_LOCKED_OUT,
    Reason.PIN_INTERRUPTED,
}


def test_every_reason_code_has_an_end_to_end_case():
    assert {reason for *_, reason in CASES} == set(Reason) - CARD_PIN_REASONS


def test_decision_carries_who_for_a_verified_credential(make_rig):
    rig = make_rig()
    result = rig.agent.present(Credential.qr(invite()), source="kiosk")
    assert result["credential_id"] == "inv-multi"
    assert result["holder"] == "Ada Lovelace"
    assert result["host"] == "Charles Babbage"
    assert result["source"] == "kiosk"
    assert result["event_id"] == rig.store.journal.get(result["seq"]).id


# -- durable first, then act -----------------------------------------------------------------


def test_grant_is_journaled_before_the_relay_energises(make_rig):
    rig = make_rig()
    io = rig.devices.door_io
    head_at_unlock: list[int] = []
    real_unlock = io.unlock

    def unlock() -> None:
        head_at_unlock.append(rig.store.journal.head().seq)
        real_unlock()

    io.unlock = unlock
    result = rig.agent.present(Credential.qr(invite()))

    assert result["granted"] and rig.relay
    # The decision was committed (it is the chain head) when the relay was commanded.
    assert head_at_unlock == [result["seq"]]
    unlocked = rig.events("door.unlocked")
    assert len(unlocked) == 1 and unlocked[0].seq > result["seq"]
    assert unlocked[0].payload["by"] == "qr:inv-multi"
    rig.scheduler.advance(rig.config.door.unlock_s)
    assert not rig.relay
    assert rig.events("door.locked")[-1].seq > unlocked[0].seq


def test_store_error_on_the_decision_keeps_the_door_shut(make_rig, monkeypatch):
    rig = make_rig()
    real_append = rig.store.journal.append

    def failing_append(kind: str, payload: Any = None) -> Any:
        if kind == "access.decision":
            raise StoreIOError(5, "disk I/O error (simulated)")
        return real_append(kind, payload)

    monkeypatch.setattr(rig.store.journal, "append", failing_append)
    with pytest.raises(StoreIOError):
        rig.agent.present(Credential.qr(invite()))
    assert not rig.relay
    assert rig.events("door.unlocked") == []
    assert rig.events("access.decision") == []


def test_closed_journal_keeps_the_door_shut(make_rig):
    rig = make_rig()
    rig.store.close()
    with pytest.raises(Exception) as caught:
        rig.agent.present(Credential.qr(invite()))
    from edge_agent.store import StoreError

    assert isinstance(caught.value, StoreError)
    assert not rig.relay


def test_grant_during_lockdown_race_is_aborted_and_journaled(make_rig, monkeypatch):
    rig = make_rig()
    door = rig.agent.door
    real_append = rig.store.journal.append

    def append(kind: str, payload: Any = None) -> Any:
        event = real_append(kind, payload)
        if kind == "access.decision":  # lockdown lands between decision and action
            door.set_mode(DoorMode.LOCKDOWN, by="guard:g-7", why="race")
        return event

    monkeypatch.setattr(rig.store.journal, "append", append)
    result = rig.agent.present(Credential.qr(invite()))
    assert result["granted"] is False and result["reason"] == "lockdown"
    assert not rig.relay
    aborted = rig.events("access.aborted")
    assert len(aborted) == 1 and aborted[0].payload["seq"] == result["seq"]


# -- replay -----------------------------------------------------------------------------------


def test_single_use_invitation_twice_is_replayed(make_rig):
    rig = make_rig()
    text = invite(invitation_id="inv-once", single_use=True)
    first = rig.agent.present(Credential.qr(text))
    rig.scheduler.advance(10)  # relocked
    second = rig.agent.present(Credential.qr(text))
    assert (first["reason"], second["reason"]) == ("granted", "replayed")
    assert not rig.relay
    assert rig.store.replay.is_used("inv-once")


def test_single_use_invitation_stays_used_across_a_restart(make_rig, tmp_path):
    text = invite(invitation_id="inv-once", single_use=True)
    state = tmp_path / "restart"
    rig = make_rig(state=state, delta=base_delta())
    assert rig.agent.present(Credential.qr(text))["granted"]
    rig.stack.close()  # agent, devices and store closed: a restart

    again = make_rig(state=state)
    assert again.agent.present(Credential.qr(text))["reason"] == "replayed"
    assert [e.type for e in again.events()][-2:] == ["agent.started", "access.decision"]
    assert again.store.journal.verify_chain().ok


def test_single_use_invitation_from_many_threads_opens_once(make_rig):
    rig = make_rig()
    text = invite(invitation_id="inv-once", single_use=True)
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        result = rig.agent.present(Credential.qr(text))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == threads_n
    assert sum(r["granted"] for r in results) == 1
    assert {r["reason"] for r in results if not r["granted"]} == {"replayed"}
    journaled = rig.decisions()
    assert len(journaled) == threads_n
    assert sum(p["granted"] for p in journaled) == 1
    assert len(rig.events("door.unlocked")) == 1
    assert rig.store.journal.verify_chain().ok


def test_ntag424_counter_must_increase(make_rig):
    rig = make_rig()
    present = rig.agent.present
    badge = bytes.fromhex(NTAG_UID)
    assert present(Credential.badge(badge, sun_url(10)))["granted"]
    assert present(Credential.badge(badge, sun_url(10)))["reason"] == "replayed"
    assert present(Credential.badge(badge, sun_url(9)))["reason"] == "replayed"
    assert present(Credential.badge(badge, sun_url(11)))["granted"]
    assert rig.store.replay.last_counter(NTAG_UID) == 11


def test_ntag424_same_tap_from_many_threads_opens_once(make_rig):
    rig = make_rig()
    url = sun_url(42)
    barrier = threading.Barrier(6)
    results: list[bool] = []

    def attempt() -> None:
        barrier.wait()
        results.append(rig.agent.present(Credential.badge(bytes.fromhex(NTAG_UID), url))["granted"])

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 5 + [True]


# -- guards -----------------------------------------------------------------------------------


def test_guard_login_is_journaled(make_rig):
    rig = make_rig()
    session = rig.agent.guard_login(GUARD_UID.lower(), GUARD_PIN)
    assert (session.guard_id, session.name) == ("g-7", "Gail Guard")
    assert rig.events("guard.login")[-1].payload == {"guard_id": "g-7", "name": "Gail Guard"}
    rig.agent.guard_logout(session.token)
    assert rig.events("guard.logout")[-1].payload == {"guard_id": "g-7", "name": "Gail Guard"}
    with pytest.raises(ActionError) as denied:
        rig.agent.guard_session(session.token)
    assert action_status(denied.value) == 401


@pytest.mark.parametrize(
    ("badge", "pin", "code", "answer"),
    [
        (GUARD_UID, "0000", "bad_pin", "not_recognised"),
        (STAFF_UID, GUARD_PIN, "unknown_guard", "not_recognised"),  # a badge, not a guard's
        ("04999999999999", GUARD_PIN, "unknown_guard", "not_recognised"),
        ("not-hex", GUARD_PIN, "bad_uid", "bad_request"),
    ],
)
def test_guard_login_failures_are_journaled(make_rig, badge, pin, code, answer):
    rig = make_rig()
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(badge, pin)
    # outside, one answer for both (no guard enumeration); the journal keeps the detail
    assert (denied.value.code, denied.value.detail) == (answer, code)
    failed = rig.events("guard.login_failed")[-1].payload
    assert (failed["badge_uid"], failed["why"]) == (
        badge.upper() if answer != "bad_request" else badge,
        code,
    )


def test_guard_lockout_after_repeated_failures(make_rig):
    rig = make_rig(guard={"max_pin_failures": 3, "lockout_s": 60})
    codes = []
    for _ in range(3):
        with pytest.raises(GuardDenied) as denied:
            rig.agent.guard_login(GUARD_UID, "9999")
        codes.append(denied.value.code)
    assert codes == ["not_recognised", "not_recognised", "locked_out"]
    with pytest.raises(GuardDenied) as denied:  # even the right PIN, while locked out
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "locked_out" and 0 < denied.value.retry_after_s <= 60
    failed = [e.payload for e in rig.events("guard.login_failed")]
    assert [(e["why"], e.get("failures")) for e in failed] == [
        ("bad_pin", 1),
        ("bad_pin", 2),
        ("bad_pin", 3),  # the failure that locks the guard out says so
        ("locked_out", None),
    ]
    assert failed[2]["locked_out_s"] == 60
    rig.clock.advance(61)
    assert rig.agent.guard_login(GUARD_UID, GUARD_PIN).guard_id == "g-7"


def test_guard_session_expires_when_idle(make_rig):
    rig = make_rig(guard={"session_timeout_s": 120})
    token = rig.login()
    rig.clock.advance(100)
    rig.agent.guard_action(token, "lockdown", "drill")  # touching extends the session
    rig.clock.advance(100)
    rig.agent.guard_action(token, "normal", "drill over")
    rig.clock.advance(121)
    with pytest.raises(ActionError) as denied:
        rig.agent.guard_action(token, "lockdown", "too late")
    assert (denied.value.code, action_status(denied.value)) == ("not_logged_in", 401)


def test_guard_modes_lockdown_free_access_normal(make_rig):
    rig = make_rig()
    token = rig.login()

    state = rig.agent.guard_action(token, "lockdown", "intruder reported")
    assert state["mode"] == "lockdown" and not rig.relay
    assert rig.agent.present(Credential.qr(invite()))["reason"] == "lockdown"
    with pytest.raises(ActionError) as refused:
        rig.agent.guard_action(token, "open_once", "let the cleaner in")
    assert (refused.value.code, action_status(refused.value)) == ("lockdown", 409)

    state = rig.agent.guard_action(token, "free_access", "open day")
    assert state["mode"] == "free_access" and state["unlocked"] and rig.relay
    rig.scheduler.advance(3600)
    assert rig.relay  # held open, no timer

    state = rig.agent.guard_action(token, "normal", "open day over")
    assert state["mode"] == "normal" and not rig.relay

    actions = [(e.payload["action"], e.payload["why"]) for e in rig.events("guard.action")]
    assert actions == [  # the refused open once is not an action done (issue #11)
        ("lockdown", "intruder reported"),
        ("free_access", "open day"),
        ("normal", "open day over"),
    ]
    refused = [
        (e.payload["action"], e.payload["reason_code"])
        for e in rig.events()
        if e.type == "guard.action_refused"
    ]
    assert refused == [("open_once", "lockdown")]
    assert all(e.payload["guard_id"] == "g-7" for e in rig.events("guard.action"))
    changes = [
        (e.payload["mode"], e.payload["by"], e.payload["why"]) for e in rig.events("mode.changed")
    ]
    assert changes == [
        ("lockdown", "guard:g-7", "intruder reported"),
        ("free_access", "guard:g-7", "open day"),
        ("normal", "guard:g-7", "open day over"),
    ]


def test_guard_open_once(make_rig):
    rig = make_rig()
    token = rig.login()
    state = rig.agent.guard_action(token, "open_once", "courier")
    assert state["unlocked"] and rig.relay
    assert rig.events("door.unlocked")[-1].payload["by"] == "guard:g-7"
    rig.scheduler.advance(rig.config.door.unlock_s)
    assert not rig.relay


@pytest.mark.parametrize(
    ("action", "reason", "alarm", "code"),
    [
        ("explode", "because", None, "unknown_action"),
        ("lockdown", "  ", None, "reason_required"),
        ("acknowledge", "seen", "aliens", "unknown_alarm"),
        ("acknowledge", "seen", None, "unknown_alarm"),
    ],
)
def test_guard_action_refusals_are_not_journaled(make_rig, action, reason, alarm, code):
    rig = make_rig()
    token = rig.login()
    with pytest.raises(ActionError) as refused:
        rig.agent.guard_action(token, action, reason, alarm)
    assert (refused.value.code, action_status(refused.value)) == (code, 400)
    assert rig.events("guard.action") == []


def test_guard_action_without_session(make_rig):
    rig = make_rig()
    with pytest.raises(ActionError) as refused:
        rig.agent.guard_action("no-such-token", "lockdown", "why not")
    assert action_status(refused.value) == 401
    assert rig.agent.door.mode is DoorMode.NORMAL


# -- alarms, fire -----------------------------------------------------------------------------


def test_forced_open_alarm_acknowledged_with_who_and_why(make_rig):
    rig = make_rig()
    rig.sim.open_door()  # nobody was granted: forced
    raised = rig.events("alarm.raised")
    assert [e.payload["alarm"] for e in raised] == ["forced_open"]
    token = rig.login()
    state = rig.agent.guard_action(token, "acknowledge", "checked: wind", "forced_open")
    assert state["alarms"] == [
        {
            "alarm": "forced_open",
            "active": True,
            "acknowledged": True,
            "age_s": 0.0,
            "cleared_s": None,
        }
    ]
    ack = rig.events("alarm.acknowledged")[-1].payload
    assert (ack["alarm"], ack["by"], ack["why"]) == ("forced_open", "guard:g-7", "checked: wind")
    with pytest.raises(ActionError) as again:
        rig.agent.guard_action(token, "acknowledge", "again", "forced_open")
    assert (again.value.code, action_status(again.value)) == ("no_such_alarm", 409)
    rig.sim.close_door()
    assert rig.agent.status()["door"]["alarms"] == []


def test_held_open_alarm_after_a_grant(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    rig.sim.open_door()
    assert rig.events("door.opened")[-1].payload["authorised"] is True
    rig.scheduler.advance(rig.config.door.held_open_s + 1)
    assert [e.payload["alarm"] for e in rig.events("alarm.raised")] == ["held_open"]
    token = rig.login()
    rig.agent.guard_action(token, "acknowledge", "delivery in progress", "held_open")
    rig.sim.close_door()
    assert [e.payload["alarm"] for e in rig.events("alarm.cleared")] == ["held_open"]


def test_fire_input_puts_the_door_in_emergency(make_rig):
    rig = make_rig()
    token = rig.login()
    rig.sim.fire_alarm(True)
    assert rig.agent.door.mode is DoorMode.EMERGENCY and rig.relay
    change = rig.events("mode.changed")[-1].payload
    assert (change["mode"], change["by"]) == ("emergency", "fire-input")
    assert "fire" in [e.payload["alarm"] for e in rig.events("alarm.raised")]
    rig.scheduler.advance(3600)
    assert rig.relay  # stays released for as long as the fire input says so

    state = rig.agent.guard_action(token, "lockdown", "after the fire")
    assert state["mode"] == "emergency"  # deferred, not applied
    assert rig.events("mode.deferred")[-1].payload["mode"] == "lockdown"

    rig.sim.fire_alarm(False)
    assert rig.agent.door.mode is DoorMode.LOCKDOWN and not rig.relay
    assert rig.agent.present(Credential.qr(invite()))["reason"] == "lockdown"


def test_rex_and_tamper_are_journaled(make_rig):
    rig = make_rig()
    rig.sim.set_input("rex", True)
    rig.sim.set_input("rex", False)
    assert rig.relay
    assert rig.events("rex.pressed") and rig.events("door.unlocked")[-1].payload["by"] == "rex"
    rig.sim.tamper(True)
    assert rig.events("alarm.raised")[-1].payload["alarm"] == "tamper"


# -- visitors and check-in ------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0" + b"portier test photo" + b"\xff\xd9"


def test_visitor_lookup_needs_a_guard(make_rig):
    rig = make_rig()
    with pytest.raises(ActionError) as refused:
        rig.agent.visitor_lookup("bad-token", "ada")
    assert action_status(refused.value) == 401
    token = rig.login()
    rig.agent.present(Credential.qr(invite(invitation_id="inv-once", single_use=True)))
    found = rig.agent.visitor_lookup(token, "  ADA ")
    assert [(v["invitation_id"], v["visitor"], v["used"]) for v in found] == [
        ("inv-multi", "Ada Lovelace", False),
        ("inv-once", "Adam Smith", True),
    ]
    assert rig.agent.visitor_lookup(token, "zz") == []


def test_self_checkin_with_consented_photo(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    result = rig.agent.checkin("inv-multi", consent=True, photo=JPEG)
    assert result["checked_in"] and result["photo"]
    assert rig.store.media.get(result["photo"]) == JPEG
    event = rig.store.journal.get(result["seq"])
    assert event.type == "visitor.checked_in"
    assert (
        event.payload
        == {
            "invitation_id": "inv-multi",
            "by": "visitor",
            "photo": result["photo"],
            "consent": True,
            "visitor": "Ada Lovelace",  # named for the guard console's events
            "door": "gate-a",  # the muster list: door, host, end of validity, zones
            "host": "Charles Babbage",
            "not_after": NOW + 3600,  # the invitation's own end (not in the cache): auto check-out
            "zones": [],
            "pass_hash": pass_hash(result["pass_id"]),  # the pass id itself is answered only
            "pass_ref": result["pass_id"][:8],  # printed under the code, for a guard to type
            # What the pass printed, for a guard's reprint of the same pass.
            "pass": {
                "valid_from": NOW - 3600,
                "valid_until": NOW + 3600,
                "doors": ["gate-a"],
                "zones": [],
                "category": None,
                "site": "hq",
            },
        }
    )


def test_photo_without_consent_is_refused_and_not_stored(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    with pytest.raises(ActionError) as refused:
        rig.agent.checkin("inv-multi", consent=False, photo=JPEG)
    assert refused.value.code == "no_consent"
    assert rig.store.media.usage().count == 0
    assert rig.events("visitor.checked_in") == []
    # Without a photo, declining is fine.
    result = rig.agent.checkin("inv-multi", consent=False, photo=None)
    assert result["photo"] is None
    assert rig.store.journal.get(result["seq"]).payload["consent"] is False


def test_manual_checkin_needs_a_guard(make_rig):
    rig = make_rig()
    with pytest.raises(ActionError) as refused:
        rig.agent.checkin("inv-bob", consent=False, photo=None)
    assert (refused.value.code, action_status(refused.value)) == ("guard_required", 401)
    with pytest.raises(ActionError):
        rig.agent.checkin("inv-bob", consent=False, photo=None, token="stale-token")
    token = rig.login()
    result = rig.agent.checkin("inv-bob", consent=True, photo=JPEG, token=token)
    assert rig.store.journal.get(result["seq"]).payload["by"] == "guard:g-7"


def test_self_checkin_window_closes(make_rig):
    rig = make_rig()
    assert rig.agent.present(Credential.qr(invite()))["granted"]
    rig.clock.advance(CHECKIN_WINDOW_S + 1)
    with pytest.raises(ActionError) as refused:
        rig.agent.checkin("inv-multi", consent=False, photo=None)
    assert refused.value.code == "guard_required"


def test_a_denied_invitation_cannot_self_checkin(make_rig):
    rig = make_rig()
    assert not rig.agent.present(Credential.qr(invite(FORGER)))["granted"]
    with pytest.raises(ActionError):
        rig.agent.checkin("inv-multi", consent=False, photo=None)


# -- the NFC reader loop -------------------------------------------------------------------


def test_reader_loop_decides_and_journals(make_rig):
    rig = make_rig()
    rig.agent.start_reader()
    reader = rig.devices.reader
    tap = reader.present(NTAG_UID, ndef=[ndef.UriRecord(sun_url(3))])
    assert tap.wait(5) and tap.reported
    decision = wait_until(rig.decisions)[-1]
    assert (decision["source"], decision["reason"], decision["holder"]) == (
        "nfc",
        "granted",
        "Nina Ntag",
    )
    wait_until(lambda: rig.events("door.unlocked"))
    assert rig.relay

    # A bare UID read of the same (cryptographic) badge: a clone.
    reader.present(NTAG_UID).wait(5)
    decision = wait_until(lambda: len(rig.decisions()) == 2 and rig.decisions())[-1]
    assert decision["reason"] == "uid_not_allowed"
    assert rig.agent.reader_alive and rig.agent.healthy()


def test_reader_loop_survives_a_store_error(make_rig, monkeypatch):
    rig = make_rig()
    real_append = rig.store.journal.append
    fail = threading.Event()
    fail.set()

    real_claimed = rig.store.journal.append_claimed

    def append(kind: str, payload: Any = None) -> Any:
        if kind == "access.decision" and fail.is_set():
            fail.clear()
            raise StoreIOError(5, "simulated")
        return real_append(kind, payload)

    def append_claimed(claim: Any, granted: Any, refused: Any) -> Any:
        # SUN taps claim their counter in the same commit as the decision
        if fail.is_set():
            fail.clear()
            raise StoreIOError(5, "simulated")
        return real_claimed(claim, granted, refused)

    monkeypatch.setattr(rig.store.journal, "append", append)
    monkeypatch.setattr(rig.store.journal, "append_claimed", append_claimed)
    rig.agent.start_reader()
    rig.devices.reader.present(NTAG_UID, ndef=[ndef.UriRecord(sun_url(1))]).wait(5)
    wait_until(lambda: not fail.is_set())
    assert not rig.relay
    rig.devices.reader.present(NTAG_UID, ndef=[ndef.UriRecord(sun_url(2))]).wait(5)
    assert wait_until(rig.decisions)[-1]["granted"]
    assert rig.agent.reader_alive


def test_close_stops_the_reader_locks_and_journals(make_rig):
    rig = make_rig()
    rig.agent.start_reader()
    assert rig.agent.present(Credential.qr(invite()))["granted"] and rig.relay
    rig.agent.close()
    rig.agent.close()  # idempotent: one stop event
    assert not rig.relay
    assert [e.type for e in rig.events()][-1] == "agent.stopped"
    assert len(rig.events("agent.stopped")) == 1
    assert rig.events("agent.stopped")[0].payload["relay_energised"] is False


# -- key rotation without restart ----------------------------------------------------------


def test_key_rotation_without_restart(make_rig):
    rig = make_rig()
    old_token = invite(KEY)
    new_token = invite(NEXT_KEY)
    assert rig.agent.present(Credential.qr(old_token))["granted"]
    assert rig.agent.present(Credential.qr(new_token))["reason"] == "unknown_key"

    # The central publishes k2 and gives k1 a last day.
    rig.store.cache.apply_delta(
        Delta(
            cursor="c-2",
            signing_keys=[cached_key(KEY, not_after=NOW + 86_400), cached_key(NEXT_KEY)],
        )
    )
    assert rig.agent.present(Credential.qr(new_token))["granted"]
    assert rig.agent.present(Credential.qr(old_token))["granted"]  # inside its window

    rig.clock.advance(86_400 + rig.config.door.max_clock_skew_s + 1)
    late_old = invite(KEY, not_before=int(rig.clock.wall) - 60, expires=int(rig.clock.wall) + 60)
    late_new = invite(
        NEXT_KEY, not_before=int(rig.clock.wall) - 60, expires=int(rig.clock.wall) + 60
    )
    assert rig.agent.present(Credential.qr(late_old))["reason"] == "unknown_key"
    assert rig.agent.present(Credential.qr(late_new))["granted"]

    rig.store.cache.apply_delta(Delta(cursor="c-3", deleted_signing_keys=["k2"]))
    assert rig.agent.present(Credential.qr(late_new))["reason"] == "unknown_key"


def test_badge_revoked_by_delta_without_restart(make_rig):
    rig = make_rig(door={"accept_uid": True})
    assert rig.agent.present(Credential.badge(bytes.fromhex(STAFF_UID)))["granted"]
    rig.store.cache.apply_delta(Delta(cursor="c-2", revocations=[Revocation("badge", STAFF_UID)]))
    assert rig.agent.present(Credential.badge(bytes.fromhex(STAFF_UID)))["reason"] == "revoked"


# -- status and the event bus --------------------------------------------------------------


def test_status(make_rig):
    rig = make_rig()
    rig.agent.present(Credential.qr(invite()))
    status = rig.agent.status()
    assert status["device"] == "sim-gate-a" and status["site"] == SITE
    assert status["door_id"] == DOOR
    assert status["door"]["mode"] == "normal" and status["door"]["unlocked"] is True
    assert status["cache_staleness_s"] == 600.0
    assert status["last_sync"] == (NOW - 600) * 1000
    assert status["events_waiting"] == len(rig.events())
    assert status["reader"] is True and status["hardware_errors"] == {}
    assert status["disk"]["level"] in ("ok", "low", "critical")


def test_status_never_synced(make_rig, tmp_path):
    rig = make_rig(state=tmp_path / "empty")  # a store no delta ever reached
    status = rig.agent.status()
    assert status["cache_staleness_s"] is None and status["last_sync"] is None


def test_event_bus_publishes_journaled_events(make_rig):
    rig = make_rig()
    with rig.agent.bus.subscribe() as inbox:
        result = rig.agent.present(Credential.qr(invite()))
        got = [inbox.get(timeout=1) for _ in range(2)]
    assert [(e["type"], e.get("seq")) for e in got] == [
        ("access.decision", result["seq"]),
        ("door.unlocked", result["seq"] + 1),
    ]
    assert got[0]["reason"] == "granted"
    assert rig.agent.bus.subscriber_count == 0


def test_event_bus_slow_subscriber_gets_a_gap_marker():
    bus = EventBus(maxsize=3)
    with bus.subscribe() as inbox:
        for i in range(5):
            bus.publish("tick", {"i": i})
        got = []
        while not inbox.empty():
            got.append(inbox.get_nowait())
    assert got[-1]["type"] == "stream.gap"
    assert len(got) == 3


def test_event_bus_callback_that_raises_does_not_stop_others():
    bus = EventBus()
    seen: list[str] = []

    def bad(event: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    with bus.subscribe_callback(bad), bus.subscribe_callback(lambda e: seen.append(e["type"])):
        bus.publish("x", {})
    assert seen == ["x"]


def test_simulate_is_refused_on_real_hardware(make_rig):
    rig = make_rig()
    rig.agent.devices = Devices(door_io=rig.devices.door_io)  # as if GPIO were real
    with pytest.raises(ActionError) as refused:
        rig.agent.simulate("door_open", {})
    assert action_status(refused.value) == 403


def test_simulate_drives_the_simulated_door_and_reader(make_rig):
    rig = make_rig()
    rig.agent.start_reader()
    assert rig.agent.simulate("door_open", {}) == {"ok": True, "action": "door_open"}
    assert rig.agent.status()["door"]["door_open"] is True
    rig.agent.simulate("door_close", {})
    rig.agent.simulate("badge", {"uid": NTAG_UID, "sun_url": sun_url(5)})
    assert wait_until(rig.decisions)[-1]["granted"]
    with pytest.raises(ActionError) as bad:
        rig.agent.simulate("badge", {"uid": "xyz"})
    assert action_status(bad.value) == 400
    with pytest.raises(ActionError) as unknown:
        rig.agent.simulate("teleport", {})
    assert unknown.value.code == "unknown_action"  # the local API answers it 404
