"""Downlink: credential and configuration deltas from the central, applied atomically.

Each ``GET /v1/deltas`` page is converted into one :class:`edge_agent.store.Delta`
and applied with its cursor in one transaction
(:meth:`CredentialCache.apply_delta` with ``expected_cursor``): a crash leaves
the cache at the old cursor or the new one, never in between. A page is checked
against the cursor it was asked for (``from_cursor``); a page that does not fit,
or that cannot be converted, is discarded whole and the ``bad_delta`` alarm
raised. 410 (cursor unknown) restarts from scratch: the next page has
``reset: true`` and empties the cache tables in the same transaction.

What the central sends and where it goes in the cache:

=====================  ==========================================================
``badges``             ``Badge`` (zones, enabled, role, PIN hash in ``data``)
``invitations``        ``Invitation`` (``expires`` -> ``not_after``)
``revocations``        ``Revocation``
``signing_keys``       ``CachedSigningKey`` (raw Ed25519 bytes, checked by ``TrustedKey``)
``schedules``          ``CachedSchedule`` with ``tz``/``windows`` as the policy reads them
``used_invitations``   the replay ledger (single use shared between doors)
``badge_counters``     the replay ledger's NTAG 424 counters (before the page commits;
                       raising a counter is idempotent)
``door_settings``      this door's settings, kept in ``state_dir`` (see
                       :class:`DoorSettingsFile`) and applied by the agent
=====================  ==========================================================

Every page is authenticated before anything of it is used: the central signs the
exact bytes of the body with its delta signing key, bound to this device's id
(:mod:`portier_common.signing`), and the device checks them against the key it
pinned at enrollment (:class:`DeltaTrust`). A page that is unsigned, signed by
another key or altered raises ``bad_delta`` and is discarded whole: a man in the
middle or a proxy cannot inject a signing key, a badge or a door mode.

Signing keys take effect when the page commits: the agent's keyring is rebuilt
whenever the set of cached keys changes, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.fsutil import atomic_write
from edge_agent.store import (
    Badge,
    CachedSchedule,
    CachedSigningKey,
    CursorMismatch,
    Delta,
    Invitation,
    Revocation,
    Store,
)
from edge_agent.sync.alarms import Alarms
from edge_agent.sync.client import CentralClient, CentralRefused, SignedPage
from portier_common.signing import DeltaKey, DeltaSignatureError
from portier_common.tokens import TrustedKey

log = logging.getLogger(__name__)

__all__ = [
    "DeltaError",
    "DeltaPage",
    "DeltaTrust",
    "DoorSettingsFile",
    "Downlink",
    "DownlinkResult",
    "convert_page",
]

#: Pages applied in one :meth:`Downlink.sync` at most (then the next round goes on).
MAX_PAGES_PER_SYNC = 1000


class DeltaError(ValueError):
    """A deltas page that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class DeltaTrust:
    """Whose signature a device accepts on deltas pages: the central's delta signing
    key pinned at enrollment (None for a credential from before signed deltas: every
    page is then refused until the device enrolls again)."""

    device_id: str
    key: DeltaKey | None
    #: Names the enrollment (e.g. a hash of the device credential): a new enrollment
    #: (another door, a guard console added or removed) resyncs the cache from scratch.
    enrollment: str = ""

    def parse(self, signed: SignedPage) -> Mapping[str, Any]:
        """Verify *signed* and return its parsed body.

        Raises:
            DeltaError: no pinned key, a bad signature, or a body that is not a JSON object.
        """
        if self.key is None:
            raise DeltaError(
                "no pinned delta signing key (enrolled before signed deltas): enroll again"
            )
        try:
            self.key.verify(self.device_id, signed.body, signed.kid, signed.signature)
        except DeltaSignatureError as exc:
            raise DeltaError(f"signature: {exc}") from None
        try:
            page = json.loads(signed.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DeltaError(f"page: not JSON ({exc})") from None
        return _obj(page, "page")


@dataclass(frozen=True)
class DeltaPage:
    """One converted page: the store delta, plus what does not live in the cache tables."""

    delta: Delta
    from_cursor: str
    more: bool
    server_time_ms: int | None
    #: (uid hex, counter) to raise in the replay ledger.
    badge_counters: tuple[tuple[str, int], ...] = ()
    #: DoorSettings objects of this agent's door (latest first wins by version).
    door_settings: tuple[Mapping[str, Any], ...] = ()
    #: True when this door's settings were removed.
    door_settings_removed: bool = False


def _list(page: Mapping[str, Any], name: str) -> list[Any]:
    value = page.get(name, [])
    if not isinstance(value, list):
        raise DeltaError(f"{name}: expected a list")
    return value


def _raw(item: Mapping[str, Any], name: str) -> Any:
    """``item[name]`` as the wire gave it (None when absent), for a constructor that checks it."""
    return item.get(name)


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DeltaError(f"{where}: expected an object")
    return value


def _opt_int(item: Mapping[str, Any], name: str, where: str) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeltaError(f"{where}.{name}: expected Unix seconds or null")
    return value


def _names(item: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = item.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DeltaError(f"{where}.{name}: expected a list of names")
    return tuple(value)


def _badge(item: Mapping[str, Any], where: str) -> Badge:
    data: dict[str, Any] = {
        "zones": list(_names(item, "zones", where)),
        "enabled": bool(item.get("enabled", True)),
    }
    for key in ("site", "role", "pin_hash", "guard_id", "schedule"):
        if item.get(key) is not None:
            data[key] = item[key]
    return Badge(
        uid=_raw(item, "uid"),
        kind=item.get("kind", "ntag424"),
        holder=_raw(item, "holder"),
        doors=_names(item, "doors", where),
        not_before=_opt_int(item, "not_before", where),
        not_after=_opt_int(item, "not_after", where),
        data=data,
    )


def _invitation(item: Mapping[str, Any], where: str) -> Invitation:
    host = item.get("host")
    return Invitation(
        id=_raw(item, "id"),
        visitor=_raw(item, "visitor"),
        host=host or None,
        doors=_names(item, "doors", where),
        not_before=_opt_int(item, "not_before", where),
        not_after=_opt_int(item, "expires", where),
        single_use=bool(item.get("single_use", False)),
        data={
            "zones": list(_names(item, "zones", where)),
            "kid": item.get("kid"),
            "site": item.get("site"),
        },
    )


def _signing_key(item: Mapping[str, Any]) -> CachedSigningKey:
    # TrustedKey checks the key the way the verifier will use it (32 raw bytes of
    # an Ed25519 point, a sane window): a bad key is refused here, not at the door.
    trusted = TrustedKey.from_dict(item)
    return CachedSigningKey(
        trusted.kid,
        str(item.get("alg", "EdDSA")),
        trusted.public_key,
        _opt_int(item, "not_before", "signing_keys"),
        _opt_int(item, "not_after", "signing_keys"),
    )


def _schedule(item: Mapping[str, Any], where: str) -> CachedSchedule:
    timezone = item.get("timezone", "UTC")
    rules = item.get("rules")
    if not isinstance(timezone, str) or not isinstance(rules, list):
        raise DeltaError(f"{where}: timezone and rules are required")
    windows = []
    for n, raw in enumerate(rules):
        rule = _obj(raw, f"{where}.rules[{n}]")
        days = rule.get("days")
        if not isinstance(days, list) or not days or not all(isinstance(d, str) for d in days):
            raise DeltaError(f"{where}.rules[{n}].days: expected a list of day names")
        windows.append({"days": ",".join(days), "from": rule.get("start"), "to": rule.get("end")})
    holidays = item.get("holidays") or []
    if not isinstance(holidays, list) or not all(
        isinstance(h, Mapping) and isinstance(h.get("date"), str) for h in holidays
    ):
        raise DeltaError(f"{where}.holidays: expected a list of {{date, name}}")
    # The policy reads "tz", "windows" and "holidays"; the central's own form is kept alongside.
    data = {
        "tz": timezone,
        "windows": windows,
        "timezone": timezone,
        "rules": rules,
        "holidays": [{"date": h["date"], "name": str(h.get("name", ""))} for h in holidays],
    }
    if isinstance(item.get("site"), str):
        data["site"] = item["site"]
    return CachedSchedule(_raw(item, "id"), data)


def convert_page(page: Mapping[str, Any], door: str) -> DeltaPage:
    """Convert a ``DeltasResponse`` into a :class:`DeltaPage` for the agent of ``door``.

    Raises :class:`DeltaError` naming the first field that is missing or wrong;
    nothing of a page that fails is applied.
    """
    page = _obj(page, "page")
    cursor = page.get("cursor")
    if not isinstance(cursor, str) or not cursor:
        raise DeltaError("cursor: expected a non-empty string")
    from_cursor = page.get("from_cursor", "")
    if not isinstance(from_cursor, str):
        raise DeltaError("from_cursor: expected a string")
    removed = _obj(page.get("removed", {}), "removed")
    converters: list[tuple[str, Callable[[Mapping[str, Any], str], Any]]] = [
        ("badges", _badge),
        ("invitations", _invitation),
        ("schedules", _schedule),
    ]
    lists: dict[str, list[Any]] = {}
    try:
        for name, convert in converters:
            lists[name] = [
                convert(_obj(item, f"{name}[{n}]"), f"{name}[{n}]")
                for n, item in enumerate(_list(page, name))
            ]
        revocations = [
            Revocation(
                _raw(item, "kind"),
                _raw(item, "id"),
                _raw(item, "revoked_at"),
                _raw(item, "expires_at"),
            )
            for item in (_obj(i, "revocations[]") for i in _list(page, "revocations"))
        ]
        keys = [_signing_key(_obj(item, "signing_keys[]")) for item in _list(page, "signing_keys")]
        used = []
        for n, raw in enumerate(_list(page, "used_invitations")):
            item = _obj(raw, f"used_invitations[{n}]")
            used.append((_raw(item, "id"), _raw(item, "expires_at")))
        counters = []
        for n, raw in enumerate(_list(page, "badge_counters")):
            item = _obj(raw, f"badge_counters[{n}]")
            uid, counter = item.get("uid"), item.get("counter")
            if (
                not isinstance(uid, str)
                or isinstance(counter, bool)
                or not isinstance(counter, int)
            ):
                raise DeltaError(f"badge_counters[{n}]: uid and counter are required")
            counters.append((uid, counter))
        door_settings = []
        for n, raw in enumerate(_list(page, "door_settings")):
            item = _obj(raw, f"door_settings[{n}]")
            if item.get("door") == door:
                if not isinstance(item.get("settings"), Mapping):
                    raise DeltaError(f"door_settings[{n}].settings: expected an object")
                door_settings.append(item)
        deleted_revocations = [
            (_raw(item, "kind"), _raw(item, "id"))
            for item in (_obj(i, "removed.revocations[]") for i in _list(removed, "revocations"))
        ]
        delta = Delta(
            cursor=cursor,
            badges=lists["badges"],
            deleted_badges=_list(removed, "badges"),
            invitations=lists["invitations"],
            deleted_invitations=_list(removed, "invitations"),
            revocations=revocations,
            deleted_revocations=deleted_revocations,
            signing_keys=keys,
            deleted_signing_keys=_list(removed, "signing_keys"),
            schedules=lists["schedules"],
            deleted_schedules=_list(removed, "schedules"),
            used_invitations=used,
            reset=bool(page.get("reset", False)),
        )
    except DeltaError:
        raise
    except (ValueError, TypeError) as exc:  # the store's own checks name the field
        raise DeltaError(str(exc)) from exc
    server_time = page.get("server_time_ms")
    return DeltaPage(
        delta=delta,
        from_cursor=from_cursor,
        more=bool(page.get("more", False)),
        server_time_ms=server_time if isinstance(server_time, int) else None,
        badge_counters=tuple(counters),
        door_settings=tuple(door_settings),
        door_settings_removed=door in _list(removed, "door_settings"),
    )


class DoorSettingsFile:
    """The central's settings for this door, kept as JSON in the state directory.

    Written atomically (temporary file, fsync, rename) before the page that
    carries them commits, so a restart re-applies them even though the cursor
    has moved on. Holds ``{"version": int, "settings": {...}}``; an absent file
    means "no central override".
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """Return the stored ``{"version", "settings"}``, or None."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("door settings file %s unreadable (%s): ignoring it", self.path, exc)
            return None
        return data if isinstance(data, dict) and isinstance(data.get("settings"), dict) else None

    def save(self, version: int, settings: Mapping[str, Any]) -> None:
        """Store the settings atomically."""
        text = json.dumps({"version": version, "settings": dict(settings)}, sort_keys=True)
        atomic_write(self.path, text.encode("utf-8"), 0o600)

    def remove(self) -> None:
        """Forget the override."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class DownlinkResult:
    """What one :meth:`Downlink.sync` did."""

    pages: int
    changes: int
    cursor: str | None
    complete: bool


class Downlink:
    """Pulls deltas pages until the cache is up to date.

    Args:
        store: the agent's store.
        client: the central client (with the device credential).
        alarms: where ``bad_delta`` is raised.
        door: this agent's door id (door settings of other doors are ignored).
        trust: the pinned key pages must be signed with (None: pages are taken
            unverified -- only for tests that script pages; the agent always passes one).
        page_size: changes per page asked for.
        settings_file: where this door's central settings are kept (None: ignored).
        on_door_settings: called with the settings dict (or None when removed)
            after the page carrying them committed.
        trust_file: where the key the cache was last synced under is noted (None: not
            noted). When the pinned key or device id changes (a new enrollment), or a
            cache synced before keys were pinned is found, the next sync starts from
            scratch (``reset: true``): nothing that came unverified, or for another
            enrollment, stays in the cache.
    """

    def __init__(
        self,
        store: Store,
        client: CentralClient,
        alarms: Alarms,
        *,
        door: str,
        trust: DeltaTrust | None,
        page_size: int = 500,
        settings_file: DoorSettingsFile | None = None,
        on_door_settings: Callable[[Mapping[str, Any] | None], None] | None = None,
        trust_file: Path | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.alarms = alarms
        self.door = door
        self.trust = trust
        self.page_size = page_size
        self.settings_file = settings_file
        self._on_door_settings = on_door_settings
        self.trust_file = trust_file
        self.last_complete_ms: int | None = None

    def sync(self) -> DownlinkResult:
        """Apply pages until ``more`` is false; return what was done.

        Raises :class:`CentralRefused` / :class:`CentralUnreachable` from the
        client (the caller backs off; pages applied so far stay applied),
        :class:`DeltaError` for a page that cannot be applied (nothing of it is),
        and store errors.
        """
        pages = changes = 0
        full = False
        cursor = self.store.cache.downlink().cursor
        resync = self._trust_changed(cursor)
        while pages < MAX_PAGES_PER_SYNC:
            asked = cursor
            query = None if resync else asked
            try:
                fetched = self._fetch(query)
            except CentralRefused as exc:
                if exc.status != 410 or query is None:
                    raise
                log.warning("sync: the central does not know cursor %s: full resync", asked)
                fetched = self._fetch(None)
                asked_for: str | None = None
            else:
                asked_for = query
            try:
                raw = self._authentic(fetched)
                page = convert_page(raw, self.door)
            except DeltaError as exc:
                self.alarms.raise_("bad_delta", f"page after cursor {asked_for}: {exc}")
                raise
            if page.from_cursor != (asked_for or ""):
                self.alarms.raise_(
                    "bad_delta",
                    f"page is for cursor {page.from_cursor!r}, asked after {asked_for!r}",
                )
                raise DeltaError(f"from_cursor: {page.from_cursor!r} is not {asked_for!r}")
            self._apply(page, expected=asked)
            if resync:
                self._note_trust()
                resync = False
            self.alarms.clear("bad_delta")
            pages += 1
            changes += len(page.delta) + len(page.badge_counters) + len(page.door_settings)
            cursor = page.delta.cursor
            full = full or page.delta.reset
            if not page.more:
                if full:
                    self._drop_event_pack_settings()
                self.last_complete_ms = self.store.cache.downlink().last_sync_ms
                return DownlinkResult(pages, changes, cursor, True)
        return DownlinkResult(pages, changes, cursor, False)

    def _drop_event_pack_settings(self) -> None:
        """After a full sync: door settings an event pack installed (marked ``event_pack``)
        that the central did not send again go, so the pack's offline bound does not
        outlive the event (edge_agent/eventpack.py)."""
        if self.settings_file is None:
            return
        stored = self.settings_file.load()
        if stored is None or "event_pack" not in stored:
            return
        log.info("sync: the event pack's door settings are dropped (back online)")
        self.settings_file.remove()
        if self._on_door_settings is not None:
            self._on_door_settings(None)

    def _trust_identity(self) -> dict[str, str] | None:
        if self.trust is None or self.trust.key is None:
            return None
        return {
            "device_id": self.trust.device_id,
            "enrollment": self.trust.enrollment,
            **self.trust.key.to_dict(),
        }

    def _trust_changed(self, cursor: str | None) -> bool:
        """True when the cache was synced under another key or enrollment (or before keys
        were pinned): the next page must then be a full resync."""
        identity = self._trust_identity()
        if identity is None or self.trust_file is None:
            return False
        try:
            noted = json.loads(self.trust_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            noted = None
        except (OSError, ValueError) as exc:
            log.warning("sync: %s unreadable (%s): full resync", self.trust_file, exc)
            noted = None
        if noted == identity:
            return False
        if cursor is None:
            return True  # a first sync starts from scratch anyway; note the key after it
        log.warning("sync: the cache was synced under another delta key: full resync")
        return True

    def _note_trust(self) -> None:
        identity = self._trust_identity()
        if identity is not None and self.trust_file is not None:
            text = json.dumps(identity, sort_keys=True) + "\n"
            atomic_write(self.trust_file, text.encode("utf-8"), 0o600)

    def _fetch(self, cursor: str | None) -> SignedPage | Mapping[str, Any]:
        if self.trust is None:
            return self.client.deltas(cursor, self.page_size)
        return self.client.signed_deltas(cursor, self.page_size)

    def _authentic(self, fetched: SignedPage | Mapping[str, Any]) -> Mapping[str, Any]:
        """Return the page to convert: verified first when a key is pinned."""
        if self.trust is None:
            return fetched  # type: ignore[return-value]  # _fetch's plain page, without a key
        if not isinstance(fetched, SignedPage):
            raise DeltaError("page: expected the signed bytes of the answer")
        return self.trust.parse(fetched)

    def _apply(self, page: DeltaPage, expected: str | None) -> None:
        # Counters first: raising one is idempotent, so a crash before the page
        # commits only means it is raised again with the retried page.
        for uid, counter in page.badge_counters:
            try:
                self.store.replay.advance_counter(uid, counter)
            except ValueError as exc:
                log.warning("sync: badge counter for %s not applied: %s", uid, exc)
        settings = None
        if page.door_settings and self.settings_file is not None:
            latest = max(page.door_settings, key=lambda s: int(s.get("version", 0)))
            settings = dict(latest["settings"])
            self.settings_file.save(int(latest.get("version", 0)), settings)
        elif page.door_settings_removed and self.settings_file is not None:
            self.settings_file.remove()
        try:
            self.store.cache.apply_delta(
                page.delta, expected_cursor=expected, at_head=not page.more
            )
        except CursorMismatch:
            # Someone else moved the cursor (never expected: one downlink per store).
            log.error("sync: the cache cursor moved while a page was fetched; asking again")
            raise
        if len(page.delta):
            log.info("sync: applied %d changes (cursor %s)", len(page.delta), page.delta.cursor)
        if self._on_door_settings is not None:
            if settings is not None:
                self._on_door_settings(settings)
            elif page.door_settings_removed:
                self._on_door_settings(None)
