"""The canonical encoder (orjson where it can) against the json module's (the reference).

The chain hash covers the payload's canonical text, so the two must agree byte for byte on
every payload either accepts, and raise the same error for every payload the reference
refuses: a seeded random generator over nested values (control characters, DEL, U+2028,
escapes, astral characters, lone surrogates, integers at the 53-bit edge, floats, tuples,
subclasses, non-string keys) and a Hypothesis strategy over the same kind of values.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import random
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portier_common.encoding import (
    MAX_SAFE_INT,
    _canonical_json_slow,
    canonical_json,
    canonical_json_utf8,
)
from portier_common.errors import InvalidEvent

#: Characters a string is drawn from: every escape, the C0 controls, DEL, the C1 range,
#: the line and paragraph separators, the BOM, the last BMP code points, astral ones.
_CHARS = (
    [chr(c) for c in range(0x20)]
    + list('"\\/ azAZ09.-_:{}[],')
    + ["\x7f", "\x80", "\x9f", "\xa0", "\xe9", "\xff", "\u0100", "\u07ff", "\u0800"]
    + ["\u2028", "\u2029", "\ufeff", "\ufffd", "\uffff", "\ue000"]
    + ["\U00010000", "\U0001f600", "\U0010ffff"]
)
_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
_EDGE_INTS = [
    0,
    1,
    -1,
    MAX_SAFE_INT,
    -MAX_SAFE_INT,
    MAX_SAFE_INT + 1,
    -MAX_SAFE_INT - 1,
    2**63,
    -(2**63),
    2**64,
    10**30,
]


class _Str(str):
    pass


class _Int(int):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _List(list):  # type: ignore[type-arg]
    pass


class _Colour(enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class _Point:
    x: int


_Pair = collections.namedtuple("_Pair", "a b")

#: Values a payload must not hold (orjson encodes most of them natively).
_FOREIGN: list[Any] = [
    1.5,
    0.0,
    float("nan"),
    float("inf"),
    _Str("s"),
    _Int(3),
    _Dict(a=1),
    _List([1]),
    _Colour.RED,
    _Level.HIGH,
    uuid.UUID(int=7),
    datetime.date(2026, 1, 1),
    datetime.datetime(2026, 1, 1, 12, 0),
    _Point(1),
    _Pair(1, 2),
    b"bytes",
    bytearray(b"x"),
    {1, 2},
    orjson.Fragment(b"1"),
    collections.OrderedDict(a=1),
    object(),
]


def _text(rng: random.Random) -> str:
    n = rng.choice((0, 1, 2, 3, 5, 8, 13, 40))
    chars = [rng.choice(_CHARS) for _ in range(n)]
    if rng.random() < 0.01:
        chars.insert(rng.randint(0, n), rng.choice(_SURROGATES))
    return "".join(chars)


def _key(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.003:
        return rng.choice((1, None, True, 2.5, _Str("k"), (1, 2)))
    if roll < 0.3:  # short keys collide in their prefixes: the sort order matters
        return "".join(
            rng.choice("aAb\x00\x7f\xe9\u2028\U0001f600") for _ in range(rng.randint(0, 3))
        )
    return _text(rng)


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if roll < 0.005:
        return rng.choice(_FOREIGN)
    if depth < 4 and roll < 0.2:
        return _object(rng, depth + 1)
    if depth < 4 and roll < 0.3:
        items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
        return tuple(items) if rng.random() < 0.3 else items
    if roll < 0.6:
        return _text(rng)
    if roll < 0.8:
        if rng.random() < 0.1:
            return rng.choice(_EDGE_INTS)
        return rng.randint(-MAX_SAFE_INT, MAX_SAFE_INT) >> rng.randint(0, 53)
    return rng.choice((True, False, None))


def _object(rng: random.Random, depth: int) -> dict[Any, Any]:
    return {_key(rng): _value(rng, depth) for _ in range(rng.randint(0, 8))}


def _outcome(encode: Any, payload: Any, max_bytes: int | None) -> tuple[str, Any]:
    try:
        return "ok", encode(payload, max_bytes)
    except InvalidEvent as exc:
        return "error", str(exc)


def _assert_same(payload: Any, max_bytes: int | None = None) -> str:
    reference = _outcome(_canonical_json_slow, payload, max_bytes)
    assert _outcome(canonical_json, payload, max_bytes) == reference, repr(payload)
    utf8 = _outcome(canonical_json_utf8, payload, max_bytes)
    if reference[0] == "ok":
        assert utf8 == ("ok", reference[1].encode("utf-8")), repr(payload)
    else:
        assert utf8 == reference, repr(payload)
    return reference[0]


def test_random_payloads_encode_as_the_reference() -> None:
    rng = random.Random(20261205)
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(100_000):
        payload = _object(rng, 0)
        max_bytes = rng.choice((None, None, None, 16, 64, 256))
        seen[_assert_same(payload, max_bytes)] += 1
    # Both ways were exercised, and mostly the accepting one.
    assert seen["error"] > 1_000
    assert seen["ok"] > 40_000


@pytest.mark.parametrize("value", _FOREIGN, ids=lambda v: type(v).__name__)
def test_foreign_values_are_refused_as_before(value: Any) -> None:
    for payload in ({"v": value}, {"v": [value]}, {"a": {"b": value}}, {"v": (1, value)}):
        assert _assert_same(payload) == "error"


@pytest.mark.parametrize("key", [1, None, True, 2.5, _Str("k"), (1, 2), b"k"])
def test_non_string_keys_are_refused_as_before(key: Any) -> None:
    assert _assert_same({key: 1}) == "error"
    assert _assert_same({"a": {key: 1}}) == "error"


@pytest.mark.parametrize("value", _EDGE_INTS)
def test_integers_at_the_edge(value: int) -> None:
    _assert_same({"n": value})
    _assert_same({"n": [value]})


def test_every_code_point_of_the_bmp_and_astral_samples() -> None:
    text = "".join(chr(c) for c in range(0xD800)) + "".join(chr(c) for c in range(0xE000, 0x10000))
    assert _assert_same({"s": text, text[:300]: 1}) == "ok"
    for c in _SURROGATES:
        assert _assert_same({"s": "a" + c}) == "error"
        assert _assert_same({"k" + c: 1}) == "error"
        assert _assert_same({"s": ["a" + c]}) == "error"


def test_deep_nesting_beyond_orjson_still_encodes() -> None:
    deep: Any = 1
    for _ in range(300):  # orjson stops at 255 levels; the json module goes on
        deep = [deep]
    assert _assert_same({"d": deep}) == "ok"
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    assert _assert_same(cyclic) == "error"


def test_mappings_and_non_objects() -> None:
    assert _assert_same(collections.OrderedDict(b=1, a=2)) == "ok"
    assert _assert_same(_Dict(a=1)) == "ok"
    for payload in ([1], "x", 1, None, (("a", 1),)):
        assert _assert_same(payload) == "error"


_json_scalars = (
    st.text(alphabet=st.characters(codec="utf-8"))
    | st.integers(min_value=-(2**54), max_value=2**54)
    | st.booleans()
    | st.none()
    | st.floats()
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8")), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), _json_values, max_size=6))
def test_hypothesis_payloads_encode_as_the_reference(payload: dict[str, Any]) -> None:
    _assert_same(payload)
