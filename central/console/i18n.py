"""The console's gettext catalogues (English and French), compiled with Babel: one
:class:`portier_common.catalogues.Catalogues`, as the kiosk's (kiosk/i18n.py).

The sources are ``central/console/locale/{en,fr}/LC_MESSAGES/console.po``; the compiled
``.mo`` files are not in git: :func:`translations` builds them with Babel when they are
missing or older than their ``.po`` (in memory when the folder is read-only), and uses a
shipped ``.mo`` as it is where Babel is not installed. Strings are marked in templates with
``{{ _("...") }}`` / ``{% trans %}`` and in Python with :func:`N_`;
``pybabel extract -F central/console/babel.cfg`` finds both (docs/console.md).
"""

from __future__ import annotations

import gettext
from pathlib import Path
from typing import Any

from portier_common.catalogues import Catalogues

DOMAIN = "console"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: The console's languages; the first is the default.
LANGUAGES: tuple[str, ...] = ("en", "fr")


def N_(message: str) -> str:  # noqa: N802 -- gettext's conventional name
    """Mark *message* for extraction without translating it now; return it unchanged."""
    return message


def msg(text: str, **args: Any) -> dict[str, Any]:
    """A message for a page: a catalogue string (marked with :func:`N_`) and its
    ``%(name)s`` arguments, translated when the page is rendered (the templates' ``_``)."""
    return {"text": text, "args": args}


#: The console's catalogues (portier_common.catalogues: the kiosk's scheme too).
CATALOGUES = Catalogues(DOMAIN, LOCALE_DIR, LANGUAGES)


def po_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """The ``.po`` source of *language*."""
    return CATALOGUES.po_path(language, locale_dir)


def mo_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """The compiled ``.mo`` of *language*."""
    return CATALOGUES.mo_path(language, locale_dir)


def compile_catalogue(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Compile *language*'s ``.po`` into its ``.mo`` (atomically); return the ``.mo``."""
    return CATALOGUES.compile_catalogue(language, locale_dir)


def translations(language: str, locale_dir: Path = LOCALE_DIR) -> gettext.GNUTranslations:
    """The gettext translations of *language*, compiling its catalogue when needed.

    Raises:
        ValueError: not one of :data:`LANGUAGES`.
        OSError: the catalogue cannot be read, or is not compiled and Babel is missing.
    """
    return CATALOGUES.translations(language, locale_dir)


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The page's language: the cookie's (the switch), else the browser's first
    ``Accept-Language`` that the console has, else English."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return LANGUAGES[0]
