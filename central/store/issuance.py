"""Badge issuance at the Pass Office (issue #17): a card's keys, and the badge it becomes.

The site's master keys never leave the central. For one card (its UID, read by the station),
:meth:`IssuanceMixin.badge_card_keys` derives the five application keys the card is written with
and hands them to the authenticated station; :meth:`IssuanceMixin.register_issued_badge` stores
the badge once the station shows a SUN message the card wrote after personalisation, which the
central verifies itself with the doors' keys. The server records each call in the audit chain in
the call's own transaction. docs/badges.md ("The Pass Office") and docs/threat-model.md.

The keys of a card (AN10922 diversification, :func:`card_keys`):

* key 1, SDM meta-read: the site's ``meta_read_key`` (the doors decrypt PICCData with it);
* key 2, SDM file-read: ``DiversifiedKeys(file_read_master_key)(uid)``, what the doors derive;
* keys 0 (application master), 3 and 4: from ``card_master_key``, which only the central holds,
  with the UID and the key version as diversification input, so a card written again (returned,
  then issued to someone else) gets other keys.

Per UID, ``badge_issues`` keeps the last key version handed out and its state: ``pending`` (keys
handed out, not registered yet: a re-run gets the same keys), ``issued`` (registered). An issued
card whose badge is still active gets no keys (that would hand out the keys of a working badge)
unless the station proves the card is in its reader with a fresh SUN message of it: the badge is
then revoked in the same transaction (a return, a card written again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

from portier_common.ntag424 import DiversifiedKeys, SunError, diversify_aes128

from ..errors import BadgeActive, BadgeRevoked, BadRequest, NotConfigured, NotFound
from .base import StoreBase
from .db import Connection
from .validate import normalize_uid, only_fields

__all__ = ["IssuanceMixin", "card_keys"]

#: The diversification labels of the central-only keys (AN10922 system identifier).
_LABELS = {0: b"portier/k0", 3: b"portier/k3", 4: b"portier/k4"}
_MAX_VERSION = 0xFF


def card_keys(
    card_master: bytes, meta_read: bytes, file_read_master: bytes, uid: bytes, version: int
) -> dict[str, bytes]:
    """The five application keys of the card *uid* at key *version* (see the module)."""

    def own(key_no: int) -> bytes:
        return diversify_aes128(
            card_master, uid, system_identifier=_LABELS[key_no] + bytes([version])
        )

    return {
        "app_master": own(0),
        "sdm_meta_read": meta_read,
        "sdm_file_read": DiversifiedKeys(file_read_master)(uid),
        "spare3": own(3),
        "spare4": own(4),
    }


class IssuanceMixin(StoreBase):
    """The Pass Office's badge issuance (the admin API's ``/admin/badges/{uid}/keys`` and
    ``/admin/badges/{uid}/issue``)."""

    _ISSUE_FIELDS: ClassVar[tuple[str, ...]] = (
        "key_version",
        "sun_url",
        "site",
        "holder",
        "doors",
        "zones",
        "not_before",
        "not_after",
        "role",
        "pin_hash",
        "guard_id",
    )

    def _whole(self) -> AbstractContextManager[Connection]:
        """One transaction for the whole call, in which revoke_badge and put_badge (their own
        ``_tx``) are savepoints: the server's (``one_transaction``), else one of its own."""
        outer = self._outer
        return self.one_transaction() if outer is None else nullcontext(outer)

    def _issuance_keys(self) -> tuple[bytes, bytes, bytes]:
        ntag = self.settings.ntag424
        master = self.settings.card_master_key
        if ntag is None or not ntag.meta_read_key or not ntag.file_read_master_key or not master:
            raise NotConfigured(
                "this central issues no badges: its --ntag424-keys file needs meta_read_key and "
                "file_read_master_key in [ntag424] and card_master_key in [issuance]"
            )
        return master, bytes.fromhex(ntag.meta_read_key), bytes.fromhex(ntag.file_read_master_key)

    def _active_badge(self, conn: Connection, uid: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT data FROM badges WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return None
        badge: dict[str, Any] = json.loads(row["data"])
        revoked = conn.execute(
            "SELECT 1 FROM revocations WHERE kind = 'badge' AND id = ?", (uid,)
        ).fetchone()
        return badge if badge.get("enabled", True) and revoked is None else None

    @staticmethod
    def _revoked_badge(conn: Connection, uid: str) -> bool:
        """True when *uid* is a badge that is revoked or disabled (not active)."""
        row = conn.execute("SELECT data FROM badges WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return False
        revoked = conn.execute(
            "SELECT 1 FROM revocations WHERE kind = 'badge' AND id = ?", (uid,)
        ).fetchone()
        return revoked is not None or not json.loads(row["data"]).get("enabled", True)

    def _card_tap(self, uid: str, sun_url: object) -> int:
        """Verify *sun_url* as a door would and check it names *uid*; return its counter."""
        if not isinstance(sun_url, str) or not sun_url:
            raise BadRequest("sun_url: the URL read back from the card is required")
        verifier = None if self.settings.ntag424 is None else self.settings.ntag424.verifier()
        if verifier is None:  # pragma: no cover - _issuance_keys refused before
            raise NotConfigured("no NTAG 424 keys")
        try:
            tap = verifier.verify(sun_url)
        except SunError as exc:
            raise BadRequest(f"sun_url: the card's SUN does not verify ({exc})") from None
        if tap.uid.hex() != uid:
            raise BadRequest("sun_url: the SUN names another card than the UID")
        return tap.counter

    def badge_card_keys(self, uid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Derive the keys of the card *uid* for the station (``CardKeysRequest``).

        ``key_version``: the version key 0 of the card holds (GetKeyVersion; 0 or absent: a
        blank or half-written card). ``replaces``: the UID of a lost card this one replaces (it
        is revoked at once and this card gets a higher key version). ``sun_url``: a SUN message
        just read from the card, to prove that the active badge *uid* is in the reader (it is
        then revoked: a return or a card written again).

        Returns:
            ``{uid, site, key_version, keys: {app_master, sdm_meta_read, sdm_file_read, spare3,
            spare4} (hex), picc_param, mac_param, revoked: [uids]}``.

        Raises:
            NotConfigured, BadgeActive, NotFound (no such key version was issued for
            the card: a card of another site?), BadRequest.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        only_fields("keys request", body, ("key_version", "replaces", "sun_url"))
        master, meta, file_master = self._issuance_keys()
        uid = normalize_uid(uid)
        if len(bytes.fromhex(uid)) != 7:
            raise BadRequest("uid: an NTAG 424 DNA has a 7-byte UID")
        held = body.get("key_version")
        if held is not None and (
            not isinstance(held, int) or isinstance(held, bool) or not 0 <= held <= _MAX_VERSION
        ):
            raise BadRequest("key_version: an integer 0..255")
        replaces = body.get("replaces")
        revoked: list[str] = []
        site = self.settings.site
        assert self.settings.ntag424 is not None  # _issuance_keys checked
        with self._whole() as conn:
            if self._active_badge(conn, uid) is not None:
                if body.get("sun_url") is None:
                    raise BadgeActive(
                        f"card {uid} is an active badge: revoke it first (a lost card), or give "
                        "a SUN message read from it now (a return, a card written again)"
                    )
                self._card_tap(uid, body.get("sun_url"))
                self.revoke_badge(uid)  # type: ignore[attr-defined]  # CredentialsMixin
                revoked.append(uid)
            row = conn.execute(
                "SELECT key_version, state FROM badge_issues WHERE uid = ?", (uid,)
            ).fetchone()
            floor = 0
            if replaces is not None:
                old = normalize_uid(replaces)
                if old == uid:
                    raise BadRequest("replaces: the card cannot replace itself")
                if conn.execute("SELECT 1 FROM badges WHERE uid = ?", (old,)).fetchone() is None:
                    raise NotFound(f"replaces: no badge {old}")
                self.revoke_badge(old)  # type: ignore[attr-defined]  # CredentialsMixin
                revoked.append(old)
                old_row = conn.execute(
                    "SELECT key_version FROM badge_issues WHERE uid = ?", (old,)
                ).fetchone()
                floor = 0 if old_row is None else int(old_row["key_version"])
            if held:
                if row is None or held > int(row["key_version"]):
                    raise NotFound(
                        f"card {uid} holds key version {held}, which this central never issued "
                        "for it: a card of another site or of another central"
                    )
                if (
                    row["state"] == "issued"
                    and held == int(row["key_version"])
                    and not revoked
                    and body.get("sun_url") is None
                    and self._revoked_badge(conn, uid)
                ):
                    # A lost card found again: its keys stay withdrawn. Only a return (the
                    # card's fresh SUN: it is here) gets them, to take it back to factory.
                    raise BadgeRevoked(
                        f"card {uid} is a revoked badge (key version {held}): it stays "
                        "revoked. Return it (reset to factory keys) to issue it again under "
                        "new keys"
                    )
                version = held
            elif row is None:
                version = max(1, floor + 1)
            elif row["state"] == "pending":
                version = max(int(row["key_version"]), floor + 1)
            else:  # issued before, no longer active: written again under new keys
                version = max(int(row["key_version"]), floor) + 1
            if version > _MAX_VERSION:
                raise BadRequest(f"card {uid}: no key version left (255 issued)")
            if row is None or version > int(row["key_version"]):
                conn.execute(
                    "INSERT INTO badge_issues (uid, site, key_version, state, updated_ms) "
                    "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (uid) DO UPDATE SET "
                    "site = excluded.site, key_version = excluded.key_version, "
                    "state = excluded.state, updated_ms = excluded.updated_ms",
                    (uid, site, version, self.now_ms()),
                )
        keys = card_keys(master, meta, file_master, bytes.fromhex(uid), version)
        return {
            "uid": uid,
            "site": site,
            "key_version": version,
            "keys": {name: key.hex() for name, key in keys.items()},
            "picc_param": self.settings.ntag424.picc_param,
            "mac_param": self.settings.ntag424.mac_param,
            "revoked": revoked,
        }

    def identify_card(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The UID of the card that wrote ``sun_url`` (a card with Random ID shows the reader a
        random UID; its SUN carries the real one, encrypted under the site's meta-read key,
        which the station does not hold). Returns ``{uid}``.

        Raises:
            BadRequest: the SUN does not verify with this site's keys (another site's card).
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        only_fields("identify", body, ("sun_url",))
        self._issuance_keys()
        sun_url = body.get("sun_url")
        verifier = None if self.settings.ntag424 is None else self.settings.ntag424.verifier()
        if not isinstance(sun_url, str) or verifier is None:
            raise BadRequest("sun_url: the URL read from the card is required")
        try:
            return {"uid": verifier.verify(sun_url).uid.hex()}
        except SunError as exc:
            raise BadRequest(f"sun_url: not a badge of this site ({exc})") from None

    def register_issued_badge(self, uid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Register the card *uid*, personalised with the keys of ``key_version``, as a badge
        (``BadgeIssue``: the ``BadgeCreate`` fields of an NTAG 424 badge, ``key_version`` and
        ``sun_url``, the message the station read back from the card after writing it). The
        central verifies ``sun_url`` itself: nothing is registered for a card that does not
        verify.

        Returns:
            The ``Badge`` (its ``key_version`` and ``issued_at`` with it).

        Raises:
            BadRequest (a SUN that does not verify, a bad field), NotFound (no keys were
            handed out for this card at that version), BadgeActive, NotConfigured.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        only_fields("badge issue", body, self._ISSUE_FIELDS)
        self._issuance_keys()
        uid = normalize_uid(uid)
        version = body.get("key_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BadRequest("key_version: the version the card was written with")
        badge_body = {
            k: v for k, v in body.items() if k not in ("key_version", "sun_url") and v is not None
        }
        with self._whole() as conn:
            row = conn.execute(
                "SELECT key_version, state FROM badge_issues WHERE uid = ?", (uid,)
            ).fetchone()
            if row is None or int(row["key_version"]) != version:
                raise NotFound(
                    f"card {uid}: no keys of version {version} were handed out for it (ask for "
                    "its keys first)"
                )
            self._card_tap(uid, body.get("sun_url"))
            active = self._active_badge(conn, uid)
            if row["state"] == "issued" and active is not None:
                return {**active, "key_version": version}  # registered before: a re-run
            if row["state"] == "issued" and self._revoked_badge(conn, uid):
                # Registering these keys again would lift the revocation of a lost card.
                raise BadgeRevoked(
                    f"card {uid}: key version {version} is a revoked badge's; return the card "
                    "and issue it again under new keys"
                )
            badge = self.put_badge(  # type: ignore[attr-defined]  # CredentialsMixin
                {**badge_body, "uid": uid, "kind": "ntag424"}
            )
            conn.execute(
                "UPDATE badge_issues SET state = 'issued', updated_ms = ? WHERE uid = ?",
                (self.now_ms(), uid),
            )
        return {**badge, "key_version": version}
