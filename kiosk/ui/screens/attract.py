"""The attract screen: what to do with a QR invitation or a badge, EN/FR switch.

QR codes are decoded here too: a visitor who holds the invitation up
without pressing anything goes straight to the check.

It follows the door's mode before anyone scans: in ``lockdown`` the entrance
is closed (see the guard, no invitation to scan), in ``free_access`` the door
is open and visitors still check in; while the door is held (or forced) open
it asks to close it. (``emergency`` replaces it with the evacuation screen.)
"""

from __future__ import annotations

from typing import Any

from kiosk.ui.screens.base import KioskScreen


class AttractScreen(KioskScreen):
    """The screen a new visitor sees."""

    decodes = True
    # Watching for a code held up without pressing Scan: a few frames a second
    # is enough and leaves the CPU to the display (the scan screen decodes all).
    decode_interval_s = 0.25

    def idle_timeout(self) -> float | None:
        """The visitor's idle time: then the app forgets their language (a new visitor)."""
        return self.app.settings.ui.idle_timeout_s

    def on_idle(self) -> None:
        """Nothing to leave: this is where every timeout leads (the app reset the language)."""

    def headline(self, mode: str, _: Any) -> str:
        """Return the screen's title for the door's ``mode``, translated."""
        if mode == "lockdown":
            return _("Entrance closed")
        if mode == "free_access":
            return _("The door is open")
        return _("Welcome")

    def subline(self, mode: str, _: Any) -> str:
        """Return what to do in the door's ``mode``, translated."""
        if mode == "lockdown":
            return _("This entrance is closed for now. Please see the guard.")
        if mode == "free_access":
            return _("Visitors: please still check in with your QR invitation or badge.")
        return _("Show your QR invitation to the camera, or tap your badge on the reader.")

    def on_code(self, text: str) -> None:
        """A code held up to the camera: check it on the scan screen."""
        self.app.go("scan", code=text)

    def scan(self) -> None:
        """The visitor pressed the scan button: a new scanning session.

        A code seen a moment ago may be presented again at once (the debounce
        is for a code still held up when an outcome screen gives way, not for a
        visitor who asks to scan).
        """
        if self.app.scanner is not None:
            self.app.scanner.debouncer.forget()
        self.app.go("scan")

    def staff(self) -> None:
        """The guard's entry to the console (badge + PIN)."""
        self.app.go("guard_login")
