"""Canonical encodings shared by the agent and the central.

Two things must be byte-for-byte reproducible by anyone who verifies a
journal (the central, an auditor, ``edge-agent journal verify``):

* the **payload**: canonical JSON text, see :func:`canonical_json`;
* the **event hash**: SHA-256 over :func:`event_preimage`.

Both are specified in ``docs/journal.md``; change them only together with a
new version tag.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from portier_common.errors import InvalidEvent

#: Largest integer a payload may hold: the largest one every JSON parser
#: (JavaScript included) reads back exactly.
MAX_SAFE_INT = 2**53 - 1

#: Domain-separation tag that starts every hash preimage (version 1).
HASH_TAG = b"PORTIER-JOURNAL-V1\x00"

#: ``prev_hash`` of the first event of a device.
GENESIS_HASH = bytes(32)

_HEADER = struct.Struct(">32sQ16sqqI")
#: HASH_TAG and the header in one pack (the same bytes as HASH_TAG + _HEADER.pack).
_TAGGED_HEADER = struct.Struct(f">{len(HASH_TAG)}s32sQ16sqqI")
_U32 = struct.Struct(">I")
_pack_header = _HEADER.pack
_pack_tagged_header = _TAGGED_HEADER.pack
_pack_u32 = _U32.pack
_sha256 = hashlib.sha256


def _builtin_sha256() -> Callable[[bytes], Any]:
    for name in ("_sha2", "_sha256"):  # CPython 3.12+, 3.11
        try:
            return getattr(importlib.import_module(name), "sha256")  # noqa: B009
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256  # pragma: no cover - no built-in SHA-256 module


#: The same SHA-256, from CPython's own small C module rather than OpenSSL: for one
#: hash on a thread that has just woken from an fsync (a lone durable append).
#: Warm, OpenSSL is faster (0.6 against 1.0 us for an event's preimage); right after
#: a commit, on cold caches, its context set-up costs about 9 us against 5.
_sha256_one = _builtin_sha256()

_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*\Z")
MAX_TYPE_LENGTH = 64

_encoder = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


# Undocumented (typeshed does not list it), None without the _json accelerator.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)

if _c_make_encoder is not None:
    # The same C encoder JSONEncoder.encode builds on every call, built once
    # (no cycle check: _check_value has walked the value already). Three
    # times faster for a small payload; the output is identical.
    _c_encode = _c_make_encoder(
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )

    def _encode(value: object) -> str:
        return "".join(_c_encode(value, 0))

else:  # pragma: no cover - PyPy and builds without the _json accelerator
    _c_encode = None

    def _encode(value: object) -> str:
        return _encoder.encode(value)


def _check_value(value: object, where: str) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:  # type: ignore[operator]
            return
        raise InvalidEvent(f"{where}: integer {value} is outside +/-(2**53 - 1)")
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise InvalidEvent(f"{where}: key {key!r} is not a string")
            # Inline fast path for the usual flat payload: no path string
            # is built unless the value needs a closer look.
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            if item_kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                continue
            _check_value(item, f"{where}.{key}")
        return
    if kind is list or kind is tuple:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            _check_value(item, f"{where}[{index}]")
        return
    if kind is float:
        raise InvalidEvent(
            f"{where}: floats are not allowed (their text form is not canonical "
            "across languages); use an integer in a smaller unit"
        )
    raise InvalidEvent(f"{where}: {kind.__name__} is not a JSON value")


#: orjson's options for the canonical text: keys sorted (orjson sorts them by their UTF-8
#: bytes, which is code-point order: Python's), integers within +/-(2**53 - 1), and
#: subclasses of str, int, dict and list, dataclasses and dates handed to ``default``
#: (which refuses them) instead of encoded. Its escapes are the json module's with
#: ``ensure_ascii=False``: ``\"``, ``\\``, ``\b \t \n \f \r`` and ``\u00xx`` for the other
#: control characters, everything else (DEL, U+2028, astral characters) as itself.
#: tests/portier_common/test_encoding_orjson.py checks the two texts are identical.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_dumps = orjson.dumps
#: The value types of a flat payload, each encoded by orjson exactly as the json module
#: does. Floats, enums, UUIDs and orjson fragments, which orjson encodes but a payload
#: must not hold, are not among them.
_all_flat = frozenset((str, int, bool, type(None))).issuperset


def canonical_json_utf8(payload: Mapping[str, object], max_bytes: int | None = None) -> bytes:
    """Return :func:`canonical_json` encoded in UTF-8 (what the chain hash covers).

    The same validation and the same bytes as ``canonical_json(...).encode()``; for a
    valid payload orjson writes them (four times quicker than the json module's C
    encoder with its key sort), anything orjson refuses goes the json module's way, so
    the errors raised are the same too.
    """
    if type(payload) is dict and _all_flat(map(type, payload.values())):
        # A flat payload (the usual case): the type test above rules out what orjson
        # would encode but a payload may not hold; orjson itself refuses non-string
        # keys, integers beyond 53 bits and lone surrogates.
        try:
            data = _dumps(payload, None, _ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            return _canonical_json_slow(payload, max_bytes).encode("utf-8")
    else:
        if type(payload) is not dict:
            if not isinstance(payload, Mapping):
                raise InvalidEvent(f"payload: must be a JSON object, got {type(payload).__name__}")
            payload = dict(payload)
        try:
            _check_value(payload, "payload")
        except RecursionError:
            raise InvalidEvent("payload: nested too deeply (or contains itself)") from None
        try:
            # _check_value let through only exact str, int, bool, None, dict (string
            # keys), list and tuple (encoded as an array by both).
            data = _dumps(payload, None, _ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            # A lone surrogate, or nested deeper than orjson goes (255): the json
            # module raises the usual error, or encodes it.
            return _canonical_json_slow(payload, max_bytes).encode("utf-8")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidEvent(f"payload: {len(data)} bytes of JSON exceeds the {max_bytes}-byte limit")
    return data


def canonical_json(payload: Mapping[str, object], max_bytes: int | None = None) -> str:
    """Return the canonical JSON text of an event payload.

    The payload is a JSON object whose values are strings, integers within
    +/-(2**53 - 1), booleans, null, lists and objects with string keys. The
    text has keys sorted by code point, no insignificant whitespace, non-ASCII
    characters as themselves (UTF-8), and Python's escapes for ``"``, ``\\``
    and control characters -- for these value types the same text as RFC 8785
    (JCS) except that keys outside the Basic Multilingual Plane sort by code
    point rather than by UTF-16 unit.

    Raises :class:`InvalidEvent` for any other value type (floats included),
    a non-string key, a lone surrogate, or a text over ``max_bytes`` UTF-8
    bytes.
    """
    return canonical_json_utf8(payload, max_bytes).decode("utf-8")


def _canonical_json_slow(payload: Mapping[str, object], max_bytes: int | None = None) -> str:
    """:func:`canonical_json` with the json module's C encoder (the reference: the text
    it defines, the errors it raises; also the way of whatever orjson refuses)."""
    if type(payload) is not dict:
        if not isinstance(payload, Mapping):
            raise InvalidEvent(f"payload: must be a JSON object, got {type(payload).__name__}")
        payload = dict(payload)
    try:
        _check_value(payload, "payload")
    except RecursionError:
        raise InvalidEvent("payload: nested too deeply (or contains itself)") from None
    text = _encode(payload) if _c_encode is None else "".join(_c_encode(payload, 0))
    if text.isascii():  # the usual case: no need to encode to count bytes
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidEvent(f"payload: not valid Unicode text ({exc.reason})") from None
    if max_bytes is not None and size > max_bytes:
        raise InvalidEvent(f"payload: {size} bytes of JSON exceeds the {max_bytes}-byte limit")
    return text


#: Event types already validated (bounded), so a hot path skips the regex.
_KNOWN_TYPES: set[str] = set()


def check_type(event_type: str) -> str:
    """Return ``event_type`` if it is a valid event type, else raise.

    A type is dotted lower-case words (``access.decision``,
    ``door.forced_open``), at most 64 characters. Raises :class:`InvalidEvent`.
    """
    if type(event_type) is str and event_type in _KNOWN_TYPES:
        return event_type
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_TYPE_LENGTH
        or not _TYPE_RE.match(event_type)
    ):
        raise InvalidEvent(
            f"type: {event_type!r} must be dotted lower-case words "
            f"([a-z][a-z0-9_]*, at most {MAX_TYPE_LENGTH} characters)"
        )
    if len(_KNOWN_TYPES) < 1024:
        _KNOWN_TYPES.add(event_type)
    return event_type


def event_preimage(
    prev_hash: bytes,
    seq: int,
    event_id: bytes,
    wall_ms: int,
    mono_ns: int,
    event_type: str,
    payload_json: str,
) -> bytes:
    """Return the bytes hashed for one event (version 1).

    ``HASH_TAG`` (19 bytes) || prev_hash (32) || seq (u64) || id (16, the
    UUID's bytes) || wall_ms (i64) || mono_ns (i64) || len(type) (u32) ||
    type (UTF-8) || len(payload) (u32) || payload (UTF-8). Integers are
    big-endian. Raises :class:`struct.error` for out-of-range fields.
    """
    type_bytes = event_type.encode("utf-8")
    payload_bytes = payload_json.encode("utf-8")
    return b"".join(
        (
            HASH_TAG,
            _HEADER.pack(prev_hash, seq, event_id, wall_ms, mono_ns, len(type_bytes)),
            type_bytes,
            _U32.pack(len(payload_bytes)),
            payload_bytes,
        )
    )


def event_hash(
    prev_hash: bytes,
    seq: int,
    event_id: bytes,
    wall_ms: int,
    mono_ns: int,
    event_type: str,
    payload_json: str,
) -> bytes:
    """Return the 32-byte SHA-256 chain hash of one event: the digest of
    :func:`event_preimage` (written out here because it runs per event)."""
    type_bytes = event_type.encode("utf-8")
    payload_bytes = payload_json.encode("utf-8")
    return _sha256(
        b"".join(
            (
                HASH_TAG,
                _pack_header(prev_hash, seq, event_id, wall_ms, mono_ns, len(type_bytes)),
                type_bytes,
                _pack_u32(len(payload_bytes)),
                payload_bytes,
            )
        )
    ).digest()


class Clock(Protocol):
    """Where the store reads time (injectable so tests advance it)."""

    def wall_ms(self) -> int:
        """Return UTC wall-clock time in milliseconds since the Unix epoch."""
        ...

    def mono_ns(self) -> int:
        """Return a monotonic time in nanoseconds (since boot on Linux)."""
        ...


class SystemClock:
    """The real clocks: :func:`time.time_ns` and :func:`time.monotonic_ns`."""

    def wall_ms(self) -> int:
        """Return UTC wall-clock time in milliseconds since the Unix epoch."""
        return time.time_ns() // 1_000_000

    def mono_ns(self) -> int:
        """Return :func:`time.monotonic_ns`."""
        return time.monotonic_ns()


_RAND_BITS = 74
_RAND_LIMIT = 1 << _RAND_BITS
_RAND_B_MASK = (1 << 62) - 1
#: The id's two big-endian halves: ms << 16 | version 7 | rand_a, variant | rand_b.
_ID = struct.Struct(">QQ")
_VERSION_7 = 0x7 << 12
_VARIANT = 0b10 << 62
#: Random bytes drawn from os.urandom at a time: 64 ids' worth (one syscall, not 64).
_POOL_BYTES = 640

#: Bumped in a forked child, so that it never hands out the random bytes its
#: parent drew (two processes would make ids that share their random bits).
_fork_epoch = [0]


def _after_fork() -> None:
    _fork_epoch[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class UUIDv7Generator:
    """Time-ordered UUIDs (RFC 9562 version 7), strictly increasing.

    48 bits of Unix milliseconds, then 74 bits that start random for each new
    millisecond and are incremented by one for further ids in the same
    millisecond (RFC 9562 section 6.2, method 2). When the clock goes back the
    last timestamp is kept and the counter goes on, so ids never go back --
    the journal relies on id order matching sequence order. Thread-safe.

    The random bits come from :func:`os.urandom`, drawn 64 ids' worth at a
    time and cut into 64 numbers at once (an id per durable append: one system
    call and the slicing fewer on that path), and drawn afresh in a forked
    child.
    """

    def __init__(self, last: bytes | None = None) -> None:
        self._lock = threading.Lock()
        self._ts = -1
        self._rand = 0
        #: Random 73-bit numbers not handed out yet (taken from the end).
        self._fresh: list[int] = []
        self._epoch = _fork_epoch[0]
        if last is not None:
            self.advance_past(last)

    def advance_past(self, last: bytes) -> None:
        """Make every later id greater than the 16-byte UUID ``last``."""
        value = int.from_bytes(last, "big")
        ts = value >> 80
        rand = (((value >> 64) & 0xFFF) << 62) | (value & _RAND_B_MASK)
        with self._lock:
            self._ts, self._rand = max((self._ts, self._rand), (ts, rand))

    def _fresh74(self) -> int:
        """73 random bits; lock held.

        The top bit of the 74 is left clear so a run of increments within one
        millisecond practically never overflows the field.
        """
        fresh = self._fresh
        if not fresh or self._epoch != _fork_epoch[0]:
            pool = os.urandom(_POOL_BYTES)
            fresh[:] = [
                int.from_bytes(pool[pos : pos + 10], "big") >> 7
                for pos in range(0, _POOL_BYTES, 10)
            ]
            self._epoch = _fork_epoch[0]
        return fresh.pop()

    def next_bytes(self, unix_ms: int) -> bytes:
        """Return the next id as 16 bytes, stamped ``unix_ms`` (or later)."""
        with self._lock:
            return self.next_bytes_serialised(unix_ms)

    def next_bytes_serialised(self, unix_ms: int) -> bytes:
        """:meth:`next_bytes` without the lock, for a caller that serialises every use
        of this generator itself (the journal: all under its write lock)."""
        if unix_ms > self._ts:
            self._ts = ts = unix_ms
            fresh = self._fresh  # _fresh74 written out: one call per append fewer
            if fresh and self._epoch == _fork_epoch[0]:
                self._rand = rand = fresh.pop()
            else:
                self._rand = rand = self._fresh74()
        else:
            self._rand = rand = self._rand + 1
            if rand >= _RAND_LIMIT:
                self._ts += 1
                self._rand = rand = self._fresh74()
            ts = self._ts
        return _ID.pack((ts << 16) | _VERSION_7 | (rand >> 62), _VARIANT | (rand & _RAND_B_MASK))

    def next(self, unix_ms: int | None = None) -> str:
        """Return the next id in its canonical text form."""
        if unix_ms is None:
            unix_ms = time.time_ns() // 1_000_000
        return id_to_text(self.next_bytes(unix_ms))


def id_to_bytes(event_id: str | bytes | uuid.UUID) -> bytes:
    """Return the 16 bytes of an id given as text, bytes or :class:`uuid.UUID`.

    Raises :class:`ValueError` for anything that is not a UUID.
    """
    if isinstance(event_id, uuid.UUID):
        return event_id.bytes
    if isinstance(event_id, bytes):
        if len(event_id) != 16:
            raise ValueError(f"id: {event_id!r} is not 16 bytes")
        return event_id
    return uuid.UUID(event_id).bytes


def id_to_text(raw: bytes) -> str:
    """Return the canonical text form of a 16-byte id (as ``str(UUID)``)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
