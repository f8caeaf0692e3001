"""What every domain part of :class:`~central.store.CentralStore` shares.

Each domain module (devices, events, claims, credentials, keys, deltas, audit) holds a
mixin of :class:`StoreBase`; ``CentralStore`` is all of them over one database. A mixin
reaches the database only through ``self._tx()`` or ``self._read()`` (one transaction, see
:mod:`central.store.db`), and another domain only through that domain's module-level
functions that take the transaction's connection (``record_change``, ``head_seq``,
``active_key``, ``device_summary``...): mixins do not call each other's methods, so each
module reads on its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from portier_common.ntag424 import SunVerifier
from portier_common.tokens import SigningKey

from ..settings import CentralSettings
from .db import Connection, Database

__all__ = ["StoreBase", "dumps", "sha256", "wall_ms"]


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreBase:
    """The state the domain mixins share; set by ``CentralStore.__init__``."""

    #: Where the database lives, the site and the limits.
    settings: CentralSettings
    _clock: Callable[[], int]
    _db: Database
    #: The central's delta signing key (:mod:`central.store.keys`).
    _delta_key: SigningKey
    #: Verifies SUN messages of badge.counter claims (None: no keys, plausibility rule).
    _sun: SunVerifier | None

    def now_ms(self) -> int:
        """Return the central's clock, Unix milliseconds."""
        return self._clock()

    def _tx(self, *, rules_lock: bool = True) -> AbstractContextManager[Connection]:
        """One read-write transaction (``rules_lock=False``: device traffic that locks its
        own rows; :mod:`central.store.db`)."""
        return self._db.transaction(rules_lock=rules_lock)

    def _read(self) -> AbstractContextManager[Connection]:
        """One read-only transaction, on one snapshot, that takes no lock."""
        return self._db.read()
