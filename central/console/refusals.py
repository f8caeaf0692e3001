"""The store's refusals in the operator's language (issue #14).

The store refuses with an English ``detail`` (for the CLI, the admin API and the logs) and
a stable ``reason`` code, the ``field`` it is about and the reason's arguments (``max``,
``min``, ``name``, ``other``, ``by``, ``index``) in :attr:`central.errors.CentralError.extra`. The
console never shows the English: :func:`refusal_message` turns (reason, field) into a
catalogue sentence with the field's label in words, translated when the page is rendered
(an argument that is itself a message is translated first: ``Console._env``). An unknown
reason falls back to a generic sentence naming the field, never to the English detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .i18n import N_, msg

__all__ = ["FIELDS", "REASONS", "field_label", "refusal_message"]

#: What each reason code says; ``%(field)s`` is the field's label (:data:`FIELDS`).
REASONS: dict[str, str] = {
    # The shape of a request (the console's forms send good shapes: kept for completeness).
    "object": N_("The central could not read the form it was sent (%(field)s)."),
    "unknown_fields": N_("The central does not know some fields it was sent (%(field)s)."),
    "claims": N_("Check %(field)s: the invitation cannot be made with it."),
    # One field's value.
    "required": N_("Check %(field)s: it is required."),
    "name": N_(
        "Check %(field)s: use letters, digits, dots, dashes and underscores only, without spaces."
    ),
    "names": N_("Check %(field)s: it must be a list of names."),
    "repeated": N_("Check %(field)s: it names the same one twice."),
    "text": N_("Check %(field)s: it must be %(min)s to %(max)s characters."),
    "too_long": N_("Check %(field)s: it must be at most %(max)s characters."),
    "too_short": N_("Check %(field)s: it must be at least %(min)s characters."),
    "too_many": N_("Check %(field)s: at most %(max)s."),
    "range": N_("Check %(field)s: a value is out of range."),
    "printable": N_("Check %(field)s: it must hold printable characters only."),
    "seconds": N_("Check %(field)s: it is not a valid time."),
    "bool": N_("Check %(field)s: it must be yes or no."),
    "choice": N_("Check %(field)s: choose one of the values offered."),
    "date": N_("Check %(field)s: it must be a date (YYYY-MM-DD)."),
    "time": N_("Check %(field)s: it must be a time (HH:MM)."),
    "email": N_("Check %(field)s: it must be an e-mail address like host@example.com."),
    "uid": N_("Check %(field)s: it must be a card's UID in hexadecimal (4, 7 or 10 bytes)."),
    "timezone": N_("Check %(field)s: it is not a known time zone."),
    "after": N_("Check %(field)s: it must come after %(other)s."),
    "not_before": N_("Check %(field)s: it must not come before %(other)s."),
    "extend_later": N_("Check %(field)s: the new end must be after the current end and after now."),
    "no_door": N_("Give at least one door or one zone."),
    "no_days": N_("None of these days falls in the period."),
    "guard": N_("A guard's badge needs a PIN."),
    "guard_id": N_("A guard id is for a guard's badge only."),
    "group_none_valid": N_("None of the group's invitations is still valid: nothing to change."),
    "group_recurring": N_(
        "A recurring visitor's days are extended one by one (each is that day's hours), or "
        "invite the visitor for more days."
    ),
    "group_extend_later": N_(
        "Check %(field)s: the new end must be after the end of every invitation of the group."
    ),
    "pin_hash": N_("Check %(field)s: it is not a PIN hash the central made."),
    "same_site": N_("Check %(field)s: every invitation of a group is for the group's site."),
    "password_same": N_("The new password must differ from the current one."),
    # The state of what the change is about.
    "not_found": N_("Not found: %(field)s %(name)s."),
    "operator_exists": N_("An operator named %(name)s exists already."),
    "operator_name": N_(
        "A name is 1 to 64 characters: lower-case letters, digits and . _ - @ (no spaces)."
    ),
    "role": N_("Choose one of the roles."),
    "zone_empty": N_("No enrolled door is in zone %(name)s."),
    "replaced": N_("This invitation was replaced already (by %(by)s): change the new one."),
    "revoked": N_("This invitation is revoked."),
    "pending": N_("This invitation awaits a security officer's approval."),
    "refused": N_("A security officer refused this invitation."),
    "used": N_("This single-use invitation was used already."),
    "expired": N_("This invitation has expired."),
    "not_pending": N_("This invitation awaits no approval (any more)."),
    "own_invitation": N_(
        "You created this invitation: another security officer approves or refuses it."
    ),
    "no_visitor_email": N_("This invitation has no visitor e-mail to send to."),
    "last_administrator": N_(
        "%(name)s is the last enabled security officer: nobody could manage the "
        "operators any more. Make another security officer first."
    ),
    "acknowledged": N_("This alarm is acknowledged already."),
    "bad_password": N_("Wrong password."),
    "locked_out": N_("Too many failed logins: the account is locked for now."),
    "operator_disabled": N_("This operator account is disabled."),
    "bad_session": N_("Your session has ended: log in again."),
    "bad_token": N_("This API token is unknown."),
    "token_revoked": N_("This API token was revoked."),
    "token_expired": N_("This API token has expired."),
    # Event packs.
    "bad_event": N_(
        "Check the event's dates: it must end after it starts, in the future, within 31 days."
    ),
    "unknown_invitation": N_("One of the guests' invitations is unknown: %(name)s"),
    "no_pack_key": N_(
        "This device cannot receive event packs yet: enroll it again with a current agent."
    ),
    "disabled": N_("This device is disabled."),
    "bad_mac": N_(
        "This journal was altered, or does not come from that device: nothing was merged."
    ),
    "malformed": N_("This file is not a journal exported by edge-agent journal export."),
}

#: The fields' labels, in words; a dotted field (``rules.end``) falls back to its last part.
FIELDS: dict[str, str] = {
    "body": N_("the form"),
    "visitor": N_("the visitor's name"),
    "host": N_("the host's name"),
    "host_email": N_("the host's e-mail"),
    "visitor_email": N_("the visitor's e-mail"),
    "lang": N_("the language"),
    "site": N_("the site"),
    "doors": N_("the doors"),
    "zones": N_("the zones"),
    "door": N_("the door"),
    "zone": N_("the zone"),
    "scope": N_("the door or zone"),
    "not_before": N_("the start"),
    "expires": N_("the end"),
    "single_use": N_("the use (single or multiple)"),
    "invitation": N_("the invitation"),
    "invitations": N_("the invitations"),
    "kind": N_("the kind"),
    "label": N_("the label"),
    "first_day": N_("the first day"),
    "last_day": N_("the last day"),
    "days": N_("the days"),
    "start": N_("the start time"),
    "end": N_("the end time"),
    "file": N_("the file"),
    "uid": N_("the card's UID"),
    "badge": N_("the badge"),
    "holder": N_("the holder"),
    "enabled": N_("the badge's state"),
    "not_after": N_("the end of validity"),
    "role": N_("the role"),
    "pin_hash": N_("the badge's PIN"),
    "guard_id": N_("the guard's id"),
    "schedule": N_("the schedule"),
    "timezone": N_("the time zone"),
    "rules": N_("the opening hours"),
    "rules.days": N_("the days of an opening-hours line"),
    "rules.start": N_("the start of an opening-hours line"),
    "rules.end": N_("the end of an opening-hours line"),
    "date": N_("the date"),
    "holiday": N_("the holiday"),
    "name": N_("the name"),
    "mode": N_("the mode"),
    "reason": N_("the reason"),
    "invitation_group": N_("the group of invitations"),
    "settings": N_("the door's settings"),
    "decision": N_("the decision"),
    "deny_entry": N_("the deny-list entry"),
    "operator": N_("the operator"),
    "password": N_("the password"),
    "session": N_("the session"),
    "token": N_("the API token"),
    "ttl_s": N_("the token's lifetime"),
    "since": N_("the start"),
    "until": N_("the end"),
    "device_id": N_("the device"),
    "device": N_("the device"),
    "event": N_("the event"),
    "kiosk": N_("the kiosk's settings"),
    "kiosk.language": N_("the kiosk's language"),
    "kiosk.welcome": N_("the kiosk's welcome"),
    "export": N_("the journal"),
    "group": N_("the kind of events"),
    "note": N_("the note"),
    "alarm": N_("the alarm"),
}
#: A field the table does not know.
UNKNOWN_FIELD = N_("a field")
#: A refusal about one item of a list (``index``, from 0).
LINE = N_("Line %(number)s: %(sentence)s")
#: A reason the table does not know (a newer store, a code added without its sentence).
GENERIC = N_("The central refused it: check %(field)s.")


def field_label(field: object) -> dict[str, Any]:
    """The label of *field* (a message), its last dotted part's, or "a field"."""
    name = str(field or "")
    for key in (name, name.rpartition(".")[2]):
        if key in FIELDS:
            return msg(FIELDS[key])
    return msg(UNKNOWN_FIELD)


def refusal_message(exc: BaseException) -> dict[str, Any]:
    """The operator's sentence for a store refusal *exc*: a message dict
    (``{"text", "args"}``) whose field labels are messages too, translated on rendering."""
    extra: Mapping[str, Any] = getattr(exc, "extra", None) or {}
    reason = str(extra.get("reason", ""))
    label = field_label(extra.get("field"))
    text = REASONS.get(reason)
    if text is None:
        return msg(GENERIC, field=label)
    args: dict[str, Any] = {"field": label}
    for key in ("max", "min", "name", "by"):
        value = extra.get(key)
        args[key] = "" if value is None else str(value)
    args["other"] = field_label(extra.get("other"))
    sentence = msg(text, **args)
    index = extra.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        # A group's visitor, a schedule's line: which one, counted from 1 as people do.
        return msg(LINE, number=index + 1, sentence=sentence)
    return sentence
