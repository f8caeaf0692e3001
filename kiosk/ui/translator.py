"""An observable translator: kv labels written ``app.tr._("...")`` re-translate
when :attr:`Translator.lang` changes.

The kv language binds to ``tr._`` (it is a Kivy property); switching the
language replaces that function, which re-evaluates every rule that used it.
Python code calls :meth:`Translator.gettext` (or ``tr._``) the same way.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from pathlib import Path

from kivy.event import EventDispatcher
from kivy.properties import ObjectProperty, StringProperty

from kiosk import i18n


class Translator(EventDispatcher):
    """The current language and its gettext function.

    ``_`` is the translating function of the current language; ``lang`` the
    language code (one of :data:`kiosk.i18n.LANGUAGES`). Setting ``lang`` to
    anything else raises ``ValueError``.
    """

    lang = StringProperty("en")
    _ = ObjectProperty(None, rebind=True)

    def __init__(self, lang: str = "en", locale_dir: Path = i18n.LOCALE_DIR, **kwargs: object):
        self._catalogues: dict[str, gettext.NullTranslations] = {
            code: i18n.translations(code, locale_dir) for code in i18n.LANGUAGES
        }
        super().__init__(**kwargs)
        self.lang = lang
        self._ = self._function(lang)

    def _function(self, lang: str) -> Callable[[str], str]:
        if lang not in self._catalogues:
            raise ValueError(f"lang: {lang!r} must be one of {', '.join(i18n.LANGUAGES)}")
        catalogue = self._catalogues[lang]

        def translate(message: str) -> str:
            return catalogue.gettext(message) if message else ""

        return translate

    def on_lang(self, _instance: object, lang: str) -> None:
        """Swap the translating function (re-labels every bound kv rule)."""
        self._ = self._function(lang)

    def in_lang(self, lang: str, message: str) -> str:
        """Return ``message`` in ``lang`` whatever the current language (the
        evacuation screen shows every language at once)."""
        return self._function(lang)(message)

    def gettext(self, message: str) -> str:
        """Return ``message`` translated into the current language."""
        return self._(message)
