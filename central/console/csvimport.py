"""Reading a special event's guest list from a CSV file (the Visitors page's import).

The file is what a spreadsheet writes: UTF-8 with or without a byte-order mark, cells
separated by ``,`` or by ``;`` (Excel in French writes ``;``, since ``,`` is its decimal
point), a header line naming the columns (English or French names, any case, any order).
Columns (docs/console.md, "CSV import"):

=============  ================================================  ==========
column         what                                               needed
=============  ================================================  ==========
visitor        the visitor's name (``name``, ``visiteur``, ``nom``)  yes
from           start, site time: ``2026-12-05 08:00`` or          yes
               ``05/12/2026 08:00`` (``début``, ``du``)
until          end, the same formats (``fin``, ``au``)             yes
doors          door names, separated by spaces or ``|``           doors or zones
               (``portes``)
zones          zone names, the same                               doors or zones
host           who the visitor comes to see (``hôte``)            no
host_email     the host's e-mail (``e-mail hôte``)                no
lang           ``en`` or ``fr``: the host's e-mail (``langue``)   no
use            ``single`` / ``multiple`` (``unique``)             no
=============  ================================================  ==========

:func:`parse` returns each line as it will be created, with its errors (catalogue strings
and arguments, shown in the operator's language); the file's own errors (not UTF-8, a
missing column, too many lines) stop the preview. Nothing here writes anything.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ..store.credentials import LANGUAGES
from .i18n import N_, msg

__all__ = ["COLUMNS", "MAX_BYTES", "MAX_LINES", "Line", "Parsed", "decode", "parse"]

#: The largest file taken (bytes): a guest list of MAX_LINES lines fits many times over.
MAX_BYTES = 256 * 1024
#: The most invitations one file makes (``central.store.visits.MAX_GROUP``).
MAX_LINES = 500
#: Column -> the header names it is known by (lower case, spaces and ``_``/``-`` alike).
COLUMNS: dict[str, tuple[str, ...]] = {
    "visitor": ("visitor", "name", "visiteur", "nom"),
    "host": ("host", "hote", "hôte"),
    "host_email": ("host email", "host e-mail", "email hote", "e-mail hote", "e-mail hôte"),
    "lang": ("lang", "language", "langue"),
    "from": ("from", "valid from", "start", "debut", "début", "du"),
    "until": ("until", "valid until", "end", "fin", "au"),
    "doors": ("doors", "door", "portes", "porte"),
    "zones": ("zones", "zone"),
    "use": ("use", "usage"),
}
_SINGLE = ("single", "unique", "once", "1")
_MULTIPLE = ("multiple", "multi", "")
_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")


@dataclass
class Line:
    """One line of the file as it will be created (``body``: an ``InvitationCreate``)."""

    number: int
    visitor: str
    host: str
    from_text: str
    until_text: str
    doors: list[str]
    zones: list[str]
    single_use: bool
    body: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Parsed:
    """The file read: its own errors (then no lines) or its lines."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing to correct: every line can be created."""
        return not self.errors and bool(self.lines) and not any(ln.errors for ln in self.lines)


