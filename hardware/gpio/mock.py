"""Simulator backend: gpiozero's MockFactory plus a panel to drive the inputs.

Used by the tests and the demo, and only when the configuration says
``backend = "mock"``: it is never picked as a fallback for a missing Pi.
"""

from __future__ import annotations

import threading
from typing import Any

from hardware.gpio.settings import GpioSettings


def _pin_classes() -> tuple[type, type]:
    from gpiozero.pins.mock import MockConnectedPin, MockPin

    class WiredPin(MockPin):
        """A mock input with something wired to it that overrides the pull resistor.

        gpiozero's MockPin jumps to its pull level whenever a device sets the
        pull; a real line held low by a closed reed switch stays low. ``external``
        is the level the wiring imposes (None: nothing connected, the pull wins).
        """

        external: bool | None = None

        def _set_pull(self, value: str) -> None:
            super()._set_pull(value)
            self._apply_external()

        def wire(self, level: bool | None) -> None:
            self.external = level
            self._apply_external()

        def _apply_external(self) -> None:
            if self.external is None or self.function != "input":
                return
            if self.external:
                self.drive_high()
            else:
                self.drive_low()

    class RelayContactPin(MockConnectedPin):
        """The relay's output pin; its contact imposes the same level on the feedback input."""

        def _change_state(self, value: bool) -> bool:
            changed = MockPin._change_state(self, value)
            if changed and self.input_pin is not None and self.function == "output":
                self.input_pin.wire(value)
            return changed

    return WiredPin, RelayContactPin


def create_factory(settings: GpioSettings) -> Any:
    """Return a fresh MockFactory wired like a door at rest.

    Every input starts at its idle level (door closed, no alarm, button
    released), and the relay's output pin drives the feedback input, if one is
    configured, like an auxiliary contact on a real relay.
    """
    from gpiozero.pins.mock import MockFactory

    wired_pin, relay_pin = _pin_classes()
    factory = MockFactory(pin_class=wired_pin)
    for name, cfg in settings.inputs().items():
        if name == "relay_feedback":
            continue
        pin = factory.pin(cfg.pin)
        pin.wire(cfg.asserted_level != "high")  # idle = not asserted
    if settings.relay_feedback is not None:
        feedback = factory.pin(settings.relay_feedback.pin)
        feedback.wire(False)  # the relay pin starts low
        factory.pin(settings.lock_relay_pin, pin_class=relay_pin, input_pin=feedback)
    return factory


class DoorSimulator:
    """Drives a simulated door's inputs the way a person or a fire panel would.

    ``door_io`` must be a :class:`~hardware.gpio.door_io.DoorIO` opened on a
    MockFactory. Each method changes the electrical level of the line
    according to its configured ``asserted_level``, so the DoorIO under test
    sees exactly what real wiring would give it.
    """

    def __init__(self, door_io: Any) -> None:
        from gpiozero.pins.mock import MockFactory

        if not isinstance(door_io.factory, MockFactory):
            raise TypeError("DoorSimulator needs a DoorIO opened on the mock backend")
        self.door_io = door_io
        self.settings: GpioSettings = door_io.settings
        self._feedback_broken = False
        self._timers: list[threading.Timer] = []

    def _pin(self, name: str) -> Any:
        cfg = getattr(self.settings, name)
        if cfg is None:
            raise KeyError(f"input {name!r} is not wired in this configuration")
        return self.door_io.factory.pin(cfg.pin)

    def set_input(self, name: str, asserted: bool) -> None:
        """Drive input ``name`` (door_contact, rex, fire, tamper) to asserted or not."""
        cfg = getattr(self.settings, name)
        pin = self._pin(name)
        pin.wire(asserted == (cfg.asserted_level == "high"))

    def open_door(self) -> None:
        """Open the door leaf (door contact reads open)."""
        self.set_input("door_contact", True)

    def close_door(self) -> None:
        """Close the door leaf."""
        self.set_input("door_contact", False)

    def press_rex(self, hold_s: float = 0.2) -> None:
        """Press the request-to-exit button and release it after ``hold_s``."""
        self.set_input("rex", True)
        timer = threading.Timer(hold_s, self.set_input, args=("rex", False))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def fire_alarm(self, active: bool = True) -> None:
        """Assert or clear the fire-alarm release input."""
        self.set_input("fire", active)

    def tamper(self, active: bool = True) -> None:
        """Assert or clear the tamper switch."""
        self.set_input("tamper", active)

    def break_relay_feedback(self) -> None:
        """Simulate a relay whose contact no longer follows its coil."""
        self._feedback_broken = True
        pin = self.door_io.lock_relay_pin
        if hasattr(pin, "input_pin"):
            pin.input_pin = None

    @property
    def relay_energised(self) -> bool:
        """Whether the lock relay's coil is energised, from the pin's level."""
        level = bool(self.door_io.lock_relay_pin.state)
        return level == self.settings.lock_relay_active_high

    def close(self) -> None:
        """Cancel pending button releases."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
