"""Render the muster list (``GET /v1/muster``) as a PDF for the pass printer, EN or FR.

The agent prints it (``POST /v1/muster/print``); the kiosk renders it, as it renders the
passes: same fonts, same printer, so it works offline in a fire. A page has the title,
the door and the time the list was read, then one line per visitor: name, host and time of
entry. Pages are the pass layout's size (a 62 mm label of ``label_length_mm``, or a CR80
card turned upright), as many as the list needs, each numbered.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image, ImageDraw

from kiosk.config import PassSection
from kiosk.passes.render import CR80_MM, LABEL_WIDTH_MM
from portier_common.pagedraw import font as _font

#: What the printed list says, per language.
MUSTER_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Visitors on site: {count}",
        "read": "{door}, read at {time} on {date}",
        "host": "host: {host}, in at {time}",
        "none": "No visitor is checked in here.",
        "page": "page {n}/{of}",
    },
    "fr": {
        "title": "Visiteurs présents : {count}",
        "read": "{door}, lue à {time} le {date}",
        "host": "hôte : {host}, entré à {time}",
        "none": "Aucun visiteur n'est enregistré ici.",
        "page": "page {n}/{of}",
    },
}
_MARGIN_MM = 3.0
_TITLE_MM = 5.0
_TEXT_MM = 3.4
_LINE_GAP = 1.35


def _page_mm(settings: PassSection) -> tuple[float, float]:
    if settings.layout == "cr80":
        return CR80_MM[1], CR80_MM[0]  # upright: a list reads down
    return LABEL_WIDTH_MM, settings.label_length_mm


def _hm(epoch_s: float) -> str:
    return time.strftime("%H:%M", time.localtime(epoch_s))


def render_muster_pages(
    answer: Mapping[str, Any], settings: PassSection, lang: str = "en", door: str = ""
) -> list[Image.Image]:
    """The pages (greyscale images at ``settings.dpi``) of the muster list ``answer``."""
    words = MUSTER_WORDS.get(lang, MUSTER_WORDS["en"])
    width_mm, height_mm = _page_mm(settings)
    px = settings.dpi / 25.4
    width, height = round(width_mm * px), round(height_mm * px)
    margin = round(_MARGIN_MM * px)
    title_font, bold, text = (
        _font(round(_TITLE_MM * px), True),
        _font(round(_TEXT_MM * px), True),
        _font(round(_TEXT_MM * px)),
    )
    line = round(_TEXT_MM * px * _LINE_GAP)
    visitors: Sequence[Mapping[str, Any]] = answer.get("visitors") or []
    read = float(answer.get("at") or time.time())
    header = [
        (words["title"].format(count=len(visitors)), title_font, round(_TITLE_MM * px * 1.3)),
        (
            words["read"].format(
                door=door or str(answer.get("door_id") or ""),
                time=_hm(read),
                date=time.strftime("%d/%m/%Y", time.localtime(read)),
            ),
            text,
            line,
        ),
    ]
    top = margin + sum(h for _t, _f, h in header) + line // 2
    per_page = max(1, (height - top - margin - line) // (2 * line))
    chunks = [list(visitors[i : i + per_page]) for i in range(0, len(visitors), per_page)] or [[]]
    pages = []
    for n, chunk in enumerate(chunks, 1):
        page = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(page)
        y = margin
        for words_line, font, step in header:
            draw.text((margin, y), _fit(draw, words_line, font, width - 2 * margin), 0, font)
            y += step
        y += line // 2
        if not visitors:
            draw.text((margin, y), words["none"], 0, text)
        for entry in chunk:
            name = _fit(draw, str(entry.get("visitor") or ""), bold, width - 2 * margin)
            draw.text((margin, y), name, 0, bold)
            entered = entry.get("entered_at")
            host = words["host"].format(
                host=str(entry.get("host") or "-"),
                time=_hm(float(entered)) if isinstance(entered, int | float) else "-",
            )
            host = _fit(draw, host, text, width - 2 * margin - line)
            draw.text((margin + line, y + line), host, 0, text)
            y += 2 * line
        page_no = words["page"].format(n=n, of=len(chunks))
        draw.text((margin, height - margin - line), page_no, 0, text)
        pages.append(page)
    return pages


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_muster_pdf(
    answer: Mapping[str, Any], settings: PassSection, lang: str = "en", door: str = ""
) -> bytes:
    """The muster list ``answer`` as a PDF, one page per :func:`render_muster_pages` page."""
    first, *rest = render_muster_pages(answer, settings, lang, door)
    out = io.BytesIO()
    first.save(
        out,
        "PDF",
        resolution=float(settings.dpi),
        save_all=True,
        append_images=rest,
        title="Muster list",
        creator="Portier kiosk",
    )
    return out.getvalue()
