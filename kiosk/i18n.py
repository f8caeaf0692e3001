"""Gettext catalogues of the kiosk (English and French), compiled with Babel.

The sources are ``kiosk/locale/{en,fr}/LC_MESSAGES/kiosk.po``; the compiled
``.mo`` files are not in git: :func:`ensure_compiled` builds them with Babel
when they are missing or older than their ``.po`` (the app does it at start,
the tests too). Strings are marked in Python with ``_()`` / :func:`N_` and in
kv files with ``app.tr._("...")``; ``pybabel extract -F kiosk/babel.cfg``
finds both (kv files are read with Babel's Python extractor: a kv value is a
Python expression).

This module has no Kivy in it; :mod:`kiosk.ui.translator` makes the
translation observable so that kv labels re-translate when the language
changes.
"""

from __future__ import annotations

import gettext
from pathlib import Path

from portier_common.catalogues import Catalogues

DOMAIN = "kiosk"
#: Babel locales of the kiosk's languages for dates, on screens and passes (Brussels:
#: Belgian French; British English writes the day first, as Belgium does).
DATE_LOCALES = {"en": "en_GB", "fr": "fr_BE"}
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES: tuple[str, ...] = ("en", "fr")


def N_(message: str) -> str:  # noqa: N802 -- gettext's conventional name
    """Mark ``message`` for extraction without translating it now; return it unchanged."""
    return message


#: The kiosk's catalogues (portier_common.catalogues: the console's scheme too).
CATALOGUES = Catalogues(DOMAIN, LOCALE_DIR, LANGUAGES)


def po_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Return the ``.po`` source of ``language``."""
    return CATALOGUES.po_path(language, locale_dir)


def mo_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Return the compiled ``.mo`` file of ``language``."""
    return CATALOGUES.mo_path(language, locale_dir)


def compile_catalogue(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Compile ``language``'s ``.po`` into its ``.mo`` with Babel; return the ``.mo`` path
    (:meth:`portier_common.catalogues.Catalogues.compile_catalogue`)."""
    return CATALOGUES.compile_catalogue(language, locale_dir)


def ensure_compiled(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Compile every language whose ``.mo`` is missing or older than its ``.po``
    (the app does it at start, the tests too); return the ``.mo`` paths rebuilt."""
    return CATALOGUES.ensure_compiled(locale_dir)


def translations(language: str, locale_dir: Path = LOCALE_DIR) -> gettext.NullTranslations:
    """Return the gettext translations of ``language`` (compiling the catalogues if
    needed; in memory when the folder is read-only; the shipped ``.mo`` where it cannot
    be rebuilt): :meth:`portier_common.catalogues.Catalogues.translations`."""
    return CATALOGUES.translations(language, locale_dir)
