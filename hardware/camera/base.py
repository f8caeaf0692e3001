"""The camera interface: :class:`Frame`, :class:`FrameSource` and :class:`CameraSettings`.

Every backend delivers the same thing: a greyscale ``uint8`` image of exactly the
configured size, stamped with :func:`time.monotonic` and numbered. The QR decoder
only ever needs luminance, so backends that can hand out a Y plane do so without
any colour conversion (picamera2's YUV420 stream), the others convert once.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeGuard

import numpy as np

from hardware.errors import DeviceError, HardwareError
from hardware.registry import BackendRegistry

log = logging.getLogger(__name__)

#: Backends accepted in :attr:`CameraSettings.backend`, and their :class:`FrameSource` classes.
BACKENDS = BackendRegistry(
    "camera",
    {
        "picamera2": "hardware.camera.picamera2:Picamera2Source",
        "opencv": "hardware.camera.opencv:OpenCVSource",
        "replay": "hardware.camera.replay:ReplaySource",
    },
)

ROTATIONS = (0, 90, 180, 270)

# Sizes are even because YUV420 (picamera2's lores stream, most UVC cameras)
# subsamples chroma by two in both directions; odd sizes are never delivered.
_MIN_SIDE = 16
_MAX_SIDE = 8192


class EndOfStream(HardwareError, EOFError):
    """A finite source (replay without ``loop``) has delivered its last frame."""


class SourceClosed(HardwareError, RuntimeError):
    """The source was closed (or never opened) when a frame was asked for."""


@dataclass(frozen=True, eq=False, slots=True)
class Frame:
    """One greyscale frame.

    ``image`` is a C-contiguous ``uint8`` array of shape ``(height, width)``;
    ``timestamp`` is :func:`time.monotonic` (or the replay's injected clock) when
    the frame was captured; ``seq`` numbers the frames a source captured, from 0,
    so a gap means frames were dropped because the reader was slower than the
    camera; ``source`` says where the frame came from (device, file name).
    """

    image: np.ndarray
    timestamp: float
    seq: int
    source: str | None = None

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(
                "image: expected a 2-D uint8 array, got "
                f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
            )

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.image.shape[0])


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class CameraSettings:
    """Which camera to open and how; validated on construction.

    ``backend``
        One of :data:`BACKENDS`. Required: nothing picks a simulator by itself.
    ``device``
        opencv: a V4L2 index (``0`` for ``/dev/video0``) or a device path
        (``/dev/v4l/by-id/...`` survives re-plugging); picamera2: the camera
        number (``0`` is the first CSI camera). Unused by replay.
    ``resolution``
        ``(width, height)`` of the frames delivered, after ``rotation``; even,
        between 16 and 8192. Default 640x480, the size the QR decoder is tuned for.
    ``fps``
        Frame rate asked of the camera (cameras may deliver less in low light).
    ``replay_path``
        replay: an image folder, a single image or a video file. Required for replay.
    ``replay_rate``
        replay: frames per second to deliver; ``None`` uses ``fps``; ``0`` delivers
        each frame as soon as it is read (benchmarks).
    ``loop``
        replay: start again after the last frame instead of ending the stream.
    ``rotation``
        Clockwise rotation in degrees (0, 90, 180, 270) for a camera mounted turned;
        the device is asked for the unrotated size.
    ``stall_timeout``
        Seconds without a frame after which iterating a source raises
        :class:`~hardware.errors.DeviceError` (a stalled or unplugged camera).
    """

    backend: str
    device: int | str = 0
    resolution: tuple[int, int] = (640, 480)
    fps: float = 30.0
    replay_path: Path | None = None
    replay_rate: float | None = None
    loop: bool = False
    rotation: int = 0
    stall_timeout: float = 5.0

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        if _is_int(self.device):
            if self.device < 0:
                raise ValueError(f"device: {self.device!r} must be a camera number >= 0")
        elif not isinstance(self.device, str) or not self.device.strip():
            raise ValueError(f"device: {self.device!r} must be a camera number or a device path")
        elif self.backend == "picamera2":
            raise ValueError(f"device: {self.device!r} must be a camera number for picamera2")

        resolution = self.resolution
        if (
            not isinstance(resolution, tuple | list)
            or len(resolution) != 2
            or not all(_is_int(side) for side in resolution)
        ):
            raise ValueError(f"resolution: {resolution!r} must be (width, height) in pixels")
        for side in resolution:
            if not _MIN_SIDE <= side <= _MAX_SIDE or side % 2:
                raise ValueError(
                    f"resolution: {tuple(resolution)!r} sides must be even, "
                    f"between {_MIN_SIDE} and {_MAX_SIDE}"
                )
        object.__setattr__(self, "resolution", tuple(resolution))

        if not _is_number(self.fps) or not 0 < self.fps <= 240:
            raise ValueError(f"fps: {self.fps!r} must be a number in (0, 240]")

        if self.replay_path is not None:
            if not isinstance(self.replay_path, str | Path) or not str(self.replay_path):
                raise ValueError(f"replay_path: {self.replay_path!r} must be a path")
            object.__setattr__(self, "replay_path", Path(self.replay_path))
        elif self.backend == "replay":
            raise ValueError("replay_path: required by the replay backend")

        if self.replay_rate is not None and (
            not _is_number(self.replay_rate) or not 0 <= self.replay_rate <= 1000
        ):
            raise ValueError(f"replay_rate: {self.replay_rate!r} must be None or in [0, 1000]")
        if not isinstance(self.loop, bool):
            raise ValueError(f"loop: {self.loop!r} must be true or false")
        if not _is_int(self.rotation) or self.rotation not in ROTATIONS:
            raise ValueError(f"rotation: {self.rotation!r} must be one of 0, 90, 180, 270")
        if not _is_number(self.stall_timeout) or self.stall_timeout <= 0:
            raise ValueError(f"stall_timeout: {self.stall_timeout!r} must be a number > 0")

    @property
    def capture_size(self) -> tuple[int, int]:
        """``(width, height)`` to ask of the device: ``resolution`` before rotation."""
        width, height = self.resolution
        return (height, width) if self.rotation in (90, 270) else (width, height)


def rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Return ``image`` turned ``rotation`` degrees clockwise (C-contiguous)."""
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-(rotation // 90)))


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return ``image`` scaled to exactly ``size`` = ``(width, height)``.

    The aspect ratio is kept (a QR code stays square); the margin left over is
    filled with the image's mean grey level, so it neither hides a code nor counts
    as clipped in :func:`~hardware.camera.exposure.exposure_stats`.
    """
    width, height = size
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    import cv2

    scale = min(width / src_w, height / src_h)
    new_w = min(width, max(1, round(src_w * scale)))
    new_h = min(height, max(1, round(src_h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if (new_w, new_h) == (width, height):
        return scaled
    out = np.full((height, width), round(float(scaled.mean())), dtype=np.uint8)
    top = (height - new_h) // 2
    left = (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = scaled
    return out


class FrameSource(ABC):
    """A stream of greyscale frames from one camera, file or folder.

    Use it as a context manager or call :meth:`open` and :meth:`close`::

        with open_camera(settings) as camera:
            for frame in camera:
                ...

    Backends implement :meth:`_open`, :meth:`_read` and :meth:`_close`; this class
    keeps the state (open/closed), validates arguments and makes :meth:`close`
    idempotent and safe to call from another thread while :meth:`read` waits.
    """

    #: Backend name, as in :data:`BACKENDS`.
    name: str = ""

    def __init__(self, settings: CameraSettings) -> None:
        self.settings = settings
        self._state_lock = threading.Lock()
        self._opened = False
        self._closed = False

    # -- public API ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def resolution(self) -> tuple[int, int]:
        """``(width, height)`` of every frame this source delivers."""
        return self.settings.resolution

    def open(self) -> FrameSource:
        """Acquire the device and start streaming; return ``self``.

        Calling it again while open does nothing. Raises
        :class:`~hardware.errors.BackendUnavailable` when the backend's library
        cannot load, :class:`~hardware.errors.DeviceError` when the device is
        missing, busy or refuses the configuration,
        :class:`~hardware.errors.NotAnImage` when a replay file is not an image or
        video, and :class:`SourceClosed` after :meth:`close`.
        """
        with self._state_lock:
            if self._closed:
                raise SourceClosed(f"{self.name} camera source is closed")
            if self._opened:
                return self
            try:
                self._open()
            except BaseException:
                # A half-opened device (thread started, camera acquired) must be released.
                self._closed = True
                self._close_quietly()
                raise
            self._opened = True
        log.debug("%s camera source opened (%dx%d)", self.name, *self.resolution)
        return self

    def read(self, timeout: float = 1.0) -> Frame | None:
        """Return the next frame, waiting at most ``timeout`` seconds for it.

        Returns ``None`` when no frame arrived in time (the source is still usable).
        Raises :class:`~hardware.errors.DeviceError` when the device failed
        (unplugged, stopped delivering), :class:`EndOfStream` after a finite
        replay's last frame, :class:`SourceClosed` when the source is not open or
        is closed while waiting, and ``ValueError`` for a negative timeout.
        """
        if not _is_number(timeout) or timeout < 0:
            raise ValueError(f"timeout: {timeout!r} must be a number >= 0")
        if self._closed or not self._opened:
            raise SourceClosed(f"{self.name} camera source is not open")
        return self._read(float(timeout))

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until the stream ends or the source is closed.

        Raises :class:`~hardware.errors.DeviceError` when the device fails or when
        no frame arrives for ``settings.stall_timeout`` seconds.
        """
        timeout = self._stall_timeout()
        while True:
            try:
                frame = self.read(timeout)
            except (EndOfStream, SourceClosed):
                return
            if frame is None:
                if self._closed:
                    return
                raise DeviceError(f"{self.name} camera delivered no frame for {timeout:g} s")
            yield frame

    def close(self) -> None:
        """Stop streaming and release the device. Idempotent; never raises."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._close_quietly()
        log.debug("%s camera source closed", self.name)

    def __enter__(self) -> FrameSource:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "not opened"
        return f"<{type(self).__name__} {self.name} {state}>"

    # -- backend hooks --------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Acquire the device and start it. Raises as documented in :meth:`open`."""

    @abstractmethod
    def _read(self, timeout: float) -> Frame | None:
        """Return the next frame within ``timeout`` s or ``None``; raises as :meth:`read`."""

    @abstractmethod
    def _close(self) -> None:
        """Release everything, including after a failed :meth:`_open`. May raise."""

    def _stall_timeout(self) -> float:
        """Seconds :meth:`__iter__` waits for a frame before declaring a stall."""
        return self.settings.stall_timeout

    def _close_quietly(self) -> None:
        try:
            self._close()
        except Exception:
            log.exception("%s camera source: error while closing", self.name)
