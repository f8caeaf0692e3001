"""The badge's printed face at the Pass Office: photo, name, validity, on a CR80 card.

``portier-badge issue --print-queue QUEUE [--photo FILE]`` prints the face of the badge it
has just issued on a CR80 card printer through CUPS; ``portier-badge face`` prints (or
writes, ``--out``) a face again without a card on the reader. The face is drawn like the
kiosk's visitor passes (:mod:`portier_common.pagedraw`: Pillow at 300 dpi, Roboto, a
one-page PDF of the card's exact size, 85.6 x 53.98 mm) and printed through the same CUPS
backend as the kiosk's passes (:class:`hardware.printer.cups.CupsPrinter`: ``lp`` and
``lpstat``, any card printer with a CUPS driver: Evolis, Zebra, Magicard, HID Fargo).

What it shows: a band that says who the holder is to a guard at a glance ("STAFF /
PERSONNEL", or "SECURITY / SÉCURITÉ" for a guard's badge), the photo, the holder's name,
the validity and the site. Nothing secret: the card's keys are in its chip, and its UID is
not printed (a card with Random ID hides it from readers on purpose).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from portier_common.pagedraw import CR80_MM, Canvas, name_lines, pdf_bytes

__all__ = [
    "FACE_WORDS",
    "CardFace",
    "FacePrintError",
    "check_printer",
    "face_pdf",
    "print_face",
    "render_face",
]

#: The band's text and colour by role (always both languages, like the visitor band).
BANDS: dict[str | None, tuple[str, str]] = {
    None: ("STAFF / PERSONNEL", "#0D47A1"),
    "guard": ("SECURITY / SÉCURITÉ", "#212121"),
}
#: The words on a face, per language.
FACE_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "until": "Valid until {until}",
        "from_until": "Valid {start} – {until}",
        "always": "No end date",
        "site": "Site: {site}",
    },
    "fr": {
        "until": "Valable jusqu'au {until}",
        "from_until": "Valable du {start} au {until}",
        "always": "Sans date de fin",
        "site": "Site : {site}",
    },
}
_DATE_LOCALES = {"en": "en_GB", "fr": "fr_BE"}


class FacePrintError(Exception):
    """The face cannot be drawn or printed (the message says why and what to do)."""


@dataclass(frozen=True)
class CardFace:
    """What a badge's face shows (the ``Badge`` the central registered, and a photo)."""

    holder: str
    site: str = ""
    valid_from: int | None = None
    valid_until: int | None = None
    role: str | None = None
    photo_jpeg: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.holder.strip():
            raise ValueError("holder: a card face needs the holder's name")
        if self.role not in BANDS:
            raise ValueError(f"role: {self.role!r} must be one of {sorted(map(str, BANDS))}")


def _day(when: int, lang: str, tz: dt.tzinfo | None) -> str:
    from babel.dates import format_date

    local = dt.datetime.fromtimestamp(when, tz or dt.UTC).astimezone(tz)
    return format_date(local, "d MMM y", locale=_DATE_LOCALES[lang])


def validity_text(face: CardFace, lang: str, tz: dt.tzinfo | None = None) -> str:
    """``Valid until 30 Jun 2027`` (or from–until, or no end date) in ``lang``."""
    words = FACE_WORDS[lang]
    if face.valid_until is None:
        return words["always"]
    until = _day(face.valid_until, lang, tz)
    if face.valid_from is None:
        return words["until"].format(until=until)
    return words["from_until"].format(start=_day(face.valid_from, lang, tz), until=until)


def render_face(
    face: CardFace, *, lang: str = "en", dpi: int = 300, tz: dt.tzinfo | None = None
) -> Image.Image:
    """The face drawn at ``dpi`` on a landscape CR80 card (an RGB image).

    Raises:
        FacePrintError: ``lang`` unknown, or the photo is not an image Pillow reads.
    """
    if lang not in FACE_WORDS:
        raise FacePrintError(f"--lang: {lang!r}: one of {sorted(FACE_WORDS)}")
    width, height = CR80_MM
    margin = 3.0
    page = Canvas(width, height, dpi)
    band, colour = BANDS[face.role]
    page.band(10.0, colour, band)
    text_x = margin
    if face.photo_jpeg:
        try:
            page.photo(face.photo_jpeg, margin, 13.0, 25.0, 32.0)
        except (UnidentifiedImageError, OSError) as exc:
            raise FacePrintError(f"--photo: not an image ({exc})") from None
        text_x = margin + 28.0
    text_width = width - margin - text_x
    y = name_lines(page, face.holder, text_x, 14.0, text_width, 6.0)
    y = page.line(text_x, y + 1.0, validity_text(face, lang, tz), text_width, 3.4)
    if face.site:
        page.line(text_x, y, FACE_WORDS[lang]["site"].format(site=face.site), text_width, 3.4)
    return page.image


def face_pdf(
    face: CardFace, *, lang: str = "en", dpi: int = 300, tz: dt.tzinfo | None = None
) -> bytes:
    """The face as a one-page PDF of the card's exact size (CUPS prints it 1:1)."""
    image = render_face(face, lang=lang, dpi=dpi, tz=tz)
    return pdf_bytes(image, dpi, title=f"Badge {face.holder}", creator="Portier Pass Office")


def read_photo(data: bytes) -> bytes:
    """A holder's photo file (JPEG, PNG...) as JPEG bytes; raises :class:`FacePrintError`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=90)
    except (UnidentifiedImageError, OSError) as exc:
        raise FacePrintError(f"--photo: not an image ({exc})") from None
    return out.getvalue()


def _printer(queue: str, server: str, timeout_s: float) -> Any:
    # The kiosk's CUPS backend (lp/lpstat, no driver code): the one exception to "the central
    # imports no device package", allowed for this module alone in pyproject.toml.
    from hardware.errors import BackendUnavailable
    from hardware.printer.cups import CupsPrinter

    try:
        return CupsPrinter(queue, server=server, timeout_s=timeout_s)
    except (ValueError, BackendUnavailable) as exc:
        raise FacePrintError(str(exc)) from None


def check_printer(queue: str, *, server: str = "", timeout_s: float = 30.0) -> None:
    """Refuse early (before a card is written) when the card printer cannot print.

    Raises:
        FacePrintError: naming the queue and what CUPS says (stopped, out of cards...).
    """
    state = _printer(queue, server, timeout_s).state()
    if not state.can_print:
        detail = f": {state.message}" if state.message else ""
        raise FacePrintError(f"the card printer {queue!r} cannot print ({state.status}{detail})")


def print_face(
    pdf: bytes, *, queue: str, title: str, server: str = "", timeout_s: float = 30.0
) -> str:
    """Print the face ``pdf`` on the CUPS queue ``queue``; return the CUPS job id.

    Raises:
        FacePrintError: the queue cannot print (its state named) or ``lp`` failed.
    """
    from hardware.printer.base import PrintError

    printer = _printer(queue, server, timeout_s)
    try:
        return printer.print_pdf(pdf, title=title)
    except PrintError as exc:
        raise FacePrintError(f"the card printer {queue!r} did not print: {exc}") from None
