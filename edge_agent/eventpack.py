"""Event packs on the device: the key packs are encrypted to, installing a pack offline,
and exporting the journal for a device that does not come back online
(docs/sync.md "Event packs").

``edge-agent event-pack load FILE`` (:func:`install_pack`) decrypts and verifies a pack
(:func:`portier_common.eventpack.open_pack`: for this device, intact, signed by the
central this device pinned at enrollment, not expired, newer than the last one installed),
then installs its cache in ONE store transaction together with the ``event_pack.loaded``
journal event: the cache is replaced (a ``reset`` delta, exactly what a full sync would
leave), its sync time is the central's time when the pack was made, and the door's
settings get the pack's offline bound (the kiosk decides until the event is over). A
refused pack is journaled too (``event_pack.refused`` with its reason).

The store has one writer: the agent must be stopped while a pack is loaded (the CLI says
so). When the device is back on the network, its first sync starts from scratch (the
note of what the cache was synced under is removed), so the central's full cache replaces
the event's; its journal goes up through the ordinary exactly-once upload.

``edge-agent journal export`` (:func:`export_journal`) writes the events the central has
not acknowledged, as the upload sends them, with an HMAC keyed by the device's credential
(:func:`portier_common.eventpack.export_mac`): ``portier-central event-pack merge``
checks it, then stores the events with the checks of an upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.enroll import credential_path, load_credential
from edge_agent.fsutil import atomic_write
from edge_agent.store import Store, StoreSettings, SyncStatus
from edge_agent.store.db import Database
from edge_agent.sync.downlink import DeltaError, DoorSettingsFile, convert_page
from edge_agent.timefloor import _load_floor, record_floor
from portier_common.eventpack import (
    EXPORT_FORMAT,
    PackRefused,
    export_mac,
    generate_key,
    open_pack,
    private_key_from_bytes,
    public_key_bytes,
)
from portier_common.signing import b64url

log = logging.getLogger(__name__)

__all__ = [
    "KEY_FORMAT",
    "STATE_KEY",
    "PackRefused",
    "export_journal",
    "install_pack",
    "installed",
    "load_or_create_key",
    "pack_key_path",
]

KEY_FORMAT = "portier-event-pack-key/1"
#: The installed pack's summary (``Store.agent_state``), shown in ``status``.
STATE_KEY = "agent.event_pack"
#: The meta rows of the downlink (edge_agent.store.cache): the pack sets them as a full
#: sync would.
_META_CURSOR = "downlink.cursor"
_META_SYNCED = "downlink.last_sync_ms"


def pack_key_path(config: AgentConfig) -> Path:
    """Where the device's event-pack private key lives: next to its credential."""
    return credential_path(config).with_name("event-pack-key.json")


def load_or_create_key(config: AgentConfig) -> str:
    """Return this device's event-pack public key (base64url) for enrollment, making and
    storing (0600, atomically) the key pair first if there is none."""
    path = pack_key_path(config)
    try:
        key = _load_key(path)
    except FileNotFoundError:
        key = generate_key()
        raw = key.private_bytes_raw()
        text = json.dumps({"format": KEY_FORMAT, "private_key": b64url(raw)}) + "\n"
        atomic_write(path, text.encode("utf-8"), 0o600)
        log.info("event-pack key made (%s)", path)
    return b64url(public_key_bytes(key))


