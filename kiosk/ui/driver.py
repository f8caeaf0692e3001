"""Drive a running kiosk in-process: the screenshot script and the UI tests use it.

The app is started without ``App.run()``'s blocking loop; :class:`Driver`
turns Kivy's event loop one frame at a time, so a script can wait for a
condition (an agent decision, a screen change) with a timeout instead of
sleeping a fixed time, and press buttons with real touch events that go
through the window like a finger would (hit-testing, ``on_press``,
``on_release``).

Example::

    driver = Driver(KioskApp(config))
    driver.start()
    driver.tap(driver.button("Scan my QR invitation"))
    driver.wait_for(lambda: driver.app.sm.current == "scan")
    driver.screenshot("scan-en.png")
    driver.stop()
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kivy.base import EventLoop, stopTouchApp
from kivy.core.window import Window
from kivy.input.motionevent import MotionEvent
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from kiosk.ui.widgets import KButton


class _Touch(MotionEvent):
    """A finger on the window, in window pixel coordinates."""

    _ids = iter(range(1000, 10**9))

    def __init__(self, x: float, y: float) -> None:
        super().__init__(
            "kiosk-driver",
            next(self._ids),
            {"x": x / max(1.0, Window.width - 1.0), "y": y / max(1.0, Window.height - 1.0)},
            is_touch=True,
            type_id="touch",
        )
        self.profile = ["pos"]

    def depack(self, args: dict[str, float]) -> None:
        self.sx = args["x"]
        self.sy = args["y"]
        super().depack(args)


class Driver:
    """Runs ``app`` one frame at a time; see the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    # -- event loop -------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        """Build the app, open the window, dispatch ``on_start``; wait for the first screen."""
        from kivy.base import _runTouchApp_prepare

        # What App.run() does before its loop: build, window, on_start; then create the
        # input providers of Kivy's [input] config and start the event loop.
        self.app._run_prepare()
        _runTouchApp_prepare()
        self.wait_for(lambda: self.app.sm is not None, timeout, "the app did not build")
        self.frames(3)

    def stop(self) -> None:
        """Stop the app (worker threads, camera) and close the event loop."""
        self.app._allow_close = True
        self.app.stop()
        self.frames(2)
        stopTouchApp()

    def frames(self, count: int = 1) -> None:
        """Run ``count`` frames of the event loop (clock, input, drawing)."""
        for _ in range(count):
            EventLoop.idle()

    def pump(self, seconds: float) -> None:
        """Run the event loop for ``seconds`` of wall time."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            EventLoop.idle()

    def wait_for(
        self, condition: Callable[[], Any], timeout: float = 15.0, message: str = ""
    ) -> Any:
        """Run the loop until ``condition()`` is truthy; return its value.

        Raises ``TimeoutError`` (with ``message`` and the current screen)
        after ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                current = self.app.sm.current if self.app.sm is not None else None
                raise TimeoutError(f"{message or 'condition not met'} (screen: {current})")
            EventLoop.idle()

    def wait_screen(self, name: str, timeout: float = 15.0) -> Any:
        """Wait until screen ``name`` is shown; return it."""
        self.wait_for(lambda: self.app.sm.current == name, timeout, f"screen {name} not shown")
        self.frames(2)
        return self.app.sm.current_screen

    # -- finding and touching widgets ------------------------------------------------
    def walk(self, root: Widget | None = None) -> Iterator[Widget]:
        """Yield the visible widgets under ``root`` (default: the current screen), in order.

        A widget is visible when it and all its parents have an opacity above
        zero and it has a size.
        """
        root = root or self.app.sm.current_screen
        if root.opacity <= 0:
            return
        if root.width > 0 and root.height > 0:
            yield root
        for child in reversed(root.children):
            yield from self.walk(child)

    def labels(self, root: Widget | None = None) -> list[Label]:
        """Return the visible labels (buttons included) with text under ``root``."""
        return [w for w in self.walk(root) if isinstance(w, Label) and w.text.strip()]

    def texts(self, root: Widget | None = None) -> list[str]:
        """Return the visible texts of the current screen."""
        return [w.text for w in self.labels(root)]

    def button(self, text: str, root: Widget | None = None) -> KButton:
        """Return the enabled, visible button showing ``text`` (exactly).

        Raises ``LookupError`` listing the buttons there are.
        """
        buttons = [w for w in self.walk(root) if isinstance(w, KButton)]
        for candidate in buttons:
            if candidate.text == text and not candidate.disabled:
                return candidate
        raise LookupError(f"no enabled button {text!r}; there are {[b.text for b in buttons]}")

    def tap(self, widget: Widget, *, wait_ready: bool = True) -> None:
        """Touch the middle of ``widget`` and lift the finger, through the window.

        Like a person, it first waits for the screen shown last to take touches
        (the app ignores them for a moment after a screen change, see
        :meth:`~kiosk.ui.app.KioskApp.accepts_touches`); ``wait_ready=False``
        taps at once (a double tap).
        """
        ready = getattr(self.app, "accepts_touches", None)
        if wait_ready and ready is not None:
            self.wait_for(ready, 5.0, "the screen never took touches")
        if widget.get_root_window() is None:
            # Rebuilt meanwhile (a list re-rendered by a status update): its old
            # position would land the finger on whatever is there now.
            raise LookupError(f"{widget!r} is no longer on screen")
        x, y = widget.to_window(widget.center_x, widget.center_y)
        touch = _Touch(x, y)
        EventLoop.post_dispatch_input("begin", touch)
        self.frames(1)
        EventLoop.post_dispatch_input("end", touch)
        self.frames(2)

    def tap_text(self, text: str, root: Widget | None = None) -> None:
        """Tap the button showing ``text`` (translated text, as shown).

        The button is looked up once the screen takes touches, and again if a
        status update rebuilt it in between (alarm rows, visitor lists).
        """
        ready = getattr(self.app, "accepts_touches", None)
        end = time.monotonic() + 5.0
        while True:
            if ready is not None:
                self.wait_for(ready, 5.0, "the screen never took touches")
            button = self.button(text, root)
            try:
                self.tap(button, wait_ready=False)
                return
            except LookupError:
                if time.monotonic() > end:
                    raise
                self.frames(1)

    def press_keys(self, keypad: Widget, keys: str | list[str]) -> None:
        """Tap the keys of a :class:`~kiosk.ui.widgets.KeyPad` one by one."""
        for key in keys:
            match = [b for b in keypad.children if getattr(b, "key", None) == key]
            if not match:
                raise LookupError(f"no key {key!r} on the pad")
            self.tap(match[0])

    def key(self, keycode: int) -> bool:
        """Send a key press to the window; return True if something consumed it."""
        consumed = Window.dispatch("on_keyboard", keycode, 0, None, [])
        self.frames(1)
        return bool(consumed)

    # -- screenshots ------------------------------------------------------------------
    def screenshot(self, path: str | Path) -> Path:
        """Save the window as a PNG at ``path`` (after drawing two fresh frames)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frames(2)
        with tempfile.TemporaryDirectory() as tmp:
            made = Window.screenshot(name=str(Path(tmp) / "shot.png"))
            shutil.move(made, path)
        return path
