"""Typed errors of the reference central, each tied to its HTTP status and error code.

The server turns a :class:`CentralError` into an ``Error`` body
(``{"error": code, "detail": text, ...}``, docs/central-api.yaml) with the
class's status; :class:`central.admin.CentralAdmin` turns such a body back
into the same class, so the CLI and the tests catch the same types.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CentralError(Exception):
    """Base class: an API error with an HTTP ``status`` and a stable ``code``.

    ``extra`` holds additional body fields (``retry_after_s``, ``max_events``...).
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        """Return the JSON error body."""
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadRequest(CentralError, ValueError):
    """The request as a whole is malformed (400)."""

    status = 400
    code = "bad_request"


class Unauthorized(CentralError, PermissionError):
    """Missing or unknown device credential (401): the device must re-enroll."""

    status = 401
    code = "unauthorized"


class TokenInvalid(Unauthorized):
    """The enrollment token is unknown (401)."""

    code = "token_invalid"


class TokenExpired(Unauthorized):
    """The enrollment token has expired (401)."""

    code = "token_expired"


class Forbidden(CentralError, PermissionError):
    """Not allowed (403): an admin call from off the loopback."""

    status = 403
    code = "forbidden"


class DeviceDisabled(Forbidden):
    """The device is known but disabled (403)."""

    code = "device_disabled"


class TokenScope(Forbidden):
    """The enrollment token is for another site or door (403)."""

    code = "token_scope"


class NotFound(CentralError, LookupError):
    """No such item or path (404)."""

    status = 404
    code = "not_found"


class TokenUsed(CentralError):
    """The one-time enrollment token was already used (409)."""

    status = 409
    code = "token_used"


class DeviceEnrolled(CentralError):
    """The device id is enrolled already (409): re-enrolling it needs its current
    credential or an admin reset (``portier-central device reset``)."""

    status = 409
    code = "device_enrolled"


class LastAdministrator(CentralError):
    """The change would leave no enabled security officer (409): nobody could administer
    the operators any more."""

    status = 409
    code = "last_administrator"


class CursorUnknown(CentralError):
    """The deltas cursor is unknown here (410): resync without a cursor."""

    status = 410
    code = "cursor_unknown"


class BatchTooLarge(CentralError):
    """Too many events or bytes in one request (413): halve the batch."""

    status = 413
    code = "batch_too_large"


class Throttled(CentralError):
    """Throttled (429); ``retry_after_s`` says when to come back."""

    status = 429
    code = "throttled"


class Unavailable(CentralError):
    """The central cannot reach its database right now (503); ``retry_after_s`` says when
    to come back. ``outcome`` is ``"unknown"`` when the database went away during the
    commit: the change may or may not be stored (an upload is safe to send again, it is
    idempotent by ``(device_id, seq)``; an admin change is checked before it is redone)."""

    status = 503
    code = "unavailable"


class NotConfigured(CentralError):
    """The central lacks the configuration the call needs (409): for badge issuance, the
    keys file's master keys."""

    status = 409
    code = "not_configured"


class BadgeActive(CentralError):
    """The card is someone's active badge (409): revoke it, or prove it is in the reader."""

    status = 409
    code = "badge_active"


class NotIssued(CentralError):
    """The invitation has no token to hand out (409): it awaits a security officer's
    approval, was refused, revoked, or has expired."""

    status = 409
    code = "not_issued"


class BadgeRevoked(CentralError):
    """The card carries the keys of a revoked badge (409): a lost card found again stays
    revoked; returned (reset to factory keys), it is issued again under new keys."""

    status = 409
    code = "badge_revoked"


#: Error classes by code, for clients that read an ``Error`` body.
BY_CODE: dict[str, type[CentralError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        TokenInvalid,
        TokenExpired,
        Forbidden,
        DeviceDisabled,
        TokenScope,
        NotFound,
        TokenUsed,
        DeviceEnrolled,
        LastAdministrator,
        CursorUnknown,
        BatchTooLarge,
        Throttled,
        Unavailable,
        NotConfigured,
        BadgeActive,
        BadgeRevoked,
        NotIssued,
    )
}
