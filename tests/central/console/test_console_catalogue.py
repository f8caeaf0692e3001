"""The console's gettext catalogues: complete, in sync with the templates and the code.

Extracting the strings with Babel (Jinja2 templates and Python, as
``central/console/babel.cfg`` says) must give exactly the msgids of the English and French
catalogues, and every French entry must be translated with the same placeholders: a string
added to a template without its French translation fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from central.console import i18n
from tests.support.catalogue_checks import translation_problems

CONSOLE = Path(i18n.__file__).resolve().parent
KEYWORDS = {"_": None, "N_": None, "gettext": None}
METHOD_MAP = [("**.py", "python"), ("templates/**.html", "jinja2")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")


def _extracted() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(CONSOLE), METHOD_MAP, options_map=OPTIONS, keywords=KEYWORDS
    ):
        assert isinstance(message, str), f"{filename}:{lineno}: plural or context message"
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


def _catalog(language: str):
    with i18n.po_path(language).open("rb") as fh:
        return read_po(fh, locale=language)


def test_babel_cfg_matches_the_extraction_used_here():
    cfg = (CONSOLE / "babel.cfg").read_text()
    assert "[python: **.py]" in cfg and "[jinja2: templates/**.html]" in cfg


def test_extraction_finds_strings_in_templates_and_python():
    found = _extracted()
    assert "Pre-register a visitor" in found  # visitors.html
    assert "Pass Office" in found  # app.py, N_()


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_catalogue_has_exactly_the_extracted_msgids(language):
    extracted = set(_extracted())
    in_catalogue = {m.id for m in _catalog(language) if m.id}
    missing = sorted(extracted - in_catalogue)
    obsolete = sorted(in_catalogue - extracted)
    assert not missing, f"not in {language}.po (docs/console.md, translations): {missing}"
    assert not obsolete, f"in {language}.po but no longer in the console: {obsolete}"


def test_template_matches_the_code():
    with (CONSOLE / "locale" / "console.pot").open("rb") as fh:
        template = {m.id for m in read_po(fh) if m.id}
    assert template == set(_extracted())


def test_every_french_entry_is_translated_with_the_same_placeholders():
    problems = translation_problems(_catalog("fr"), PLACEHOLDER)
    assert not problems, "\n".join(problems)


def test_english_catalogue_is_the_source_language():
    for message in _catalog("en"):
        if message.id:
            assert message.string in ("", message.id), message.id


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_catalogues_pass_babels_checks(language):
    assert not [(m.id, errs) for m, errs in _catalog(language).check()]


def test_translations_compile_and_translate(tmp_path):
    import shutil

    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.mo"))
    french = i18n.translations("fr", locale)
    assert french.gettext("Visitors") == "Visiteurs"
    assert i18n.mo_path("fr", locale).exists()
    with pytest.raises(ValueError):
        i18n.translations("de", locale)


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        ("fr", "en-GB,en", "fr"),  # the switch wins
        (None, "fr-CA,fr;q=0.9,en;q=0.5", "fr"),
        (None, "de-DE,en;q=0.5", "en"),
        ("xx", None, "en"),
    ],
)
def test_pick_language(cookie, accept, expected):
    assert i18n.pick_language(cookie, accept) == expected
