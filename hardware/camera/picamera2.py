"""Raspberry Pi camera (CSI) through picamera2 / libcamera.

The camera is configured with two YUV420 streams: ``main`` and a low-resolution
``lores`` stream at the configured size. The QR decoder wants luminance only, and
the first plane of a YUV420 buffer *is* the luminance, so a frame is the lores
buffer's Y plane: no colour conversion, no extra copy beyond cropping.

``Picamera2.capture_array("lores")`` returns the whole YUV420 buffer as a 2-D
array of ``height * 3 / 2`` rows of ``stride`` bytes: the Y plane is the first
``height`` rows and, as the ISP pads each row to an aligned stride, only the first
``width`` bytes of each row (:func:`y_plane`).

picamera2 imports only on a Raspberry Pi (it needs libcamera's Python bindings,
packaged by Raspberry Pi OS), so the class takes a ``camera_factory``: the tests
hand it a Picamera2-like object and exercise configuration, plane extraction and
error handling here; the real camera can only be exercised on a Pi.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.camera.base import CameraSettings, Frame, FrameSource, SourceClosed, fit, rotate
from hardware.errors import BackendUnavailable, DeviceError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "on Raspberry Pi OS: sudo apt install python3-picamera2 and create the virtualenv with "
    "--system-site-packages (libcamera's Python bindings come only from apt), "
    "then pip install .[pi]"
)


def load_picamera2() -> Callable[..., Any]:
    """Return the ``Picamera2`` class.

    Raises :class:`~hardware.errors.BackendUnavailable` (with the install hint)
    when picamera2 or libcamera cannot be imported, which is always the case off a Pi.
    """
    try:
        from picamera2 import Picamera2
    except (ImportError, OSError, RuntimeError) as exc:
        raise BackendUnavailable(
            f"picamera2 camera backend is not available ({exc}); {INSTALL_HINT}"
        ) from exc
    return Picamera2


def y_plane(buffer: np.ndarray, size: tuple[int, int], stride: int | None = None) -> np.ndarray:
    """Return the Y (luminance) plane of a YUV420 ``buffer`` as a contiguous array.

    ``buffer`` is what ``capture_array`` returns for a YUV420 stream: 2-D,
    ``(height * 3 // 2, stride)``, or flat, in which case ``stride`` (bytes per row,
    from the stream configuration) says how to cut it into rows. ``size`` is the
    stream's ``(width, height)``; padding beyond ``width`` is dropped.
    Raises :class:`~hardware.errors.DeviceError` when the buffer cannot hold a
    plane of that size.
    """
    width, height = size
    if not isinstance(buffer, np.ndarray) or buffer.dtype != np.uint8:
        raise DeviceError(f"lores buffer: expected uint8 array, got {type(buffer).__name__}")
    if buffer.ndim == 1:
        if not stride or stride < width or buffer.size < stride * height:
            raise DeviceError(
                f"lores buffer: {buffer.size} bytes cannot hold {height} rows of stride {stride}"
            )
        buffer = buffer[: stride * height].reshape(height, stride)
    elif buffer.ndim != 2:
        raise DeviceError(f"lores buffer: expected a 2-D YUV420 array, got shape {buffer.shape}")
    if buffer.shape[0] < height or buffer.shape[1] < width:
        raise DeviceError(
            f"lores buffer: shape {buffer.shape} is smaller than the {width}x{height} Y plane"
        )
    return np.ascontiguousarray(buffer[:height, :width])


class Picamera2Source(FrameSource):
    """Frames from Raspberry Pi camera ``settings.device`` (0 = first camera).

    ``camera_factory(camera_num)`` makes the Picamera2 object (default: the real
    ``Picamera2`` class, imported when the source opens); when it has a
    ``global_camera_info()`` method, the camera number is checked against it.
    ``main_size`` sets the main stream's size (default: the lores size; a larger
    main stream makes libcamera pick a sensor mode with more of the field of view,
    at some cost in ISP bandwidth). ``buffer_count`` is the number of buffers
    libcamera cycles through.
    """

    name = "picamera2"

    def __init__(
        self,
        settings: CameraSettings,
        *,
        camera_factory: Callable[[int], Any] | None = None,
        main_size: tuple[int, int] | None = None,
        buffer_count: int = 4,
    ) -> None:
        super().__init__(settings)
        self._factory = camera_factory
        self._main_size = tuple(main_size) if main_size is not None else settings.capture_size
        lores_w, lores_h = settings.capture_size
        if self._main_size[0] < lores_w or self._main_size[1] < lores_h:
            raise ValueError(f"main_size: {main_size!r} must be at least the lores size")
        if buffer_count < 2:
            raise ValueError(f"buffer_count: {buffer_count!r} must be >= 2")
        self._buffer_count = buffer_count
        self._camera: Any = None
        self._started = False
        self._job: Any = None
        self._lores_size: tuple[int, int] = settings.capture_size
        self._stride: int | None = None
        self._seq = 0
        self._label = f"picamera2:{settings.device}"
        # read() and close() may run in different threads; the camera object is not
        # meant to be stopped in the middle of dispatching a capture.
        self._lock = threading.Lock()

    @property
    def camera(self) -> Any:
        """The Picamera2 object (``None`` before :meth:`open` and after :meth:`close`)."""
        return self._camera

    @property
    def lores_stride(self) -> int | None:
        """Bytes per row of the lores stream, as configured by libcamera."""
        return self._stride

    def _open(self) -> None:
        factory = self._factory if self._factory is not None else load_picamera2()
        camera_num = int(self.settings.device)
        info = getattr(factory, "global_camera_info", None)
        if callable(info):
            cameras = info()
            if camera_num >= len(cameras):
                raise DeviceError(
                    errno.ENODEV,
                    f"no Raspberry Pi camera {camera_num} ({len(cameras)} found; check the "
                    "ribbon cable and `rpicam-hello --list-cameras`)",
                    f"camera{camera_num}",
                )
        try:
            self._camera = factory(camera_num)
        except (BackendUnavailable, DeviceError):
            raise
        except Exception as exc:
            raise DeviceError(
                errno.ENODEV,
                f"cannot open Raspberry Pi camera ({exc}; is another process using it?)",
                f"camera{camera_num}",
            ) from exc

        camera = self._camera
        frame_us = round(1_000_000 / self.settings.fps)
        try:
            config = camera.create_video_configuration(
                main={"size": self._main_size, "format": "YUV420"},
                lores={"size": self.settings.capture_size, "format": "YUV420"},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
                buffer_count=self._buffer_count,
            )
            camera.configure(config)
            lores = camera.stream_configuration("lores")
            self._lores_size = (int(lores["size"][0]), int(lores["size"][1]))
            self._stride = int(lores["stride"]) if lores.get("stride") else None
            camera.start()
            self._started = True
        except Exception as exc:
            raise DeviceError(
                errno.EIO, f"Raspberry Pi camera refused the configuration: {exc}", self._label
            ) from exc
        if self._lores_size != self.settings.capture_size:
            log.info(
                "picamera2 lores stream is %dx%d, not %dx%d: frames are scaled",
                *self._lores_size,
                *self.settings.capture_size,
            )

    def _read(self, timeout: float) -> Frame | None:
        with self._lock:
            camera = self._camera
            if self._closed or camera is None:
                raise SourceClosed("picamera2 camera source is closed")
            # A capture that timed out stays queued in picamera2; wait on the same
            # job next time instead of queueing one more per call.
            if self._job is None:
                try:
                    self._job = camera.capture_array("lores", wait=False)
                except Exception as exc:
                    raise DeviceError(errno.EIO, f"capture failed: {exc}", self._label) from exc
            job = self._job
        try:
            buffer = camera.wait(job, timeout=timeout)
        except TimeoutError:
            if self._closed:
                raise SourceClosed("picamera2 camera source is closed") from None
            return None
        except Exception as exc:
            self._job = None
            if self._closed:
                raise SourceClosed("picamera2 camera source is closed") from exc
            raise DeviceError(errno.EIO, f"capture failed: {exc}", self._label) from exc
        timestamp = time.monotonic()
        self._job = None
        grey = y_plane(buffer, self._lores_size, self._stride)
        grey = fit(rotate(grey, self.settings.rotation), self.settings.resolution)
        frame = Frame(
            image=np.ascontiguousarray(grey), timestamp=timestamp, seq=self._seq, source=self._label
        )
        self._seq += 1
        return frame

    def _close(self) -> None:
        with self._lock:
            camera, self._camera = self._camera, None
            started, self._started = self._started, False
            self._job = None
        if camera is None:
            return
        try:
            if started:
                camera.stop()
        finally:
            camera.close()
