"""Writing the small TOML files Portier generates (the demo's and first boot's
``agent.toml``, ``kiosk.toml``). The standard library reads TOML but does not write it;
these files hold only strings, numbers, booleans, paths, arrays and inline tables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["toml_value"]


def toml_value(value: Any) -> str:
    """Return ``value`` as a TOML value; raises ``TypeError`` for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")
