"""What a visitor pass says, independent of its layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from portier_common.passes import check_pass_id, new_pass_id, pass_qr_text
from portier_common.tokens import InvitationClaims

#: The invitation's ``extra`` key that names the visitor category (band colour).
CATEGORY_EXTRA_KEY = "category"


@dataclass(frozen=True)
class VisitorPass:
    """One printed pass: a check-in of one visitor.

    Times are Unix seconds (UTC); they are printed in the kiosk's local time.
    ``photo_jpeg`` is the check-in photo, only when the visitor consented to it.
    """

    pass_id: str
    visitor: str
    host: str
    site: str
    valid_from: float
    valid_until: float
    #: When the pass was printed (the check-in time).
    issued_at: float
    doors: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    category: str = "visitor"
    photo_jpeg: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_pass_id(self.pass_id)
        if not self.visitor.strip():
            raise ValueError("a pass needs the visitor's name")
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")

    @property
    def qr_text(self) -> str:
        """The text of the pass's QR code (``PV1:<pass id>``, docs/passes.md)."""
        return pass_qr_text(self.pass_id)


def pass_from_claims(
    claims: InvitationClaims,
    *,
    issued_at: float,
    pass_id: str | None = None,
    photo_jpeg: bytes | None = None,
) -> VisitorPass:
    """The pass of a check-in with the invitation ``claims`` (a fresh pass id by default)."""
    return VisitorPass(
        pass_id=pass_id or new_pass_id(),
        visitor=claims.visitor,
        host=claims.host,
        site=claims.site,
        valid_from=claims.not_before,
        valid_until=claims.expires,
        issued_at=issued_at,
        doors=claims.doors,
        zones=claims.zones,
        category=claims.extra.get(CATEGORY_EXTRA_KEY, "visitor"),
        photo_jpeg=photo_jpeg,
    )
