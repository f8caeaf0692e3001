"""Print the pass of a visitor who has just checked in: render here, print through the agent.

Runs in a worker thread (:meth:`kiosk.ui.app.KioskApp.checkin`), never on the UI thread.
The kiosk reads the claims of the invitation the agent has just granted (the scanned
text: the agent verified it, the kiosk only shows it), renders the pass and sends the PDF
to the agent (``POST /v1/passes/print``), which owns the printer (docs/passes.md).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from kiosk.config import KioskConfig
from kiosk.passes.model import VisitorPass, pass_from_claims
from kiosk.passes.render import render_pdf
from portier_common.tokens import ClaimsError, read_claims_unverified

log = logging.getLogger(__name__)

#: The outcomes the welcome screen shows: printed, a guard hands the pass, or nothing
#: (no printer on this kiosk).
PRINTED, GUARD, NO_PRINTER = "printed", "guard", ""


class PassClient(Protocol):
    """What printing needs of :class:`edge_agent.client.AgentClient`."""

    def print_pass(self, pdf: bytes, *, pass_id: str, invitation_id: str) -> dict[str, object]:
        """POST /v1/passes/print."""
        ...


class ReprintClient(PassClient, Protocol):
    """What a guard's reprint needs of the guard's :class:`edge_agent.client.AgentClient`."""

    def reissue_pass(self, invitation_id: str) -> dict[str, object]:
        """POST /v1/guard/passes."""
        ...


def print_checkin_pass(
    client: PassClient,
    *,
    token: str,
    invitation_id: str,
    pass_id: str,
    config: KioskConfig,
    lang: str,
    now: float,
    photo_jpeg: bytes | None = None,
) -> str:
    """Render and print the pass of this check-in, with the ``pass_id`` the check-in
    answered in its QR code; return :data:`PRINTED`, :data:`GUARD` (the printer cannot
    print, the agent cannot be reached, or there is no pass id: a guard hands the pass)
    or :data:`NO_PRINTER`."""
    from edge_agent.client import AgentUnavailable, ApiError

    try:
        claims = read_claims_unverified(token)
    except ClaimsError as exc:  # the agent granted it: this is a bug, not a visitor's fault
        log.error("cannot read the granted invitation for its pass: %s", exc)
        return GUARD
    if not pass_id:  # an agent without an on-site list: no pass could check out
        log.error("the check-in answered no pass id: no pass printed")
        return GUARD
    visitor_pass = pass_from_claims(claims, issued_at=now, pass_id=pass_id, photo_jpeg=photo_jpeg)
    names = {e.id: {"en": e.en, "fr": e.fr} for e in config.ui.entrances}
    pdf = render_pdf(visitor_pass, config.passes, lang, place_names=names)
    try:
        client.print_pass(pdf, pass_id=visitor_pass.pass_id, invitation_id=invitation_id)
    except ApiError as exc:
        if exc.code == "no_printer":
            return NO_PRINTER
        log.warning("the pass was not printed: %s", exc)
        return GUARD
    except AgentUnavailable as exc:
        log.warning("the pass was not printed, agent unreachable: %s", exc)
        return GUARD
    return PRINTED


def reprint_pass(
    client: ReprintClient, *, invitation_id: str, config: KioskConfig, lang: str, now: float
) -> str:
    """A guard's reprint, from the console's on-site list: a new pass id from the agent
    (``POST /v1/guard/passes``: the old pass stops working), the pass rendered from its
    answer and printed with the guard's session (journaled as a reprint). Returns
    :data:`PRINTED`, :data:`GUARD` (the printer cannot print: the alarm says why) or
    :data:`NO_PRINTER`; other refusals (``not_on_site``, ``not_logged_in``) and an
    unreachable agent raise.

    The pass printed is the first one again with a new id (:func:`reprint_from_answer`).
    """
    from edge_agent.client import ApiError

    answer = client.reissue_pass(invitation_id)
    visitor_pass = reprint_from_answer(answer, fallback_site=config.ui.door_name)
    names = {e.id: {"en": e.en, "fr": e.fr} for e in config.ui.entrances}
    pdf = render_pdf(visitor_pass, config.passes, lang, place_names=names)
    try:
        client.print_pass(pdf, pass_id=visitor_pass.pass_id, invitation_id=invitation_id)
    except ApiError as exc:
        if exc.code == "no_printer":
            return NO_PRINTER
        if exc.code == "printer_unavailable":
            log.warning("the reprint was not printed: %s", exc)
            return GUARD
        raise
    return PRINTED


def reprint_from_answer(answer: Mapping[str, Any], *, fallback_site: str = "") -> VisitorPass:
    """The pass of a guard's reprint from the agent's ``POST /v1/guard/passes`` answer:
    what the check-in's pass printed (validity, doors, zones, category, site, the
    consented photo, the day of the check-in), kept by the agent with the check-in, so the
    reprint equals the first pass but for its id. A check-in journaled before the agent
    kept them (no ``valid_from``) prints its validity from the time of entry."""
    entered = float(answer["entered_at"])
    start = answer.get("valid_from")
    until = answer.get("valid_until", answer.get("not_after"))
    photo = answer.get("photo_jpeg")
    site = answer.get("site")
    return VisitorPass(
        pass_id=str(answer["pass_id"]),
        visitor=str(answer["visitor"]),
        host=str(answer.get("host") or ""),
        site=str(site) if site else fallback_site,
        valid_from=float(start) if isinstance(start, int | float) else entered,
        valid_until=float(until) if isinstance(until, int | float) else entered,
        issued_at=entered,
        doors=tuple(str(d) for d in answer.get("doors") or ()),
        zones=tuple(str(z) for z in answer.get("zones") or ()),
        category=str(answer.get("category") or "visitor"),
        photo_jpeg=base64.b64decode(photo) if isinstance(photo, str) and photo else None,
    )


class MusterClient(Protocol):
    """What printing the muster list needs of :class:`edge_agent.client.AgentClient`."""

    def print_muster(self, pdf: bytes) -> dict[str, object]:
        """POST /v1/muster/print."""
        ...


def print_muster(
    client: MusterClient,
    answer: Mapping[str, Any],
    *,
    config: KioskConfig,
    lang: str,
    door: str = "",
) -> str:
    """Render the muster list ``answer`` and have the agent print it; return
    :data:`PRINTED`, :data:`GUARD` (the printer cannot print, the agent cannot be reached)
    or :data:`NO_PRINTER`."""
    from edge_agent.client import AgentUnavailable, ApiError
    from kiosk.passes.muster import render_muster_pdf

    pdf = render_muster_pdf(answer, config.passes, lang, door)
    try:
        client.print_muster(pdf)
    except ApiError as exc:
        if exc.code == "no_printer":
            return NO_PRINTER
        log.warning("the muster list was not printed: %s", exc)
        return GUARD
    except AgentUnavailable as exc:
        log.warning("the muster list was not printed, agent unreachable: %s", exc)
        return GUARD
    return PRINTED
