"""Greyscale frame sources: picamera2, OpenCV/V4L2 and replay.

Pick a backend in :class:`CameraSettings` and call :func:`open_camera`:

* ``picamera2`` -- Raspberry Pi CSI camera; frames are the Y plane of a YUV420
  low-resolution stream (Pi only: needs libcamera);
* ``opencv``    -- USB (UVC) cameras through OpenCV's V4L2 backend;
* ``replay``    -- an image folder, one image or a video file at a given rate
  (the kiosk demo and the tests).

A backend is imported only when it is opened; one that cannot load raises
:class:`~hardware.errors.BackendUnavailable` and nothing falls back to replay by
itself. See ``docs/camera.md``.
"""

from __future__ import annotations

from typing import Any

from hardware.camera.base import (
    BACKENDS,
    CameraSettings,
    EndOfStream,
    Frame,
    FrameSource,
    SourceClosed,
)
from hardware.camera.exposure import exposure_problem, exposure_stats, is_sane_exposure

__all__ = [
    "BACKENDS",
    "CameraSettings",
    "EndOfStream",
    "Frame",
    "FrameSource",
    "SourceClosed",
    "backend_class",
    "exposure_problem",
    "exposure_stats",
    "is_sane_exposure",
    "open_camera",
]


def backend_class(name: str) -> type[FrameSource]:
    """Return the :class:`FrameSource` subclass of backend ``name``.

    Raises :class:`~hardware.errors.UnknownBackend` for a name not in :data:`BACKENDS`.
    Importing the module never imports the driver library.
    """
    cls: type[FrameSource] = BACKENDS.load(name)
    return cls


def open_camera(settings: CameraSettings, **backend_options: Any) -> FrameSource:
    """Open the camera ``settings`` describe and return the started source.

    ``backend_options`` go to the backend's constructor (for instance
    ``camera_factory`` for picamera2, ``queue_size`` for opencv, ``clock`` and
    ``sleep`` for replay). Close the source (or use it as a context manager).

    Raises :class:`~hardware.errors.UnknownBackend` for an unknown backend name,
    :class:`~hardware.errors.BackendUnavailable` when the backend's library cannot
    load on this machine, :class:`~hardware.errors.DeviceError` when the device is
    missing or fails to start, and :class:`~hardware.errors.NotAnImage` when a
    replay file is neither an image nor a video.
    """
    source = backend_class(settings.backend)(settings, **backend_options)
    return source.open()
