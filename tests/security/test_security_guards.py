"""Issue #10, guards: attacks on the guard console's login, lockout and credentials.

Each test attacks one property and failed on the code before the fix:

1. only a valid guard badge opens the console (revoked, disabled, outside its window,
   not a guard, console off), and an open session ends when its badge stops being valid;
2. one lockout per guard whatever the UID's spelling, durable across a restart, and a
   per-device rate limit;
3. every failed login is journaled, never a 5xx (a UID padded past the journal's payload
   cap was an unlimited, silent PIN oracle);
4. guard credentials cannot be recovered from a door: no PIN hashes kept without a
   console, NTAG 424 guards log in only with a fresh verified tap, bare-UID guard logins
   only where configured, and PINs of at least 6 digits under a costly scrypt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import ActionError
from edge_agent.api import action_status
from edge_agent.client import AgentUnavailable
from edge_agent.guards import GuardDenied
from edge_agent.store import Badge, Delta, Revocation
from portier_common.pins import MIN_PIN_DIGITS, SCRYPT_N, hash_pin, verify_pin
from portier_common.uid import BadgeUid
from tests.edge_agent.test_agent import (
    GUARD_PIN,
    GUARD_UID,
    NOW,
    STAFF_UID,
    base_delta,
    rigs,
    sun_url,
    wait_until,
)
from tests.edge_agent.test_local_api import EDGE_AGENT, Served, raw, start_agent, wait_for

NTAG_GUARD_UID = "04AA0424000001"
#: Guard logins on: a console that accepts bare-UID guard badges (the test guard's kind).
CONSOLE = {"console": True, "accept_uid_login": True}


@pytest.fixture
def make_rig(tmp_path: Path):
    with rigs(tmp_path) as build:
        yield build


def _guard_data(**extra: Any) -> dict[str, Any]:
    data = dict(next(b for b in base_delta().badges if b.holder == "Gail Guard").data or {})
    data.update(extra)
    return data


def _failures(rig: Any) -> list[dict[str, Any]]:
    return [e.payload for e in rig.events("guard.login_failed")]


# -- 1. only a valid guard badge opens the console -------------------------------------------


@pytest.mark.parametrize(
    ("badge", "why"),
    [
        (Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data(enabled=False)), "disabled"),
        (Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data(), not_after=1), "expired"),
        (
            Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data(), not_before=4_000_000_000),
            "not_yet_valid",
        ),
        (Badge(GUARD_UID, "uid", "Gail Guard", data={"enabled": True}), "unknown_guard"),
    ],
)
def test_invalid_guard_badge_with_right_pin_is_refused(make_rig, badge, why):
    rig = make_rig(guard=CONSOLE)
    rig.store.cache.apply_delta(Delta(cursor="c-2", badges=[badge]))
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "not_recognised"  # the same answer as a wrong PIN
    assert _failures(rig)[-1]["why"] == why
    assert rig.events("guard.login") == []


def test_a_clock_set_back_does_not_resurrect_an_expired_guard_badge(make_rig):
    """A Pi without RTC, 3 days behind its time floor: a guard badge that ended a day
    ago by the trusted time does not open the console; one without bounds still does."""
    floor = NOW + 3 * 86_400
    rig = make_rig(guard=CONSOLE, time_floor=floor)
    expired = Badge(
        GUARD_UID, "uid", "Gail Guard", data=_guard_data(), not_after=int(floor - 86_400)
    )
    rig.store.cache.apply_delta(Delta(cursor="c-2", badges=[expired]))
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "not_recognised"
    assert _failures(rig)[-1]["why"] == "clock_untrusted"
    unbounded = Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data())
    rig.store.cache.apply_delta(Delta(cursor="c-3", badges=[unbounded]))
    assert rig.agent.guard_login(GUARD_UID, GUARD_PIN).guard_id


def test_revoked_guard_badge_with_right_pin_cannot_set_free_access(make_rig):
    rig = make_rig(guard=CONSOLE)
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", revocations=[Revocation("badge", GUARD_UID.lower())])
    )
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "not_recognised"
    assert _failures(rig)[-1]["why"] == "revoked"
    assert rig.agent.door.snapshot()["mode"] == "normal"


def test_revocation_during_a_session_ends_it(make_rig):
    rig = make_rig(guard=CONSOLE)
    token = rig.login()
    rig.agent.guard_action(token, "lockdown", "drill")
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", revocations=[Revocation("badge", GUARD_UID.lower())])
    )
    for call in (
        lambda: rig.agent.guard_action(token, "free_access", "fired guard"),
        lambda: rig.agent.visitor_lookup(token, "ad"),
        lambda: rig.agent.checkin("inv-bob", consent=False, photo=None, token=token),
    ):
        with pytest.raises(ActionError) as denied:
            call()
        assert action_status(denied.value) == 401
    assert rig.agent.door.snapshot()["mode"] == "lockdown"
    ended = rig.events("guard.session_ended")
    assert len(ended) == 1 and ended[0].payload["guard_id"] == "g-7"
    assert ended[0].payload["why"] == "revoked"


def test_revocation_ends_an_idle_session_without_any_call(make_rig):
    rig = make_rig(guard=CONSOLE)
    token = rig.login()
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", badges=[Badge(GUARD_UID, "uid", "G", data=_guard_data(enabled=False))])
    )
    rig.agent.sweep_guard_sessions()  # what the agent's sweep thread does every 2 s
    assert [e.payload["why"] for e in rig.events("guard.session_ended")] == ["disabled"]
    assert rig.agent.guards.sessions.check(token) is None


def test_the_agent_ends_a_revoked_session_by_itself(make_rig):
    rig = make_rig(guard=CONSOLE)
    token = rig.login()
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", revocations=[Revocation("badge", GUARD_UID.lower())])
    )
    wait_until(lambda: rig.events("guard.session_ended"), timeout=10)  # the sweep thread
    assert rig.agent.guards.sessions.check(token) is None


def test_no_guard_console_no_guard_login(make_rig):
    rig = make_rig(guard={"console": False, "accept_uid_login": True})
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "console_disabled"
    assert _failures(rig)[-1]["why"] == "console_disabled"


# -- 2. one lockout per guard, whatever the spelling; rate limit ---------------------------


SPELLINGS = ["04C0FFEE000001", ":04C0FFEE000001", "04 C0 FF EE 00 00 01", "04-c0-ff-ee-00-00-01"]


def test_one_lockout_whatever_the_spelling(make_rig):
    rig = make_rig(guard={**CONSOLE, "max_pin_failures": 3, "lockout_s": 600})
    codes = []
    for spelling in SPELLINGS[:3]:
        with pytest.raises(GuardDenied) as denied:
            rig.agent.guard_login(spelling, "999999")
        codes.append(denied.value.code)
    assert codes == ["not_recognised", "not_recognised", "locked_out"]
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(SPELLINGS[3], GUARD_PIN)
    assert denied.value.code == "locked_out"
    assert {f["guard_id"] for f in _failures(rig)} == {"g-7"}


def test_lockout_survives_a_restart(make_rig, tmp_path):
    state = tmp_path / "restart"
    settings = {**CONSOLE, "max_pin_failures": 2, "lockout_s": 600}
    rig = make_rig(state=state, delta=base_delta(), guard=settings)
    for _ in range(2):
        with pytest.raises(GuardDenied):
            rig.agent.guard_login(GUARD_UID, "999999")
    rig.stack.close()
    again = make_rig(state=state, guard=settings)
    with pytest.raises(GuardDenied) as denied:
        again.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "locked_out" and denied.value.retry_after_s > 500
    again.clock.advance(601)
    assert again.agent.guard_login(GUARD_UID, GUARD_PIN).guard_id == "g-7"


def test_failure_table_stays_bounded(make_rig):
    rig = make_rig(guard={**CONSOLE, "login_attempts_per_minute": 100_000, "login_burst": 1000})
    rig.store.guard_lockouts.cap = 10  # the default is 256: the same rule, fewer scrypts
    for i in range(25):
        with pytest.raises(GuardDenied):
            rig.agent.guard_login(f"04{i:012X}", "999999")
    assert rig.store.guard_lockouts.count() == 10
    for i in range(3):  # the guard's own row is never evicted by unknown UIDs
        with pytest.raises(GuardDenied):
            rig.agent.guard_login(GUARD_UID, "999999")
        with pytest.raises(GuardDenied):
            rig.agent.guard_login(f"05{i:012X}", "999999")
    assert rig.store.guard_lockouts.get("guard:g-7").failures == 3


def test_device_rate_limit(make_rig):
    rig = make_rig(guard={**CONSOLE, "login_attempts_per_minute": 6, "login_burst": 3})
    for _ in range(3):
        with pytest.raises(GuardDenied) as denied:
            rig.agent.guard_login(STAFF_UID, "999999")
        assert denied.value.code == "not_recognised"
    with pytest.raises(GuardDenied) as denied:  # even the right guard and PIN
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "rate_limited" and 0 < denied.value.retry_after_s <= 10
    assert _failures(rig)[-1]["why"] == "rate_limited"
    rig.clock.advance(10)
    assert rig.agent.guard_login(GUARD_UID, GUARD_PIN).guard_id == "g-7"


# -- 3. every failed login journaled, over the real API --------------------------------------


def _journal(database: Path, kind: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT payload FROM events WHERE type = ?", (kind,)).fetchall()
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


@pytest.mark.processes
def test_api_padded_uid_is_journaled_never_5xx_and_no_pin_oracle(tmp_path):
    served = start_agent(
        tmp_path / "a", guard={**CONSOLE, "max_pin_failures": 3, "login_burst": 20}
    )
    try:
        huge = GUARD_UID + " " * 70_000  # whitespace: fromhex ignored it, the journal did not
        answers = []
        for uid, pin in [(huge, GUARD_PIN), (huge, "000000"), ("x" * 70_000, GUARD_PIN)]:
            body = json.dumps({"badge_uid": uid, "pin": pin}).encode()
            status, answer, _ = raw(served, "POST", "/v1/guard/login", body)
            answers.append((status, answer["error"]))
        # one answer whatever the PIN: nothing to learn; never a 5xx
        assert answers == [(400, "bad_request")] * 3
        body = json.dumps({"badge_uid": GUARD_UID, "pin": "1" * 50_000}).encode()
        status, answer, _ = raw(served, "POST", "/v1/guard/login", body)
        assert (status, answer["error"]) == (400, "bad_request")
        body = json.dumps({"badge_uid": GUARD_UID, "pin": "000000"}).encode()
        status, answer, _ = raw(served, "POST", "/v1/guard/login", body)
        assert (status, answer["error"]) == (401, "not_recognised")
        status, answer, _ = raw(served, "POST", "/v1/guard/login", b'{"badge_uid": 7, "pin": 1}')
        assert status == 400
    finally:
        served.stop()
    failed = _journal(served.database, "guard.login_failed")
    assert [f["why"] for f in failed] == ["bad_uid"] * 3 + ["bad_pin_format", "bad_pin", "bad_uid"]
    assert all(len(json.dumps(f)) < 1024 for f in failed)
    assert failed[0]["truncated"] is True and failed[0]["badge_uid"].startswith(GUARD_UID)
    assert failed[4]["guard_id"] == "g-7" and failed[4]["failures"] == 1


def _restart(served: Served) -> Served:
    """``edge-agent run`` again on the same configuration and store (nothing refilled)."""
    log = served.log.with_name("agent-again.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [EDGE_AGENT, "run", "--config", str(served.config)], stdout=out, stderr=out
        )
    again = Served(served.config, served.socket, served.database, process, log)
    wait_for(lambda: _answers(again), timeout=30)
    return again


def _answers(served: Served) -> bool:
    try:
        served.client.status()
    except AgentUnavailable:
        return False
    return True


@pytest.mark.processes
def test_api_spelling_lockout_survives_an_agent_restart(tmp_path):
    guard = {**CONSOLE, "max_pin_failures": 3, "lockout_s": 600}
    served = start_agent(tmp_path / "a", guard=guard)
    try:
        for spelling in SPELLINGS[:3]:
            body = json.dumps({"badge_uid": spelling, "pin": "999999"}).encode()
            status, _, _ = raw(served, "POST", "/v1/guard/login", body)
        assert status == 423
    finally:
        served.stop()
    again = _restart(served)
    try:
        body = json.dumps({"badge_uid": SPELLINGS[3], "pin": GUARD_PIN}).encode()
        status, answer, _ = raw(again, "POST", "/v1/guard/login", body)
        assert (status, answer["error"]) == (423, "locked_out")
        assert answer["retry_after_s"] > 500
    finally:
        again.stop()


@pytest.mark.processes
def test_api_oversized_login_body_is_journaled(tmp_path):
    served = start_agent(tmp_path / "a", guard=CONSOLE)
    try:
        body = json.dumps({"badge_uid": GUARD_UID, "pin": "1" * (5 * 1024 * 1024)}).encode()
        status, answer, _ = raw(served, "POST", "/v1/guard/login", body)
        assert (status, answer["error"]) == (413, "too_large")
    finally:
        served.stop()
    assert [f["why"] for f in _journal(served.database, "guard.login_failed")] == ["too_large"]


@pytest.mark.processes
def test_api_rate_limit_answers_429(tmp_path):
    guard = {**CONSOLE, "login_attempts_per_minute": 2, "login_burst": 2}
    served = start_agent(tmp_path / "a", guard=guard)
    try:
        statuses = []
        for _ in range(3):
            body = json.dumps({"badge_uid": STAFF_UID, "pin": "999999"}).encode()
            status, answer, response = raw(served, "POST", "/v1/guard/login", body)
            statuses.append(status)
        assert statuses == [401, 401, 429]
        assert answer["error"] == "rate_limited" and answer["retry_after_s"] > 0
        assert int(response.getheader("Retry-After")) >= 1
    finally:
        served.stop()


# -- 4. guard credentials cannot be recovered from a door ------------------------------------


def test_no_console_no_pin_hashes_in_the_cache(make_rig):
    rig = make_rig(guard={"console": False})
    assert "pin_hash" not in (rig.store.cache.badge(GUARD_UID).data or {})
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", badges=[Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data())])
    )
    assert "pin_hash" not in (rig.store.cache.badge(GUARD_UID).data or {})
    # An ordinary badge's PIN hash is no console secret: it is card + PIN's second factor,
    # kept (on its way in, and by the start-up sweep) while a guard's is dropped.
    staff_pin = {"pin_hash": _guard_data()["pin_hash"]}
    rig.store.cache.apply_delta(
        Delta(
            cursor="c-3",
            badges=[
                Badge(STAFF_UID, "uid", "Sam Staff", data=staff_pin),
                Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data()),
            ],
        )
    )
    assert (rig.store.cache.badge(STAFF_UID).data or {}).get("pin_hash")
    rig.store.cache.keep_guard_secrets = True  # as if a console had kept the guard's
    rig.store.cache.apply_delta(
        Delta(cursor="c-4", badges=[Badge(GUARD_UID, "uid", "Gail Guard", data=_guard_data())])
    )
    assert rig.store.cache.strip_guard_secrets() == 1  # the guard's only
    assert "pin_hash" not in (rig.store.cache.badge(GUARD_UID).data or {})
    assert (rig.store.cache.badge(STAFF_UID).data or {}).get("pin_hash")


def _ntag_guard_rig(make_rig: Any, **guard: Any) -> Any:
    rig = make_rig(guard={**CONSOLE, **guard})
    data = _guard_data(guard_id="g-424")
    rig.store.cache.apply_delta(
        Delta(cursor="c-2", badges=[Badge(NTAG_GUARD_UID, "ntag424", "Nadia Ntag", data=data)])
    )
    return rig


def test_ntag424_guard_needs_a_verified_fresh_tap(make_rig):
    rig = _ntag_guard_rig(make_rig)
    with pytest.raises(GuardDenied):  # a UID typed into the API
        rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN)
    assert _failures(rig)[-1]["why"] == "tap_required"
    tap = sun_url(40, uid=NTAG_GUARD_UID)
    with pytest.raises(GuardDenied):  # another badge's tap
        rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=sun_url(41))
    assert _failures(rig)[-1]["why"] == "tap_mismatch"
    session = rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=tap)
    assert session.guard_id == "g-424"
    assert rig.store.replay.last_counter(NTAG_GUARD_UID) == 40
    with pytest.raises(GuardDenied):  # the same tap again
        rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=tap)
    assert _failures(rig)[-1]["why"] == "replayed"
    with pytest.raises(GuardDenied):  # a forged MAC
        rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=tap[:-2] + "00")
    assert _failures(rig)[-1]["why"] in ("bad_tap", "replayed")


def test_ntag424_guard_cannot_be_locked_out_without_the_card(make_rig):
    """Someone who read a guard's UID off the badge tries wrong PINs without a tap:
    journaled, but the guard is not locked out of the console."""
    rig = _ntag_guard_rig(make_rig, login_burst=100)
    for _ in range(rig.agent.config.guard.max_pin_failures + 2):
        with pytest.raises(GuardDenied) as refused:
            rig.agent.guard_login(NTAG_GUARD_UID, "000000")
        assert refused.value.code == "not_recognised"
    assert {f["why"] for f in _failures(rig)} == {"tap_required"}
    session = rig.agent.guard_login(
        NTAG_GUARD_UID, GUARD_PIN, sun_url=sun_url(50, uid=NTAG_GUARD_UID)
    )
    assert session.guard_id == "g-424"


def test_ntag424_guard_tap_at_the_kiosk_reader_carries_to_the_login(make_rig):
    rig = _ntag_guard_rig(make_rig)
    tap = sun_url(60, uid=NTAG_GUARD_UID)
    rig.agent.present_badge_tap(bytes.fromhex(NTAG_GUARD_UID), tap)  # the reader's path
    assert rig.store.replay.last_counter(NTAG_GUARD_UID) == 60
    assert rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=tap).guard_id == "g-424"
    with pytest.raises(GuardDenied):  # once only
        rig.agent.guard_login(NTAG_GUARD_UID, GUARD_PIN, sun_url=tap)


def test_uid_guard_login_only_where_configured(make_rig):
    rig = make_rig(guard={"console": True, "accept_uid_login": False})
    with pytest.raises(GuardDenied) as denied:
        rig.agent.guard_login(GUARD_UID, GUARD_PIN)
    assert denied.value.code == "not_recognised"
    assert _failures(rig)[-1]["why"] == "uid_login_disabled"


def test_pin_policy_and_cost():
    assert MIN_PIN_DIGITS >= 6 and SCRYPT_N >= 2**15
    for short in ("1234", "12345"):
        with pytest.raises(ValueError, match=r"^pin:"):
            hash_pin(short)
    encoded = hash_pin("135790", n=2**10)
    assert verify_pin("135790", encoded) and not verify_pin("135791", encoded)
    assert hash_pin("135790").startswith(f"scrypt${SCRYPT_N}$")
    # a legacy 4-digit hash (issued before the policy) still verifies
    salt = b"legacy-salt-0001"
    digest = hashlib.scrypt(b"2468", salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    legacy = f"scrypt$16384$8$1${b64(salt)}${b64(digest)}"
    assert verify_pin("2468", legacy) and not verify_pin("2469", legacy)
    # hashes too costly to check are refused unchecked (a poisoned cache is no DoS)
    assert not verify_pin("2468", legacy.replace("$16384$", f"${2**18}$"))


@pytest.mark.parametrize("text", SPELLINGS)
def test_one_uid_normaliser(text):
    assert BadgeUid.parse(text).hex_upper() == GUARD_UID


@pytest.mark.parametrize("text", ["", "0", "04C0", "zz" * 5, "04" * 11, "0" * 100_000, "04:C0:"])
def test_uid_normaliser_refuses(text):
    with pytest.raises(ValueError):
        BadgeUid.parse(text)


@pytest.mark.parametrize("simulator", [False, True])
def test_first_boot_gives_kiosks_and_only_kiosks_a_guard_console(tmp_path, simulator):
    from images.firstboot import agent_tables
    from images.provision import Provisioning

    def tables(role: str) -> dict[str, Any]:
        settings = Provisioning(
            site="hq", door="gate-a", central_url="https://c.example.org", enroll_token="t" * 32,
            role=role,
        )  # fmt: skip
        return agent_tables(settings, tmp_path, simulator=simulator)

    assert tables("kiosk")["guard"] == {
        "console": True,
        **({"accept_uid_login": True} if simulator else {}),
    }
    assert "guard" not in tables("door")


def test_demo_agent_has_a_guard_console(tmp_path):
    from edge_agent.config import load_config
    from portier_demo.demo import write_agent_config

    config = load_config(write_agent_config(tmp_path, None, "hq"))
    assert config.guard.console and config.guard.accept_uid_login
