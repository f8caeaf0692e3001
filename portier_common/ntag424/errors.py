"""Why a SUN message is refused: :class:`SunError` and its subclasses, each with a
:class:`~portier_common.reasons.Reason` code."""

from __future__ import annotations

from typing import ClassVar

from portier_common.reasons import Reason

__all__ = ["BadSunMac", "MalformedSun", "SunError", "UnknownBadge"]


class SunError(ValueError):
    """A SUN message was refused; ``reason`` says why, as a :class:`Reason` code.

    Subclasses :class:`ValueError`, so a caller without SUN-specific handling
    still treats it as bad input. The message is for logs; it never contains
    key material.
    """

    reason: ClassVar[Reason] = Reason.MALFORMED


class MalformedSun(SunError):
    """The input is not a SUN message this verifier can read (``Reason.MALFORMED``)."""

    reason = Reason.MALFORMED


class BadSunMac(SunError):
    """The MAC or the encrypted PICCData does not verify (``Reason.BAD_SIGNATURE``).

    Raised for a forged or altered message, and also for a genuine tag keyed
    with other keys than the ones configured.
    """

    reason = Reason.BAD_SIGNATURE


class UnknownBadge(SunError):
    """No file-read key is known for the badge's UID (``Reason.UNKNOWN_BADGE``)."""

    reason = Reason.UNKNOWN_BADGE
