"""RPi.GPIO pin factory: Raspberry Pi 1 to 4 (not the Pi 5, whose GPIO is on the RP1 chip)."""

from __future__ import annotations

from typing import Any

from hardware.errors import BackendUnavailable
from hardware.gpio.settings import GpioSettings


def create_factory(settings: GpioSettings) -> Any:
    """Return gpiozero's RPiGPIOFactory.

    Raises :class:`~hardware.errors.BackendUnavailable` off a Pi (RPi.GPIO raises
    RuntimeError on import there) or when the package is not installed.
    """
    del settings  # RPi.GPIO needs no options
    try:
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    except (ImportError, RuntimeError) as exc:
        raise BackendUnavailable(
            f"gpio backend 'rpigpio' cannot load ({exc}). It needs a Raspberry Pi 1-4 and "
            '`pip install .[pi]` (RPi.GPIO); on a Pi 5 use backend = "lgpio".'
        ) from exc
