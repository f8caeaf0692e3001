"""Checks both gettext catalogue tests make (the kiosk's and the console's)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


def translation_problems(catalog: Iterable[Any], placeholder: re.Pattern[str]) -> list[str]:
    """Each entry of a translated *catalog* (Babel messages) that is untranslated, fuzzy,
    or whose *placeholder* set differs from its msgid's, in words."""
    problems = []
    for message in catalog:
        if not message.id:
            continue  # the header
        if not message.string:
            problems.append(f"untranslated: {message.id!r}")
        elif message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif sorted(placeholder.findall(message.id)) != sorted(placeholder.findall(message.string)):
            problems.append(f"placeholders differ: {message.id!r} -> {message.string!r}")
    return problems
