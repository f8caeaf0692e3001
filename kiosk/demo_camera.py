"""The demo's camera: a gate seen by a camera, with a QR code held up on demand.

In demo mode there is nobody in front of the kiosk, so the demo panel "holds
up" an invitation: :meth:`DemoCamera.show` makes the camera deliver realistic
frames of that token (printed on paper, or on a phone screen) rendered by
:func:`hardware.qr.synth.render`, for a few seconds, then the empty scene
again. The kiosk's real scan path (worker thread, pipeline decoder, debounce,
``POST /v1/present``) does the rest: nothing is injected past the camera.

It is a :class:`~hardware.camera.FrameSource`, paced at ``settings.fps`` on a
wait that :meth:`close` cuts short.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from hardware.camera import CameraSettings, Frame, FrameSource

log = logging.getLogger(__name__)

#: How a code is held up: a printed invitation or a phone screen.
STYLES = ("paper", "screen")
#: Scenes rendered per showing; frames cycle through them (a hand never holds still).
_VIEWS_PER_SHOWING = 3
_EMPTY_VIEWS = 2


class DemoCamera(FrameSource):
    """Empty scene frames, or frames of the token last passed to :meth:`show`.

    ``settings`` gives the frame size and rate (its backend and replay path
    are not used: the scene is rendered). ``clock`` is injectable for tests.
    Thread-safe: :meth:`show` is called from the UI, :meth:`read` from the
    scanner's worker.
    """

    name = "demo"

    def __init__(
        self,
        settings: CameraSettings,
        *,
        hold_s: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings)
        self.hold_s = hold_s
        self._clock = clock
        self._wake = threading.Event()
        self._request_lock = threading.Lock()
        self._request: tuple[str, str, int] | None = None
        self._showing_until = 0.0
        self._views: list[np.ndarray] = []
        self._empty: list[np.ndarray] = []
        self._cycle: itertools.cycle[np.ndarray] | None = None
        self._seq = itertools.count()
        self._next_due = 0.0
        self._showings = itertools.count(1)
        #: The token currently held up, or None.
        self.showing: str | None = None

    def show(self, token: str, style: str = "paper") -> None:
        """Hold ``token`` up to the camera for ``hold_s`` seconds (from any thread).

        Raises ``ValueError`` for an unknown ``style`` (see :data:`STYLES`).
        """
        if style not in STYLES:
            raise ValueError(f"style: {style!r} must be one of {', '.join(STYLES)}")
        with self._request_lock:
            self._request = (token, style, next(self._showings))
        self._wake.set()

    def hide(self) -> None:
        """Lower the code: back to the empty scene at the next frame (from any thread)."""
        with self._request_lock:
            self._request = None
            self._showing_until = 0.0
        self._wake.set()

    def _render(self, kind: str, seed: int, payloads: list[str] | None) -> np.ndarray:
        from hardware.qr.synth import render

        width, height = self.settings.resolution
        return render(kind, seed, payloads, width=width, height=height).image

    # -- FrameSource hooks ---------------------------------------------------------
    def _open(self) -> None:
        self._empty = [self._render("none", seed, None) for seed in range(_EMPTY_VIEWS)]
        self._cycle = itertools.cycle(self._empty)
        self._next_due = self._clock()

    def _read(self, timeout: float) -> Frame | None:
        period = 1.0 / self.settings.fps
        wait = self._next_due - self._clock()
        if wait > timeout:
            self._sleep(timeout)
            return None
        if wait > 0:
            self._sleep(wait)
        if self._closed:
            return None
        with self._request_lock:
            request, self._request = self._request, None
        if request is not None:
            token, style, showing = request
            # Different seeds per showing: the same token looks different each time.
            self._views = [
                self._render(style, showing * 10 + n, [token]) for n in range(_VIEWS_PER_SHOWING)
            ]
            self._cycle = itertools.cycle(self._views)
            self.showing = token
            self._showing_until = self._clock() + self.hold_s
        elif self.showing is not None and self._clock() >= self._showing_until:
            self.showing = None
            self._cycle = itertools.cycle(self._empty)
        assert self._cycle is not None
        now = self._clock()
        self._next_due = max(self._next_due + period, now)
        return Frame(next(self._cycle), now, next(self._seq), "demo")

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _close(self) -> None:
        self._wake.set()
