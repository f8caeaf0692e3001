"""docs/configuration.md documents every key of the agent's TOML, with its true default.

The keys come from the settings dataclasses themselves (``edge_agent.config`` and
the hardware packages' settings), so a key added in code without a line in the
reference fails here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig, HardwareSection
from hardware.gpio import InputSettings

DOC = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()


def sections() -> dict[str, type]:
    """TOML table name -> the dataclass its keys map onto."""
    hints = typing.get_type_hints(AgentConfig)
    found: dict[str, type] = {}
    for f in dataclasses.fields(AgentConfig):
        if f.name == "source":
            continue
        if hints[f.name] is HardwareSection:
            hw_hints = typing.get_type_hints(HardwareSection)
            for hw in dataclasses.fields(HardwareSection):
                kind = next(a for a in typing.get_args(hw_hints[hw.name]) if a is not type(None))
                found[f"hardware.{hw.name}"] = kind
        else:
            found[f.name] = hints[f.name]
    return found


def chunk(table: str) -> str:
    """The part of the reference under the heading that names ``[table]``."""
    parts = re.split(r"^## ", DOC, flags=re.MULTILINE)
    matching = [p for p in parts if f"`[{table}]`" in p.splitlines()[0]]
    assert len(matching) == 1, f"no single heading for [{table}]"
    return matching[0]


def row(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith("|") and f"`{key}`" in line.split("|")[1]:
            return line
    raise AssertionError(f"no table row for {key}")


def toml_forms(value: Any) -> list[str]:
    """How a default may be written in the reference."""
    if isinstance(value, bool):
        return [f"`{str(value).lower()}`"]
    if isinstance(value, int):
        return [f"`{value}`", f"`0o{value:o}`"]
    if isinstance(value, float):
        return [f"`{value!r}`"]
    if isinstance(value, str):
        return [f'`"{value}"`']
    if isinstance(value, Path):
        return [f"`{value}`"]
    if value is None:
        return ["unset", "`state_dir/"]
    if isinstance(value, tuple):
        return ["`[" + ", ".join(json.dumps(item) for item in value) + "]`"]
    raise AssertionError(f"no TOML form for {value!r}")


CASES = [
    (table, f) for table, cls in sections().items() for f in dataclasses.fields(cls) if f.init
] + [("hardware.gpio", f) for f in dataclasses.fields(InputSettings)]


@pytest.mark.parametrize(("table", "field"), CASES, ids=[f"{t}.{f.name}" for t, f in CASES])
def test_every_key_is_documented_with_its_default(table: str, field: dataclasses.Field) -> None:
    line = row(chunk(table), field.name)
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        assert "| - |" in line or "| - for" in line, f"{table}.{field.name} is required: say so"
        return
    if field.default is dataclasses.MISSING:
        return  # a table or list default, described in words
    forms = toml_forms(field.default)
    assert any(form in line for form in forms), f"{table}.{field.name}: default {field.default!r}"


def test_every_table_has_a_section() -> None:
    for table in sections():
        chunk(table)
