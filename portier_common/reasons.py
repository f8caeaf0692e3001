"""Reason codes carried by every access decision.

The codes are stable strings: they are journaled, sent to the central API,
returned by the local API and translated by the kiosk into plain words. Add
new codes at the end; never rename one.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a credential was granted or denied."""

    GRANTED = "granted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_DOOR = "wrong_door"
    WRONG_SITE = "wrong_site"
    REVOKED = "revoked"
    REPLAYED = "replayed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    BAD_ALGORITHM = "bad_algorithm"
    MALFORMED = "malformed"
    LOCKDOWN = "lockdown"
    OUTSIDE_SCHEDULE = "outside_schedule"
    CACHE_STALE = "cache_stale"
    UID_NOT_ALLOWED = "uid_not_allowed"
    UNKNOWN_BADGE = "unknown_badge"
    KIND_NOT_ACCEPTED = "kind_not_accepted"
    CLOCK_UNTRUSTED = "clock_untrusted"
    EMERGENCY = "emergency"
    HOLIDAY = "holiday"
    #: Card + PIN (a wall reader with ``require_pin``): decided by the agent after the
    #: policy granted the card, never by the policy itself.
    PIN_REQUIRED = "pin_required"
    WRONG_PIN = "wrong_pin"
    PIN_TIMEOUT = "pin_timeout"
    PIN_LOCKED_OUT = "pin_locked_out"
    PIN_INTERRUPTED = "pin_interrupted"


#: One line of plain English per code, for logs, docs and the CLI. The kiosk
#: has its own translated, visitor-facing wording in its gettext catalogues.
DESCRIPTIONS: dict[Reason, str] = {
    Reason.GRANTED: "Access granted.",
    Reason.EXPIRED: "The invitation or badge has expired.",
    Reason.NOT_YET_VALID: "The invitation is not valid yet.",
    Reason.WRONG_DOOR: "The credential is not valid for this door.",
    Reason.WRONG_SITE: "The credential was issued for another site.",
    Reason.REVOKED: "The credential has been revoked.",
    Reason.REPLAYED: "The single-use invitation or badge message was already used.",
    Reason.BAD_SIGNATURE: "The signature or MAC does not verify (forged or altered).",
    Reason.UNKNOWN_KEY: "The credential is signed with a key this door does not know.",
    Reason.BAD_ALGORITHM: "The credential uses an algorithm that is not allowed.",
    Reason.MALFORMED: "The credential could not be read (not a Portier credential).",
    Reason.LOCKDOWN: "The door is in lockdown.",
    Reason.OUTSIDE_SCHEDULE: "Access is not allowed at this time.",
    Reason.CACHE_STALE: "The door's offline data is too old to decide offline.",
    Reason.UID_NOT_ALLOWED: "This door does not accept UID-only badges.",
    Reason.UNKNOWN_BADGE: "The badge is not known.",
    Reason.KIND_NOT_ACCEPTED: "This door does not accept this kind of credential.",
    Reason.CLOCK_UNTRUSTED: "The door's clock is behind the latest time it trusted.",
    Reason.EMERGENCY: "The fire alarm is on: entry is refused, exits stay free.",
    Reason.HOLIDAY: "The site is closed today (a holiday of the schedule).",
    Reason.PIN_REQUIRED: "This door asks for card + PIN and the badge has no PIN.",
    Reason.WRONG_PIN: "The PIN typed on the reader's keypad is wrong.",
    Reason.PIN_TIMEOUT: "The PIN was not typed on the reader's keypad in time.",
    Reason.PIN_LOCKED_OUT: "Too many wrong PINs in a row: the badge is locked out for a while.",
    Reason.PIN_INTERRUPTED: (
        "The PIN was cut short: another card at the reader, or the end of a lockdown."
    ),
}
