"""Build typed settings dataclasses from TOML tables, with errors that name the key.

The agent's configuration is a TOML file; each section maps onto a frozen
dataclass defined next to the code that uses it (``hardware.gpio.GpioSettings``
and so on). This module does the mapping once, generically: unknown keys are
refused, types are checked, nested dataclasses are built recursively, and
every error carries the dotted path of the offending key
(``hardware.gpio.rex.pin: ...``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid.

    ``key`` is the dotted path of the offending key (may be empty for a
    whole-file problem); ``str(error)`` reads ``key: what is wrong``.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:  # Optional[X]: X's own errors keep their precise key
            return _convert(value, candidates[0], path)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(path, "; ".join(errors))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        return build(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {type(value).__name__}")
        args = get_args(tp)
        item_type = args[0] if args else Any
        items = [_convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        _, vtype = get_args(tp) or (str, Any)
        return {k: _convert(v, vtype, _join(path, k)) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a path string, got {value!r}")
        return Path(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    return value


def build(cls: type[T], table: dict[str, Any], path: str = "") -> T:
    """Return ``cls(**table)`` with keys and types checked.

    Raises :class:`ConfigError` naming the key for an unknown key, a wrong
    type, or a value the dataclass's own validation refuses.
    """
    if not isinstance(table, dict):
        raise ConfigError(path, f"expected a table, got {type(table).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            _join(path, unknown[0]),
            f"unknown key (expected one of: {', '.join(sorted(fields))})",
        )
    kwargs = {}
    for name, value in table.items():
        kwargs[name] = _convert(value, hints[name], _join(path, name))
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(_join(path, missing[0]), "is required")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        # Settings classes phrase their errors as "field: problem"; prefix our path.
        field_name, sep, problem = message.partition(": ")
        # Some settings prefix their own section ("nfc.device: ..."): keep the leaf.
        field_name = field_name.rsplit(".", 1)[-1].split(" ")[0]
        if sep and field_name in fields:
            raise ConfigError(_join(path, field_name), problem) from exc
        raise ConfigError(path, message) from exc