def decode(data: bytes) -> str | None:
    """The file's text (UTF-8, a byte-order mark dropped), None if it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _key(header: str) -> str:
    return " ".join(header.strip().lower().replace("_", " ").replace("-", " ").split())


_ALIASES = {_key(alias): column for column, aliases in COLUMNS.items() for alias in aliases}


def _when(text: str, zone: ZoneInfo) -> int | None:
    text = " ".join(text.split())
    for fmt in _FORMATS:
        try:
            moment = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(moment.replace(tzinfo=zone).timestamp())
    return None


def _names(text: str) -> list[str]:
    return [part for part in re.split(r"[\s|]+", text) if part]


def parse(
    text: str,
    *,
    zone: ZoneInfo,
    doors: Collection[str],
    zones: Collection[str],
    lang: str,
    site: str,
) -> Parsed:
    """Read *text*; each line against the known *doors* and *zones* of the site.

    *lang* is the host e-mail's language when a line gives none; times are *zone*'s."""
    parsed = Parsed()
    if not text.strip():
        parsed.errors.append(msg(N_("The file is empty.")))
        return parsed
    if "\x00" in text:  # a binary file, or UTF-16 read as UTF-8
        parsed.errors.append(msg(N_("The file holds a NUL character: it is not text.")))
        return parsed
    first = text.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error:  # a cell beyond the csv module's limit (128 KB): its words are English
        parsed.errors.append(msg(N_("The file is not CSV text: a cell is larger than 128 KB.")))
        return parsed
    header = [_key(cell) for cell in rows[0]]
    columns: list[str | None] = []
    for raw, key in zip(rows[0], header, strict=True):
        column = _ALIASES.get(key)
        if column is None and key:
            parsed.errors.append(msg(N_("Unknown column “%(name)s”."), name=raw.strip()))
        if column is not None and column in columns:
            parsed.errors.append(msg(N_("Column “%(name)s” appears twice."), name=raw.strip()))
        columns.append(column)
    for needed in ("visitor", "from", "until"):
        if needed not in columns:
            parsed.errors.append(msg(N_("Column “%(name)s” is missing."), name=needed))
    if "doors" not in columns and "zones" not in columns:
        parsed.errors.append(msg(N_("The file needs a “doors” or a “zones” column.")))
    data = [(n, row) for n, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
    if not data and not parsed.errors:
        parsed.errors.append(msg(N_("The file has no line after its header.")))
    if len(data) > MAX_LINES:
        parsed.errors.append(
            msg(
                N_("The file has %(count)s lines: %(max)s at most."), count=len(data), max=MAX_LINES
            )
        )
    if parsed.errors:
        return parsed
    # Errors name a column as the file does ("Début", not "from").
    named = {col: raw.strip() for col, raw in zip(columns, rows[0], strict=True) if col}
    for number, row in data:
        parsed.lines.append(_line(number, row, columns, named, zone, doors, zones, lang, site))
    return parsed


def _line(
    number: int,
    row: list[str],
    columns: list[str | None],
    named: dict[str, str],
    zone: ZoneInfo,
    known_doors: Collection[str],
    known_zones: Collection[str],
    default_lang: str,
    site: str,
) -> Line:
    errors: list[dict[str, Any]] = []
    if len(row) > len(columns) and any(c.strip() for c in row[len(columns) :]):
        errors.append(msg(N_("More cells than columns.")))
    cells = {col: cell.strip() for col, cell in zip(columns, row, strict=False) if col}
    visitor = cells.get("visitor", "")
    if not visitor:
        errors.append(msg(N_("The visitor's name is missing.")))
    starts = _when(cells.get("from", ""), zone)
    ends = _when(cells.get("until", ""), zone)
    for column, value, moment in (("from", "from", starts), ("until", "until", ends)):
        if moment is None:
            errors.append(
                msg(
                    N_("“%(value)s” in “%(column)s” is not a date and time like 2026-12-05 08:00."),
                    value=cells.get(value, ""),
                    column=named.get(column, column),
                )
            )
    if starts is not None and ends is not None and ends <= starts:
        errors.append(msg(N_("The end of the validity must come after its start.")))
    doors = _names(cells.get("doors", ""))
    zones = _names(cells.get("zones", ""))
    if not doors and not zones:
        errors.append(msg(N_("Give at least one door or one zone.")))
    for door in doors:
        if door not in known_doors:
            errors.append(msg(N_("Unknown door “%(name)s”."), name=door))
    for name in zones:
        if name not in known_zones:
            errors.append(msg(N_("Unknown zone “%(name)s”."), name=name))
    email = cells.get("host_email", "")
    if email and not _EMAIL_RE.match(email):
        errors.append(msg(N_("“%(value)s” is not an e-mail address."), value=email))
    lang = cells.get("lang", "").lower() or default_lang
    if lang not in LANGUAGES:
        errors.append(msg(N_("Language “%(value)s”: en or fr."), value=lang))
    use = cells.get("use", "").lower()
    if use not in _SINGLE and use not in _MULTIPLE:
        errors.append(msg(N_("Use “%(value)s”: single or multiple."), value=use))
    body: dict[str, Any] = {
        "visitor": visitor,
        "host": cells.get("host", ""),
        "site": site,
        "doors": doors,
        "zones": zones,
        "not_before": starts,
        "expires": ends,
        "single_use": use in _SINGLE,
        "lang": lang if lang in LANGUAGES else LANGUAGES[0],
    }
    if email:
        body["host_email"] = email
    return Line(
        number=number,
        visitor=visitor,
        host=cells.get("host", ""),
        from_text=cells.get("from", ""),
        until_text=cells.get("until", ""),
        doors=doors,
        zones=zones,
        single_use=use in _SINGLE,
        body=body,
        errors=errors,
    )
