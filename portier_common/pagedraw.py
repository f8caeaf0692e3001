"""Pages drawn with Pillow at a printer's resolution, then saved as PDF: the one way Portier
makes a printable document (the kiosk's visitor passes and muster list, the central's
invitations, the Pass Office's badge card faces). The page is an image of the layout's exact
size, saved as a one-page PDF of that size (:func:`pdf_bytes`), so CUPS prints it 1:1; no
printer protocol is written here: CUPS and its driver turn the PDF into what the printer needs.

A page is an image in millimetres (:class:`Canvas`) at ``dpi``; QR codes are drawn module by
module with whole pixels per module (segno), so they stay sharp when printed and when shown
on a phone. Text is Roboto (the font Kivy ships, found without importing Kivy), with
Pillow's own font as a fallback where Kivy is not installed.

Shared by the device (``kiosk.passes``) and the central (``central.invitations``,
``central/station/cardface.py``): it imports nothing else of ours.
"""

from __future__ import annotations

import importlib.util
import io
from functools import cache
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["CR80_MM", "Canvas", "FontT", "font", "name_lines", "pdf_bytes", "qr_image"]

#: An ID-1 card (ISO/IEC 7810), landscape: what CR80 card printers print.
CR80_MM = (85.6, 53.98)

FontT = ImageFont.FreeTypeFont | ImageFont.ImageFont


@cache
def _font_dir() -> Path | None:
    """Kivy's bundled fonts folder, found without importing Kivy (no window, no side effect)."""
    spec = importlib.util.find_spec("kivy")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "fonts"
    return folder if (folder / "Roboto-Regular.ttf").exists() else None


@cache
def font(size_px: int, bold: bool = False) -> FontT:
    """Roboto (bold) at *size_px*, else Pillow's own scalable font."""
    folder = _font_dir()
    if folder is not None:
        name = "Roboto-Bold.ttf" if bold else "Roboto-Regular.ttf"
        return ImageFont.truetype(str(folder / name), size_px)
    return ImageFont.load_default(size_px)


def qr_image(text: str, size_px: int) -> Image.Image:
    """The QR code of ``text`` (error correction M, 4-module quiet zone) as a square
    black-and-white image of at most ``size_px``, whole pixels per module."""
    qr = segno.make(text, error="m", micro=False)
    border = 4
    modules = len(qr.matrix) + 2 * border
    image = Image.new("1", (modules, modules), 1)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(qr.matrix):
        for x, dark in enumerate(row):
            if dark:
                pixels[x + border, y + border] = 0
    scale = max(1, size_px // modules)
    return image.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)


