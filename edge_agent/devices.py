"""Open the devices a configuration names, and close them again, in one place.

Used by ``edge-agent run`` and ``edge-agent selftest``. A device that cannot be
opened is recorded in :attr:`Devices.errors` (component -> message) instead of
raising, so the self-test can report it and the agent can decide whether it
can run without it (a door without its reader still locks and journals).
On a simulated appliance, :meth:`Devices.simulate` drives the simulators (the demo's
panel, ``POST /v1/sim/{action}``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.errors import ActionError
from hardware.errors import HardwareError

log = logging.getLogger(__name__)


@dataclass
class Devices:
    """Opened devices; any may be None (not configured, or failed: see ``errors``)."""

    door_io: Any = None
    door_sim: Any = None
    reader: Any = None
    #: The door's wall readers (:class:`hardware.reader.DoorReader`).
    door_reader: Any = None
    camera: Any = None
    decoder: Any = None
    printer: Any = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """True when the door or the reader is a simulator."""
        return self.door_sim is not None or getattr(self.reader, "backend", "") == "sim"

    def simulate(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Drive the simulated hardware (the demo panel, ``POST /v1/sim/{action}``).

        Door actions (``door_open``, ``door_close``, ``rex``, ``fire`` and ``tamper``
        with ``on``) go to the door simulator, ``badge`` (``uid`` hex, optional
        ``sun_url``) to the simulated reader, ``printer`` (``status``: ``ready``,
        ``jammed``, ``out_of_media``...) to a ``mock`` pass printer. Raises :class:`ActionError`
        ``not_simulated`` on real hardware, ``unknown_action``, ``bad_request``.
        """
        sim = self.door_sim
        reader = self.reader
        if not self.simulated:
            raise ActionError("not_simulated", "this agent runs on real hardware")
        on = bool(body.get("on", True))
        door_actions: dict[str, Callable[[], None]] = {}
        if sim is not None:
            door_actions = {
                "door_open": sim.open_door,
                "door_close": sim.close_door,
                "rex": sim.press_rex,
                "fire": lambda: sim.fire_alarm(on),
                "tamper": lambda: sim.tamper(on),
            }
        if action in door_actions:
            door_actions[action]()
        elif action == "badge" and reader is not None and hasattr(reader, "present"):
            uid = body.get("uid")
            if not isinstance(uid, str):
                raise ActionError("bad_request", "'uid' (hex) is required")
            records = []
            if isinstance(body.get("sun_url"), str):
                import ndef

                records.append(ndef.UriRecord(body["sun_url"]))
            try:
                reader.present(uid, ndef=records)
            except ValueError as exc:
                raise ActionError("bad_request", str(exc)) from exc
        elif action == "printer" and hasattr(self.printer, "set_state"):
            from hardware.printer import PrinterStatus

            try:
                status = PrinterStatus(body.get("status", "ready"))
            except ValueError as exc:
                raise ActionError("bad_request", f"'status': {exc}") from exc
            self.printer.set_state(status, message=str(body.get("message", "")))
        else:
            raise ActionError("unknown_action", f"no simulated action {action!r}")
        return {"ok": True, "action": action}

    def close(self) -> None:
        """Close everything that was opened (relay de-energised first). Idempotent."""
        for name in ("door_sim", "door_reader", "door_io", "reader", "camera", "printer"):
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
    hardware: Any,
    *,
    gpio: bool = True,
    nfc: bool = True,
    camera: bool = True,
    printer: bool = True,
) -> Devices:
    """Open the devices of a :class:`edge_agent.config.HardwareSection`.

    ``gpio``, ``nfc``, ``camera``, ``printer`` False leave that kind closed even when
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
    if nfc and getattr(hardware, "reader", None) is not None:
        from hardware.reader import open_door_reader

        backend: dict[str, Any] = {}
        if hardware.reader.backend == "wiegand" and devices.door_io is not None:
            backend["pin_factory"] = devices.door_io.factory  # one chip handle
        if hardware.reader.backend == "osdp":
            # An RS-485 adapter not plugged in yet is waited for, its readers offline
            # (alarms) meanwhile, not given up on until the next restart.
            backend["wait_for_port"] = True
        try:
            devices.door_reader = open_door_reader(hardware.reader, **backend)
        except (HardwareError, OSError) as exc:
            devices.errors["reader"] = _describe(exc)
            log.error("cannot open the wall readers: %s", exc)
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
    if printer and getattr(hardware, "printer", None) is not None:
        from hardware.printer import open_printer

        try:
            devices.printer = open_printer(hardware.printer)
        except (HardwareError, OSError) as exc:
            devices.errors["printer"] = _describe(exc)
            log.error("cannot open the pass printer: %s", exc)
    return devices
