"""The kiosk's gettext catalogues: complete, in sync with the code, compilable.

Every string the kiosk shows is marked for translation (``app.tr._("...")``
in kv files, ``_()``/``N_()`` in Python); extracting them with Babel must give
exactly the msgids of the English and French catalogues, and every French
entry must be translated with the same placeholders. (The UI tests check the
other half: every text shown on every screen is a catalogue entry.)
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from kiosk import i18n
from portier_common.catalogues import Catalogues
from tests.support.catalogue_checks import translation_problems

KIOSK = Path(i18n.__file__).resolve().parent
KEYWORDS = {"_": None, "N_": None}
METHOD_MAP = [("**.py", "python"), ("**.kv", "python")]
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _extracted() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(KIOSK), METHOD_MAP, keywords=KEYWORDS
    ):
        assert isinstance(message, str), f"{filename}:{lineno}: plural or context message"
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


def _catalog(language: str):
    with i18n.po_path(language).open("rb") as fh:
        return read_po(fh, locale=language)


def test_babel_cfg_matches_the_extraction_used_here():
    cfg = (KIOSK / "babel.cfg").read_text()
    assert "[python: **.py]" in cfg and "[python: **.kv]" in cfg


def test_extraction_finds_strings_in_python_and_kv_files():
    found = _extracted()
    where = {loc.split(":")[0].rsplit(".", 1)[-1] for locs in found.values() for loc in locs}
    assert {"py", "kv"} <= where
    assert "Scan my QR invitation" in found  # attract.kv
    assert "Your invitation has expired" in found  # wording.py, N_()


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_catalogue_has_exactly_the_extracted_msgids(language):
    extracted = set(_extracted())
    in_catalogue = {m.id for m in _catalog(language) if m.id}
    missing = sorted(extracted - in_catalogue)
    obsolete = sorted(in_catalogue - extracted)
    assert not missing, f"not in {language}.po (run the update in docs/kiosk.md): {missing}"
    assert not obsolete, f"in {language}.po but no longer in the code: {obsolete}"


def test_template_matches_the_code():
    with (KIOSK / "locale" / "kiosk.pot").open("rb") as fh:
        template = {m.id for m in read_po(fh) if m.id}
    assert template == set(_extracted())


def test_every_french_entry_is_translated_with_the_same_placeholders():
    problems = translation_problems(_catalog("fr"), PLACEHOLDER)
    assert not problems, "\n".join(problems)


def test_english_catalogue_is_the_source_language():
    for message in _catalog("en"):
        if not message.id:
            continue  # the header
        assert message.string in ("", message.id), message.id


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_catalogues_pass_babels_checks(language):
    errors = [(m.id, [str(e) for e in errs]) for m, errs in _catalog(language).check()]
    assert not errors


def test_mo_files_are_compiled_on_the_fly_when_missing(tmp_path):
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))
    assert not i18n.mo_path("fr", locale).exists()
    built = i18n.ensure_compiled(locale)
    assert sorted(built) == sorted(i18n.mo_path(lang, locale) for lang in i18n.LANGUAGES)
    assert i18n.ensure_compiled(locale) == []  # up to date: nothing rebuilt
    french = i18n.translations("fr", locale)
    assert french.gettext("Scan my QR invitation") == "Scanner mon invitation QR"
    assert i18n.translations("en", locale).gettext("Welcome") == "Welcome"
    with i18n.mo_path("fr", locale).open("rb") as fh:
        assert isinstance(gettext.GNUTranslations(fh), gettext.GNUTranslations)


def test_a_stale_mo_is_rebuilt(tmp_path):
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))
    i18n.ensure_compiled(locale)
    po = i18n.po_path("fr", locale)
    text = po.read_text(encoding="utf-8")
    po.write_text(text.replace('msgstr "Bienvenue"', 'msgstr "Soyez la bienvenue"'), "utf-8")
    mo = i18n.mo_path("fr", locale)
    past = po.stat().st_mtime - 10
    import os

    os.utime(mo, (past, past))
    assert i18n.ensure_compiled(locale) == [mo]
    assert i18n.translations("fr", locale).gettext("Welcome") == "Soyez la bienvenue"


def test_read_only_catalogues_are_compiled_in_memory(tmp_path, monkeypatch):
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))

    def read_only(self, language, locale_dir=None):
        # What writing into an installed package under ProtectSystem=strict gives (root
        # writes through a chmod, so the write itself is what fails here).
        raise PermissionError(30, "Read-only file system", str(self.mo_path(language, locale_dir)))

    monkeypatch.setattr(Catalogues, "compile_catalogue", read_only)
    french = i18n.translations("fr", locale)
    assert french.gettext("Welcome") == "Bienvenue"
    assert not i18n.mo_path("fr", locale).exists()


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="language"):
        i18n.translations("de")


def _installed_without_babel(tmp_path, monkeypatch, *, with_mo: bool) -> Path:
    """A locale folder as the appliance image has it: .mo shipped in the wheel (or not),
    the .po installed after it (newer), and no Babel to import."""
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))
    if with_mo:
        i18n.ensure_compiled(locale)
        for language in i18n.LANGUAGES:
            mo = i18n.mo_path(language, locale)
            past = i18n.po_path(language, locale).stat().st_mtime - 1
            os.utime(mo, (past, past))
    # None in sys.modules makes `import babel...` raise ImportError, as where it is absent.
    for name in ("babel", "babel.messages", "babel.messages.mofile", "babel.messages.pofile"):
        monkeypatch.setitem(sys.modules, name, None)
    return locale


def test_installed_package_without_babel_uses_its_shipped_mo(tmp_path, monkeypatch):
    locale = _installed_without_babel(tmp_path, monkeypatch, with_mo=True)
    assert i18n.translations("fr", locale).gettext("Welcome") == "Bienvenue"
    assert i18n.translations("en", locale).gettext("Welcome") == "Welcome"


def test_no_mo_and_no_babel_is_a_clear_error(tmp_path, monkeypatch):
    locale = _installed_without_babel(tmp_path, monkeypatch, with_mo=False)
    with pytest.raises(OSError, match="Babel is not installed"):
        i18n.translations("fr", locale)
