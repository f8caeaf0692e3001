"""Events, alarms and device states in plain words, for the security pages (live events,
alarms, devices). Every sentence is a catalogue string (:func:`N_`) translated when shown:
:func:`describe` takes the request's ``gettext``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .i18n import N_

__all__ = ["ALARM_LABELS", "alarm_label", "describe", "reason_label"]

Translate = Callable[[str], str]

#: Why a credential was refused (portier_common.reasons).
REASONS: dict[str, str] = {
    "expired": N_("expired"),
    "not_yet_valid": N_("not valid yet"),
    "wrong_door": N_("not for this door"),
    "wrong_site": N_("issued for another site"),
    "revoked": N_("revoked"),
    "replayed": N_("already used"),
    "bad_signature": N_("forged or altered"),
    "unknown_key": N_("signed with an unknown key"),
    "bad_algorithm": N_("algorithm not allowed"),
    "malformed": N_("unreadable"),
    "lockdown": N_("door in lockdown"),
    "outside_schedule": N_("outside its hours"),
    "cache_stale": N_("door's offline data too old"),
    "uid_not_allowed": N_("UID badges not accepted here"),
    "unknown_badge": N_("unknown badge"),
    "kind_not_accepted": N_("kind of credential not accepted here"),
    "clock_untrusted": N_("door's clock not reliable"),
    "emergency": N_("fire alarm on"),
    "holiday": N_("closed for a holiday"),
    "pin_required": N_("badge has no PIN (card + PIN door)"),
    "wrong_pin": N_("wrong PIN"),
    "pin_timeout": N_("PIN not typed in time"),
    "pin_locked_out": N_("too many wrong PINs: badge locked out"),
    "pin_interrupted": N_("PIN cut short (another card, or lockdown lifted)"),
}

#: Alarms: the door's (``alarm.raised``, heartbeat ``door.CODE``) and the sync's
#: (``sync.alarm``, edge_agent/sync/alarms.py).
ALARM_LABELS: dict[str, str] = {
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
    "not_enrolled": N_("Device not enrolled"),
    "enrollment_needed": N_("Device must enroll again"),
    "device_disabled": N_("Device disabled by the central"),
    "api_mismatch": N_("Central and device versions differ"),
    "dead_letter": N_("Events refused by the central"),
    "gap_unrecoverable": N_("Events lost before upload"),
    "chain_broken": N_("Hash chain broken"),
    "backlog": N_("Upload backlog"),
    "disk_low": N_("Disk space low"),
    "journal_damaged": N_("Journal damaged"),
    "clock_drift": N_("Clock drift"),
    "bad_delta": N_("Update from the central unusable"),
    "tls": N_("Central's certificate does not verify"),
    "stale_cache": N_("Offline data getting old"),
}

#: Door modes.
MODES: dict[str, str] = {
    "normal": N_("normal"),
    "lockdown": N_("lockdown"),
    "free_access": N_("free access"),
    "emergency": N_("emergency (fire)"),
}

#: Event types without a sentence of their own (the kiosk's list, docs/local-api.md).
TYPES: dict[str, str] = {
    "access.aborted": N_("Entry cancelled"),
    "access.open_refused": N_("Door opening refused"),
    "access.request_expired": N_("Request too late: not carried out"),
    "access.grant_unused": N_("Entry not used"),
    "journal.gap": N_("Journal events lost (damaged storage)"),
    "journal.damaged": N_("Journal damage found"),
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
    "guard.login": N_("Guard logged in"),
    "guard.logout": N_("Guard logged out"),
    "guard.login_failed": N_("Guard login refused"),
    "guard.session_ended": N_("Guard session ended"),
    "guard.action": N_("Guard action"),
    "guard.action_refused": N_("Guard action refused"),
    "guard.badge_tap": N_("Guard badge tapped"),
    "visitor.help": N_("Visitor asked for help"),
    "pass.printed": N_("Visitor pass printed"),
    "visitor.pass_reissued": N_("Visitor pass printed again (the old one no longer works)"),
    "pass.print_failed": N_("Visitor pass not printed"),
    "agent.started": N_("Door controller started"),
    "agent.stopped": N_("Door controller stopped"),
    "clock.floor_reset": N_("Clock confirmed by the central server"),
}

#: Someone unnamed.
SOMEONE = N_("Someone")
UNKNOWN_BADGE = N_("An unknown badge")


def reason_label(code: str, _: Translate) -> str:
    """A refusal's reason in words (the code itself when unknown)."""
    return _(REASONS[code]) if code in REASONS else code


