"""Typed errors shared by every hardware backend.

Like gpiozero's ``exc`` module, each error also subclasses the builtin that a
caller without Portier-specific handling would naturally catch.
"""

from __future__ import annotations


class HardwareError(Exception):
    """Base class of every error raised by :mod:`hardware`."""


class BackendUnavailable(HardwareError, ImportError):
    """The backend's driver library or device cannot be loaded on this machine.

    Raised when a backend is opened, never at import time. The message says
    which backend, what is missing and how to fix it (package, extra, device).
    Callers must not silently fall back to a simulator when they see this.
    """


class UnknownBackend(HardwareError, ValueError):
    """The configuration names a backend that does not exist."""


class DeviceError(HardwareError, OSError):
    """A device was present but failed while in use (I/O error, unplugged...)."""


class NotAnImage(HardwareError, ValueError):
    """A file handed to the camera or QR layer is not a readable image."""
