"""The camera scan loop: frames from a :class:`~hardware.camera.FrameSource`, QR
decoding in a worker thread, repeated reads of one code debounced.

The UI never waits on the camera: :class:`Scanner` keeps the latest frame for
the viewfinder (:meth:`Scanner.latest`), which the screen redraws on its own
clock, and reports each *new* code once through ``on_code`` (called from the
worker thread; the app hands it to the UI thread). A code held in front of the
camera for a while is presented once: it is reported again only after it has
been out of sight for ``debounce_s`` seconds (:class:`Debouncer`).

Between two full decodes of a throttled screen (the attract screen runs the
full pipeline a few times a second), every frame still gets a ``quick`` pass:
the raw decoder alone, which reads a well-held code in about 1.6 ms and costs
about as much on an empty frame, where the full pipeline's retries cost 20-28 ms
(docs/qr.md). A visitor who holds the invitation up without pressing anything
is then read at the camera's rate, not at the throttle's (bench/e2e_qr.py).

A camera that fails (unplugged, stalled) is reported through ``on_error`` and
reopened after a growing pause, so a loose cable does not need a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hardware.camera import EndOfStream, Frame, FrameSource, SourceClosed
from hardware.errors import HardwareError
from hardware.qr import Decoder

log = logging.getLogger(__name__)

_REOPEN_FIRST_S = 0.5
_REOPEN_MAX_S = 10.0


class Debouncer:
    """Accepts a code once per sighting.

    A code is *accepted* the first time it is seen and then refused while it
    keeps being seen; once it has not been seen for ``window_s`` seconds it
    is accepted again. ``clock`` is injectable for tests.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s: {window_s!r} must be > 0")
        self.window_s = window_s
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        # accept() runs in the scanner's worker, forget() on the UI thread.
        self._lock = threading.Lock()

    def accept(self, text: str) -> bool:
        """Record a sighting of ``text``; return True if it should be presented."""
        now = self._clock()
        with self._lock:
            for old in [t for t, seen in self._last_seen.items() if now - seen > self.window_s]:
                del self._last_seen[old]
            fresh = text not in self._last_seen
            self._last_seen[text] = now
        return fresh

    def forget(self) -> None:
        """Forget every code (a new scanning session starts). Thread-safe."""
        with self._lock:
            self._last_seen.clear()


class Scanner:
    """Reads frames in a thread, decodes them, reports new codes.

    ``open_source`` returns an opened frame source (called in the worker, again
    after a failure); ``decoder`` is used only by the worker thread (decoders
    are not thread-safe), and so is ``quick`` (a cheaper decoder run on the
    frames a ``min_interval_s`` throttle skips; None: skipped frames are only
    shown). ``on_code(text)`` and ``on_error(message)`` are called from the
    worker thread.
    """

    def __init__(
        self,
        open_source: Callable[[], FrameSource],
        decoder: Decoder,
        *,
        on_code: Callable[[str], None],
        on_error: Callable[[str], None] | None = None,
        debounce_s: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
        quick: Decoder | None = None,
    ) -> None:
        self._open_source = open_source
        self._decoder = decoder
        self._quick = quick
        self._on_code = on_code
        self._on_error = on_error
        self.debouncer = Debouncer(debounce_s, clock)
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._decoding = threading.Event()
        self.min_interval_s = 0.0
        self._last_decode = float("-inf")
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        #: Frames read and decoded since start (for the logs and the bench).
        self.frames_read = 0
        self.frames_decoded = 0
        self.error: str | None = None

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def decoding(self) -> bool:
        """True while frames are decoded (False: viewfinder only, e.g. for the photo)."""
        return self._decoding.is_set()

    def start(self, *, decode: bool = True, min_interval_s: float = 0.0) -> None:
        """Open the camera in the worker thread and start reading. Idempotent.

        ``decode`` False shows frames without decoding (the photo screen).
        """
        self.set_decoding(decode, min_interval_s)
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kiosk-scanner", daemon=True)
        self._thread.start()

    def set_decoding(self, decode: bool, min_interval_s: float = 0.0) -> None:
        """Turn decoding on or off.

        ``min_interval_s`` > 0 decodes at most one frame per interval (the
        attract screen watches for a code at a few frames per second, the scan
        screen decodes every frame). Codes seen before stay debounced.
        """
        self.min_interval_s = max(0.0, float(min_interval_s))
        if decode:
            self._decoding.set()
        else:
            self._decoding.clear()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop reading and close the camera (from any thread). Idempotent."""
        self._stop.set()
        source = self._source
        if source is not None:
            source.close()  # wakes a read() waiting for a frame
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            self._latest = None

    def latest(self) -> Frame | None:
        """Return the most recent frame (None before the first one). Thread-safe."""
        with self._lock:
            return self._latest

    # -- worker ---------------------------------------------------------------------
    def _report_error(self, message: str) -> None:
        self.error = message
        log.error("camera: %s", message)
        if self._on_error is not None:
            self._on_error(message)

    def _loop(self) -> None:
        pause = _REOPEN_FIRST_S
        while not self._stop.is_set():
            try:
                self._source = self._open_source()
            except (HardwareError, OSError, ValueError) as exc:
                self._report_error(f"cannot open the camera: {exc}")
                self._stop.wait(pause)
                pause = min(pause * 2, _REOPEN_MAX_S)
                continue
            self.error = None
            try:
                self._read_frames(self._source)
                pause = _REOPEN_FIRST_S
            except (HardwareError, OSError) as exc:
                if not self._stop.is_set():
                    self._report_error(str(exc))
                    self._stop.wait(pause)
                    pause = min(pause * 2, _REOPEN_MAX_S)
            finally:
                self._source.close()
                self._source = None

    def _read_frames(self, source: FrameSource) -> None:
        while not self._stop.is_set():
            try:
                frame = source.read(timeout=source.settings.stall_timeout)
            except (SourceClosed, EndOfStream):
                return
            if frame is None:
                raise HardwareError(
                    f"the camera delivered no frame for {source.settings.stall_timeout:g} s"
                )
            self.frames_read += 1
            with self._lock:
                self._latest = frame
            if not self._decoding.is_set():
                continue
            now = self._clock()
            if now - self._last_decode < self.min_interval_s:
                if self._quick is None:
                    continue
                codes = self._quick.decode(frame.image)
            else:
                self._last_decode = now
                codes = self._decoder.decode(frame.image)
                self.frames_decoded += 1
            for code in codes:
                text = code.text.strip()
                if text and self._decoding.is_set() and self.debouncer.accept(text):
                    self._on_code(text)