class Canvas:
    """A page in millimetres over a Pillow image at ``dpi``."""

    def __init__(self, width_mm: float, height_mm: float, dpi: int) -> None:
        self.dpi = dpi
        self.image = Image.new("RGB", (self.px(width_mm), self.px(height_mm)), "white")
        self.draw = ImageDraw.Draw(self.image)

    def px(self, mm: float) -> int:
        return round(mm * self.dpi / 25.4)

    def font(self, height_mm: float, bold: bool = False) -> FontT:
        # A font's pixel size is about its line height; 0.8 of it is the cap height.
        return font(max(6, self.px(height_mm)), bold)

    def fit(self, text: str, width_mm: float, height_mm: float, bold: bool = False) -> FontT:
        """The largest font up to ``height_mm`` in which ``text`` fits ``width_mm``."""
        size = height_mm
        while size > 1.6:
            candidate = self.font(size, bold)
            if self.draw.textlength(text, font=candidate) <= self.px(width_mm):
                return candidate
            size *= 0.92
        return self.font(1.6, bold)

    def line(
        self,
        x_mm: float,
        y_mm: float,
        text: str,
        width_mm: float,
        height_mm: float,
        *,
        bold: bool = False,
        fill: str = "black",
        shrink: bool = True,
    ) -> float:
        """Draw one line (shrunk, then cut with an ellipsis, to fit); return the next y."""
        face = self.fit(text, width_mm, height_mm, bold) if shrink else self.font(height_mm, bold)
        limit = self.px(width_mm)
        if self.draw.textlength(text, font=face) > limit:
            while text and self.draw.textlength(text + "…", font=face) > limit:
                text = text[:-1]
            text += "…"
        self.draw.text((self.px(x_mm), self.px(y_mm)), text, font=face, fill=fill)
        return y_mm + height_mm * 1.25

    def paragraph(
        self,
        x_mm: float,
        y_mm: float,
        text: str,
        width_mm: float,
        height_mm: float,
        *,
        bold: bool = False,
    ) -> float:
        """Draw *text* wrapped at spaces to ``width_mm`` at one size; return the next y."""
        face = self.font(height_mm, bold)
        limit = self.px(width_mm)
        words, current = text.split(), ""
        for word in words:
            candidate = f"{current} {word}".strip()
            if current and self.draw.textlength(candidate, font=face) > limit:
                y_mm = self.line(x_mm, y_mm, current, width_mm, height_mm, bold=bold)
                current = word
            else:
                current = candidate
        if current:
            y_mm = self.line(x_mm, y_mm, current, width_mm, height_mm, bold=bold)
        return y_mm

    def band(self, height_mm: float, colour: str, text: str) -> None:
        """A full-width band of *colour* across the top with *text* centred in white."""
        width = self.image.width
        self.draw.rectangle((0, 0, width, self.px(height_mm)), fill=colour)
        text_h = height_mm * 0.55
        face = self.fit(text, width * 25.4 / self.dpi - 6, text_h, bold=True)
        box = self.draw.textbbox((0, 0), text, font=face)
        x = (width - (box[2] - box[0])) // 2 - box[0]
        y = (self.px(height_mm) - (box[3] - box[1])) // 2 - box[1]
        self.draw.text((x, y), text, font=face, fill="white")

    def box(self, x_mm: float, y_mm: float, w_mm: float, h_mm: float, width_mm: float) -> None:
        """A black frame (its line *width_mm* thick)."""
        self.draw.rectangle(
            (self.px(x_mm), self.px(y_mm), self.px(x_mm + w_mm), self.px(y_mm + h_mm)),
            outline="black",
            width=max(1, self.px(width_mm)),
        )

    def photo(self, jpeg: bytes, x_mm: float, y_mm: float, w_mm: float, h_mm: float) -> None:
        with Image.open(io.BytesIO(jpeg)) as raw:
            picture = ImageOps.fit(raw.convert("RGB"), (self.px(w_mm), self.px(h_mm)))
        self.image.paste(picture, (self.px(x_mm), self.px(y_mm)))
        self.draw.rectangle(
            (
                self.px(x_mm),
                self.px(y_mm),
                self.px(x_mm + w_mm) - 1,
                self.px(y_mm + h_mm) - 1,
            ),
            outline="black",
            width=max(1, self.px(0.2)),
        )

    def qr(self, text: str, x_mm: float, y_mm: float, size_mm: float) -> float:
        """Draw the QR code centred in a ``size_mm`` square; return its bottom in mm."""
        code = qr_image(text, self.px(size_mm))
        offset = (self.px(size_mm) - code.width) // 2
        self.image.paste(code.convert("RGB"), (self.px(x_mm) + offset, self.px(y_mm) + offset))
        return y_mm + size_mm


def name_lines(
    page: Canvas, name: str, x_mm: float, y_mm: float, w_mm: float, h_mm: float
) -> float:
    """The visitor's name in bold, on one or two lines of the same size."""
    parts = split_name(name)
    longest = max(parts, key=lambda p: page.draw.textlength(p, font=page.font(h_mm, True)))
    font = page.fit(longest, w_mm, h_mm, bold=True)
    size_mm = font.size * 25.4 / page.dpi if isinstance(font, ImageFont.FreeTypeFont) else h_mm
    for part in parts:
        y_mm = page.line(x_mm, y_mm, part, w_mm, size_mm, bold=True, shrink=False)
    return y_mm


def split_name(name: str) -> list[str]:
    """A long name on two lines (at the space nearest the middle), a short one on one."""
    name = " ".join(name.split())
    if len(name) <= 16 or " " not in name:
        return [name]
    middle = len(name) // 2
    spaces = [i for i, c in enumerate(name) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return [name[:cut], name[cut + 1 :]]


def pdf_bytes(image: Image.Image, dpi: int, *, title: str, creator: str) -> bytes:
    """*image* as a one-page PDF whose page is the image's size at *dpi*."""
    out = io.BytesIO()
    image.save(out, "PDF", resolution=float(dpi), title=title, creator=creator)
    return out.getvalue()
