"""The door's GPIO lines through gpiozero.

Pick a backend in :class:`GpioSettings` and call :func:`open_door_io`:

* ``rpigpio`` -- RPi.GPIO pin factory (Raspberry Pi 1-4);
* ``lgpio``   -- lgpio pin factory (every Pi; the one that works on a Pi 5);
* ``mock``    -- gpiozero's MockFactory, with :class:`DoorSimulator` to drive
  the inputs (tests and demo).

A backend that cannot load raises :class:`~hardware.errors.BackendUnavailable`;
nothing falls back to the simulator by itself.
"""

from __future__ import annotations

from typing import Any

from hardware.gpio.door_io import DoorIO, InputCallback
from hardware.gpio.mock import DoorSimulator
from hardware.gpio.settings import BACKENDS, INPUT_NAMES, GpioSettings, InputSettings

__all__ = [
    "BACKENDS",
    "INPUT_NAMES",
    "DoorIO",
    "DoorSimulator",
    "GpioSettings",
    "InputCallback",
    "InputSettings",
    "create_pin_factory",
    "open_door_io",
]


def create_pin_factory(settings: GpioSettings) -> Any:
    """Return the gpiozero pin factory for ``settings.backend``.

    Raises :class:`~hardware.errors.UnknownBackend` for a name that is not in
    :data:`BACKENDS` and :class:`~hardware.errors.BackendUnavailable` when the
    backend's library or chip is missing.
    """
    return BACKENDS.load(settings.backend)(settings)


def open_door_io(settings: GpioSettings, pin_factory: Any = None) -> DoorIO:
    """Open the door's lines on the configured backend (or on ``pin_factory``)."""
    factory = pin_factory if pin_factory is not None else create_pin_factory(settings)
    return DoorIO(settings, factory)
