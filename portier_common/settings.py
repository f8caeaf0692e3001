"""Settings from TOML: one loader and one set of validators, errors that name the key.

Every Portier configuration (the agent's ``agent.toml``, the kiosk's ``kiosk.toml``, the
central's NTAG 424 keys file, the store's ``[store]`` table) is a TOML file whose tables map
onto frozen dataclasses defined next to the code that uses them. This module does that once:

* :func:`read_toml` reads a file (an unreadable or invalid file is a :class:`ConfigError`
  naming the file);
* :func:`build` turns a table into a dataclass: unknown keys are refused, types are checked
  from the annotations (str, int, float, bool, Path, Enum, Literal, tuples, lists, dicts,
  optional and nested dataclasses), and every error carries the dotted path of the key
  (``door.visitor_unlock_s``, ``ui.entrances[0].fr``);
* the validators (:func:`number`, :func:`integer`, :func:`choice`, :func:`matches`,
  :func:`text`, :func:`flag`, :func:`path`, :func:`url`, :func:`each`) are what a settings
  class's ``__post_init__`` calls on its own fields. They raise :class:`ConfigError` with the
  field's name as the key; :func:`build` prefixes the table's path, so the message a user
  reads names the full key.

One exception type, :class:`ConfigError` (a ``ValueError``), for all of it; :func:`load`
adds the file it was read from. Nothing here imports the rest of Portier.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
    overload,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
R = TypeVar("R")

#: ``dataclasses.field(metadata=NOT_A_KEY)``: a field the program fills in (the file a
#: configuration was read from, say), refused as a key in the file.
NOT_A_KEY: dict[str, Any] = {"portier.settings": "not a key"}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid.

    ``key`` is the dotted path of the offending key (empty for a whole-file problem),
    ``problem`` what is wrong, ``file`` the file it came from when known.
    ``str(error)`` reads ``key: problem`` (then `` (in FILE)`` when the file is known and
    the problem does not already name it).
    """

    def __init__(self, key: str, problem: str, file: Path | str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.file = None if file is None else Path(file)
        message = f"{key}: {problem}" if key else problem
        if self.file is not None and str(self.file) not in problem:
            message += f" (in {self.file})"
        super().__init__(message)

    def within(self, path: str) -> ConfigError:
        """This error with its key inside the table at ``path`` (``ui`` + ``size``)."""
        return ConfigError(join(path, self.key), self.problem, self.file)

    def in_file(self, file: Path | str) -> ConfigError:
        """This error, saying which file it came from."""
        return ConfigError(self.key, self.problem, file)


def join(path: str, key: str) -> str:
    """The dotted path of ``key`` inside the table at ``path`` (``[i]`` items attach)."""
    if not path:
        return key
    if not key:
        return path
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


# -- reading a file -------------------------------------------------------------------------
def read_toml(path: Path | str) -> dict[str, Any]:
    """Return the parsed TOML file at ``path``.

    Raises :class:`ConfigError` (key empty) naming the file when it cannot be read, is
    not UTF-8 or is not valid TOML.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}", path) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path} is not UTF-8 text: {exc}", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}", path) from exc


def load(path: Path | str, parse: Callable[[dict[str, Any]], R]) -> R:
    """Read the TOML file at ``path`` and return ``parse(data)``; errors name the file."""
    data = read_toml(path)
    try:
        return parse(data)
    except ConfigError as exc:
        raise exc.in_file(path) from exc


@overload
def resolve_path(base: Path, value: Path) -> Path: ...
@overload
def resolve_path(base: Path, value: None) -> None: ...
def resolve_path(base: Path, value: Path | None) -> Path | None:
    """``value`` relative to ``base`` (the configuration file's folder) unless absolute."""
    if value is None or value.is_absolute():
        return value
    return (base / value).resolve()


# -- tables onto dataclasses ----------------------------------------------------------------
def read_private_file(key: str, path: Path) -> bytes:
    """Return the bytes of *path*, a secret only its owner may read or write (0600 or
    stricter): a token, a key, an HMAC secret.

    Raises:
        ConfigError: naming *key*: the file cannot be read, or others may read it.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"{path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ConfigError(
            key, f"{path}: mode {mode & 0o777:o}, others may read it (chmod 0600 {path})"
        )
    return data


def keys_of(cls: type[DataclassInstance]) -> dict[str, dataclasses.Field[Any]]:
    """The fields of ``cls`` a file may set (init fields not marked :data:`NOT_A_KEY`)."""
    return {
        f.name: f
        for f in dataclasses.fields(cls)
        if f.init and f.metadata.get("portier.settings") != "not a key"
    }


def refuse_unknown(
    table: Iterable[str], allowed: Collection[str], path: str = "", what: str = "key"
) -> None:
    """Raise :class:`ConfigError` naming the first key of ``table`` not in ``allowed``."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            join(path, unknown[0]),
            f"unknown {what} (expected one of: {', '.join(sorted(allowed))})",
        )


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
        problems = []
        for arg in candidates:
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                problems.append(exc.problem)
        raise ConfigError(path, "; ".join(problems))
    if origin is Literal:
        return choice(path, value, get_args(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = [m.value for m in tp]
        choice(path, value, members)
        return tp(value)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {type(value).__name__}")
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(
                _convert(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item_type = args[0] if args else Any
        items = [_convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        _, value_type = get_args(tp) or (str, Any)
        return {k: _convert(v, value_type, join(path, k)) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        return flag(path, value)
    if tp is int:
        return integer(path, value)
    if tp is float:
        return number(path, value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        return _path(path, value)
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
        return value
    raise ConfigError(path, f"unsupported type {tp!r}")  # a bug in a settings class


def _leaf(key: str) -> str:
    """The first name of a key path a settings class raised (``zones[0]`` -> ``zones``)."""
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def build(cls: type[T], table: Any, path: str = "") -> T:
    """Return ``cls(**table)`` with keys and types checked.

    ``path`` is the dotted path of ``table`` in its file (for messages). Raises
    :class:`ConfigError` naming the key for an unknown key, a missing required key, a
    wrong type, or a value the dataclass's own validation refuses (its ``__post_init__``
    raises :class:`ConfigError` with the field as key, or a ``ValueError`` whose
    message starts ``field: ``).
    """
    if not isinstance(table, dict):
        raise ConfigError(path, f"expected a table, got {type(table).__name__}")
    hints = get_type_hints(cls)
    fields = keys_of(cls)
    refuse_unknown(table, fields, path)
    kwargs = {name: _convert(value, hints[name], join(path, name)) for name, value in table.items()}
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(join(path, name), "required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if _leaf(exc.key) in fields:
            raise exc.within(path) from exc
        raise ConfigError(path, str(exc)) from exc
    except (ValueError, TypeError) as exc:
        message = str(exc)
        # Settings classes outside portier_common (hardware) phrase their errors as
        # "field: problem"; some prefix their own section ("nfc.device: ..."): keep the leaf.
        field_name, sep, problem = message.partition(": ")
        field_name = field_name.rsplit(".", 1)[-1].split(" ")[0]
        if sep and field_name in fields:
            raise ConfigError(join(path, field_name), problem) from exc
        raise ConfigError(path, message) from exc


# -- validators for __post_init__: each names its key and returns the (converted) value --------
def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def number(
    key: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    above: float | None = None,
    unit: str = "",
) -> float:
    """A number (an int is fine, a bool is not) in ``[low, high]``, or ``(above, high]``.

    ``unit`` ends the message (``" seconds"`` for a duration).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected a number, got {value!r}")
    low_ok = (low is None or value >= low) and (above is None or value > above)
    if low_ok and (high is None or value <= high):
        return float(value)
    if above is not None:
        upper = "" if high is None else f" and at most {_bound(high)}"
        raise ConfigError(key, f"{value!r} must be above {_bound(above)}{upper}{unit}")
    if low is not None and high is not None:
        raise ConfigError(key, f"{value!r} must be between {_bound(low)} and {_bound(high)}{unit}")
    if low is not None:
        raise ConfigError(key, f"{value!r} must be at least {_bound(low)}{unit}")
    raise ConfigError(key, f"{value!r} must be at most {_bound(high or 0)}{unit}")


def seconds(key: str, value: object, low: float, high: float) -> float:
    """A duration in seconds in ``[low, high]``."""
    return number(key, value, low, high, unit=" seconds")


def integer(key: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """An integer (not a bool) in ``[low, high]`` (either bound may be open)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bound = f"from {low} to {high}"
        elif low is not None:
            bound = f">= {low}"
        else:
            bound = f"<= {high}"
        raise ConfigError(key, f"{value!r} must be an integer {bound}")
    return value


def flag(key: str, value: object) -> bool:
    """``true`` or ``false`` (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def choice(key: str, value: R, choices: Iterable[R]) -> R:
    """One of ``choices`` (an enumeration)."""
    options = list(choices)
    if value not in options:
        raise ConfigError(key, f"{value!r} must be one of {', '.join(str(o) for o in options)}")
    return value


def text(key: str, value: object, *, max_chars: int | None = None, what: str = "") -> str:
    """A string that is not blank, of at most ``max_chars`` characters.

    ``what`` names the thing in the message (``the assembly point must not be empty``).
    """
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    if not value.strip():
        raise ConfigError(key, f"{what} must not be empty" if what else "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise ConfigError(key, f"at most {max_chars} characters, got {len(value)}")
    return value


def matches(key: str, value: object, pattern: re.Pattern[str], description: str) -> str:
    """A string that ``pattern`` matches in full; ``description`` says what it must be."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(key, f"{value!r} must be {description}")
    return value


def _path(key: str, value: object) -> Path:
    if isinstance(value, Path) and str(value):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a path, got {value!r}")
    return Path(value)


def path(key: str, value: object) -> Path:
    """A non-empty path (a ``str`` becomes a :class:`~pathlib.Path`)."""
    return _path(key, value)


def url(key: str, value: object, schemes: Collection[str] = ("https",)) -> urllib.parse.SplitResult:
    """A URL with a host and one of ``schemes``; returns its parts."""
    if not isinstance(value, str) or not re.match(r"^[a-z][a-z0-9+.-]*://[^/\s]+", value):
        raise ConfigError(key, f"{value!r} is not a URL")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in schemes:
        names = " or ".join(f"{s}://" for s in sorted(schemes))
        raise ConfigError(key, f"{value!r} must be an {names} URL")
    return parts


def each(key: str, values: Iterable[Any], check: Callable[[str, Any], R]) -> list[R]:
    """Apply ``check(item_key, item)`` to every item; item keys read ``key[i]``."""
    return [check(f"{key}[{i}]", item) for i, item in enumerate(values)]
