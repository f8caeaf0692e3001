"""The demo material file: what the kiosk's demo panel can present.

The demo orchestrator (``edge-agent demo --headless --dir DIR``) starts a
reference central and an agent on simulated hardware, writes ``DIR/agent.toml``
and, with this module, ``DIR/demo/demo.json``: signed invitations (a valid one,
an expired one, a forged one...) and badge UIDs (a staff badge, an unknown
one) that ``kiosk --demo DIR`` offers in its demo panel. The kiosk's tests
write the same file for their own agent. The format is documented in
``docs/kiosk.md``; this module is its one reader and writer.

Example::

    from kiosk.demo_material import DemoBadge, DemoInvitation, DemoMaterial, write
    write(DemoMaterial(invitations=(DemoInvitation("valid", token, "Ada Lovelace"),),
                       badges=(DemoBadge("unknown", "04DEADBEEF"),)), "DIR/demo/demo.json")

Importing this module has no side effects (no Kivy, no edge agent).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portier_common.uid import BadgeUid

#: ``format`` value of the current file layout; readers refuse other values.
FORMAT = "portier-kiosk-demo/1"
#: Where the file sits inside a demo directory.
RELATIVE_PATH = Path("demo") / "demo.json"

#: Invitation labels the demo panel knows (each has a translated button).
INVITATION_LABELS: tuple[str, ...] = (
    "valid",
    "expired",
    "forged",
    "not_yet_valid",
    "wrong_door",
    "revoked",
    "replayed",
)
#: Badge labels the demo panel knows.
BADGE_LABELS: tuple[str, ...] = ("staff", "unknown", "revoked")

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2}){1,16}$")
_PIN = re.compile(r"^[0-9]{4,12}$")
_MAX_TOKEN_CHARS = 4096


class MaterialError(ValueError):
    """The demo material file is missing a field or has a wrong value (the message names it)."""


def _text(name: str, value: object, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise MaterialError(f"{name}: expected a{'' if empty else ' non-empty'} string")
    return value


@dataclass(frozen=True)
class DemoInvitation:
    """A QR invitation token the demo panel shows to the kiosk's camera.

    ``label`` is one of :data:`INVITATION_LABELS`; ``token`` the QR text
    (``PT1:...``); ``visitor``/``host`` are for the panel's caption only;
    ``expect`` is the reason code the agent should answer (``granted``,
    ``expired``, ``bad_signature``...), empty when not stated.
    """

    label: str
    token: str
    visitor: str = ""
    host: str = ""
    expect: str = ""

    def __post_init__(self) -> None:
        if self.label not in INVITATION_LABELS:
            raise MaterialError(
                f"invitations.label: {self.label!r} is not one of {', '.join(INVITATION_LABELS)}"
            )
        _text("invitations.token", self.token, empty=False)
        if len(self.token) > _MAX_TOKEN_CHARS:
            raise MaterialError(f"invitations.token: longer than {_MAX_TOKEN_CHARS} characters")
        _text("invitations.visitor", self.visitor)
        _text("invitations.host", self.host)
        _text("invitations.expect", self.expect)


@dataclass(frozen=True)
class DemoBadge:
    """A badge UID the demo panel taps on the simulated reader (``POST /v1/sim/badge``).

    ``uid`` is hex (1 to 16 bytes, no separators); ``label`` one of
    :data:`BADGE_LABELS`.
    """

    label: str
    uid: str
    holder: str = ""
    expect: str = ""

    def __post_init__(self) -> None:
        if self.label not in BADGE_LABELS:
            raise MaterialError(
                f"badges.label: {self.label!r} is not one of {', '.join(BADGE_LABELS)}"
            )
        if not isinstance(self.uid, str) or not _HEX.match(self.uid):
            raise MaterialError(f"badges.uid: {self.uid!r} must be 1 to 16 bytes of hex")
        _text("badges.holder", self.holder)
        _text("badges.expect", self.expect)


@dataclass(frozen=True)
class DemoGuard:
    """A guard's badge UID and PIN, for the guard console's demo login.

    ``uid`` is hex without separators and a badge UID (4, 7 or 10 bytes,
    :class:`~portier_common.uid.BadgeUid`): the agent refuses any other at login.
    """

    uid: str
    pin: str
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.uid, str) or not _HEX.match(self.uid):
            raise MaterialError(f"guard.uid: {self.uid!r} must be 4, 7 or 10 bytes of hex")
        try:
            BadgeUid.parse(self.uid)
        except ValueError:
            raise MaterialError(
                f"guard.uid: {self.uid!r} must be 4, 7 or 10 bytes of hex"
            ) from None
        if not isinstance(self.pin, str) or not _PIN.match(self.pin):
            raise MaterialError("guard.pin: must be 4 to 12 digits")
        _text("guard.name", self.name)


@dataclass(frozen=True)
class DemoMaterial:
    """Everything the demo panel can present. Labels are unique within each list."""

    invitations: tuple[DemoInvitation, ...] = ()
    badges: tuple[DemoBadge, ...] = ()
    guard: DemoGuard | None = None
    #: Free text for people reading the file (never shown by the kiosk).
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "invitations", tuple(self.invitations))
        object.__setattr__(self, "badges", tuple(self.badges))
        for name, items in (("invitations", self.invitations), ("badges", self.badges)):
            labels = [item.label for item in items]
            if len(set(labels)) != len(labels):
                raise MaterialError(f"{name}: a label is listed twice in {labels}")

    def invitation(self, label: str) -> DemoInvitation | None:
        """Return the invitation called ``label``, or None."""
        return next((i for i in self.invitations if i.label == label), None)

    def badge(self, label: str) -> DemoBadge | None:
        """Return the badge called ``label``, or None."""
        return next((b for b in self.badges if b.label == label), None)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict written by :func:`write`."""
        data: dict[str, Any] = {
            "format": FORMAT,
            "invitations": [
                {
                    "label": i.label,
                    "token": i.token,
                    "visitor": i.visitor,
                    "host": i.host,
                    "expect": i.expect,
                }
                for i in self.invitations
            ],
            "badges": [
                {"label": b.label, "uid": b.uid, "holder": b.holder, "expect": b.expect}
                for b in self.badges
            ],
        }
        if self.guard is not None:
            data["guard"] = {"uid": self.guard.uid, "pin": self.guard.pin, "name": self.guard.name}
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_dict(cls, data: object) -> DemoMaterial:
        """Build the material from parsed JSON. Raises :class:`MaterialError` naming the field."""
        if not isinstance(data, dict):
            raise MaterialError("the file must hold a JSON object")
        if data.get("format") != FORMAT:
            raise MaterialError(f"format: {data.get('format')!r} is not {FORMAT!r}")
        unknown = sorted(set(data) - {"format", "invitations", "badges", "guard", "note"})
        if unknown:
            raise MaterialError(f"{unknown[0]}: unknown key")
        invitations = _items(data, "invitations", DemoInvitation)
        badges = _items(data, "badges", DemoBadge)
        guard = None
        if data.get("guard") is not None:
            guard = _build(DemoGuard, data["guard"], "guard")
        return cls(
            invitations=invitations,
            badges=badges,
            guard=guard,
            note=_text("note", data.get("note", "")),
        )


