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
import io
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DOMAIN = "kiosk"
#: Babel locales of the kiosk's languages for dates, on screens and passes (Brussels:
#: Belgian French; British English writes the day first, as Belgium does).
DATE_LOCALES = {"en": "en_GB", "fr": "fr_BE"}
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES: tuple[str, ...] = ("en", "fr")


def N_(message: str) -> str:  # noqa: N802 -- gettext's conventional name
    """Mark ``message`` for extraction without translating it now; return it unchanged."""
    return message


def po_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Return the ``.po`` source of ``language``."""
    return locale_dir / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Return the compiled ``.mo`` file of ``language``."""
    return po_path(language, locale_dir).with_suffix(".mo")


def compile_catalogue(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Compile ``language``'s ``.po`` into its ``.mo`` with Babel; return the ``.mo`` path.

    Fuzzy entries are left out (as ``msgfmt`` does). The file is replaced
    atomically, so a kiosk starting at the same time never reads half of it.
    Raises ``OSError`` when the files cannot be read or written.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    source = po_path(language, locale_dir)
    target = mo_path(language, locale_dir)
    with source.open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    with tmp.open("wb") as fh:
        write_mo(fh, catalog, use_fuzzy=False)
    os.replace(tmp, target)
    log.info("compiled %s", target)
    return target


def ensure_compiled(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Compile every language whose ``.mo`` is missing or older than its ``.po``.

    Returns the ``.mo`` paths that were (re)built. Raises ``OSError`` when a
    catalogue is missing or the folder is read-only and a build was needed.
    """
    built = []
    for language in LANGUAGES:
        source, target = po_path(language, locale_dir), mo_path(language, locale_dir)
        if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
            built.append(compile_catalogue(language, locale_dir))
    return built


def _compile_in_memory(language: str, locale_dir: Path) -> gettext.GNUTranslations:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path(language, locale_dir).open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def translations(language: str, locale_dir: Path = LOCALE_DIR) -> gettext.NullTranslations:
    """Return the gettext translations of ``language`` (compiling the catalogues if needed).

    When the ``.mo`` is missing or stale and the folder is read-only (an
    installed package under ``ProtectSystem=strict``), the ``.po`` is compiled
    in memory instead; where Babel is missing (the appliance image) the shipped
    ``.mo`` is used as it is. Raises ``ValueError`` for a language without a
    catalogue and ``OSError`` when the catalogue cannot be read, or is not
    compiled and Babel is missing.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language: {language!r} must be one of {', '.join(LANGUAGES)}")
    mo = mo_path(language, locale_dir)
    try:
        ensure_compiled(locale_dir)
    except (OSError, ImportError) as exc:
        if mo.exists():
            # An installed package (the appliance image): its wheel carries the .mo
            # compiled at build time, Babel is not installed, and the install gave .po
            # and .mo their install time in no particular order, so "older than its
            # .po" means nothing there.
            log.info("using the shipped %s (not recompiled: %s)", mo, exc)
        elif isinstance(exc, ImportError):
            raise OSError(
                f"{mo} is missing and Babel is not installed to compile "
                f"{po_path(language, locale_dir)}: build the package with its catalogues "
                "compiled (images/build.sh does) or install Babel"
            ) from exc
        else:
            log.warning(
                "cannot write the compiled catalogues (%s): compiling %s in memory", exc, language
            )
            return _compile_in_memory(language, locale_dir)
    with mo.open("rb") as fh:
        return gettext.GNUTranslations(fh)
