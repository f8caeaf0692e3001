"""The pass the kiosk would print for an invitation of a demo directory (``kiosk pass``).

Offline and without a printer: it reads the invitation's claims, refuses what the demo's
agent would refuse, and returns the :class:`~kiosk.passes.model.VisitorPass` the kiosk
prints after that visitor's check-in. The agent, not the kiosk, decides on a real
kiosk; here the refusal comes from what can be known without it:

* the text must be a well-formed invitation (``PT1:``...);
* the demo material (``DIR/demo/demo.json``) says what the agent answers for each of its
  invitations (``expect``): a forged, revoked or replayed one gets no pass;
* the time window, site and door are checked against ``DIR/agent.toml`` (its
  ``[device] site``, ``[door] id`` and ``zones``) with the rules the agent applies
  (:func:`portier_common.tokens.window_and_scope`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from kiosk import demo_material
from kiosk.passes.model import VisitorPass, pass_from_claims
from portier_common.reasons import DESCRIPTIONS, Reason
from portier_common.settings import ConfigError, read_toml
from portier_common.tokens import (
    DEFAULT_MAX_SKEW_S,
    ClaimsError,
    read_claims_unverified,
    window_and_scope,
)


class NoPass(ValueError):
    """The kiosk would print no pass for this token (the message says why)."""


def demo_pass(
    demo_dir: Path, token: str, *, now: float, photo_jpeg: bytes | None = None
) -> VisitorPass:
    """The pass for ``token`` in the demo at ``demo_dir``; :class:`NoPass` when refused.

    Raises :class:`~portier_common.settings.ConfigError` when ``DIR/agent.toml`` cannot
    be read.
    """
    token = token.strip()
    try:
        claims = read_claims_unverified(token)
    except ClaimsError as exc:
        raise NoPass(f"not an invitation token: {exc}") from None
    with contextlib.suppress(FileNotFoundError, demo_material.MaterialError):
        material = demo_material.load(demo_dir)
        for invitation in material.invitations:
            if invitation.token == token and invitation.expect not in ("", Reason.GRANTED):
                raise NoPass(_refused(invitation.expect))
    agent = read_toml(demo_dir / "agent.toml")
    device, door = agent.get("device"), agent.get("door")
    if not isinstance(device, dict) or not isinstance(door, dict):
        raise ConfigError("", "no [device] or [door] table", demo_dir / "agent.toml")
    refused = window_and_scope(
        claims.not_before,
        claims.expires,
        claims.site,
        claims.doors,
        claims.zones,
        now=now,
        skew=DEFAULT_MAX_SKEW_S,
        site=str(device.get("site", "")),
        door=str(door.get("id", "")),
        zones_of_door=tuple(door.get("zones", ())),
    )
    if refused is not None:
        raise NoPass(_refused(refused[0]))
    return pass_from_claims(claims, issued_at=now, photo_jpeg=photo_jpeg)


def _refused(reason: str) -> str:
    try:
        described = DESCRIPTIONS[Reason(reason)]
    except (ValueError, KeyError):
        described = ""
    return f"the agent refuses this invitation ({reason}); the kiosk prints no pass. {described}"
