"""A device's event chain, walked: the central's re-check and the auditor's offline one.

A device chains its journal (docs/journal.md): each event's ``hash`` is
:func:`portier_common.encoding.event_hash` of the hash before it, its seq, id, times, type
and payload text. :func:`walk` re-checks a run of stored events against that rule; the
store uses it (``CentralStore.verify_chain``) and so does :func:`verify_export`, which an
auditor runs on a file the central exported (``portier-central verify-export FILE``), with
nothing but this module and :mod:`portier_common.encoding`.

**Purged events** (retention, :mod:`central.store.retention`): once the visitor's name is
replaced by a pseudonym, the event's hash can no longer be recomputed (its preimage held
the name, and a SHA-256 preimage cannot be edited). The stored ``seq``, ``id``, times,
``type``, ``prev_hash`` and ``hash`` are kept as the device wrote them, so a purged event
is checked by its **links only**: its ``prev_hash`` is the hash before it, and its own
``hash`` is what the next event chains to -- and an event that still has its payload
commits to that hash inside its own recomputed hash. A run of purged events is therefore
pinned at both ends (the intact event before it, or the export's anchor, and the intact
event after it, or the export's end hash that the auditor compares with the next export);
inside the run, what a purged event says is the central's word, recorded by the purge in
the audit chain (``retention.purge``, with each device's purged seq ranges: an export
carries those rows, and the verifier refuses a purged event no row names). Verification
reports how many events were re-hashed and how many were checked by their links only.

**Declared gaps**: a ``journal.gap`` event (the device lost ``from_seq..to_seq``) chains to
the event before ``from_seq``; the walk follows it, as the upload did.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from portier_common.encoding import GENESIS_HASH, event_hash

from .auditchain import row_hash

__all__ = [
    "EXPORT_FORMAT",
    "GENESIS_HEX",
    "declared_gap_start",
    "verify_export",
    "walk",
]

#: The ``prev_hash`` of a chain's first event, as stored (hex).
GENESIS_HEX = GENESIS_HASH.hex()
#: The ``format`` of an exported file (``CentralStore.export_device_events``).
EXPORT_FORMAT = "portier-device-events/1"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def declared_gap_start(row: Mapping[str, Any], expected_seq: int) -> int | None:
    """``from_seq`` of a ``journal.gap`` event that covers ``expected_seq`` (the device
    lost ``from_seq..seq - 1`` and chained the gap to ``from_seq - 1``), else None."""
    payload_text = row.get("payload")
    if row.get("type") != "journal.gap" or not isinstance(payload_text, str):
        return None
    try:
        payload = json.loads(payload_text)
        first, last = payload["from_seq"], payload["to_seq"]
    except (TypeError, ValueError, KeyError):
        return None
    seq = row.get("seq")
    if not isinstance(first, int) or isinstance(first, bool) or not isinstance(seq, int):
        return None
    if last != seq - 1:
        return None
    return first if 1 <= first <= expected_seq <= seq else None


def _content_hash(row: Mapping[str, Any], prev: str) -> str | None:
    """The event's hash recomputed from its fields, or None when a field is unusable."""
    try:
        return event_hash(
            bytes.fromhex(prev),
            row["seq"],
            uuid.UUID(row["id"]).bytes,
            row["wall_ms"],
            row["mono_ns"],
            row["type"],
            row["payload"],
        ).hex()
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None


def walk(
    rows: Iterable[Mapping[str, Any]],
    *,
    first_seq: int,
    prev_hash: str | None,
    hash_before: Callable[[int], str | None],
) -> dict[str, Any]:
    """Re-check a run of events (each a mapping with ``seq``, ``id``, ``wall_ms``,
    ``mono_ns``, ``type``, ``payload`` (the payload's text), ``prev_hash``, ``hash`` and
    ``purged_at_ms``), in the order given.

    Args:
        first_seq: the seq the first row must have.
        prev_hash: the hash the first row must chain to (the anchor).
        hash_before: the stored hash of an earlier seq (a declared gap chains to the event
            before the events it lost, which may be before this run).

    Returns:
        ``{"ok", "problems": [{"seq", "problem", "detail"}], "events", "rehashed",
        "links_only", "end_seq", "end_hash"}``. Problems: ``seq`` (not the seq expected
        here: an event dropped, added or moved), ``link`` (its ``prev_hash`` is not the
        hash before it), ``changed`` (it no longer hashes to its ``hash``), ``no_payload``
        (nothing to hash, not purged), ``bad_hash`` (a purged event's hash is not 64 hex).
    """
    problems: list[dict[str, Any]] = []
    expected, prev = first_seq, prev_hash
    seen: dict[int, str | None] = {}
    count = rehashed = links_only = 0
    end_seq: int | None = None
    end_hash: str | None = None
    for row in rows:
        count += 1
        seq = row.get("seq")
        first = declared_gap_start(row, expected)
        if first is not None and isinstance(seq, int):
            # The device lost first..seq-1; its chain goes on from first - 1.
            expected = seq
            prev = seen[first - 1] if first - 1 in seen else hash_before(first - 1)
        if seq != expected:
            problems.append(
                {"seq": seq, "problem": "seq", "detail": f"expected seq {expected}, found {seq}"}
            )
        if row.get("prev_hash") != prev:
            problems.append(
                {
                    "seq": seq,
                    "problem": "link",
                    "detail": f"prev_hash {row.get('prev_hash')} is not the hash before it "
                    f"({prev})",
                }
            )
        claimed = row.get("hash")
        if row.get("purged_at_ms") is not None:
            links_only += 1
            if not isinstance(claimed, str) or not _HEX64.match(claimed):
                problems.append({"seq": seq, "problem": "bad_hash", "detail": f"hash {claimed!r}"})
        elif row.get("payload") is None:
            problems.append(
                {"seq": seq, "problem": "no_payload", "detail": "no payload to hash (rejected)"}
            )
        else:
            rehashed += 1
            # Hashed with its own prev_hash (the link is checked above): one fault, one problem.
            own_prev = row.get("prev_hash")
            computed = _content_hash(row, own_prev) if isinstance(own_prev, str) else None
            if computed != claimed:
                problems.append(
                    {
                        "seq": seq,
                        "problem": "changed",
                        "detail": f"hashes to {computed}, not to its hash {claimed}",
                    }
                )
        if isinstance(seq, int):
            seen[seq] = claimed if isinstance(claimed, str) else None
            expected = seq + 1
        else:
            expected += 1
        # Chain on from the event's own hash: one altered event is one problem, not all after.
        prev = claimed if isinstance(claimed, str) else None
        end_seq, end_hash = seq if isinstance(seq, int) else end_seq, prev
    return {
        "ok": not problems,
        "problems": problems,
        "events": count,
        "rehashed": rehashed,
        "links_only": links_only,
        "end_seq": end_seq,
        "end_hash": end_hash,
    }


