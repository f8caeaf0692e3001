"""Open the devices a configuration names, and close them again, in one place.

Used by ``edge-agent run`` and ``edge-agent selftest``. A device that cannot be
opened is recorded in :attr:`Devices.errors` (component -> message) instead of
raising, so the self-test can report it and the agent can decide whether it
can run without it (a door without its reader still locks and journals).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hardware.errors import HardwareError

log = logging.getLogger(__name__)


@dataclass
class Devices:
    """Opened devices; any may be None (not configured, or failed: see ``errors``)."""

    door_io: Any = None
    door_sim: Any = None
    reader: Any = None
    camera: Any = None
    decoder: Any = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """True when the door or the reader is a simulator."""
        return self.door_sim is not None or getattr(self.reader, "backend", "") == "sim"

    def close(self) -> None:
        """Close everything that was opened (relay de-energised first). Idempotent."""
        for name in ("door_sim", "door_io", "reader", "camera"):
            device = getattr(self, name)
            if device is None:
                continue
            try:
                device.close()
            except Exception:  # closing must go on for the other devices
                log.exception("closing %s failed", name)
            setattr(self, name, None)

    def __enter__(self) -> Devices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def open_devices(
    hardware: Any, *, gpio: bool = True, nfc: bool = True, camera: bool = True
) -> Devices:
    """Open the devices of a :class:`edge_agent.config.HardwareSection`.

    ``gpio``, ``nfc``, ``camera`` False leave that kind closed even when
    configured (the agent does not open the kiosk's camera).
    """
    devices = Devices()
    if gpio and hardware.gpio is not None:
        from hardware.gpio import DoorSimulator, open_door_io

        try:
            devices.door_io = open_door_io(hardware.gpio)
            if hardware.gpio.backend == "mock":
                devices.door_sim = DoorSimulator(devices.door_io)
        except (HardwareError, OSError) as exc:
            devices.errors["gpio"] = _describe(exc)
            log.error("cannot open the door's GPIO: %s", exc)
    if nfc and hardware.nfc is not None:
        from hardware.nfc import open_reader

        try:
            devices.reader = open_reader(hardware.nfc)
        except (HardwareError, OSError) as exc:
            devices.errors["nfc"] = _describe(exc)
            log.error("cannot open the NFC reader: %s", exc)
    if camera and hardware.camera is not None:
        from hardware.camera import open_camera
        from hardware.qr import open_decoder

        try:
            devices.camera = open_camera(hardware.camera)
        except (HardwareError, OSError) as exc:
            devices.errors["camera"] = _describe(exc)
            log.error("cannot open the camera: %s", exc)
        try:
            devices.decoder = open_decoder(hardware.qr)
        except (HardwareError, OSError) as exc:
            devices.errors["qr"] = _describe(exc)
            log.error("cannot open the QR decoder: %s", exc)
    return devices
