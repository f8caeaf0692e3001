"""Card + PIN at a wall reader: the PIN typed on the reader's keypad, checked against the
badge's PIN hash, with the guards' durable lock-out.

A reader with ``require_pin`` (``[hardware.reader]`` / ``[[hardware.reader.peripherals]]``)
presents a card with the PIN typed after it, with ``pin_timed_out``, or with
``pin_interrupted`` (something ended the wait while the PIN was typed). The policy decides
the card first, as for any badge; only a card it grants meets the second factor, so an
unknown, revoked or out-of-hours badge keeps its own reason. Then, in order:

- a lockdown cut the PIN short: ``lockdown`` (the policy says so itself once the door is
  in lockdown; this covers a decision taken while the new mode reaches the door), no
  failure counted;
- the end of a lockdown (the reader back to rest) or another card at the same reader cut
  it short: ``pin_interrupted``, no failure counted;
- the badge is locked out (too many wrong PINs in a row): ``pin_locked_out``, the PIN is
  not checked;
- the badge has no PIN hash: ``pin_required``;
- no PIN came in time: ``pin_timeout``;
- the PIN does not verify (:func:`portier_common.pins.verify_pin`, constant time, the
  guards' check): ``wrong_pin``, a failure counted; ``[guard] max_pin_failures`` in a row
  lock the badge out for ``[guard] lockout_s``;
- else the grant stands and the badge's failures are forgotten.

Failures live in the guards' lock-out table (``store.guard_lockouts``) under the identity
``pin:<UID>``, written in the same commit as the ``access.decision`` that explains them.
The PIN itself is never journaled, logged or kept: the decision's ``extra`` says only
how many failures were counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from edge_agent.cacheview import StoreCacheView
from edge_agent.config import GuardSection
from edge_agent.policy import Decision
from edge_agent.store import Store
from edge_agent.store.replay import Claim
from portier_common.pins import verify_pin
from portier_common.reasons import Reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinOutcome:
    """The decision after the second factor, and the lock-out change to commit with it."""

    decision: Decision
    claim: Claim | None = None


class CardPin:
    """The second factor of card + PIN readers (one per agent; called from the wall
    readers' thread, one card at a time)."""

    def __init__(self, store: Store, cache: StoreCacheView, limits: GuardSection) -> None:
        self._store = store
        self._cache = cache
        self._limits = limits

    @staticmethod
    def ident(uid_hex: str) -> str:
        """The lock-out identity of a badge at card + PIN readers."""
        return f"pin:{uid_hex}"

    def check(
        self,
        decision: Decision,
        uid_hex: str,
        pin: str | None,
        timed_out: bool,
        now_ms: int,
        *,
        interrupted_by: str | None = None,
    ) -> PinOutcome:
        """The second factor over the policy's ``decision`` for the card ``uid_hex``
        (``interrupted_by``: what ended the wait for its PIN, ``"lockdown"``, ``"idle"``
        or ``"card"``; None if it was not cut short)."""
        if not decision.granted:
            return PinOutcome(decision)
        if interrupted_by == "lockdown":
            return PinOutcome(self._deny(decision, Reason.LOCKDOWN))
        if interrupted_by is not None:
            return PinOutcome(self._deny(decision, Reason.PIN_INTERRUPTED))
        lockouts = self._store.guard_lockouts
        ident = self.ident(uid_hex)
        state = lockouts.get(ident)
        failures = 0
        if state is not None:
            if state.locked_until_ms is not None and now_ms < state.locked_until_ms:
                left_s = (state.locked_until_ms - now_ms + 999) // 1000
                return PinOutcome(self._deny(decision, Reason.PIN_LOCKED_OUT, locked_s=left_s))
            if state.locked_until_ms is None and now_ms - state.updated_ms < (
                self._limits.lockout_s * 1000
            ):
                failures = state.failures  # failures older than lockout_s are forgotten
        secret = self._cache.pin_hash(uid_hex)
        if secret is None:
            return PinOutcome(self._deny(decision, Reason.PIN_REQUIRED))
        if timed_out or pin is None:
            return PinOutcome(self._deny(decision, Reason.PIN_TIMEOUT))
        if verify_pin(pin, secret):
            return PinOutcome(decision, lockouts.reset_claim(ident) if state else None)
        failures += 1
        locked = failures >= self._limits.max_pin_failures
        until = now_ms + int(self._limits.lockout_s * 1000) if locked else None
        extra: dict[str, Any] = {"pin_failures": failures}
        if locked:
            extra["locked_s"] = int(self._limits.lockout_s)
            log.warning(
                "badge %s locked out at card + PIN readers: %d wrong PINs", uid_hex, failures
            )
        return PinOutcome(
            self._deny(decision, Reason.WRONG_PIN, **extra),
            lockouts.failure_claim(ident, 0 if locked else failures, until, now_ms),
        )

    @staticmethod
    def _deny(decision: Decision, reason: Reason, **extra: Any) -> Decision:
        return replace(
            decision,
            granted=False,
            reason=reason,
            claim=None,
            extra={**decision.extra, **extra},
        )
