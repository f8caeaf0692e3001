"""The attract screen: what to do with a QR invitation or a badge, EN/FR switch.

QR codes are decoded here too: a visitor who holds the invitation up
without pressing anything goes straight to the check.

While an event pack is in force (an off-site event, the agent's status ``event_pack``), the
title names the event and the organiser's welcome line is shown under it.

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

    def headline(self, mode: str, _: Any, event: str = "") -> str:
        """Return the screen's title for the door's ``mode``, translated; with the name of
        the off-site *event* of an event pack in force (the door's mode comes first)."""
        if mode == "lockdown":
            return _("Entrance closed")
        if mode == "free_access":
            return _("The door is open")
        if event:
            return _("Welcome to {event}").format(event=event)
        return _("Welcome")

    def event_line(self, mode: str, lang: str, welcome: str, welcome_lang: str) -> str:
        """The organiser's welcome line of the event pack in force, shown to a visitor
        whose language is the one it is written in (the pack carries one line, in one
        language: the kiosk shows no text in another language than the visitor's), and
        not in lockdown (the entrance is closed)."""
        if mode == "lockdown" or not welcome or lang != welcome_lang:
            return ""
        return welcome

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