def alarm_label(code: str, _: Translate) -> str:
    """An alarm's name in words: ``door.forced_open`` and ``forced_open`` alike."""
    bare = code.removeprefix("door.")
    return _(ALARM_LABELS[bare]) if bare in ALARM_LABELS else code


def describe(event: Mapping[str, Any], _: Translate) -> tuple[str, bool]:
    """One stored event (:meth:`central.store.CentralStore.live_events`) as a sentence,
    and whether it needs attention (a refusal, an alarm)."""
    kind = str(event.get("type") or "")
    payload = event.get("payload") or {}
    door = str(event.get("door") or "")
    name = str(event.get("name") or "")
    if kind == "access.decision":
        badge = payload.get("kind") == "badge"
        who = name or _(UNKNOWN_BADGE if badge else SOMEONE)
        if payload.get("granted"):
            return _("%(who)s entered at %(door)s") % {"who": who, "door": door}, False
        reason = reason_label(str(payload.get("reason") or ""), _)
        if name:
            text = _("%(who)s refused at %(door)s: %(reason)s")
        elif badge:
            text = _("Badge refused at %(door)s: %(reason)s")
        else:
            text = _("Code refused at %(door)s: %(reason)s")
        return text % {"who": who, "door": door, "reason": reason}, True
    if kind == "visitor.checked_in":
        return _("%(who)s checked in at %(door)s") % {
            "who": name or _(SOMEONE),
            "door": door,
        }, False
    if kind == "visitor.checked_out":
        how = payload.get("how")
        if how == "expired":  # the door's own check-out at the end of the invitation
            text = _("%(who)s checked out at %(door)s: invitation ended")
        elif how == "guard":
            text = _("%(who)s checked out at %(door)s by a guard")
        else:
            text = _("%(who)s checked out at %(door)s")
        return text % {"who": name or _(SOMEONE), "door": door}, False
    if kind == "visitor.checkin_refused":
        return (
            _("Check-in of %(who)s refused at %(door)s: %(reason)s")
            % {
                "who": name or _(SOMEONE),
                "door": door,
                "reason": reason_label(str(payload.get("reason_code") or ""), _),
            },
            True,
        )
    if kind == "alarm.raised":
        alarm = alarm_label(str(payload.get("alarm") or ""), _)
        return _("Alarm at %(door)s: %(alarm)s") % {"door": door, "alarm": alarm}, True
    if kind == "alarm.cleared":
        alarm = alarm_label(str(payload.get("alarm") or ""), _)
        return _("Alarm over at %(door)s: %(alarm)s") % {"door": door, "alarm": alarm}, False
    if kind == "alarm.acknowledged":
        alarm = alarm_label(str(payload.get("alarm") or ""), _)
        return (
            _("Alarm acknowledged at %(door)s: %(alarm)s") % {"door": door, "alarm": alarm},
            False,
        )
    if kind == "sync.alarm":
        alarm = alarm_label(str(payload.get("code") or ""), _)
        if payload.get("state") == "raised":
            return _("Device alarm at %(door)s: %(alarm)s") % {"door": door, "alarm": alarm}, True
        return _("Device alarm over at %(door)s: %(alarm)s") % {"door": door, "alarm": alarm}, False
    if kind == "mode.changed":
        mode = str(payload.get("mode") or "")
        return (
            _("%(door)s is now in mode: %(mode)s")
            % {"door": door, "mode": _(MODES[mode]) if mode in MODES else mode},
            mode != "normal",
        )
    if kind == "door.opened" and payload.get("authorised") is False:
        return _("Door forced open at %(door)s") % {"door": door}, True
    label = _(TYPES[kind]) if kind in TYPES else kind
    if name:
        return _("%(what)s at %(door)s: %(who)s") % {
            "what": label,
            "door": door,
            "who": name,
        }, False
    return _("%(what)s at %(door)s") % {"what": label, "door": door}, False
