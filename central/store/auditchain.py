"""The audit log's hash chain: how one row of ``operator_journal`` is hashed and linked.

Every row carries ``prev_hash`` (the hash of the row before it; :data:`AUDIT_GENESIS` for
the first) and ``hash``: SHA-256, as lower-case hex, of the canonical JSON
(:func:`portier_common.encoding.canonical_json`, the device journal's encoding) of::

    {"seq", "at_ms", "operator", "action", "detail", "remote", "status", "prev_hash"}

``detail`` is the stored JSON text itself (a string), so the hash covers exactly the
bytes the database holds. ``seq`` runs 1, 2, 3... with no gap: a row taken out shows as a
missing number *and* a broken link. One chain per central; the store's write lock
(SQLite ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock taken first by every
transaction) keeps it linear with several central processes on one database.

This module has no store state: :mod:`central.store.operators` appends and verifies with
it, :mod:`central.store.schema` chains the rows written before the chain existed, and an
auditor can re-check an export with :func:`row_hash` alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from portier_common.encoding import canonical_json

from .db import Connection

__all__ = [
    "ANCHOR_CONTEXT",
    "ANCHOR_FIELDS",
    "AUDIT_GENESIS",
    "HASHED_FIELDS",
    "anchor_message",
    "chain_existing_rows",
    "row_hash",
]

#: The prev_hash of the first row.
AUDIT_GENESIS = "0" * 64
#: The fields a row's hash covers.
HASHED_FIELDS = ("seq", "at_ms", "operator", "action", "detail", "remote", "status", "prev_hash")


#: What a signed head (an anchor) signs: this prefix, then the canonical JSON of
#: :data:`ANCHOR_FIELDS` (the prefix keeps it from ever being taken for a deltas page).
ANCHOR_CONTEXT = b"portier-audit-head/1\n"
ANCHOR_FIELDS = ("site", "seq", "hash", "at_ms", "kid")


def anchor_message(head: Mapping[str, Any]) -> bytes:
    """Return the bytes a head's signature covers (``site``, ``seq``, ``hash``, ``at_ms``,
    ``kid``): what ``portier-central audit head`` signs and ``audit verify --anchor``
    checks."""
    fields = {name: head[name] for name in ANCHOR_FIELDS}
    return ANCHOR_CONTEXT + canonical_json(fields).encode("utf-8")


def row_hash(row: Mapping[str, Any]) -> str:
    """Return the hash of one audit row (a mapping with :data:`HASHED_FIELDS`)."""
    fields = {name: row[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def chain_existing_rows(conn: Connection) -> None:
    """Number the rows written before the chain 1..n (in their order) and hash them.

    A migration step (schema 5), run before the append-only triggers exist.
    """
    rows = conn.execute(
        "SELECT seq, at_ms, operator, action, detail, remote, status FROM operator_journal "
        "ORDER BY seq"
    ).fetchall()
    prev = AUDIT_GENESIS
    for number, row in enumerate(rows, start=1):
        fields = {name: row[name] for name in HASHED_FIELDS if name != "prev_hash"}
        fields["seq"] = number
        fields["prev_hash"] = prev
        digest = row_hash(fields)
        conn.execute(
            "UPDATE operator_journal SET seq = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (number, prev, digest, row["seq"]),
        )
        prev = digest
