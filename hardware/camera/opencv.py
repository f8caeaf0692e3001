"""USB (UVC) cameras through OpenCV's V4L2 capture backend.

A grabber thread reads the camera continuously and keeps only the newest
``queue_size`` frames, so :meth:`read` always returns a fresh frame rather than
one that waited in the driver's buffers while the QR decoder was busy. Colour
conversion (BGR to grey), rotation and resizing happen in :meth:`read`, only for
the frames actually used.

A camera that stops delivering (unplugged, USB reset) makes ``cap.read()`` fail;
after ``max_failures`` failures in a row the source raises
:class:`~hardware.errors.DeviceError` from :meth:`read`. Reopen it to recover.

Here (no ``/dev/video*``) the tests run this very code on a video file by passing
``api_preference=cv2.CAP_ANY``: OpenCV's ``VideoCapture`` reads files and devices
through the same calls.
"""

from __future__ import annotations

import collections
import errno
import logging
import threading
import time
from typing import Any

import numpy as np

from hardware.camera.base import CameraSettings, Frame, FrameSource, SourceClosed, fit, rotate
from hardware.errors import BackendUnavailable, DeviceError

log = logging.getLogger(__name__)


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise BackendUnavailable(
            "opencv camera backend needs OpenCV: pip install opencv-python-headless "
            f"(the project's regular dependency) -- {exc}"
        ) from exc
    return cv2


class OpenCVSource(FrameSource):
    """Frames from a V4L2 camera (``settings.device``: index or ``/dev/...`` path).

    ``api_preference`` is the OpenCV capture API (default ``cv2.CAP_V4L2``);
    ``queue_size`` how many of the newest frames are kept for :meth:`read` (1: a
    live view, larger: every frame of a short burst); ``max_failures`` how many
    failed grabs in a row mean the device is gone.
    """

    name = "opencv"

    def __init__(
        self,
        settings: CameraSettings,
        *,
        api_preference: int | None = None,
        queue_size: int = 1,
        max_failures: int = 5,
    ) -> None:
        super().__init__(settings)
        if queue_size < 1:
            raise ValueError(f"queue_size: {queue_size!r} must be >= 1")
        if max_failures < 1:
            raise ValueError(f"max_failures: {max_failures!r} must be >= 1")
        self._api_preference = api_preference
        self._max_failures = max_failures
        self._cv2: Any = None
        self._capture: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._frames: collections.deque[tuple[int, float, np.ndarray]] = collections.deque(
            maxlen=queue_size
        )
        self._error: DeviceError | None = None
        self._label = f"opencv:{settings.device}"
        self.capture_size: tuple[int, int] | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The grabber thread (``None`` before :meth:`open`)."""
        return self._thread

    def _open(self) -> None:
        cv2 = self._cv2 = _import_cv2()
        api = cv2.CAP_V4L2 if self._api_preference is None else self._api_preference
        device = self.settings.device
        capture = cv2.VideoCapture(device, api)
        if not capture.isOpened():
            capture.release()
            raise DeviceError(
                errno.ENODEV,
                "cannot open camera (plugged in? listed by `v4l2-ctl --list-devices`? "
                "user in the 'video' group? used by another process?)",
                str(device),
            )
        self._capture = capture
        width, height = self.settings.capture_size
        # The driver picks the nearest mode it supports; what it chose is read back.
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        capture.set(cv2.CAP_PROP_FPS, self.settings.fps)
        # Fewer driver buffers, less latency between the scene and the frame.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        got = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.capture_size = got
        if got != (width, height):
            log.info(
                "opencv camera %s delivers %dx%d, not %dx%d: frames are scaled",
                device,
                *got,
                width,
                height,
            )
        self._thread = threading.Thread(
            target=self._grab_loop, name=f"camera-opencv-{device}", daemon=True
        )
        self._thread.start()

    def _grab_loop(self) -> None:
        capture = self._capture
        seq = 0
        failures = 0
        error: DeviceError | None = None
        try:
            while not self._stop.is_set():
                ok, image = capture.read()
                timestamp = time.monotonic()
                if not ok or image is None:
                    failures += 1
                    if failures >= self._max_failures:
                        error = DeviceError(
                            errno.EIO,
                            f"camera stopped delivering frames ({failures} failed reads; "
                            "unplugged?)",
                            str(self.settings.device),
                        )
                        break
                    continue
                failures = 0
                with self._cond:
                    self._frames.append((seq, timestamp, image))
                    self._cond.notify_all()
                seq += 1
        except Exception as exc:
            error = DeviceError(errno.EIO, f"camera read failed: {exc}", str(self.settings.device))
        finally:
            # Only this thread touches the capture, so release never races a read.
            capture.release()
            with self._cond:
                if error is None and not self._stop.is_set():
                    error = DeviceError(errno.EIO, "camera thread ended", str(self.settings.device))
                self._error = error
                self._cond.notify_all()
            if error is not None and not self._stop.is_set():
                log.error("%s", error)

    def _read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._frames:
                if self._closed:
                    raise SourceClosed("opencv camera source is closed")
                if self._error is not None:
                    raise self._error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            seq, timestamp, raw = self._frames.popleft()
        return Frame(image=self._to_grey(raw), timestamp=timestamp, seq=seq, source=self._label)

    def _to_grey(self, raw: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        if raw.ndim == 3:
            code = cv2.COLOR_BGRA2GRAY if raw.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            grey = cv2.cvtColor(raw, code)
        else:
            grey = raw
        if grey.dtype == np.uint16:
            grey = (grey >> 8).astype(np.uint8)
        elif grey.dtype != np.uint8:
            raise DeviceError(f"camera delivered {grey.dtype} pixels; expected 8 or 16 bits")
        grey = fit(rotate(grey, self.settings.rotation), self.settings.resolution)
        return np.ascontiguousarray(grey)

    def _close(self) -> None:
        self._stop.set()
        with self._cond:
            self._frames.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            # A V4L2 read can block until its select() timeout: wait for it.
            thread.join(max(2.0, self.settings.stall_timeout))
            if thread.is_alive():
                log.warning("opencv camera thread still blocked in a read; it will exit after it")
        elif self._capture is not None:
            self._capture.release()
