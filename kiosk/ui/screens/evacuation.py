"""The evacuation screen: a fire alarm (the door's ``emergency`` mode) is on.

The app shows it at once in place of every visitor screen (the pushed
``mode.changed`` event, not only the next status poll) and goes back to the
attract screen when the mode returns. It says the same thing in every language
at once, whatever the visitor chose: do not enter, leave by the nearest exit,
where the assembly point is (``ui.assembly_point``). No QR code is decoded here;
a guard can still log in (the Staff button, or a guard's badge tap). "Visitors on site"
opens the muster list (the muster screen: who is checked in here, with host and time of
entry, from the agent's journal, network or not); its count is read on every visit.
"""

from __future__ import annotations

from typing import Any

from kivy.properties import NumericProperty

from kiosk.i18n import LANGUAGES, N_
from kiosk.ui.screens.base import KioskScreen

#: What the screen says, as msgids (shown in every language).
TITLE = N_("Fire alarm: do not enter")
LEAVE = N_("Leave the building by the nearest exit.")
ASSEMBLY = N_("Assembly point: {place}")
ASSEMBLY_UNKNOWN = N_("Go to the assembly point shown on the evacuation signs.")
ON_SITE = N_("Visitors on site")
ON_SITE_COUNT = N_("Visitors on site: {count}")


class EvacuationScreen(KioskScreen):
    """Shown in every language while the door is in ``emergency``."""

    decodes = False
    offers_help = False  # the guards are evacuating the building too
    #: Visitors on site by the agent's last answer (-1: not known yet).
    site_count = NumericProperty(-1)

    def on_pre_enter(self, *_args: Any) -> None:
        """Read how many visitors are on site (the muster list's count)."""
        client = self.app.link.client
        self.app.link.submit(client.muster, on_done=self._counted, on_error=lambda _exc: None)

    def _counted(self, answer: dict[str, Any]) -> None:
        self.site_count = int(answer.get("count") or 0)

    def site_count_text(self, count: int, _: Any) -> str:
        """The muster button's caption, with the count once known."""
        return _(ON_SITE) if count < 0 else _(ON_SITE_COUNT).format(count=count)

    def muster(self) -> None:
        """Show the list of visitors on site."""
        self.app.go("muster")

    def idle_timeout(self) -> float | None:
        """Stays until the fire alarm clears (the app leaves it then)."""
        return None

    def on_badge(self, decision: dict[str, Any]) -> None:
        """A badge refused with ``emergency``: this screen already says why."""

    def languages(self, chosen: str) -> tuple[str, ...]:
        """The languages shown side by side, the visitor's (``chosen``) first."""
        return (chosen, *[lang for lang in LANGUAGES if lang != chosen])

    def text(self, lang: str, what: str) -> str:
        """Return the screen's ``what`` (title, leave, assembly) in ``lang``."""
        tr = self.app.tr
        if what == "title":
            return tr.in_lang(lang, TITLE)
        if what == "leave":
            return tr.in_lang(lang, LEAVE)
        place = self.app.settings.ui.assembly_point
        if place is None:
            return tr.in_lang(lang, ASSEMBLY_UNKNOWN)
        return tr.in_lang(lang, ASSEMBLY).format(place=getattr(place, lang))

    def staff(self) -> None:
        """A guard logs in (the console is never taken away during a fire)."""
        self.app.go("guard_login")
