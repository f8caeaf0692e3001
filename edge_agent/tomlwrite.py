"""Writing the TOML files Portier generates: the one writer, ``tomli-w``.

The standard library reads TOML (``tomllib``) but does not write it. Every file
Portier writes -- the demo's ``agent.toml``, first boot's ``agent.toml``,
``kiosk.toml`` and ``provision.toml``, ``appliance provision``'s boot file -- goes
through :func:`dumps`, which adds a header comment to ``tomli_w``'s output and reads
the text back, so a file that would not load to the same values is never written.
Writing it (atomically, with which permissions) is the caller's job.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import tomli_w

__all__ = ["dumps"]


def _plain(value: Any) -> Any:
    """``value`` with paths as strings and tuples as lists (what ``tomllib`` reads back)."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def dumps(document: Mapping[str, Any], *, header: str = "") -> str:
    """Return ``document`` as TOML text, ``header``'s lines first as ``#`` comments.

    Nested mappings become tables (``{"hardware": {"gpio": {...}}}`` is
    ``[hardware.gpio]``); keys are quoted where TOML needs it; a string holding a
    newline is written as a multi-line string, so a PEM certificate reads as it does
    in its own file (unless one holds a CR LF: then all on one line, escaped). Paths
    are written as strings.

    Raises:
        TypeError: a value TOML cannot hold (None, bytes, an object).
        ValueError: the text would not load back to the same values.
    """
    plain = _plain(document)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    prefix = comment + "\n" if comment else ""
    # A multi-line string reads a CR LF back as LF: then every string on one line.
    for multiline in (True, False):
        text = prefix + tomli_w.dumps(plain, multiline_strings=multiline)
        if tomllib.loads(text) == plain:
            return text
    raise ValueError("TOML text does not load back to the values written")  # pragma: no cover
