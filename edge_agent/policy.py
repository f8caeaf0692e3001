"""The access decision the agent runs: :mod:`portier_common.access`, re-exported.

The decision is shared with the central (its console explains a person's rights at a
door with the same code), so it lives in ``portier_common``; the agent's modules and
tests import it from here as before.
"""

from __future__ import annotations

from portier_common.access import (
    BadgeRecord,
    CachedInvitation,
    CacheView,
    Credential,
    CredentialKind,
    Decision,
    DoorMode,
    DoorPolicy,
    Schedule,
    Window,
    decide,
    decide_badge_presented,
    judge_invitation,
)

__all__ = [
    "BadgeRecord",
    "CacheView",
    "CachedInvitation",
    "Credential",
    "CredentialKind",
    "Decision",
    "DoorMode",
    "DoorPolicy",
    "Schedule",
    "Window",
    "decide",
    "decide_badge_presented",
    "judge_invitation",
]
