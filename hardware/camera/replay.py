"""Replay of an image folder, a single image or a video file as a camera.

The kiosk demo and the tests use it in place of a camera. Frames are delivered at
``replay_rate`` frames per second, paced on a clock that tests replace (``clock``
and ``sleep``), so no test has to wait in real time.

Pacing: the first frame is due at once, each next one a period later. A reader
that falls behind gets the next frame at once and the schedule restarts from
there: frames are never dropped and never delivered in a burst. With
``replay_rate=0`` each :meth:`read` returns the next frame immediately.

A folder is read in sorted file-name order (zero-pad numbers: ``frame-002.png``
sorts before ``frame-010.png``); PNG, JPEG and WEBP files are replayed, anything
else is skipped with a warning, and so is an image that fails to decode. Images
are decoded when they are due, not all at open, so large folders cost no memory.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hardware.camera.base import (
    CameraSettings,
    EndOfStream,
    Frame,
    FrameSource,
    SourceClosed,
    fit,
    rotate,
)
from hardware.errors import BackendUnavailable, DeviceError, NotAnImage

log = logging.getLogger(__name__)

#: File name extensions (lower case) replayed from a folder.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise BackendUnavailable(
            "replay camera backend needs OpenCV: pip install opencv-python-headless "
            f"(the project's regular dependency) -- {exc}"
        ) from exc
    return cv2


class ReplaySource(FrameSource):
    """Frames from ``settings.replay_path``: a folder of images, one image or a video.

    ``clock`` (default :func:`time.monotonic`) stamps and paces frames; ``sleep``
    waits (default: a wait that :meth:`close` cuts short, so closing from another
    thread ends a slow replay's wait at once). Tests pass a fake clock whose
    ``sleep`` advances it.
    """

    name = "replay"

    def __init__(
        self,
        settings: CameraSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(settings)
        if settings.replay_path is None:
            raise ValueError("replay_path: required by the replay backend")
        self.path: Path = settings.replay_path
        self._clock = clock
        self._closing = threading.Event()
        self._sleep = sleep if sleep is not None else self._closing.wait
        rate = settings.fps if settings.replay_rate is None else settings.replay_rate
        self.period = 1.0 / rate if rate > 0 else 0.0
        self._cv2: Any = None
        self._files: list[Path] = []
        self._bad: set[int] = set()
        self._index = 0
        self._video: Any = None
        self._video_pos = 0
        # One frame is decoded ahead, so it is ready when due (exact pacing) and an
        # unreadable folder or video fails in open() rather than at the first read.
        self._pending: tuple[np.ndarray, str] | None = None
        self._due: float | None = None
        self._seq = 0
        # close() may come from another thread: never release the video mid-decode.
        self._io_lock = threading.Lock()

    # -- opening ------------------------------------------------------------------

    def _open(self) -> None:
        self._cv2 = _import_cv2()
        path = self.path
        if not path.exists():
            raise DeviceError(errno.ENOENT, "replay path does not exist", str(path))
        if path.is_dir():
            self._files = self._list_folder(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            self._files = [path]
        else:
            self._open_video(path)
        self._pending = self._next_image()

    def _list_folder(self, folder: Path) -> list[Path]:
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            raise DeviceError(
                exc.errno, f"cannot list replay folder: {exc.strerror}", str(folder)
            ) from exc
        files = []
        for entry in entries:
            if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                files.append(entry)
            else:
                log.warning("replay: skipping %s (not a PNG, JPEG or WEBP file)", entry)
        if not files:
            raise DeviceError(
                errno.ENOENT, "no PNG, JPEG or WEBP image in replay folder", str(folder)
            )
        log.info("replay: %d images from %s", len(files), folder)
        return files

    def _open_video(self, path: Path) -> None:
        cv2 = self._cv2
        video = cv2.VideoCapture(str(path), cv2.CAP_ANY)
        if not video.isOpened():
            video.release()
            raise NotAnImage(f"{path}: not a readable image or video file")
        self._video = video
        log.info(
            "replay: video %s (%d frames at %.3g fps), replayed at %s",
            path,
            int(video.get(cv2.CAP_PROP_FRAME_COUNT)),
            video.get(cv2.CAP_PROP_FPS),
            f"{1 / self.period:.3g} fps" if self.period else "read speed",
        )

    # -- decoding -----------------------------------------------------------------

    def _next_image(self) -> tuple[np.ndarray, str]:
        """Return the next ``(grey image, source label)``; raise EndOfStream or NotAnImage."""
        raw, label = self._next_video_frame() if self._video is not None else self._next_file()
        image = fit(rotate(raw, self.settings.rotation), self.settings.resolution)
        return np.ascontiguousarray(image), label

    def _next_file(self) -> tuple[np.ndarray, str]:
        cv2 = self._cv2
        while True:
            if self._index >= len(self._files):
                if not self.settings.loop:
                    raise EndOfStream(f"replay of {self.path} ended")
                self._index = 0
            index = self._index
            self._index += 1
            if index in self._bad:
                continue
            path = self._files[index]
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is not None and image.size:
                return image, f"replay:{path.name}"
            log.warning("replay: skipping %s (cannot be decoded as an image)", path)
            self._bad.add(index)
            if len(self._bad) == len(self._files):
                raise NotAnImage(f"{self.path}: none of its {len(self._files)} images can be read")

    def _next_video_frame(self) -> tuple[np.ndarray, str]:
        cv2 = self._cv2
        ok, image = self._video.read()
        if not ok or image is None:
            if self._video_pos == 0:
                raise NotAnImage(f"{self.path}: video holds no decodable frame")
            if not self.settings.loop:
                raise EndOfStream(f"replay of {self.path} ended")
            # Seeking back is not reliable for every container: reopen instead.
            self._video.release()
            self._video = cv2.VideoCapture(str(self.path), cv2.CAP_ANY)
            self._video_pos = 0
            ok, image = self._video.read()
            if not ok or image is None:
                raise DeviceError(errno.EIO, "replay video cannot be read again", str(self.path))
        position = self._video_pos
        self._video_pos += 1
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return image, f"replay:{self.path.name}#{position}"

    # -- reading ------------------------------------------------------------------

    def _read(self, timeout: float) -> Frame | None:
        pending = self._pending
        if pending is None:
            with self._io_lock:
                if self._closed:
                    raise SourceClosed("replay camera source is closed")
                pending = self._pending = self._next_image()
        now = self._clock()
        if self.period:
            if self._due is None:
                self._due = now
            wait = self._due - now
            if wait > timeout:
                if timeout > 0:
                    self._sleep(timeout)
                return None
            if wait > 0:
                self._sleep(wait)
        if self._closed:
            raise SourceClosed("replay camera source is closed")
        image, label = pending
        self._pending = None
        timestamp = self._clock()
        if self.period:
            # A reader late by a period or more got this frame at once; the pace
            # restarts from now rather than catching up with a burst of frames.
            assert self._due is not None  # set above, with a period
            due = self._due + self.period
            self._due = due if due > timestamp else timestamp + self.period
        frame = Frame(image=image, timestamp=timestamp, seq=self._seq, source=label)
        self._seq += 1
        return frame

    def _stall_timeout(self) -> float:
        # A slow replay (one frame every 10 s) is not a stalled camera.
        return max(self.settings.stall_timeout, 2 * self.period)

    def _close(self) -> None:
        self._closing.set()
        with self._io_lock:
            video, self._video = self._video, None
            self._pending = None
        if video is not None:
            video.release()
