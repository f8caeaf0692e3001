"""Guard PIN hashes, sessions and lockout, with a manual clock."""

from __future__ import annotations

import pytest

from edge_agent.guards import Guard, GuardDenied, GuardSessions, hash_pin, verify_pin

GUARD = Guard("g-7", "Sergeant Pepper", "A0B0C0D0", hash_pin("4711", n=2**10))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sessions():
    clock = Clock()
    s = GuardSessions(
        {"A0B0C0D0": GUARD}.get, clock, max_failures=3, lockout_s=60, session_timeout_s=30
    )
    return s, clock


def test_hash_is_salted_and_verifies():
    a, b = hash_pin("123456", n=2**10), hash_pin("123456", n=2**10)
    assert a != b and a.startswith("scrypt$1024$")
    assert verify_pin("123456", a) and not verify_pin("123457", a)


@pytest.mark.parametrize(
    "bad", ["", "scrypt$x", "md5$1$2$3$4$5", "scrypt$1048577$8$1$AA$AA", "scrypt$1024$8$1$!!$AA"]
)
def test_malformed_hashes_never_verify(bad):
    assert verify_pin("1234", bad) is False


@pytest.mark.parametrize("pin", ["12", "abcd", "1234567890123"])
def test_bad_pins_refused_at_hashing(pin):
    with pytest.raises(ValueError, match=r"^pin:"):
        hash_pin(pin)


def test_login_check_logout(sessions):
    s, clock = sessions
    session = s.login("a0b0c0d0", "4711")
    assert session.name == "Sergeant Pepper"
    clock.t += 20
    assert s.check(session.token) is not None  # touched: extends to t+30
    clock.t += 25
    assert s.check(session.token, touch=False) is not None
    clock.t += 10
    assert s.check(session.token) is None  # idle too long
    session = s.login("A0B0C0D0", "4711")
    assert s.logout(session.token) and s.check(session.token) is None


def test_lockout_after_failures_then_recovery(sessions):
    s, clock = sessions
    for _ in range(2):
        with pytest.raises(GuardDenied) as info:
            s.login("A0B0C0D0", "0000")
        assert (info.value.code, info.value.detail) == ("not_recognised", "bad_pin")
    with pytest.raises(GuardDenied) as info:
        s.login("A0B0C0D0", "0000")
    assert info.value.code == "locked_out" and info.value.retry_after_s == 60
    with pytest.raises(GuardDenied) as info:  # even the right PIN is refused now
        s.login("A0B0C0D0", "4711")
    assert info.value.code == "locked_out"
    assert s.locked_out("A0B0C0D0") == 60
    clock.t += 61
    assert s.login("A0B0C0D0", "4711").guard_id == "g-7"


def test_unknown_badge(sessions):
    s, _ = sessions
    with pytest.raises(GuardDenied) as info:
        s.login("FFFFFFFF", "4711")
    assert (info.value.code, info.value.detail) == ("not_recognised", "unknown_guard")


def test_success_resets_failures(sessions):
    s, _ = sessions
    for _ in range(2):
        with pytest.raises(GuardDenied):
            s.login("A0B0C0D0", "0000")
    s.login("A0B0C0D0", "4711")
    for _ in range(2):
        with pytest.raises(GuardDenied) as info:
            s.login("A0B0C0D0", "0000")
        assert (info.value.code, info.value.detail) == ("not_recognised", "bad_pin")
