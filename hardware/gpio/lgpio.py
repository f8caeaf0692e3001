"""lgpio pin factory: every Raspberry Pi, and the only choice on a Pi 5."""

from __future__ import annotations

from typing import Any

from hardware.errors import BackendUnavailable
from hardware.gpio.settings import GpioSettings


def create_factory(settings: GpioSettings) -> Any:
    """Return gpiozero's LGPIOFactory on ``settings.lgpio_chip``.

    Raises :class:`~hardware.errors.BackendUnavailable` when lgpio is not
    installed or the gpiochip cannot be opened (not a Pi, or no permission on
    /dev/gpiochipN).
    """
    try:
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory(chip=settings.lgpio_chip)
    except Exception as exc:  # lgpio raises its own 'error' type for a missing chip
        raise BackendUnavailable(
            f"gpio backend 'lgpio' cannot open gpiochip{settings.lgpio_chip} ({exc}). "
            "It needs a Raspberry Pi, `pip install .[pi]` (lgpio) and access to /dev/gpiochip*."
        ) from exc
