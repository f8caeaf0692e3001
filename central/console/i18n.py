"""The console's gettext catalogues (English and French), compiled with Babel: the kiosk's
scheme (kiosk/i18n.py) for the central.

The sources are ``central/console/locale/{en,fr}/LC_MESSAGES/console.po``; the compiled
``.mo`` files are not in git: :func:`translations` builds them with Babel when they are
missing or older than their ``.po`` (in memory when the folder is read-only), and uses a
shipped ``.mo`` as it is where Babel is not installed. Strings are marked in templates with
``{{ _("...") }}`` / ``{% trans %}`` and in Python with :func:`N_`;
``pybabel extract -F central/console/babel.cfg`` finds both (docs/console.md).
"""

from __future__ import annotations

import gettext
import io
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DOMAIN = "console"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: The console's languages; the first is the default.
LANGUAGES: tuple[str, ...] = ("en", "fr")


def N_(message: str) -> str:  # noqa: N802 -- gettext's conventional name
    """Mark *message* for extraction without translating it now; return it unchanged."""
    return message


def po_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """The ``.po`` source of *language*."""
    return locale_dir / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """The compiled ``.mo`` of *language*."""
    return po_path(language, locale_dir).with_suffix(".mo")


def _compiled(language: str, locale_dir: Path) -> bytes:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path(language, locale_dir).open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def compile_catalogue(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    """Compile *language*'s ``.po`` into its ``.mo`` (atomically); return the ``.mo``.

    Raises:
        OSError: the files cannot be read or written.
        ImportError: Babel is not installed.
    """
    data = _compiled(language, locale_dir)
    target = mo_path(language, locale_dir)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    log.info("compiled %s", target)
    return target


def translations(language: str, locale_dir: Path = LOCALE_DIR) -> gettext.GNUTranslations:
    """The gettext translations of *language*, compiling its catalogue when needed.

    Raises:
        ValueError: not one of :data:`LANGUAGES`.
        OSError: the catalogue cannot be read, or is not compiled and Babel is missing.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language: {language!r} must be one of {', '.join(LANGUAGES)}")
    source, mo = po_path(language, locale_dir), mo_path(language, locale_dir)
    if not mo.exists() or mo.stat().st_mtime < source.stat().st_mtime:
        try:
            compile_catalogue(language, locale_dir)
        except ImportError as exc:
            if not mo.exists():
                raise OSError(f"{mo} is missing and Babel is not installed to compile it") from exc
            log.info("using the shipped %s (Babel is not installed)", mo)
        except OSError as exc:
            log.warning("cannot write %s (%s): compiling it in memory", mo, exc)
            return gettext.GNUTranslations(io.BytesIO(_compiled(language, locale_dir)))
    with mo.open("rb") as fh:
        return gettext.GNUTranslations(fh)


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