def _build(cls: type, raw: object, name: str) -> Any:
    if not isinstance(raw, dict):
        raise MaterialError(f"{name}: expected a JSON object")
    try:
        return cls(**raw)
    except TypeError as exc:  # unknown or missing keys
        raise MaterialError(f"{name}: {exc}") from exc


def _items(data: dict[str, Any], name: str, cls: type) -> tuple[Any, ...]:
    raw = data.get(name, [])
    if not isinstance(raw, list):
        raise MaterialError(f"{name}: expected a list")
    return tuple(_build(cls, item, f"{name}[{n}]") for n, item in enumerate(raw))


def material_path(demo_dir: str | os.PathLike[str]) -> Path:
    """Return where the material file of the demo directory ``demo_dir`` lives."""
    return Path(demo_dir) / RELATIVE_PATH


def load(path: str | os.PathLike[str]) -> DemoMaterial:
    """Read the material file at ``path`` (or inside the demo directory ``path``).

    Raises :class:`FileNotFoundError` when it does not exist and
    :class:`MaterialError` when it is not valid.
    """
    path = Path(path)
    if path.is_dir():
        path = material_path(path)
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MaterialError(f"{path} is not JSON: {exc}") from exc
    return DemoMaterial.from_dict(data)


def write(material: DemoMaterial, path: str | os.PathLike[str]) -> Path:
    """Write ``material`` to ``path`` atomically (mode 0600: it holds a PIN); return the path.

    Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(material.to_dict(), indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".demo-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
