"""Guard login: the guard's badge (tapped on the reader), then the PIN pad.

The badge comes from the agent's live ``guard.tap`` event: on a guard console
the agent takes a guard's tap at its reader as a login step, never as an entry
(the door stays locked, see docs/local-api.md). For an NTAG 424 guard badge the
event carries the SUN URL the reader read: it goes with the login (the agent
accepts such a badge only with its verified tap). A tap on a visitor screen
opens this screen at the PIN step. In demo mode the UID can also be typed on
a hex pad. Wrong
PINs lock the badge out for a while (the agent decides); after a wrong PIN the
screen says how many attempts are left before the lock (the agent's
``attempts_left``, given alike for every badge), then shows the lockout and
counts it down.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import NumericProperty, OptionProperty, StringProperty

from edge_agent.client import AgentUnavailable, ApiError
from kiosk import wording
from kiosk.i18n import N_
from kiosk.ui.screens.base import KioskScreen

PIN_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "ok"]
HEX_KEYS = [*"0123456789ABCDEF", "back", "ok"]
MAX_PIN = 12
MAX_UID_HEX = 32


class GuardLoginScreen(KioskScreen):
    """Badge step, then PIN step."""

    visitor = False
    step = OptionProperty("badge", options=("badge", "pin", "checking"))
    uid = StringProperty("")
    pin_length = NumericProperty(0)
    #: msgid of the message under the pad ("" for none).
    message = StringProperty("")
    #: Seconds left of a lockout (0: not locked out).
    locked_for = NumericProperty(0)
    #: Wrong PINs the badge may still take before its lockout (-1: not known).
    attempts_left = NumericProperty(-1)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pin = ""
        self._locked_until = 0.0
        #: The SUN URL of the badge's tap (NTAG 424), carried to the login.
        self._sun_url: str | None = None

    def prepare(
        self, message: str | None = None, tap: dict[str, Any] | None = None, **_kwargs: Any
    ) -> None:
        """Start at the badge step (at the PIN step with ``tap``, a ``guard.tap`` event);
        ``message`` is an API error code to explain."""
        self.step = "badge"
        self.uid = ""
        self._sun_url = None
        self._clear_pin()
        self.message = wording.guard_error(message) if message else ""
        self.locked_for = 0
        self.attempts_left = -1
        if tap is not None:
            self.on_guard_tap(tap)

    def idle_timeout(self) -> float | None:
        """Nobody logged in yet: the visitor timeout applies."""
        return self.app.settings.ui.idle_timeout_s

    def on_idle(self) -> None:
        """Back to the attract screen."""
        self.app.go_home()

    def on_badge(self, decision: dict[str, Any]) -> None:
        """A badge tapped on the reader: that is the guard's badge."""
        uid = str(decision.get("credential_id") or "")
        if uid and self.step == "badge":
            self._badge(uid)

    def on_guard_tap(self, event: dict[str, Any]) -> None:
        """A guard's badge tapped on the reader: its UID, and for an NTAG 424 badge the
        SUN URL kept for the login; then the PIN step."""
        uid = str(event.get("badge_uid") or "").upper()
        if not uid or self.step == "checking":
            return
        if uid != self.uid or self.step == "badge":
            if uid != self.uid:
                self.locked_for = 0  # a lockout is one guard's, not the console's
            self._badge(uid)
        sun_url = event.get("sun_url")
        self._sun_url = sun_url if isinstance(sun_url, str) else None

    def _badge(self, uid: str) -> None:
        self.uid = uid.upper()
        self._sun_url = None
        self._clear_pin()
        self.message = ""
        self.attempts_left = -1
        self.step = "pin"

    def _clear_pin(self) -> None:
        self._pin = ""
        self.pin_length = 0

    def key(self, key: str) -> None:
        """A key of the pad: hex digits at the badge step, PIN digits after."""
        if self.step == "badge":
            self.hex_key(key)
        else:
            self.pin_key(key)

    def hex_key(self, key: str) -> None:
        """Demo: type the badge UID."""
        if key == "back":
            self.uid = self.uid[:-1]
        elif key == "ok":
            if len(self.uid) >= 2 and len(self.uid) % 2 == 0:
                self._badge(self.uid)
            else:
                self.message = N_("Type the badge number (an even number of hex digits).")
        elif len(self.uid) < MAX_UID_HEX:
            self.uid += key

    def pin_key(self, key: str) -> None:
        """A key of the PIN pad."""
        if self.step != "pin" or self.locked_for > 0:
            return
        if key == "clear":
            self._clear_pin()
        elif key == "ok":
            self.submit()
        elif len(self._pin) < MAX_PIN:
            self._pin += key
            self.pin_length = len(self._pin)

    def submit(self) -> None:
        """Send badge + PIN to the agent."""
        if not self._pin:
            self.message = N_("Enter your PIN.")
            return
        uid, pin, sun_url = self.uid, self._pin, self._sun_url
        self._clear_pin()
        self._sun_url = None  # a tap opens one login attempt: tap again after a refusal
        self.step = "checking"
        client = self.app.link.guard_client
        self.app.link.submit(
            lambda: client.guard_login(uid, pin, sun_url),
            on_done=self._logged_in,
            on_error=self._refused,
        )

    def _logged_in(self, answer: dict[str, Any]) -> None:
        self.message = ""
        self.app.guard_logged_in(answer)

    def _refused(self, exc: Exception) -> None:
        self.step = "pin"
        if isinstance(exc, ApiError):
            self.message = wording.guard_error(exc.code)
            left = exc.body.get("attempts_left")
            self.attempts_left = left if isinstance(left, int) and left >= 0 else -1
            if exc.code == "locked_out":
                retry = float(exc.body.get("retry_after_s") or 0)
                self._locked_until = self.app.now() + retry
                self.locked_for = int(retry + 0.999)
        elif isinstance(exc, AgentUnavailable):
            self.app.go("out_of_service")

    def tick(self) -> None:
        """Count a lockout down."""
        if self.locked_for > 0:
            self.locked_for = max(0, int(self._locked_until - self.app.now() + 0.999))
            if self.locked_for == 0:
                self.message = ""

    def lock_text(self, seconds: int) -> tuple[int, int]:
        """Return a lockout as (minutes, seconds) for the countdown."""
        return divmod(int(seconds), 60)

    def cancel(self) -> None:
        """Back to the attract screen."""
        self.app.go_home()
