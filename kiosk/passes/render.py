"""Render a :class:`~kiosk.passes.model.VisitorPass` to an image, then to a one-page PDF.

The pass is drawn with Pillow at the printer's resolution (``[passes] dpi``) on a page of
the layout's exact size, so CUPS prints it 1:1 on a 62 mm label (Brother QL through
``printer-driver-ptouch``) or a CR80 card. The QR code is drawn module by module with
whole pixels per module (segno), so it stays sharp at 300 dpi. Text is Roboto (the font
Kivy ships, so the kiosk's screen and its passes match), with Pillow's own font as a
fallback. Dates use Babel like the kiosk's screens (``en_GB``, ``fr_BE``).

Layouts (docs/passes.md has a picture of each):

* ``label62``: portrait, 62 mm wide and ``label_length_mm`` long: the band, the visitor's
  name with the photo beside it, host, validity, doors, site and date, then the QR code;
* ``cr80``: landscape 85.6 x 54 mm: the band, photo on the left, text in the middle, the
  QR code on the right.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from PIL import Image

from kiosk.config import PassSection
from kiosk.i18n import DATE_LOCALES
from kiosk.passes.model import VisitorPass
from portier_common.pagedraw import CR80_MM, Canvas, FontT, name_lines, pdf_bytes, qr_image

#: The band's text: always both languages, whatever the pass's language.
BAND_TEXT = "VISITOR / VISITEUR"
#: The words printed on a pass, per language.
PASS_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "host": "Host: {}",
        "valid": "Valid: {}",
        "doors": "Access: {}",
        "site": "{site}, {date}",
        "hint": "Show this code at the kiosk when you leave",
    },
    "fr": {
        "host": "Hôte : {}",
        "valid": "Valable : {}",
        "doors": "Accès : {}",
        "site": "{site}, {date}",
        "hint": "Présentez ce code à la borne en partant",
    },
}
LABEL_WIDTH_MM = 62.0
__all__ = [
    "BAND_TEXT",
    "CR80_MM",
    "LABEL_WIDTH_MM",
    "PASS_WORDS",
    "FontT",
    "format_day",
    "format_validity",
    "qr_image",
    "render_image",
    "render_pdf",
]


def _date(when: dt.datetime, lang: str, wide: bool) -> str:
    """``5 Dec 2026`` / ``5 December 2026`` (Babel's ``d MMM y`` / ``d MMMM y``)."""
    from babel.dates import format_date

    locale = DATE_LOCALES.get(lang, "en_GB")
    return format_date(when, "d MMMM y" if wide else "d MMM y", locale=locale)


def _local(unix_s: float, tz: dt.tzinfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_s, tz or dt.UTC).astimezone(tz)


def format_validity(start: float, end: float, lang: str, tz: dt.tzinfo | None = None) -> str:
    """``5 Dec 2026, 09:00–17:00`` (same day) or ``5 Dec 2026 09:00 – 6 Dec 2026 17:00``.

    Times are 24-hour ``HH:mm`` in both languages (as Babel writes them for en_GB and
    fr_BE), in ``tz`` (default: the kiosk's local time).
    """
    a, b = _local(start, tz), _local(end, tz)
    if a.date() == b.date():
        return f"{_date(a, lang, False)}, {a:%H:%M}–{b:%H:%M}"
    return f"{_date(a, lang, False)} {a:%H:%M} – {_date(b, lang, False)} {b:%H:%M}"


def format_day(when: float, lang: str, tz: dt.tzinfo | None = None) -> str:
    """The long date: ``5 December 2026`` / ``5 décembre 2026``."""
    return _date(_local(when, tz), lang, True)


def _place_names(
    visitor_pass: VisitorPass, lang: str, names: Mapping[str, Mapping[str, str]]
) -> str:
    ids = (*visitor_pass.doors, *visitor_pass.zones)
    return ", ".join(names.get(i, {}).get(lang) or i for i in ids)


def render_image(
    visitor_pass: VisitorPass,
    settings: PassSection,
    lang: str = "en",
    *,
    place_names: Mapping[str, Mapping[str, str]] | None = None,
    tz: dt.tzinfo | None = None,
) -> Image.Image:
    """The pass drawn at ``settings.dpi`` in ``settings.layout`` (an RGB image).

    ``place_names`` maps a door or zone id to its name per language (the kiosk's
    ``[[ui.entrances]]``); ids without a name are printed as they are. ``tz`` is the
    time zone of the printed times (the kiosk's local time by default).
    """
    if lang not in PASS_WORDS:
        raise ValueError(f"no pass wording in {lang!r} (expected one of {sorted(PASS_WORDS)})")
    words = PASS_WORDS[lang]
    category = settings.category(visitor_pass.category)
    lines = [
        words["host"].format(visitor_pass.host) if visitor_pass.host else "",
        words["valid"].format(
            format_validity(visitor_pass.valid_from, visitor_pass.valid_until, lang, tz)
        ),
        words["doors"].format(_place_names(visitor_pass, lang, place_names or {})),
        words["site"].format(
            site=settings.site_name or visitor_pass.site,
            date=format_day(visitor_pass.issued_at, lang, tz),
        ),
    ]
    lines = [line for line in lines if line]
    if settings.layout == "cr80":
        return _render_cr80(visitor_pass, settings, category.colour, getattr(category, lang), lines)
    # Under the code: what it is for, and the short id a guard types when it does not scan.
    hint = f"{words['hint']} · {visitor_pass.pass_id[:8]}"
    return _render_label62(
        visitor_pass, settings, category.colour, getattr(category, lang), lines, hint
    )


def _render_label62(
    visitor_pass: VisitorPass,
    settings: PassSection,
    colour: str,
    category_name: str,
    lines: list[str],
    hint: str,
) -> Image.Image:
    width, length, margin = LABEL_WIDTH_MM, settings.label_length_mm, 3.0
    page = Canvas(width, length, settings.dpi)
    page.band(14.0, colour, BAND_TEXT)
    y = page.line(margin, 15.5, category_name, width - 2 * margin, 4.5, bold=True, fill=colour)
    text_x = margin
    photo_bottom = y
    if visitor_pass.photo_jpeg:
        page.photo(visitor_pass.photo_jpeg, margin, y, 20.0, 25.0)
        text_x = margin + 22.0
        photo_bottom = y + 26.0
    name_width = width - margin - text_x
    y = name_lines(page, visitor_pass.visitor, text_x, y, name_width, 6.5)
    y = max(y, photo_bottom) + 1.0
    for line in lines:
        y = page.line(margin, y, line, width - 2 * margin, 3.6)
    qr_size = min(30.0, length - y - 8.0)
    qr_top = length - margin - 4.0 - qr_size
    page.qr(visitor_pass.qr_text, (width - qr_size) / 2, qr_top, qr_size)
    page.line(margin, qr_top + qr_size + 0.5, hint, width - 2 * margin, 2.6)
    return page.image


def _render_cr80(
    visitor_pass: VisitorPass,
    settings: PassSection,
    colour: str,
    category_name: str,
    lines: list[str],
) -> Image.Image:
    width, height = CR80_MM
    margin = 3.0
    page = Canvas(width, height, settings.dpi)
    page.band(10.0, colour, BAND_TEXT)
    qr_size = 26.0
    qr_x = width - margin - qr_size
    page.qr(visitor_pass.qr_text, qr_x, 12.0, qr_size)
    page.line(qr_x, 12.0 + qr_size + 0.3, visitor_pass.pass_id[:8], qr_size, 2.4, shrink=False)
    text_x = margin
    if visitor_pass.photo_jpeg:
        page.photo(visitor_pass.photo_jpeg, margin, 12.0, 19.0, 24.0)
        text_x = margin + 21.0
    text_width = qr_x - 1.5 - text_x
    y = 11.5
    y = name_lines(page, visitor_pass.visitor, text_x, y, text_width, 5.2)
    y = page.line(text_x, y, category_name, text_width, 3.4, bold=True, fill=colour)
    for line in lines[:-1]:
        y = page.line(text_x, y, line, text_width, 3.0)
    # Site and date along the bottom, under the photo too.
    page.line(margin, height - margin - 3.2, lines[-1], qr_x - 1.5 - margin, 3.0)
    return page.image


def render_pdf(
    visitor_pass: VisitorPass,
    settings: PassSection,
    lang: str = "en",
    *,
    place_names: Mapping[str, Mapping[str, str]] | None = None,
    tz: dt.tzinfo | None = None,
) -> bytes:
    """The pass as a one-page PDF of the layout's exact size (see :func:`render_image`)."""
    image = render_image(visitor_pass, settings, lang, place_names=place_names, tz=tz)
    return pdf_bytes(
        image,
        settings.dpi,
        title=f"Visitor pass {visitor_pass.pass_id[:8]}",
        creator="Portier kiosk",
    )
