"""Device drivers behind small interfaces, one module per backend.

Sub-packages:

* :mod:`hardware.gpio`   -- the door's relay and input lines through gpiozero.
* :mod:`hardware.nfc`    -- badge readers (nfcpy, keyboard wedge, simulator).
* :mod:`hardware.reader` -- the door's wall readers (OSDP with Secure Channel, legacy Wiegand).
* :mod:`hardware.camera` -- greyscale frame sources (picamera2, OpenCV/V4L2, replay).
* :mod:`hardware.qr`     -- QR decoding of frames (zxing-cpp, pyzbar).
* :mod:`hardware.selftest` -- installer checks over the configured backends.

Nothing here touches a device at import time: backends import their driver
libraries only when a device is opened, so ``import hardware`` is safe on any
machine and a backend that cannot load says so with :class:`BackendUnavailable`.

Every family chooses its backend the same way: its ``BACKENDS`` is a
:class:`hardware.registry.BackendRegistry` (configuration name -> ``"module:attribute"``,
imported only when chosen, an unknown name refused with the valid ones, no fallback).
"""

from hardware.errors import BackendUnavailable, DeviceError, HardwareError

__all__ = ["BackendUnavailable", "DeviceError", "HardwareError"]
