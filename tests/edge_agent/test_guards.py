"""Guard PIN hashes, sessions, the device rate limit, with a manual clock.

The login itself (badge checks, lockout, journal) is the agent's: see
tests/edge_agent/test_agent.py and tests/security/test_security_guards.py.
"""

from __future__ import annotations

import pytest

from edge_agent.guards import Guard, GuardSessions, TokenBucket
from portier_common.pins import hash_pin, verify_pin

GUARD = Guard("g-7", "Sergeant Pepper", "A0B0C0D0", hash_pin("471100", n=2**10))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sessions():
    clock = Clock()
    return GuardSessions(clock, session_timeout_s=30, max_sessions=2), clock


def test_hash_is_salted_and_verifies():
    a, b = hash_pin("123456", n=2**10), hash_pin("123456", n=2**10)
    assert a != b and a.startswith("scrypt$1024$")
    assert verify_pin("123456", a) and not verify_pin("123457", a)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "scrypt$x",
        "md5$1$2$3$4$5",
        "scrypt$1048577$8$1$AA$AA",
        "scrypt$1024$8$1$!!$AA",
        "scrypt$1000$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA",  # N not a power of two
        "scrypt$1024$8$2$AAAA$AAAAAAAAAAAAAAAAAAAAAA",  # p above 1: costlier than ours
    ],
)
def test_malformed_hashes_never_verify(bad):
    assert verify_pin("1234", bad) is False


@pytest.mark.parametrize("pin", ["12", "abcd", "1234", "12345", "1234567890123", "١٢٣٤٥٦"])
def test_bad_pins_refused_at_hashing(pin):
    with pytest.raises(ValueError, match=r"^pin:"):
        hash_pin(pin)


def test_open_check_logout(sessions):
    s, clock = sessions
    session = s.open(GUARD)
    assert (session.name, session.badge_uid) == ("Sergeant Pepper", "A0B0C0D0")
    clock.t += 20
    assert s.check(session.token) is not None  # touched: extends to t+30
    clock.t += 25
    assert s.check(session.token, touch=False) is not None
    clock.t += 10
    assert s.check(session.token) is None  # idle too long
    session = s.open(GUARD)
    assert s.logout(session.token) and s.check(session.token) is None


def test_sessions_are_bounded(sessions):
    s, clock = sessions
    first = s.open(GUARD)
    clock.t += 1
    tokens = [s.open(GUARD).token for _ in range(2)]
    assert s.check(first.token) is None  # the one idle longest made room
    assert all(s.check(t) for t in tokens) and len(s.open_sessions()) == 2


def test_token_bucket():
    bucket = TokenBucket(per_minute=6, burst=2)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == pytest.approx(10.0)
    assert bucket.take(5.0) == pytest.approx(5.0)
    assert bucket.take(10.0) == 0
