"""The attract screen: what to do with a QR invitation or a badge, EN/FR switch.

QR codes are decoded here too: a visitor who holds the invitation up
without pressing anything goes straight to the check.
"""

from __future__ import annotations

from kiosk.ui.screens.base import KioskScreen


class AttractScreen(KioskScreen):
    """The screen a new visitor sees."""

    decodes = True
    # Watching for a code held up without pressing Scan: a few frames a second
    # is enough and leaves the CPU to the display (the scan screen decodes all).
    decode_interval_s = 0.25

    def idle_timeout(self) -> float | None:
        """Never times out: it is where every timeout leads."""
        return None

    def on_code(self, text: str) -> None:
        """A code held up to the camera: check it on the scan screen."""
        self.app.go("scan", code=text)

    def scan(self) -> None:
        """The visitor pressed the scan button."""
        self.app.go("scan")

    def staff(self) -> None:
        """The guard's entry to the console (badge + PIN)."""
        self.app.go("guard_login")
