"""The access policy's view of the cache (:class:`~edge_agent.policy.CacheView`) over the store.

:class:`StoreCacheView` answers the questions :func:`edge_agent.policy.decide` asks
(badges, revocations, schedules, single use, counters, staleness, pinned keys) and
the guard console's (who is a guard) from :class:`~edge_agent.store.Store`.
"""

from __future__ import annotations

import logging
import threading

from edge_agent.guards import Guard
from edge_agent.policy import BadgeRecord, Schedule
from edge_agent.store import Store
from portier_common.tokens import Keyring, TrustedKey

log = logging.getLogger(__name__)


class StoreCacheView:
    """The policy's :class:`~edge_agent.policy.CacheView` over the SQLite store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keyring_lock = threading.Lock()
        self._keyring: tuple[object, Keyring] | None = None

    def keyring(self) -> Keyring:
        """Pinned keys, rebuilt only when the set of keys changes (rotation, no restart)."""
        keys = self._store.cache.signing_keys()
        fingerprint = tuple((k.kid, k.public_key, k.not_before, k.not_after) for k in keys)
        with self._keyring_lock:
            if self._keyring is None or self._keyring[0] != fingerprint:
                trusted = []
                for k in keys:
                    if k.alg not in ("EdDSA", "Ed25519"):
                        log.warning("signing key %s: algorithm %s not supported", k.kid, k.alg)
                        continue
                    trusted.append(TrustedKey(k.kid, k.public_key, k.not_before, k.not_after))
                self._keyring = (fingerprint, Keyring(trusted))
            return self._keyring[1]

    def is_revoked(self, kind: str, ident: str) -> bool:
        """True if the invitation id or badge UID is revoked."""
        return self._store.cache.is_revoked(kind, ident.lower() if kind == "badge" else ident)

    def badge(self, uid_hex: str) -> BadgeRecord | None:
        """The cached badge as the policy sees it (None for a read that is no badge UID)."""
        try:
            b = self._store.cache.badge(uid_hex)
        except ValueError:  # not 4, 7 or 10 bytes: no badge in the cache has it
            return None
        if b is None:
            return None
        data = dict(b.data or {})
        return BadgeRecord(
            uid=b.uid.hex().upper(),
            holder=b.holder,
            kind="ntag424" if b.kind == "ntag424" else "uid",
            doors=("*",) if b.doors is None else tuple(b.doors),
            zones=tuple(data.get("zones", ())),
            enabled=bool(data.get("enabled", True)),
            valid_from=b.not_before,
            valid_until=b.not_after,
            schedule=data.get("schedule"),
        )

    def invitation_used(self, invitation_id: str) -> bool:
        """True if the single-use invitation was used here or (synced) elsewhere."""
        return self._store.replay.is_used(invitation_id)

    def last_counter(self, uid_hex: str) -> int | None:
        """Last accepted SUN counter of the badge."""
        return self._store.replay.last_counter(uid_hex)

    def schedule(self, name: str) -> Schedule | None:
        """The named schedule from the cache."""
        s = self._store.cache.schedule(name)
        if s is None:
            return None
        try:
            return Schedule.from_dict({"name": name, **dict(s.data)})
        except ValueError:
            log.error("schedule %s in the cache is invalid: refusing by it", name)
            return None

    def staleness_s(self, now: float) -> float | None:
        """Seconds since the last applied delta, or None if never synced."""
        ms = self._store.cache.downlink().staleness_ms(int(now * 1000))
        return None if ms is None else ms / 1000.0

    def pin_hash(self, uid_hex: str) -> str | None:
        """The badge's PIN hash for card + PIN (``portier_common.pins`` format), or None
        when the badge has none (or the cache keeps none: a guard's on a door without a
        guard console)."""
        try:
            b = self._store.cache.badge(uid_hex)
        except ValueError:
            return None
        value = (b.data or {}).get("pin_hash") if b is not None else None
        return value if isinstance(value, str) and value else None

    def guard(self, uid_hex: str) -> Guard | None:
        """The guard holding this badge (badge data role = guard), or None.

        The record says whether the badge may open the console now (revoked,
        enabled, validity window); ``pin_hash`` is None where the cache keeps none.
        """
        try:
            b = self._store.cache.badge(uid_hex)
        except ValueError:  # not a UID at all: no guard holds it
            return None
        if b is None or not b.data or b.data.get("role") != "guard":
            return None
        pin_hash = b.data.get("pin_hash")
        return Guard(
            guard_id=str(b.data.get("guard_id", b.uid.hex())),
            name=b.holder,
            badge_uid=b.uid.hex().upper(),
            pin_hash=pin_hash if isinstance(pin_hash, str) else None,
            kind=b.kind,
            enabled=bool(b.data.get("enabled", True)),
            not_before=b.not_before,
            not_after=b.not_after,
            revoked=self._store.cache.is_revoked("badge", b.uid),
        )