def _load_key(path: Path) -> Any:
    """The private key in *path*. Raises FileNotFoundError, or ValueError if unreadable."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise ValueError(f"{path}: not an event-pack key")
    text = str(data.get("private_key", ""))
    return private_key_from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _parse_state(raw: object) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {}


def installed(store: Store) -> dict[str, Any]:
    """The summary of the last pack installed in *store* (empty: none)."""
    return _parse_state(store.agent_state(STATE_KEY))


def _settings_file(config: AgentConfig) -> DoorSettingsFile:
    return DoorSettingsFile(config.paths.state_dir / "central-door-settings.json")


def install_pack(config: AgentConfig, data: bytes, *, now_ms: int | None = None) -> dict[str, Any]:
    """Verify the pack *data* and install it into this device's store (the agent stopped).

    Returns the installed pack's summary (what ``status`` shows as ``event_pack``).

    Raises:
        PackRefused: the pack is not for this device or not to be trusted (``code``), or
            the device cannot open packs (``not_enrolled``, ``no_key``).
        StoreLocked: the agent is running.
    """
    credential = load_credential(credential_path(config))
    if credential is None or credential.delta_key is None:
        raise PackRefused("not_enrolled", "this device is not enrolled (no pinned central key)")
    try:
        key = _load_key(pack_key_path(config))
    except FileNotFoundError:
        raise PackRefused(
            "no_key", "this device has no event-pack key: enroll it again (edge-agent enroll)"
        ) from None
    except ValueError as exc:
        raise PackRefused("no_key", str(exc)) from None
    digest = hashlib.sha256(data).hexdigest()
    with Store.open(StoreSettings(path=config.paths.database)) as store:
        last_serial = installed(store).get("serial")
        floor, _ = _load_floor(store)
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        # A clock set back does not make an expired pack young again.
        trusted_now = max(now, int((floor or 0) * 1000))
        try:
            body = open_pack(
                data,
                device_id=credential.device_id,
                private_key=key,
                delta_kid=credential.delta_key.kid,
                delta_public_key=credential.delta_key.public_key,
                now_ms=trusted_now,
                last_serial=last_serial,
            )
            if body.get("door") != credential.door:
                raise PackRefused("malformed", "the pack is for another door of this device")
            try:
                page = convert_page(body["deltas"], credential.door)
            except (DeltaError, KeyError) as exc:
                raise PackRefused("malformed", f"pack cache: {exc}") from None
        except PackRefused as exc:
            store.journal.append(
                "event_pack.refused",
                {"reason": exc.code, "detail": str(exc)[:300], "sha256": digest},
            )
            log.warning("event pack refused (%s): %s", exc.code, exc)
            raise
        event = body["event"]
        summary = {
            "pack_id": body["pack_id"],
            "serial": body["serial"],
            "name": event["name"],
            "starts": event["starts"],
            "ends": event["ends"],
            "guests": len(event["guests"]),
            "issued_ms": body["issued_ms"],
            "not_after_ms": body["not_after_ms"],
            "kiosk": body.get("kiosk", {}),
            "installed_ms": now,
        }
        for uid, counter in page.badge_counters:
            store.replay.advance_counter(uid, counter)
        if page.door_settings:
            latest = page.door_settings[-1]
            # Marked: the first full sync back online drops these if the central sends none.
            text = json.dumps(
                {
                    "version": int(latest.get("version", 0)),
                    "settings": dict(latest["settings"]),
                    "event_pack": body["pack_id"],
                },
                sort_keys=True,
            )
            atomic_write(_settings_file(config).path, text.encode("utf-8"), 0o600)

        def claim(conn: Any) -> bool:
            # Checked again inside the transaction: two loads at once install one pack.
            current = _parse_state(Database.meta_get(conn, STATE_KEY))
            if current.get("serial", -1) >= body["serial"]:
                return False
            store.cache._apply(conn, page.delta)
            Database.meta_set(conn, _META_CURSOR, page.delta.cursor)
            Database.meta_set(conn, _META_SYNCED, int(body["issued_ms"]))
            Database.meta_set(conn, STATE_KEY, json.dumps(summary, sort_keys=True))
            return True

        loaded = {
            k: summary[k]
            for k in ("pack_id", "serial", "name", "starts", "ends", "guests", "not_after_ms")
        }
        _, claimed = store.journal.append_claimed(
            claim,
            [("event_pack.loaded", {**loaded, "sha256": digest})],
            [("event_pack.refused", {"reason": "replayed", "sha256": digest})],
        )
        if not claimed:
            raise PackRefused("replayed", "a pack as new or newer was installed meanwhile")
        # The central's time when it made the pack is a time this device may trust.
        if floor is None or body["issued_ms"] / 1000 > floor:
            record_floor(store, body["issued_ms"] / 1000, "central")
    # Back online, the first sync starts from scratch (edge_agent.sync.downlink: the
    # cache was not synced under the pinned key's note), replacing the event's cache.
    (config.paths.state_dir / "central-sync-trust.json").unlink(missing_ok=True)
    log.info("event pack %s installed: %s", body["pack_id"], event["name"])
    return summary


def export_journal(config: AgentConfig, *, from_seq: int | None = None) -> dict[str, Any]:
    """The journal from *from_seq* (default: the first event the central has not
    acknowledged) to its head, as ``POST /v1/events`` sends events, with the device's MAC.

    Opens the store read-only: the agent may be running.

    Raises:
        PackRefused: ``not_enrolled`` (no credential to sign the export with).
    """
    credential = load_credential(credential_path(config))
    if credential is None:
        raise PackRefused("not_enrolled", "this device is not enrolled: nothing to merge into")
    events: list[dict[str, Any]] = []
    with Store.open(StoreSettings(path=config.paths.database), read_only=True) as store:
        counts = store.journal.counts()
        seq = from_seq if from_seq is not None else counts.trimmed_through + 1
        started = from_seq is not None
        while True:
            page = store.journal.events(from_seq=seq, limit=1000)
            if not page:
                break
            for event in page:
                # From the first event not acknowledged (acknowledged ones before it are
                # at the central already; after it, everything goes, in order).
                if not started and event.status is SyncStatus.ACKED:
                    continue
                started = True
                events.append(event.to_wire())
            seq = page[-1].seq + 1
    body = {
        "format": EXPORT_FORMAT,
        "device_id": credential.device_id,
        "site": credential.site,
        "door": credential.door,
        "exported_ms": time.time_ns() // 1_000_000,
        "events": events,
    }
    key = hashlib.sha256(credential.device_token.encode("utf-8")).digest()
    return {**body, "mac": export_mac(key, body)}
