"""Retrying a call until a deadline: the one loop the device's one-off calls share.

Enrollment (:func:`edge_agent.enroll.enroll`) and first boot's self-test upload
(``images.firstboot``) both call the central until it answers, a failure that is not
worth another try, or a deadline. :func:`retry_until` is that loop:

* ``transient(exc)`` decides which exceptions are retried: it returns a
  :class:`Transient` (what went wrong, in words, and the server's ``Retry-After`` if
  any) or None, and then the exception propagates at once, unchanged;
* the wait before the next attempt comes from a :class:`Backoff` (exponential, full
  jitter, a cap; a ``Retry-After`` is a floor);
* the deadline is on the monotonic clock: an attempt is not started if the wait before
  it would end past the deadline (:class:`GaveUp` then, with the last failure);
* every failed attempt logs a line (and tells ``progress``, for a person watching);
* the clock and the wait are injectable (tests run without sleeping); the wait
  returns True to stop early (a :class:`threading.Event`'s ``wait``), which also
  raises :class:`GaveUp`.

The long-running sync loops (``edge_agent.sync``) keep their own schedules: they never
give up, and they share only :class:`Backoff`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

__all__ = ["Backoff", "GaveUp", "Transient", "retry_until"]

T = TypeVar("T")


class Backoff:
    """Exponential backoff with full jitter.

    The n-th consecutive failure waits ``uniform(0, min(cap, base * 2**n))``; a
    ``Retry-After`` from the central is a floor (plus up to ``base`` of jitter so
    that many devices told the same delay do not come back in step). :meth:`reset`
    after a success.
    """

    def __init__(
        self, base_s: float, cap_s: float, rng: Callable[[float, float], float] | None = None
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"backoff: need 0 < base_s <= cap_s, got {base_s}, {cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._uniform = rng or random.uniform

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """Return how long to wait before the next attempt, and count this failure."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 62))
        delay = self._uniform(0.0, ceiling)
        self.attempt += 1
        if retry_after_s is not None:
            delay = max(delay, retry_after_s + self._uniform(0.0, self.base_s))
        return delay

    def reset(self) -> None:
        """Forget the failures (after a success)."""
        self.attempt = 0


@dataclass(frozen=True)
class Transient:
    """A failure worth another attempt: ``reason`` in words (logged), and how long the
    other side asked us to wait (``Retry-After``, seconds), if it did."""

    reason: str
    retry_after_s: float | None = None


class GaveUp(Exception):
    """No success: the next attempt would start past the deadline, or the wait was
    stopped. ``reason`` is the last failure's; ``attempts`` how many were made."""

    def __init__(self, reason: str, *, attempts: int, stopped: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.stopped = stopped


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def retry_until(
    call: Callable[[], T],
    *,
    transient: Callable[[Exception], Transient | None],
    backoff: Backoff,
    deadline: float | None,
    what: str,
    progress: Callable[[str], None] | None = None,
    wait: Callable[[float], bool] = _sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Return ``call()``'s result, calling it again after each transient failure.

    Args:
        call: one attempt.
        transient: which failures are retried (see the module doc); an exception it
            answers None for is raised at once.
        backoff: the waits between attempts.
        deadline: ``clock()`` time after which no attempt starts (None: no deadline).
        what: names the call in the log lines (``"enrollment"``).
        progress: told ``"<reason>; retrying in <n> s"`` before each wait.
        wait: waits that many seconds; returns True to stop (default: sleep).
        clock: the monotonic clock ``deadline`` is on.

    Raises:
        GaveUp: the deadline came, or ``wait`` asked to stop.
        Exception: whatever ``call`` raised that is not transient.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return call()
        except Exception as exc:
            failure = transient(exc)
            if failure is None:
                raise
        delay = backoff.next_delay(failure.retry_after_s)
        if deadline is not None and clock() + delay > deadline:
            log.warning("%s: attempt %d failed (%s); giving up", what, attempts, failure.reason)
            raise GaveUp(failure.reason, attempts=attempts)
        log.info(
            "%s: attempt %d failed (%s); retrying in %.1f s", what, attempts, failure.reason, delay
        )
        if progress is not None:
            progress(f"{failure.reason}; retrying in {delay:.0f} s")
        if wait(delay):
            raise GaveUp(failure.reason, attempts=attempts, stopped=True)