def _check_purges(document: Mapping[str, Any], events: list[Any]) -> list[dict[str, Any]]:
    """Each purged event must be in a seq range of the device that one of the export's
    ``purges`` (audit rows, each hashing to its own ``hash``) names."""
    problems: list[dict[str, Any]] = []
    ranges: list[tuple[int, int]] = []
    records = document.get("purges") or []
    if not isinstance(records, list):
        return [{"seq": None, "problem": "format", "detail": "purges: must be a list"}]
    for record in records:
        try:
            ok = row_hash(record) == record["hash"] and record["action"] == "retention.purge"
            devices = json.loads(record["detail"]).get("devices", {})
            spans = devices.get(document.get("device_id"), [])
            ranges.extend((int(low), int(high)) for low, high in spans)
        except (KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            where = record.get("seq") if isinstance(record, Mapping) else None
            problems.append(
                {
                    "seq": None,
                    "problem": "purge_record",
                    "detail": f"audit row {where}: not a retention.purge row that hashes to "
                    "its hash",
                }
            )
    for event in events:
        seq = event.get("seq")
        if event.get("purged_at_ms") is None or not isinstance(seq, int):
            continue
        if not any(low <= seq <= high for low, high in ranges):
            problems.append(
                {
                    "seq": seq,
                    "problem": "unrecorded_purge",
                    "detail": "marked purged, but no retention.purge row of the audit log names it",
                }
            )
    return problems


def verify_export(document: object) -> dict[str, Any]:
    """Re-check an exported file of one device's events (``CentralStore.export_device_events``,
    ``GET /admin/devices/{id}/export``) offline.

    Checks: the format; the first event chains to the ``anchor`` (the hash of the event
    before the period); each event's seq follows the one before and its ``prev_hash`` is
    the hash before it; each event that still has its payload hashes to its ``hash``; each
    purged one is in a seq range that one of the ``purges`` (audit rows, each hashing to its
    own ``hash``) names for the device; the ``end`` (seq and hash of the last event) is the
    last event's. What it cannot know from the file alone: that the anchor and the end are
    the device's -- compare them with the previous and the next export, or with the device's
    journal head -- and that the purge rows are in the audit chain -- compare their hashes
    with an audit export (``portier-central audit export``).

    Returns:
        :func:`walk`'s result plus ``device_id``, ``anchor``, ``end``; ``ok`` False with a
        ``format`` problem when the document is not an export.
    """

    def refuse(detail: str) -> dict[str, Any]:
        return {
            "ok": False,
            "problems": [{"seq": None, "problem": "format", "detail": detail}],
            "events": 0,
            "rehashed": 0,
            "links_only": 0,
            "end_seq": None,
            "end_hash": None,
        }

    if not isinstance(document, Mapping) or document.get("format") != EXPORT_FORMAT:
        return refuse(f"not a {EXPORT_FORMAT} document")
    events, anchor, end = document.get("events"), document.get("anchor"), document.get("end")
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        return refuse("events: must be a list of objects")
    if not isinstance(anchor, Mapping) or not isinstance(anchor.get("seq"), int):
        return refuse("anchor: must be {seq, hash}")
    gap_anchors = document.get("gap_anchors") or {}
    if not isinstance(gap_anchors, Mapping):
        return refuse("gap_anchors: must be an object of seq -> hash")

    def hash_before(seq: int) -> str | None:
        value = anchor.get("hash") if seq == anchor["seq"] else gap_anchors.get(str(seq))
        return value if isinstance(value, str) else None

    rows = [{**event, "payload": event.get("payload_json")} for event in events]
    result = walk(
        rows, first_seq=anchor["seq"] + 1, prev_hash=anchor.get("hash"), hash_before=hash_before
    )
    result["problems"].extend(_check_purges(document, events))
    if not isinstance(end, Mapping):
        result["problems"].append({"seq": None, "problem": "end", "detail": "no end"})
    elif events and (end.get("seq") != result["end_seq"] or end.get("hash") != result["end_hash"]):
        result["problems"].append(
            {
                "seq": end.get("seq"),
                "problem": "end",
                "detail": f"the end says seq {end.get('seq')} {end.get('hash')}, the last event "
                f"is seq {result['end_seq']} {result['end_hash']}",
            }
        )
    elif not events and end.get("hash") != anchor.get("hash"):
        result["problems"].append(
            {"seq": None, "problem": "end", "detail": "no events, and the end is not the anchor"}
        )
    result["ok"] = not result["problems"]
    result["device_id"] = document.get("device_id")
    result["anchor"] = dict(anchor)
    result["end"] = dict(end) if isinstance(end, Mapping) else None
    return result
