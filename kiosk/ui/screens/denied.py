"""The denied screen: the reason in plain words, what it means for this visitor, what to do.

A QR refusal speaks of the invitation, a badge refusal of the badge
(:func:`kiosk.wording.denial`). Where the agent's answer says more, the screen
says it too: since when an expired invitation stopped working (its
``valid_until``, in the visitor's language), from when one shown early starts
(``valid_from``), and which entrance to use instead of this one (``doors`` and
``zones``, named by ``ui.entrances``). The last line is "please see the guard",
except during a fire alarm (the text says to leave by the nearest exit) and for
a badge in free access (the door is unlocked anyway: visitors check in with their
invitation).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from kivy.properties import DictProperty, OptionProperty, StringProperty

from kiosk import wording
from kiosk.i18n import DATE_LOCALES
from kiosk.ui.screens.base import KioskScreen


def format_when(unix_s: float, lang: str) -> tuple[str, str]:
    """Return ``(date, time)`` of Unix time ``unix_s`` in the kiosk's local time, in
    ``lang``: ``("3 December 2026", "14:30")``, ``("3 décembre 2026", "14:30")``."""
    from babel.dates import format_date, format_time

    when = dt.datetime.fromtimestamp(unix_s).astimezone()
    locale = DATE_LOCALES.get(lang, "en_GB")
    return format_date(when, "d MMMM y", locale=locale), format_time(when, "HH:mm", locale=locale)


class DeniedScreen(KioskScreen):
    """Outcome of a refused QR invitation or badge (or a decision that failed)."""

    kind = OptionProperty("qr", options=("qr", "badge"))
    #: The agent's reason code ("" when the decision itself failed).
    reason = StringProperty("")
    #: Catalogue msgids of the headline and the explanation.
    title_msgid = StringProperty("")
    text_msgid = StringProperty("")
    #: A sentence with placeholders (since when, which entrance; "" for none) and what
    #: fills them: ``{"at": unix_s}`` or ``{"entrances": [id, ...]}``.
    detail_msgid = StringProperty("")
    detail_values = DictProperty({})
    #: What to do next ("" for nothing more to say).
    advice_msgid = StringProperty(wording.DENIAL_ADVICE)
    visitor_name = StringProperty("")

    def prepare(self, decision: dict[str, Any] | None = None, **_kwargs: Any) -> None:
        """Show ``decision`` (a refused access decision, or ``{"error": True}``)."""
        decision = decision or {}
        self.kind = "badge" if decision.get("kind") == "badge" else "qr"
        self.reason = str(decision.get("reason") or "")
        words = (
            wording.DECISION_FAILED
            if decision.get("error")
            else wording.denial(self.reason, self.kind)
        )
        self.title_msgid = words.title
        self.text_msgid = words.text
        self.visitor_name = str(decision.get("holder") or "")
        msgid, values = self._detail(decision)
        # The kv rule reads both: never a sentence with the other one's values.
        self.detail_msgid = ""
        self.detail_values = values
        self.detail_msgid = msgid
        self.advice_msgid = self._advice()

    def _detail(self, decision: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The sentence that makes the reason concrete, from the agent's answer."""
        if decision.get("error"):
            return "", {}
        until, start = decision.get("valid_until"), decision.get("valid_from")
        if self.reason == "expired" and isinstance(until, int | float):
            return wording.VALID_UNTIL, {"at": until}
        if self.reason == "not_yet_valid" and isinstance(start, int | float):
            return wording.VALID_FROM, {"at": start}
        if self.reason == "wrong_door":
            ids = self._entrances(decision)
            if ids:
                return wording.USE_ENTRANCE, {"entrances": ids}
        return "", {}

    def _entrances(self, decision: Mapping[str, Any]) -> list[str]:
        """Door ids and zones the credential opens, other than this door: the named
        ones (``ui.entrances``) first; the bare door ids when none is named."""
        here = str(decision.get("door") or self.app.status.get("door_id") or "")
        doors = [str(d) for d in decision.get("doors") or () if str(d) != here]
        zones = [str(z) for z in decision.get("zones") or ()]
        named = {e.id for e in self.app.settings.ui.entrances}
        known = [i for i in (*doors, *zones) if i in named]
        return known or doors

    def _advice(self) -> str:
        if self.reason in wording.NO_ADVICE:
            return ""
        mode = (self.app.status.get("door") or {}).get("mode")
        if self.kind == "badge" and mode == "free_access":
            return wording.FREE_ACCESS_ADVICE
        return wording.DENIAL_ADVICE

    def detail_text(
        self, gettext: Callable[[str], str], lang: str, msgid: str, values: Mapping[str, Any]
    ) -> str:
        """The detail sentence in ``lang`` (kv calls it again on a language switch)."""
        if not msgid:
            return ""
        if msgid != wording.USE_ENTRANCE:
            date, time = format_when(float(values["at"]), lang)
            return gettext(msgid).format(date=date, time=time)
        names = {e.id: getattr(e, lang, e.en) for e in self.app.settings.ui.entrances}
        entrances = ", ".join(names.get(i, i) for i in values.get("entrances", ()))
        return gettext(msgid).format(entrances=entrances)

    def idle_timeout(self) -> float | None:
        """The outcome stays up for ``ui.outcome_timeout_s``."""
        return self.app.settings.ui.outcome_timeout_s

    def try_again(self) -> None:
        """Scan again (QR): the same code may be presented again at once."""
        if self.app.scanner is not None:
            self.app.scanner.debouncer.forget()
        self.app.go("scan")

    def done(self) -> None:
        """Back to the attract screen."""
        self.app.go_home()
