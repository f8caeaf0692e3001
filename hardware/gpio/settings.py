"""Typed, validated settings for the door's GPIO lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from hardware.registry import BackendRegistry

#: Backends (pin factories), in the order gpiozero itself prefers on a Pi. ``mock`` is
#: the simulator; it is used only when the configuration says so.
BACKENDS = BackendRegistry(
    "gpio",
    {
        "rpigpio": "hardware.gpio.rpigpio:create_factory",
        "lgpio": "hardware.gpio.lgpio:create_factory",
        "mock": "hardware.gpio.mock:create_factory",
    },
)

#: The logical inputs a door can have, with what "asserted" means for each.
INPUT_NAMES = ("door_contact", "rex", "fire", "tamper")

# BCM numbering: GPIO2..GPIO27 are the header's general purpose lines.
_VALID_PINS = range(2, 28)


@dataclass(frozen=True)
class InputSettings:
    """One input line.

    ``asserted_level`` is the electrical level that means the input is *asserted*:
    door open (door_contact), button pressed (rex), alarm (fire, tamper).
    The defaults in :class:`GpioSettings` follow the usual wiring: internal pull-up,
    reed and tamper switches and the fire panel's contact are normally closed to
    ground, so a cut wire reads as "open"/"alarm" (fail-safe); the REX button
    shorts to ground when pressed.
    """

    pin: int
    asserted_level: str = "high"
    pull: str = "up"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.pin, int)
            or isinstance(self.pin, bool)
            or self.pin not in _VALID_PINS
        ):
            raise ValueError(f"pin: {self.pin!r} is not a BCM GPIO number between 2 and 27")
        if self.asserted_level not in ("high", "low"):
            raise ValueError(f"asserted_level: {self.asserted_level!r} must be 'high' or 'low'")
        if self.pull not in ("up", "down", "none"):
            raise ValueError(f"pull: {self.pull!r} must be 'up', 'down' or 'none'")


@dataclass(frozen=True)
class GpioSettings:
    """All GPIO lines of one door.

    The lock relay is energised only to unlock: fail-secure strikes are wired to
    its NO contact and fail-safe maglocks to its NC contact, so a de-energised
    relay (agent stopped, crashed, or Pi without power) always means "locked"
    for strikes and, for maglocks, is released by the fire-alarm loop, never by us.
    """

    #: Required: a door is never driven by the simulator unless the config says so.
    backend: str
    lock_relay_pin: int = 17
    #: Many cheap relay boards switch on a LOW input: set False for those.
    lock_relay_active_high: bool = True
    aux_relay_pin: int | None = None
    aux_relay_active_high: bool = True
    #: Optional read-back of the relay (auxiliary contact or lock bond sensor),
    #: asserted when the relay is energised.
    relay_feedback: InputSettings | None = None
    door_contact: InputSettings | None = field(
        default_factory=lambda: InputSettings(pin=27, asserted_level="high")
    )
    rex: InputSettings | None = field(
        default_factory=lambda: InputSettings(pin=22, asserted_level="low")
    )
    fire: InputSettings | None = None
    tamper: InputSettings | None = None
    #: An input change is reported once the level has been stable this long.
    debounce_s: float = 0.02
    #: lgpio only: the gpiochip number (0 on a Pi 5 since kernel 6.6.45, 4 before).
    lgpio_chip: int = 0

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        for name in ("lock_relay_pin", "aux_relay_pin"):
            value = getattr(self, name)
            if value is None and name == "aux_relay_pin":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value not in _VALID_PINS:
                raise ValueError(f"{name}: {value!r} is not a BCM GPIO number between 2 and 27")
        if not 0 <= self.debounce_s <= 1:
            raise ValueError(f"debounce_s: {self.debounce_s!r} must be between 0 and 1 second")
        used: dict[int, str] = {self.lock_relay_pin: "lock_relay_pin"}
        if self.aux_relay_pin is not None:
            used = self._claim(used, self.aux_relay_pin, "aux_relay_pin")
        for name in (*INPUT_NAMES, "relay_feedback"):
            line = getattr(self, name)
            if line is not None:
                if not isinstance(line, InputSettings):
                    raise ValueError(f"{name}: expected InputSettings, got {type(line).__name__}")
                used = self._claim(used, line.pin, name)

    @staticmethod
    def _claim(used: dict[int, str], pin: int, name: str) -> dict[int, str]:
        if pin in used:
            raise ValueError(f"{name}: GPIO{pin} is already used by {used[pin]}")
        return {**used, pin: name}

    def inputs(self) -> dict[str, InputSettings]:
        """Return the wired inputs by logical name (relay feedback included)."""
        names = (*INPUT_NAMES, "relay_feedback")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
