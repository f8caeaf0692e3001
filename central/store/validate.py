"""Checks of what the admin API and devices send, shared by the domain modules.

Each raises :class:`~central.errors.BadRequest` (or, for event fields,
:class:`~portier_common.errors.InvalidEvent`) with the field's name in the message, and
the refusal's stable ``field`` and ``reason`` codes (and its arguments: ``max``...) for the
console's translated sentences (central/console/refusals.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from portier_common.errors import InvalidEvent
from portier_common.uid import BadgeUid

from ..errors import BadRequest
from ..settings import check_name

__all__ = [
    "HASH_RE",
    "MAX_SEQ",
    "check_door_settings",
    "checked_bool",
    "checked_name",
    "checked_names",
    "checked_seconds",
    "checked_text",
    "field_code",
    "guard_fields",
    "hash_field",
    "int_field",
    "normalize_uid",
    "only_fields",
]

HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
MAX_SEQ = 2**63 - 1
_MAX_TEXT = 128
_INDEX_RE = re.compile(r"\[[0-9]+\]")
_MODES = ("normal", "lockdown", "free_access", "emergency")
_ACCEPT = ("qr", "uid", "ntag424")


def field_code(field: str) -> str:
    """*field* as the stable ``field`` of a refusal: without its list indexes
    (``doors[2]`` -> ``doors``); the index stays in the English detail."""
    return _INDEX_RE.sub("", field)


def normalize_uid(value: object) -> str:
    """A badge UID in the central's form (lower-case hex, :meth:`BadgeUid.hex`).

    Raises:
        BadRequest: not a badge UID (:class:`~portier_common.uid.BadgeUid`), naming the value.
    """
    try:
        return BadgeUid.parse(value).hex()
    except ValueError as exc:
        raise BadRequest(str(exc), field="uid", reason="uid") from None


def checked_name(field: str, value: object) -> str:
    try:
        return check_name(field, value)
    except ValueError as exc:
        raise BadRequest(str(exc), field=field_code(field), reason="name") from None


def checked_names(field: str, values: object) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise BadRequest(
            f"{field}: must be a list of names", field=field_code(field), reason="names"
        )
    items = [checked_name(f"{field}[{i}]", item) for i, item in enumerate(values)]
    if len(set(items)) != len(items):
        raise BadRequest(
            f"{field}: must not repeat a name", field=field_code(field), reason="repeated"
        )
    return items


def checked_text(field: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or (not value and not allow_empty):
        raise BadRequest(
            f"{field}: must be text of {0 if allow_empty else 1} to {_MAX_TEXT} chars",
            field=field_code(field),
            reason="text",
            min=0 if allow_empty else 1,
            max=_MAX_TEXT,
        )
    if not value.isprintable():
        raise BadRequest(
            f"{field}: must hold printable characters only",
            field=field_code(field),
            reason="printable",
        )
    return value


def checked_seconds(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise BadRequest(
            f"{field}: must be Unix seconds (an integer) or null",
            field=field_code(field),
            reason="seconds",
        )
    return value


def checked_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field}: must be true or false", field=field_code(field), reason="bool")
    return value


def only_fields(field: str, body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = set(body) - set(allowed)
    if unknown:
        raise BadRequest(
            f"{field}: unknown fields {sorted(unknown)}", field="body", reason="unknown_fields"
        )


#: A guard's PIN hash as portier_common.pins.hash_pin writes it: scrypt$N$r$p$salt$hash.
_PIN_HASH_RE = re.compile(
    r"scrypt\$[0-9]{4,8}\$[0-9]{1,2}\$[0-9]\$[A-Za-z0-9_-]{16,64}\$[A-Za-z0-9_-]{32,88}"
)


def guard_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the optional guard and PIN fields of a badge (role, PIN hash, guard id), checked.

    A guard's badge opens the guard console at a kiosk with the PIN whose salted
    hash it carries, and needs one. Any other badge may carry one too: its second
    factor at card + PIN wall readers (docs/readers.md). The PIN itself never reaches
    the central or a device.
    """
    fields: dict[str, Any] = {}
    role = body.get("role")
    pin_hash = body.get("pin_hash")
    if pin_hash is not None and (
        not isinstance(pin_hash, str) or not _PIN_HASH_RE.fullmatch(pin_hash)
    ):
        raise BadRequest(
            "pin_hash: must be a scrypt PIN hash (portier_common.pins.hash_pin)",
            field="pin_hash",
            reason="pin_hash",
        )
    if role is not None:
        if role != "guard":
            raise BadRequest(
                "role: must be 'guard' (or absent for an ordinary badge)",
                field="role",
                reason="choice",
            )
        if pin_hash is None:
            raise BadRequest(
                "pin_hash: a guard badge needs a scrypt PIN hash (hash_pin)",
                field="pin_hash",
                reason="guard",
            )
        fields["role"] = role
        if body.get("guard_id") is not None:
            fields["guard_id"] = checked_name("guard_id", body["guard_id"])
    elif body.get("guard_id") is not None:
        raise BadRequest(
            "role: guard_id is for role 'guard' only", field="guard_id", reason="guard_id"
        )
    if pin_hash is not None:
        fields["pin_hash"] = pin_hash
    return fields


def int_field(event: Mapping[str, Any], field: str, low: int, high: int) -> int:
    value = event.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidEvent(f"{field}: must be an integer from {low} to {high}, got {value!r}")
    return value


def hash_field(event: Mapping[str, Any], field: str) -> str:
    value = event.get(field)
    if not isinstance(value, str) or not HASH_RE.match(value):
        raise InvalidEvent(f"{field}: must be 64 lower-case hex digits")
    return value


def check_door_settings(settings: Mapping[str, Any]) -> None:
    def number(field: str, high: float) -> None:
        value = settings[field]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise BadRequest(
                f"settings.{field}: must be a number in (0, {high}]",
                field="settings",
                reason="range",
            )

    if "mode" in settings and settings["mode"] not in _MODES:
        raise BadRequest(
            f"settings.mode: must be one of {list(_MODES)}", field="mode", reason="choice"
        )
    if "unlock_s" in settings:
        number("unlock_s", 60)
    if "held_open_s" in settings:
        number("held_open_s", 3600)
    if "accept" in settings:
        accept = settings["accept"]
        if not isinstance(accept, list) or not all(kind in _ACCEPT for kind in accept):
            raise BadRequest(
                f"settings.accept: must be a list of {list(_ACCEPT)}",
                field="settings",
                reason="choice",
            )
    if "max_offline_staleness_s" in settings:
        value = settings["max_offline_staleness_s"]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise BadRequest(
                "settings.max_offline_staleness_s: must be an integer >= 0 or null",
                field="settings",
                reason="range",
            )
