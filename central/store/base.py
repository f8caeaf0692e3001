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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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

    #: Per thread: the connection of the transaction :meth:`one_transaction` holds open
    #: (the server runs the store on two threads: uploads have their own); set by
    #: ``CentralStore.__init__``.
    _outer_by_thread: threading.local

    @property
    def _outer(self) -> Connection | None:
        return getattr(self._outer_by_thread, "conn", None)

    def _set_outer(self, conn: Connection | None) -> None:
        self._outer_by_thread.conn = conn

    def _tx(self, *, rules_lock: bool = True) -> AbstractContextManager[Connection]:
        """One read-write transaction (``rules_lock=False``: device traffic that locks its
        own rows; :mod:`central.store.db`); a savepoint inside :meth:`one_transaction`."""
        outer = self._outer
        if outer is not None:
            return _savepoint(outer)
        return self._db.transaction(rules_lock=rules_lock)

    def _read(self) -> AbstractContextManager[Connection]:
        """One read-only transaction, on one snapshot, that takes no lock (inside
        :meth:`one_transaction`, that transaction: it sees its own writes)."""
        outer = self._outer
        if outer is not None:
            return nullcontext(outer)
        return self._db.read()

    @contextmanager
    def one_transaction(self) -> Iterator[Connection]:
        """Run several store calls as ONE transaction: inside the ``with``, each call's own
        transaction is a savepoint of this one, and nothing commits until the block ends
        (an exception rolls all of it back). It holds the rules lock.

        What the server wraps an admin change and its audit row in
        (:meth:`central.server.CentralServer._change`), so neither commits without the
        other. Not re-entrant; for the calling thread only.
        """
        if self._outer is not None:
            raise RuntimeError("one_transaction is not re-entrant")
        with self._db.transaction() as conn:
            self._set_outer(conn)
            try:
                yield conn
            finally:
                self._set_outer(None)


@contextmanager
def _savepoint(conn: Connection) -> Iterator[Connection]:
    """A nested transaction: ``SAVEPOINT`` ... ``RELEASE`` (``ROLLBACK TO`` on an error), the
    same SQL on SQLite and PostgreSQL."""
    conn.execute("SAVEPOINT portier_inner")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK TO SAVEPOINT portier_inner")
        conn.execute("RELEASE SAVEPOINT portier_inner")
        raise
    conn.execute("RELEASE SAVEPOINT portier_inner")
