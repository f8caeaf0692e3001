"""``edge_agent.retry``: the retry-until-deadline loop of enrollment and first boot.

A fake clock and a fake wait: nothing sleeps.
"""

from __future__ import annotations

import logging
import random

import pytest

from edge_agent.retry import Backoff, GaveUp, Transient, retry_until
from edge_agent.sync.client import CentralRefused, CentralUnreachable, central_transient


class Clock:
    """A monotonic clock that moves only when something waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def transient_oserror(exc: Exception) -> Transient | None:
    return Transient(f"no luck: {exc}") if isinstance(exc, OSError) else None


def test_retries_transient_failures_until_success(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    call = Flaky(OSError("one"), OSError("two"))
    lines: list[str] = []
    with caplog.at_level(logging.INFO, logger="edge_agent.retry"):
        result = retry_until(
            call,
            transient=transient_oserror,
            backoff=Backoff(1.0, 8.0, rng=lambda lo, hi: hi),
            deadline=None,
            what="test call",
            progress=lines.append,
            wait=clock.wait,
            clock=clock,
        )
    assert result == "ok" and call.calls == 3
    assert clock.waits == [1.0, 2.0]
    assert lines == ["no luck: one; retrying in 1 s", "no luck: two; retrying in 2 s"]
    # One log line per failed attempt, naming the call and the attempt.
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "test call: attempt 1 failed (no luck: one); retrying in 1.0 s",
        "test call: attempt 2 failed (no luck: two); retrying in 2.0 s",
    ]


def test_non_retryable_error_raises_at_once() -> None:
    clock = Clock()
    call = Flaky(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        retry_until(
            call,
            transient=transient_oserror,
            backoff=Backoff(1.0, 8.0),
            deadline=clock.now + 1000,
            what="test call",
            wait=clock.wait,
            clock=clock,
        )
    assert call.calls == 1 and clock.waits == []


def test_deadline_is_respected() -> None:
    clock = Clock()
    deadline = clock.now + 30.0
    call = Flaky(*(OSError(str(i)) for i in range(100)))
    with pytest.raises(GaveUp) as gave_up:
        retry_until(
            call,
            transient=transient_oserror,
            backoff=Backoff(1.0, 8.0, rng=lambda lo, hi: hi),
            deadline=deadline,
            what="test call",
            wait=clock.wait,
            clock=clock,
        )
    # Waits 1, 2, 4, 8, 8 (23 s), then the next 8 s would end past the deadline.
    assert clock.waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert clock.now <= deadline
    assert gave_up.value.attempts == call.calls == 6
    assert gave_up.value.reason == "no luck: 5" and not gave_up.value.stopped


def test_zero_wait_is_one_attempt_and_a_stop_ends_the_wait() -> None:
    clock = Clock()
    call = Flaky(OSError("down"))
    with pytest.raises(GaveUp) as gave_up:
        retry_until(
            call,
            transient=transient_oserror,
            backoff=Backoff(1.0, 8.0),
            deadline=clock.now,
            what="x",
            wait=clock.wait,
            clock=clock,
        )
    assert call.calls == 1 and gave_up.value.attempts == 1
    call = Flaky(OSError("down"), OSError("down"))
    with pytest.raises(GaveUp) as gave_up:
        retry_until(
            call,
            transient=transient_oserror,
            backoff=Backoff(1.0, 8.0),
            deadline=None,
            what="x",
            wait=lambda seconds: True,  # stop asked during the first wait
        )
    assert gave_up.value.stopped and call.calls == 1


def test_backoff_bounds_cap_and_retry_after_floor() -> None:
    backoff = Backoff(0.5, 10.0, rng=random.Random(1).uniform)
    for attempt in range(40):
        ceiling = min(10.0, 0.5 * 2**attempt)
        assert 0.0 <= backoff.next_delay() <= ceiling
    backoff.reset()
    # A Retry-After is a floor, with at most base_s of jitter on top, even past the cap.
    for _ in range(20):
        assert 30.0 <= backoff.next_delay(30.0) <= 30.5
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_retry_after_is_passed_to_the_backoff() -> None:
    clock = Clock()
    busy = CentralRefused(503, "busy", "try later", retry_after_s=12.0)
    call = Flaky(busy)
    retry_until(
        call,
        transient=central_transient,
        backoff=Backoff(1.0, 2.0, rng=lambda lo, hi: 0.0),
        deadline=None,
        what="x",
        wait=clock.wait,
        clock=clock,
    )
    assert clock.waits == [12.0]


def test_which_central_errors_are_transient() -> None:
    assert central_transient(CentralUnreachable("refused")) == Transient(
        "central unreachable: refused"
    )
    busy = central_transient(CentralRefused(429, "rate_limited", "slow down", retry_after_s=3.0))
    assert busy == Transient("central busy (429 rate_limited)", 3.0)
    assert central_transient(CentralRefused(409, "token_used", "used")) is None
    assert central_transient(ValueError("x")) is None
