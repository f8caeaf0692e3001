"""What the kiosk says, in plain words, for the agent's machine-readable codes.

Every string here is an English msgid marked with :func:`~kiosk.i18n.N_`; the
screens translate them when they show them. The tables are keyed by the
codes' string values, so the kiosk needs nothing from the edge agent but its
client: a test checks that every :class:`portier_common.reasons.Reason` has its
wording, and the unknown code of a newer agent falls back to
:data:`UNKNOWN_REASON`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.i18n import N_


@dataclass(frozen=True)
class Wording:
    """A headline and one or two sentences for a visitor."""

    title: str
    text: str


#: Why a visitor (QR invitation or badge) may not go in: headline + what it means.
DENIAL: dict[str, Wording] = {
    "expired": Wording(
        N_("Your invitation has expired"),
        N_("The invitation is no longer valid. Your host can send you a new one."),
    ),
    "not_yet_valid": Wording(
        N_("Your invitation is not valid yet"),
        N_("You are early: the invitation starts later. Check the date and time on it."),
    ),
    "wrong_door": Wording(
        N_("Not valid at this entrance"),
        N_("Your invitation is for another entrance of this site."),
    ),
    "wrong_site": Wording(
        N_("Not valid on this site"),
        N_("Your invitation was issued for another site."),
    ),
    "revoked": Wording(
        N_("This invitation was cancelled"),
        N_("The invitation has been withdrawn. Your host can send you a new one."),
    ),
    "replayed": Wording(
        N_("This invitation was already used"),
        N_("It could be used only once, and it has been used already."),
    ),
    "bad_signature": Wording(
        N_("This code could not be verified"),
        N_("The code is not a genuine invitation: it may have been altered or copied."),
    ),
    "unknown_key": Wording(
        N_("This code could not be verified"),
        N_("The invitation was signed by an issuer this entrance does not know."),
    ),
    "bad_algorithm": Wording(
        N_("This code could not be verified"),
        N_("The invitation uses a security method this entrance does not accept."),
    ),
    "malformed": Wording(
        N_("This is not an invitation"),
        N_("The code could be read, but it is not a visitor invitation for this site."),
    ),
    "lockdown": Wording(
        N_("The entrance is closed"),
        N_("The site is in lockdown: nobody can enter for now."),
    ),
    "outside_schedule": Wording(
        N_("Not at this time"),
        N_("Entry is not allowed at this time of day."),
    ),
    "cache_stale": Wording(
        N_("Entry cannot be checked right now"),
        N_("This entrance has lost contact with the security office for too long."),
    ),
    "uid_not_allowed": Wording(
        N_("This badge is not accepted here"),
        N_("This entrance accepts only secure badges."),
    ),
    "unknown_badge": Wording(
        N_("This badge is not recognised"),
        N_("The badge is not registered for this site."),
    ),
    "kind_not_accepted": Wording(
        N_("Not accepted at this entrance"),
        N_("This entrance does not accept QR invitations."),
    ),
    "clock_untrusted": Wording(
        N_("Entry cannot be checked right now"),
        N_(
            "The clock of this entrance is not reliable at the moment, so the dates on your "
            "invitation cannot be checked. Please ask at reception."
        ),
    ),
    "emergency": Wording(
        N_("Fire alarm: do not enter"),
        N_("Leave the building by the nearest exit."),
    ),
    "holiday": Wording(
        N_("Closed today"),
        N_("The site is closed today for a holiday."),
    ),
    # Card + PIN at a wall reader (badges only).
    "pin_required": Wording(
        N_("A PIN is needed at this door"),
        N_("Your badge has no PIN yet. The security office can set one."),
    ),
    "wrong_pin": Wording(
        N_("Wrong PIN"),
        N_("The PIN typed does not match your badge. Present the badge and try again."),
    ),
    "pin_timeout": Wording(
        N_("No PIN typed in time"),
        N_("Present your badge again, then type your PIN and press #."),
    ),
    "pin_locked_out": Wording(
        N_("Too many wrong PINs"),
        N_("Your badge is blocked at this door for a while. Please ask the security office."),
    ),
    "pin_interrupted": Wording(
        N_("PIN cut short"),
        N_("The reader stopped waiting for your PIN. Present your badge again, then type it."),
    ),
}

#: Where a badge needs other words than an invitation (the rest are shared): a badge
#: refusal never says "invitation", an invitation refusal never says "badge".
BADGE_DENIAL: dict[str, Wording] = {
    "wrong_door": Wording(
        N_("Not valid at this entrance"),
        N_("Your badge is for another entrance of this site."),
    ),
    "wrong_site": Wording(
        N_("Not valid on this site"),
        N_("Your badge was issued for another site."),
    ),
    "bad_algorithm": Wording(
        N_("This badge could not be verified"),
        N_("The badge uses a security method this entrance does not accept."),
    ),
    "kind_not_accepted": Wording(
        N_("Not accepted at this entrance"),
        N_("This entrance does not accept this kind of badge."),
    ),
    "expired": Wording(
        N_("Your badge has expired"),
        N_("The badge is no longer valid. The security office can renew it."),
    ),
    "not_yet_valid": Wording(
        N_("Your badge is not valid yet"),
        N_("The badge starts to work later."),
    ),
    "revoked": Wording(
        N_("This badge was withdrawn"),
        N_("The badge is no longer allowed on this site."),
    ),
    "replayed": Wording(
        N_("This badge could not be verified"),
        N_("The badge answered like a copy of a genuine one."),
    ),
    "bad_signature": Wording(
        N_("This badge could not be verified"),
        N_("The badge did not prove it is genuine."),
    ),
    "unknown_key": Wording(
        N_("This badge could not be verified"),
        N_("This entrance cannot check this kind of secure badge."),
    ),
    "malformed": Wording(
        N_("This badge could not be read"),
        N_("Tap it again and hold it still on the reader."),
    ),
    "clock_untrusted": Wording(
        N_("This badge cannot be checked right now"),
        N_(
            "The clock of this entrance is not reliable at the moment, so the validity of "
            "your badge cannot be checked. The security office can let you in."
        ),
    ),
}

#: A reason code this kiosk does not know yet (a newer agent).
UNKNOWN_REASON = Wording(
    N_("Entry refused"),
    N_("Your invitation was not accepted."),
)
#: The same for a badge.
UNKNOWN_BADGE_REASON = Wording(
    N_("Entry refused"),
    N_("Your badge was not accepted."),
)
#: The agent answered with an error instead of a decision (its journal failed, say).
DECISION_FAILED = Wording(
    N_("Your invitation cannot be checked right now"),
    N_("Something went wrong on our side."),
)


def denial(reason: str, kind: str = "qr") -> Wording:
    """Return the wording of deny ``reason`` for a ``qr`` invitation or a ``badge``.

    :data:`UNKNOWN_REASON` for a code this kiosk does not know.
    """
    if kind == "badge":
        return BADGE_DENIAL.get(reason) or DENIAL.get(reason, UNKNOWN_BADGE_REASON)
    return DENIAL.get(reason, UNKNOWN_REASON)


#: What a refused visitor does next (the denied screen's last line), by default.
DENIAL_ADVICE = N_("Please see the guard at the gate.")
#: Reasons whose text already says what to do: no "see the guard" (a fire alarm: the
#: guard is evacuating too, and nobody must wait at the door).
NO_ADVICE: frozenset[str] = frozenset({"emergency"})
#: Free access: the door is unlocked anyway, so a refused badge is not sent to a guard.
FREE_ACCESS_ADVICE = N_("The door is open: to check in as a visitor, show your QR invitation.")
#: Since when / from when (``{date}`` and ``{time}`` in the visitor's language), and
#: which entrance to use instead (``{entrances}``: names from ``ui.entrances``).
VALID_UNTIL = N_("Valid until {date} at {time}.")
VALID_FROM = N_("Valid from {date} at {time}.")
USE_ENTRANCE = N_("Entrance to use: {entrances}.")


#: Guard login and action errors from the local API (``error`` codes).
GUARD_ERRORS: dict[str, str] = {
    "unknown_guard": N_("Badge or PIN not recognised."),
    "bad_pin": N_("Badge or PIN not recognised."),
    "not_recognised": N_("Badge or PIN not recognised."),
    "bad_request": N_("Badge or PIN not recognised."),  # a badge number or PIN of a wrong form
    "locked_out": N_("Too many wrong PINs: this badge is locked."),
    "not_logged_in": N_("Your session has ended. Please log in again."),
    "reason_required": N_("Choose a reason first."),
    "lockdown": N_("The door is in lockdown: lift the lockdown first."),
    "emergency": N_("The fire alarm holds the door open: nothing to open."),
    "no_such_alarm": N_("This alarm was already acknowledged."),
    "unknown_alarm": N_("Unknown alarm."),
    "guard_required": N_("Your session has ended. Please log in again."),
    "no_door": N_("This kiosk controls no door."),
    "unknown_invitation": N_("This invitation is not known at this door."),
    "checkin_refused": N_("The invitation is not valid here."),
    "not_on_site": N_("This visitor is no longer checked in."),
}
GUARD_ERROR_OTHER = N_("The action failed. Try again or call the control room.")


def guard_error(code: str) -> str:
    """Return the msgid for guard API error ``code``."""
    return GUARD_ERRORS.get(code, GUARD_ERROR_OTHER)


#: Door modes, as the console shows them.
DOOR_MODES: dict[str, str] = {
    "normal": N_("Normal"),
    "lockdown": N_("Lockdown"),
    "free_access": N_("Free access"),
    "emergency": N_("Emergency (fire)"),
}

#: Alarms, as the console shows them.
ALARMS: dict[str, str] = {
    "forced_open": N_("Door forced open"),
    "held_open": N_("Door held open"),
    "tamper": N_("Tamper"),
    "fire": N_("Fire alarm"),
    "clock_untrusted": N_("Clock not reliable"),
    "help_requested": N_("A visitor asks for help"),
    "printer_fault": N_("Pass printer cannot print"),
    "reader_offline": N_("Wall reader not answering"),
    "reader_tamper": N_("Wall reader tampered with"),
    "reader_insecure": N_("Wall reader not secure"),
}

#: The pass printer's alarm as CUPS reports the fault (the agent's status ``printer.status``):
#: what the guard has to fix. Other states fall back to ``ALARMS["printer_fault"]``.
PRINTER_FAULTS: dict[str, str] = {
    "out_of_media": N_("Printer: out of labels"),
    "jammed": N_("Printer: jammed or open"),
    "offline": N_("Printer: offline"),
    "stopped": N_("Printer: stopped"),
    "not_accepting": N_("Printer: refusing jobs"),
    "unavailable": N_("Printer: unreachable"),
}

#: Guard actions (buttons and the reason screen's title).
ACTIONS: dict[str, str] = {
    "open_once": N_("Open once"),
    "lockdown": N_("Lockdown"),
    "free_access": N_("Free access"),
    "normal": N_("Back to normal"),
    "acknowledge": N_("Acknowledge alarm"),
    "checkin": N_("Check in anyway"),
    "checkout": N_("Check out"),
}

#: The console's banner while the door is forced or held open (most urgent first).
DOOR_ALARM_BANNERS: dict[str, str] = {
    "forced_open": N_("Door forced open: check the door now."),
    "held_open": N_("Door held open: have it closed."),
}

#: Reasons a guard picks from; the English msgid is what the journal records.
ACTION_REASONS: tuple[str, ...] = (
    N_("Visitor assistance"),
    N_("Delivery"),
    N_("Maintenance"),
    N_("Security incident"),
    N_("Emergency services"),
    N_("Drill or test"),
    N_("False alarm"),
)

#: Journal event types, for the console's recent events: every type the agent journals
#: (docs/local-api.md, "Events"; tests/kiosk/test_kiosk_ui.py checks none is missing).
EVENT_TYPES: dict[str, str] = {
    "access.decision": N_("Access"),
    "access.aborted": N_("Entry cancelled"),
    "access.open_refused": N_("Door opening refused"),
    "access.request_expired": N_("Request too late: not carried out"),
    "journal.gap": N_("Journal events lost (damaged storage)"),
    "journal.damaged": N_("Journal damage found"),
    "access.grant_unused": N_("Entry not used"),
    "invitation.used": N_("Single-use invitation spent"),
    "badge.counter": N_("Secure badge read"),
    "door.unlocked": N_("Door unlocked"),
    "door.locked": N_("Door locked"),
    "door.opened": N_("Door opened"),
    "door.closed": N_("Door closed"),
    "door.mode_restored": N_("Mode restored after a restart"),
    "event_pack.loaded": N_("Event pack loaded"),
    "event_pack.refused": N_("Event pack refused"),
    "rex.pressed": N_("Exit button"),
    "reader.bad_read": N_("Card read refused (bad read)"),
    "alarm.raised": N_("Alarm"),
    "alarm.cleared": N_("Alarm cleared"),
    "alarm.acknowledged": N_("Alarm acknowledged"),
    "mode.changed": N_("Mode changed"),
    "mode.deferred": N_("Mode after the fire alarm"),
    "guard.login": N_("Guard logged in"),
    "guard.logout": N_("Guard logged out"),
    "guard.login_failed": N_("Guard login refused"),
    "guard.session_ended": N_("Guard session ended"),
    "guard.action": N_("Guard action"),
    "guard.action_refused": N_("Guard action refused"),
    "guard.badge_tap": N_("Guard badge tapped"),
    "visitor.checked_in": N_("Visitor checked in"),
    "visitor.checkin_refused": N_("Check-in refused"),
    "visitor.checked_out": N_("Visitor checked out"),
    "visitor.help": N_("Visitor asked for help"),
    "pass.printed": N_("Visitor pass printed"),
    "pass.print_failed": N_("Visitor pass not printed"),
    "visitor.pass_reissued": N_("New visitor pass issued"),
    "muster.printed": N_("Muster list printed"),
    "muster.print_failed": N_("Muster list not printed"),
    "agent.started": N_("Door controller started"),
    "agent.stopped": N_("Door controller stopped"),
    "clock.floor_reset": N_("Clock confirmed by the central server"),
    "sync.alarm": N_("Connection to the central server"),
}
#: A type this kiosk does not know (a newer agent): never shown for a known type.
EVENT_OTHER = N_("Other event")

#: How a visitor was checked out (``visitor.checked_out`` ``how``).
CHECKOUTS: dict[str, str] = {
    "kiosk": N_("with their pass at the kiosk"),
    "expired": N_("automatically: the invitation ended"),
}

#: Who did it, when the journal says it with a word rather than a person (``by``).
BY_WORDS: dict[str, str] = {
    "central": N_("security office"),
    "fire-input": N_("fire alarm"),
    "fire": N_("fire alarm"),
    "rex": N_("exit button"),
    "visitor": N_("the visitor"),
}
#: A badge or code the journal could not tie to a person.
UNKNOWN_BADGE_HOLDER = N_("unknown badge")
UNVERIFIED_CODE = N_("unverified code")

#: Why a guard's login was refused (``guard.login_failed`` ``why``).
LOGIN_FAILURES: dict[str, str] = {
    "bad_pin": N_("wrong PIN"),
    "unknown_guard": N_("not a guard's badge"),
    "locked_out": N_("locked out"),
    "rate_limited": N_("too many attempts"),
    "revoked": N_("badge withdrawn"),
    "disabled": N_("badge withdrawn"),
    "expired": N_("badge expired"),
    "not_yet_valid": N_("badge not valid yet"),
}
LOGIN_FAILED_OTHER = N_("badge or PIN not accepted")

#: Why an open guard session was ended (``guard.session_ended`` ``why``).
SESSION_ENDS: dict[str, str] = {
    "revoked": N_("badge withdrawn"),
    "disabled": N_("badge withdrawn"),
    "expired": N_("badge expired"),
    "not_yet_valid": N_("badge not valid yet"),
    "no_pin_hash": N_("no PIN set"),
    "not_a_guard": N_("no longer a guard"),
    "console_disabled": N_("console turned off"),
}

#: The two states of a ``sync.alarm``.
SYNC_STATES: dict[str, str] = {"raised": N_("problem"), "cleared": N_("back to normal")}

#: A manual check-in the agent refused, as the guard reads it (``reason`` of a 409/403).
CHECKIN_REFUSALS: dict[str, str] = {
    "expired": N_("The invitation has expired."),
    "not_yet_valid": N_("The invitation is not valid yet."),
    "revoked": N_("The invitation was cancelled."),
    "wrong_door": N_("The invitation is for another entrance."),
    "wrong_site": N_("The invitation is for another site."),
    "clock_untrusted": N_("The door's clock is not reliable: dates cannot be checked."),
}
CHECKIN_REFUSED_OTHER = N_("The invitation is not valid here.")

#: Reasons a guard picks to check a visitor in anyway; the English msgid is journaled.
OVERRIDE_REASONS: tuple[str, ...] = (
    N_("Host confirmed in person"),
    N_("Host confirmed by phone"),
    N_("Identity document checked"),
    N_("Security office approved"),
    N_("New invitation on its way"),
    N_("Emergency services"),
    N_("Contractor on duty list"),
)

#: Why a guard checks a visitor out from the console (``POST /v1/guard/checkout`` reason).
CHECKOUT_REASONS: tuple[str, ...] = (
    N_("Left with their host"),
    N_("Left by another exit"),
    N_("Pass handed back at the desk"),
    N_("Visit ended early"),
    N_("Checked in by mistake"),
    N_("Security office asked"),
    N_("Counted at the assembly point"),
)

#: Outcome words of an access decision in the events list.
GRANTED = N_("granted")
DENIED = N_("denied")


#: What the check-out screen says after a visitor showed their pass (``POST /v1/checkout``):
#: ``done``, or the agent's refusal code; anything else (the check-out failed) is ``error``.
CHECKOUT_OUTCOMES: dict[str, Wording] = {
    "done": Wording(
        N_("You are checked out. Thank you for your visit."),
        N_("Please hand your pass to reception or drop it in the box."),
    ),
    "not_on_site": Wording(
        N_("You are already checked out"),
        N_(
            "This pass has been used to check out. "
            "Please hand it to reception or drop it in the box."
        ),
    ),
    "unknown_pass": Wording(
        N_("This pass is not recognised"),
        N_(
            "It is not a pass of a visitor here, or it was replaced by a new one. "
            "Please see the guard."
        ),
    ),
    "error": Wording(
        N_("You could not be checked out"),
        N_("Please see the guard at the gate."),
    ),
}
#: The headline of a check-out, with the visitor's name.
GOODBYE = N_("Goodbye, {name}")


def checkout_outcome(code: str) -> Wording:
    """The check-out screen's words for ``code`` (an unknown code: the ``error`` ones)."""
    return CHECKOUT_OUTCOMES.get(code, CHECKOUT_OUTCOMES["error"])
