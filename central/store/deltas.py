"""Credentials and configuration to devices: the ``changes`` log and ``GET /v1/deltas``.

Every change to credentials and configuration is appended to the ``changes`` table
(:func:`record_change`, in the transaction that makes the change); its row number is
the deltas cursor (an opaque decimal string on the wire). A page keeps the last change
of each item, in the order of that change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest, CursorUnknown
from .base import StoreBase, dumps
from .db import Connection, Row, rules_locked

__all__ = ["DeltasMixin", "head_seq", "record_change"]

#: changes.kind -> the DeltasResponse list it goes to.
DELTA_LISTS = {
    "invitation": "invitations",
    "badge": "badges",
    "revocation": "revocations",
    "signing_key": "signing_keys",
    "schedule": "schedules",
    "door_settings": "door_settings",
    "used_invitation": "used_invitations",
    "badge_counter": "badge_counters",
}
REMOVABLE = {
    "invitation": "invitations",
    "badge": "badges",
    "schedule": "schedules",
    "door_settings": "door_settings",
    "signing_key": "signing_keys",
    "revocation": "revocations",
}


def record_change(
    conn: Connection,
    site: str | None,
    kind: str,
    key: str,
    data: Mapping[str, Any] | None,
) -> None:
    """Append a change of *kind* / *key* to the deltas log (*data* None: a removal).

    *site* None: for every site (signing keys).

    Only under the rules lock (a default transaction): a change's number is the deltas
    cursor, so changes must commit in the order they are numbered (docs/central-store.md).

    Raises:
        RuntimeError: *conn* is a PostgreSQL transaction without the rules lock.
    """
    if not rules_locked(conn):
        raise RuntimeError("a change is appended to the deltas log only under the rules lock")
    op = "delete" if data is None else "upsert"
    conn.execute(
        "INSERT INTO changes (site, kind, key, op, data) VALUES (?, ?, ?, ?, ?)",
        (site, kind, key, op, None if data is None else dumps(data)),
    )


def head_seq(conn: Connection) -> int:
    """Return the newest change's number (0: none yet)."""
    head: int = conn.execute("SELECT coalesce(max(seq), 0) AS head FROM changes").fetchone()["head"]
    return head


class DeltasMixin(StoreBase):
    """``GET /v1/deltas`` pages and the head cursor."""

    def deltas(
        self,
        site: str,
        cursor: str | None,
        limit: int | None = None,
        *,
        guard_console: bool = False,
    ) -> dict[str, Any]:
        """Return the ``DeltasResponse`` page for *site* after *cursor*.

        Guards' PIN hashes go only to a device with a guard console
        (*guard_console*): a headless door gets guard badges without ``pin_hash``,
        so a stolen door holds nothing to search a guard's PIN from. Other badges'
        PIN hashes (card + PIN at wall readers) go to every door of the site.

        Raises:
            BadRequest: a malformed cursor or limit.
            CursorUnknown: the cursor is past this central's history (410).
        """
        if limit is None:
            limit = min(500, self.settings.max_deltas_limit)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise BadRequest("limit: must be an integer")
        if not 1 <= limit <= self.settings.max_deltas_limit:
            raise BadRequest(f"limit: must be 1 to {self.settings.max_deltas_limit}")
        reset = not cursor
        if reset:
            after = 0
        elif re.fullmatch(r"[0-9]{1,18}", cursor or ""):
            after = int(cursor)  # type: ignore[arg-type]
        else:
            raise BadRequest(f"cursor: {cursor!r} is not a cursor this central issued")
        page: dict[str, Any] = {name: [] for name in DELTA_LISTS.values()}
        removed: dict[str, list[Any]] = {name: [] for name in REMOVABLE.values()}
        # One snapshot without a lock: the head and the rows agree, and no change it does
        # not see can commit below the head (appends are made under the rules lock).
        with self._read() as conn:
            head = head_seq(conn)
            if after > head:
                raise CursorUnknown(f"cursor {cursor!r} is unknown here: resync without a cursor")
            rows = conn.execute(
                "SELECT seq, kind, key, op, data FROM changes "
                "WHERE seq > ? AND (site IS NULL OR site = ?) ORDER BY seq LIMIT ?",
                (after, site, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        latest: dict[tuple[str, str], Row] = {}
        for row in rows:
            latest.pop((row["kind"], row["key"]), None)  # keep the order of last change
            latest[(row["kind"], row["key"])] = row
        for row in latest.values():
            if row["op"] == "delete" and row["kind"] == "revocation":
                kind, _, item = row["key"].partition(":")
                removed["revocations"].append({"kind": kind, "id": item})
            elif row["op"] == "delete":
                removed[REMOVABLE[row["kind"]]].append(row["key"])
            else:
                item = json.loads(row["data"])
                if row["kind"] == "badge" and not guard_console and item.get("role") == "guard":
                    item.pop("pin_hash", None)  # other badges' hashes: card + PIN readers
                page[DELTA_LISTS[row["kind"]]].append(item)
        return {
            "from_cursor": cursor or "",
            "cursor": str(rows[-1]["seq"] if more else head),
            "more": more,
            "reset": reset,
            "server_time_ms": self.now_ms(),
            **page,
            "removed": removed,
        }

    def head_cursor(self) -> str:
        """Return the newest deltas cursor."""
        with self._read() as conn:
            return str(head_seq(conn))
