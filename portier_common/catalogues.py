"""Gettext catalogues compiled with Babel: one scheme for the kiosk and the console.

A :class:`Catalogues` is one gettext domain (``kiosk``, ``console``) in a ``locale``
folder: sources in ``LOCALE/<lang>/LC_MESSAGES/<domain>.po``; the compiled ``.mo`` files
are not in git and are built with Babel when missing or older than their ``.po``
(:meth:`Catalogues.ensure_compiled`). :meth:`Catalogues.translations` compiles in memory
when the folder is read-only (an installed package under ``ProtectSystem=strict``), and
uses a shipped ``.mo`` as it is when it cannot rebuild it (an installed wheel gives ``.po``
and ``.mo`` their install time in no particular order, so "older" means nothing there).

``kiosk/i18n.py`` and ``central/console/i18n.py`` each hold one, with their module-level
functions; nothing here runs at import.
"""

from __future__ import annotations

import gettext
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Catalogues"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalogues:
    """The catalogues of one gettext *domain* in *locale_dir*, for *languages* (the first
    is the default)."""

    domain: str
    locale_dir: Path
    languages: tuple[str, ...]

    def po_path(self, language: str, locale_dir: Path | None = None) -> Path:
        """The ``.po`` source of *language*."""
        folder = self.locale_dir if locale_dir is None else locale_dir
        return folder / language / "LC_MESSAGES" / f"{self.domain}.po"

    def mo_path(self, language: str, locale_dir: Path | None = None) -> Path:
        """The compiled ``.mo`` of *language*."""
        return self.po_path(language, locale_dir).with_suffix(".mo")

    def _compiled(self, language: str, locale_dir: Path | None) -> bytes:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with self.po_path(language, locale_dir).open("rb") as fh:
            catalog = read_po(fh, locale=language, domain=self.domain)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)  # fuzzy entries left out, as msgfmt does
        return buffer.getvalue()

    def compile_catalogue(self, language: str, locale_dir: Path | None = None) -> Path:
        """Compile *language*'s ``.po`` into its ``.mo``; return the ``.mo``.

        The file is replaced atomically, so a process starting at the same time never
        reads half of it.

        Raises:
            OSError: the files cannot be read or written.
            ImportError: Babel is not installed.
        """
        data = self._compiled(language, locale_dir)
        target = self.mo_path(language, locale_dir)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        log.info("compiled %s", target)
        return target

    def ensure_compiled(self, locale_dir: Path | None = None) -> list[Path]:
        """Compile every language whose ``.mo`` is missing or older than its ``.po``;
        return the ``.mo`` files (re)built.

        Raises:
            OSError: a catalogue is missing, or the folder is read-only and a build
                was needed.
            ImportError: a build was needed and Babel is not installed.
        """
        built = []
        for language in self.languages:
            source = self.po_path(language, locale_dir)
            target = self.mo_path(language, locale_dir)
            if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
                built.append(self.compile_catalogue(language, locale_dir))
        return built

    def translations(
        self, language: str, locale_dir: Path | None = None
    ) -> gettext.GNUTranslations:
        """The gettext translations of *language*, compiling the catalogues if needed.

        Raises:
            ValueError: *language* has no catalogue here.
            OSError: the catalogue cannot be read, or is not compiled and Babel is
                missing.
        """
        if language not in self.languages:
            raise ValueError(f"language: {language!r} must be one of {', '.join(self.languages)}")
        mo = self.mo_path(language, locale_dir)
        try:
            self.ensure_compiled(locale_dir)
        except (OSError, ImportError) as exc:
            if mo.exists():
                log.info("using the shipped %s (not recompiled: %s)", mo, exc)
            elif isinstance(exc, ImportError):
                raise OSError(
                    f"{mo} is missing and Babel is not installed to compile "
                    f"{self.po_path(language, locale_dir)}: build the package with its "
                    "catalogues compiled (images/build.sh does) or install Babel"
                ) from exc
            else:
                log.warning(
                    "cannot write the compiled catalogues (%s): compiling %s in memory",
                    exc,
                    language,
                )
                return gettext.GNUTranslations(io.BytesIO(self._compiled(language, locale_dir)))
        with mo.open("rb") as fh:
            return gettext.GNUTranslations(fh)
