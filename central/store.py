"""The reference central's state: one SQLite database (WAL) and every rule of the contract.

:class:`CentralStore` is synchronous and not thread-safe by design: the server
runs all of its calls on one worker thread (so they are serialised and off the
event loop), and tests may call it directly. Each public method is one
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), committed with
``synchronous=FULL`` before the method returns, so an ack the server sends is
never ahead of what is on disk.

Event hashes are checked with the journal's own functions
(:mod:`portier_common.encoding`: ``canonical_json`` and ``event_hash``), so
the device and the central can never disagree on the encoding.

Every change to credentials and configuration is appended to the ``changes``
table; its row number is the deltas cursor (an opaque decimal string on the
wire).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from portier_common.encoding import (
    GENESIS_HASH,
    canonical_json,
    check_type,
    event_hash,
)
from portier_common.errors import InvalidEvent
from portier_common.ntag424 import SunError, SunVerifier
from portier_common.signing import DeltaKey, b64url, delta_message
from portier_common.tokens import InvitationClaims, SigningKey, TrustedKey, mint
from portier_common.tokens.claims import ClaimsError
from portier_common.uid import BadgeUid

from .errors import (
    BadRequest,
    CursorUnknown,
    DeviceDisabled,
    DeviceEnrolled,
    NotFound,
    TokenExpired,
    TokenInvalid,
    TokenScope,
    TokenUsed,
    Unauthorized,
)
from .settings import CentralSettings, check_name

__all__ = ["SCHEMA_VERSION", "CentralStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

#: Tables added by schema 2: the latest self-test report of each device (first boot).
_SCHEMA_V2 = (
    """CREATE TABLE selftest_reports (
        device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
        received_at_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        report TEXT NOT NULL
    ) STRICT""",
)

#: Schema 3 (issue 10): which zones a device's door is in (admin-declared on its enroll
#: token), whether it has a guard console, an admin reset that allows one re-enrollment,
#: the enroll retry secret, and the central's own delta signing keys.
_SCHEMA_V3 = (
    "ALTER TABLE devices ADD COLUMN zones TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE devices ADD COLUMN guard_console INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE devices ADD COLUMN reset_allowed INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE enroll_tokens ADD COLUMN zones TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE enroll_tokens ADD COLUMN retry_hash BLOB",
    """CREATE TABLE delta_keys (
        kid TEXT PRIMARY KEY,
        private_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 0
    ) STRICT""",
)

_SCHEMA = (
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT""",
    """CREATE TABLE enroll_tokens (
        token_hash BLOB PRIMARY KEY,
        site TEXT NOT NULL,
        door TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_by TEXT,
        used_at_ms INTEGER
    ) STRICT""",
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        door TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        credential_hash BLOB UNIQUE,
        enrolled_at_ms INTEGER NOT NULL,
        hardware TEXT NOT NULL DEFAULT '{}',
        versions TEXT NOT NULL DEFAULT '{}',
        next_seq INTEGER NOT NULL DEFAULT 1,
        last_hash TEXT,
        anchor_seq INTEGER,
        anchor_prev_hash TEXT,
        chain_ok INTEGER NOT NULL DEFAULT 1,
        chain_broken_at INTEGER,
        chain_break_reason TEXT,
        unique_events INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        gaps INTEGER NOT NULL DEFAULT 0,
        last_event_at_ms INTEGER,
        last_heartbeat_at_ms INTEGER,
        last_heartbeat TEXT
    ) STRICT""",
    # status 'stored' or 'rejected': a rejected event that arrived at next_seq
    # still holds its place in the sequence (see upload_events).
    """CREATE TABLE events (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        wall_ms INTEGER,
        mono_ns INTEGER,
        type TEXT,
        payload TEXT,
        prev_hash TEXT,
        hash TEXT,
        received_at_ms INTEGER NOT NULL,
        link_ok INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        PRIMARY KEY (device_id, seq)
    ) STRICT""",
    "CREATE UNIQUE INDEX events_id ON events(device_id, id)",
    """CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        private_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        not_before INTEGER,
        not_after INTEGER,
        active INTEGER NOT NULL DEFAULT 0
    ) STRICT""",
    """CREATE TABLE invitations (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        kid TEXT NOT NULL,
        expires INTEGER NOT NULL,
        revoked_at INTEGER,
        data TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE revocations (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        site TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    ) STRICT""",
    """CREATE TABLE badges (uid TEXT PRIMARY KEY, site TEXT NOT NULL, data TEXT NOT NULL) STRICT""",
    """CREATE TABLE schedules (
        site TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (site, id)
    ) STRICT""",
    """CREATE TABLE door_settings (
        site TEXT NOT NULL,
        door TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (site, door)
    ) STRICT""",
    """CREATE TABLE used_invitations (
        id TEXT PRIMARY KEY, site TEXT NOT NULL, data TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE badge_counters (
        site TEXT NOT NULL,
        uid TEXT NOT NULL,
        counter INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (site, uid)
    ) STRICT""",
    # The deltas log. site NULL: for every site (signing keys).
    """CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        site TEXT,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
        data TEXT
    ) STRICT""",
)

#: changes.kind -> the DeltasResponse list it goes to.
_DELTA_LISTS = {
    "invitation": "invitations",
    "badge": "badges",
    "revocation": "revocations",
    "signing_key": "signing_keys",
    "schedule": "schedules",
    "door_settings": "door_settings",
    "used_invitation": "used_invitations",
    "badge_counter": "badge_counters",
}
_REMOVABLE = {
    "invitation": "invitations",
    "badge": "badges",
    "schedule": "schedules",
    "door_settings": "door_settings",
    "signing_key": "signing_keys",
    "revocation": "revocations",
}

_HASH_RE = re.compile(r"[0-9a-f]{64}\Z")
_TIME_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]\Z")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MODES = ("normal", "lockdown", "free_access", "emergency")
_ACCEPT = ("qr", "uid", "ntag424")
_BADGE_KINDS = ("uid", "ntag424")
_I64 = 2**63
_MAX_SEQ = 2**63 - 1
_MAX_COUNTER = 2**24 - 1
_GENESIS_HEX = GENESIS_HASH.hex()
_MAX_TEXT = 128

EVENT_INVITATION_USED = "invitation.used"
EVENT_BADGE_COUNTER = "badge.counter"


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _uid(value: object) -> str:
    """A badge UID in the central's form (lower-case hex, :meth:`BadgeUid.hex`).

    Raises:
        BadRequest: not a badge UID (:class:`~portier_common.uid.BadgeUid`), naming the value.
    """
    try:
        return BadgeUid.parse(value).hex()
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _name(field: str, value: object) -> str:
    try:
        return check_name(field, value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _names(field: str, values: object) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise BadRequest(f"{field}: must be a list of names")
    items = [_name(f"{field}[{i}]", item) for i, item in enumerate(values)]
    if len(set(items)) != len(items):
        raise BadRequest(f"{field}: must not repeat a name")
    return items


def _text(field: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or (not value and not allow_empty):
        raise BadRequest(f"{field}: must be text of {0 if allow_empty else 1} to {_MAX_TEXT} chars")
    if not value.isprintable():
        raise BadRequest(f"{field}: must hold printable characters only")
    return value


def _opt_seconds(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise BadRequest(f"{field}: must be Unix seconds (an integer) or null")
    return value


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field}: must be true or false")
    return value


def _only(field: str, body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = set(body) - set(allowed)
    if unknown:
        raise BadRequest(f"{field}: unknown fields {sorted(unknown)}")


#: A guard's PIN hash as portier_common.pins.hash_pin writes it: scrypt$N$r$p$salt$hash.
_PIN_HASH_RE = re.compile(
    r"scrypt\$[0-9]{4,8}\$[0-9]{1,2}\$[0-9]\$[A-Za-z0-9_-]{16,64}\$[A-Za-z0-9_-]{32,88}"
)


def _guard_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the optional guard fields of a badge (role, PIN hash, guard id), checked.

    A guard's badge opens the guard console at a kiosk with the PIN whose salted
    hash it carries; the PIN itself never reaches the central or a device.
    """
    fields: dict[str, Any] = {}
    role = body.get("role")
    if role is not None:
        if role != "guard":
            raise BadRequest("role: must be 'guard' (or absent for an ordinary badge)")
        pin_hash = body.get("pin_hash")
        if not isinstance(pin_hash, str) or not _PIN_HASH_RE.fullmatch(pin_hash):
            raise BadRequest("pin_hash: a guard badge needs a scrypt PIN hash (hash_pin)")
        fields.update(role=role, pin_hash=pin_hash)
        if body.get("guard_id") is not None:
            fields["guard_id"] = _name("guard_id", body["guard_id"])
    elif body.get("pin_hash") is not None or body.get("guard_id") is not None:
        raise BadRequest("role: pin_hash and guard_id are for role 'guard' only")
    return fields


def _int_field(event: Mapping[str, Any], field: str, low: int, high: int) -> int:
    value = event.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidEvent(f"{field}: must be an integer from {low} to {high}, got {value!r}")
    return value


def _hash_field(event: Mapping[str, Any], field: str) -> str:
    value = event.get(field)
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise InvalidEvent(f"{field}: must be 64 lower-case hex digits")
    return value


class CentralStore:
    """The reference central's database and rules.

    Args:
        settings: where the database lives (``settings.db_path``) and the limits.
        clock: returns Unix milliseconds; injectable so tests can move time.

    Raises:
        sqlite3.Error: the database cannot be opened or created.
    """

    def __init__(self, settings: CentralSettings, *, clock: Callable[[], int] = _wall_ms) -> None:
        self.settings = settings
        self._clock = clock
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = sqlite3.connect(
            settings.db_path, isolation_level=None, check_same_thread=False, timeout=10
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode = WAL")
        # FULL: an ack is sent only after the commit, so the commit must
        # survive a power cut, not only a crash of this process.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()
        self._ensure_signing_key()
        self._delta_key = self._ensure_delta_key()
        #: Verifies SUN messages of badge.counter claims (None: no keys, plausibility rule).
        self._sun: SunVerifier | None = settings.sun_verifier()

    # -- plumbing ---------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint and close the database; idempotent."""
        if self._conn is None:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> CentralStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now_ms(self) -> int:
        """Return the central's clock, Unix milliseconds."""
        return self._clock()

    def _tx(self) -> _Transaction:
        if self._conn is None:
            raise RuntimeError("CentralStore is closed")
        return _Transaction(self._conn)

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"central database schema {version} is newer than this code ({SCHEMA_VERSION})"
            )
        with self._tx() as conn:
            # 0: a new database; 1: one written before self-test reports existed;
            # 2: one written before issue 10 (device trust, signed deltas).
            statements = (_SCHEMA if version == 0 else ()) + (_SCHEMA_V2 if version < 2 else ())
            for statement in statements + _SCHEMA_V3:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _change(
        self,
        conn: sqlite3.Connection,
        site: str | None,
        kind: str,
        key: str,
        data: Mapping[str, Any] | None,
    ) -> None:
        op = "delete" if data is None else "upsert"
        conn.execute(
            "INSERT INTO changes (site, kind, key, op, data) VALUES (?, ?, ?, ?, ?)",
            (site, kind, key, op, None if data is None else _dumps(data)),
        )

    # -- signing keys -----------------------------------------------------------

    @staticmethod
    def _key_delta(row: sqlite3.Row) -> dict[str, Any]:
        trusted = TrustedKey(row["kid"], row["public_key"], row["not_before"], row["not_after"])
        return trusted.to_dict()

    def _new_key(self, conn: sqlite3.Connection, now_s: int) -> sqlite3.Row:
        while True:
            kid = time.strftime("k%Y%m%d-", time.gmtime(now_s)) + secrets.token_hex(3)
            if conn.execute("SELECT 1 FROM signing_keys WHERE kid = ?", (kid,)).fetchone() is None:
                break
        key = SigningKey.generate(kid)
        conn.execute("UPDATE signing_keys SET active = 0 WHERE active = 1")
        conn.execute(
            "INSERT INTO signing_keys (kid, private_key, public_key, created_at, not_before, "
            "not_after, active) VALUES (?, ?, ?, ?, ?, NULL, 1)",
            (kid, key.private_bytes(), key.public_bytes(), now_s, now_s),
        )
        row = conn.execute("SELECT * FROM signing_keys WHERE kid = ?", (kid,)).fetchone()
        self._change(conn, None, "signing_key", kid, self._key_delta(row))
        log.info("signing key %s created and active", kid)
        return row

    def _ensure_signing_key(self) -> None:
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM signing_keys WHERE active = 1").fetchone() is None:
                self._new_key(conn, self.now_ms() // 1000)

    def _active_key(self, conn: sqlite3.Connection) -> tuple[sqlite3.Row, SigningKey]:
        row = conn.execute("SELECT * FROM signing_keys WHERE active = 1").fetchone()
        return row, SigningKey.from_private_bytes(row["kid"], row["private_key"])

    def active_signing_key(self) -> SigningKey:
        """Return the key that signs new invitations (reference central only: real
        deployments keep it in an HSM or KMS)."""
        with self._tx() as conn:
            return self._active_key(conn)[1]

    def list_keys(self) -> dict[str, Any]:
        """Return ``{"active_kid": kid, "keys": [SigningKeyDelta, ...]}``."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM signing_keys ORDER BY created_at, kid").fetchall()
        active = next(row["kid"] for row in rows if row["active"])
        return {"active_kid": active, "keys": [self._key_delta(row) for row in rows]}

    def rotate_key(self, *, retire_now: bool = False) -> dict[str, Any]:
        """Make a new signing key active and retire the previous one.

        The previous key's ``not_after`` becomes the latest expiry of the
        unrevoked invitations it signed (at least now), or now with
        *retire_now*. Both keys go out as ``signing_keys`` deltas.

        Returns:
            ``{"active": SigningKeyDelta, "previous": SigningKeyDelta}``.
        """
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            old, _ = self._active_key(conn)
            not_after = now_s
            if not retire_now:
                latest = conn.execute(
                    "SELECT max(expires) FROM invitations WHERE kid = ? AND revoked_at IS NULL",
                    (old["kid"],),
                ).fetchone()[0]
                not_after = max(now_s, latest or 0)
            if old["not_after"] is not None:
                not_after = min(not_after, old["not_after"])
            conn.execute(
                "UPDATE signing_keys SET not_after = ? WHERE kid = ?", (not_after, old["kid"])
            )
            old = conn.execute("SELECT * FROM signing_keys WHERE kid = ?", (old["kid"],)).fetchone()
            # Retired now: devices drop the key (removed.signing_keys) instead of keeping
            # it until not_after, which their clock-skew allowance would stretch further.
            self._change(
                conn,
                None,
                "signing_key",
                old["kid"],
                None if retire_now else self._key_delta(old),
            )
            new = self._new_key(conn, now_s)
        log.info(
            "signing key rotated: %s -> %s (old valid until %s)", old["kid"], new["kid"], not_after
        )
        return {"active": self._key_delta(new), "previous": self._key_delta(old)}

    # -- delta signing key --------------------------------------------------------

    def _ensure_delta_key(self) -> SigningKey:
        """Load the active delta signing key, creating one on first start."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM delta_keys WHERE active = 1").fetchone()
            if row is None:
                now_s = self.now_ms() // 1000
                kid = time.strftime("dk%Y%m%d-", time.gmtime(now_s)) + secrets.token_hex(3)
                key = SigningKey.generate(kid)
                conn.execute(
                    "INSERT INTO delta_keys (kid, private_key, public_key, created_at, active) "
                    "VALUES (?, ?, ?, ?, 1)",
                    (kid, key.private_bytes(), key.public_bytes(), now_s),
                )
                log.info("delta signing key %s created", kid)
                return key
        return SigningKey.from_private_bytes(row["kid"], row["private_key"])

    def delta_key(self) -> dict[str, Any]:
        """Return the public delta signing key (``DeltaKey``) devices pin at enrollment."""
        return DeltaKey(self._delta_key.kid, self._delta_key.public_bytes()).to_dict()

    def sign_deltas(self, device_id: str, body: bytes) -> tuple[str, str]:
        """Return (kid, base64url signature) of the deltas *body* served to *device_id*
        (portier_common.signing: the exact bytes, bound to the device id)."""
        return self._delta_key.kid, b64url(self._delta_key.sign(delta_message(device_id, body)))

    # -- enrollment -------------------------------------------------------------

    def create_enroll_token(
        self,
        *,
        door: str,
        site: str | None = None,
        ttl_s: int | None = None,
        zones: object = None,
    ) -> dict[str, Any]:
        """Create a one-time enrollment token for *door* of *site*.

        *zones* are the zones that door is in, as the administrator declares them:
        the device enrolled with the token gets them, and the central accepts its
        ``invitation.used`` / ``badge.counter`` claims for zone-wide credentials of
        those zones only (what the device's own configuration says is not trusted).

        Returns:
            ``{"enroll_token", "site", "door", "zones", "expires_at"}``; the token
            text is not stored (only its hash), so this is the only time it is shown.

        Raises:
            BadRequest: a bad name or ttl.
        """
        site = _name("site", site if site is not None else self.settings.site)
        door = _name("door", door)
        zone_list = _names("zones", zones)
        if ttl_s is None:
            ttl_s = self.settings.enroll_token_ttl_s
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 60 <= ttl_s <= 31_536_000:
            raise BadRequest("ttl_s: must be an integer from 60 to 31536000")
        token = "pe1_" + secrets.token_urlsafe(24)
        now = self.now_ms()
        expires_at = now // 1000 + ttl_s
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO enroll_tokens (token_hash, site, door, created_ms, expires_at, "
                "zones) VALUES (?, ?, ?, ?, ?, ?)",
                (_sha256(token), site, door, now, expires_at, _dumps(zone_list)),
            )
        return {
            "enroll_token": token,
            "site": site,
            "door": door,
            "zones": zone_list,
            "expires_at": expires_at,
        }

    def enroll(self, body: Mapping[str, Any], credential: str | None = None) -> dict[str, Any]:
        """Consume an enrollment token and issue the device's credential.

        *body* is an ``EnrollRequest``; *credential* the ``Authorization: Bearer``
        credential sent with it, if any. The rules (docs/central-api.yaml):

        * the token is bound to its site and door and enrolls a **new** device id;
        * an existing device id is enrolled again only with that device's current
          credential (*credential*), or once after an admin reset
          (:meth:`reset_device`); otherwise ``device_enrolled`` (409);
        * a used token is accepted again only within the retry window, for the same
          device id, and with the ``retry_secret`` sent with the first use (or the
          device's current credential): an answer lost on the way can be asked for
          again, by that device only.

        Returns:
            an ``EnrollResponse`` dict (with the central's ``delta_key`` to pin).

        Raises:
            BadRequest, TokenInvalid, TokenExpired, TokenScope, TokenUsed, DeviceEnrolled.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        token = body.get("enroll_token")
        if not isinstance(token, str) or not 1 <= len(token) <= 128:
            raise BadRequest("enroll_token: must be text of 1 to 128 characters")
        device_id = body.get("device_id")
        if device_id is not None:
            _name("device_id", device_id)
        asked_site = body.get("site")
        asked_door = body.get("door")
        if asked_site is not None:
            _name("site", asked_site)
        if asked_door is not None:
            _name("door", asked_door)
        hardware = body.get("hardware", {})
        versions = body.get("versions", {})
        if not isinstance(hardware, dict):
            raise BadRequest("hardware: must be an object")
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise BadRequest("versions: must be an object of strings")
        guard_console = _bool("guard_console", body.get("guard_console", False))
        retry_secret = body.get("retry_secret")
        if retry_secret is not None and (
            not isinstance(retry_secret, str)
            or not 22 <= len(retry_secret) <= 128
            or not retry_secret.isascii()
            or not retry_secret.isprintable()
        ):
            raise BadRequest("retry_secret: must be 22 to 128 printable ASCII characters")
        head = body.get("journal_head")
        if head is not None:
            if not isinstance(head, dict):
                raise BadRequest("journal_head: must be an object")
            seq = head.get("next_seq")
            prev = head.get("prev_hash")
            if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= _MAX_SEQ:
                raise BadRequest("journal_head.next_seq: must be an integer >= 1")
            if not isinstance(prev, str) or not _HASH_RE.match(prev):
                raise BadRequest("journal_head.prev_hash: must be 64 lower-case hex digits")

        now = self.now_ms()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM enroll_tokens WHERE token_hash = ?", (_sha256(token),)
            ).fetchone()
            if row is None:
                raise TokenInvalid("enrollment token is unknown")
            if asked_site not in (None, row["site"]) or asked_door not in (None, row["door"]):
                raise TokenScope(
                    f"enrollment token is for site {row['site']!r} door {row['door']!r}"
                )
            device = None
            if device_id is not None:
                device = conn.execute(
                    "SELECT * FROM devices WHERE device_id = ?", (device_id,)
                ).fetchone()
            # Proof that the caller is the device itself: its current credential.
            holds_credential = (
                device is not None
                and bool(credential)
                and device["credential_hash"] is not None
                and secrets.compare_digest(device["credential_hash"], _sha256(credential or ""))
            )
            retry = False
            if row["used_by"] is not None:
                window_ms = self.settings.enroll_retry_window_s * 1000
                same_secret = (
                    row["retry_hash"] is not None
                    and retry_secret is not None
                    and secrets.compare_digest(row["retry_hash"], _sha256(retry_secret))
                )
                if (
                    device_id != row["used_by"]
                    or now - row["used_at_ms"] > window_ms
                    or not (same_secret or holds_credential)
                ):
                    raise TokenUsed("enrollment token was already used")
                retry = True
            elif now // 1000 >= row["expires_at"]:
                raise TokenExpired("enrollment token has expired")
            if device is not None and not retry:
                if device["reset_allowed"]:
                    log.info("device %s enrolls again after an admin reset", device_id)
                elif not holds_credential or not device["enabled"]:
                    raise DeviceEnrolled(
                        f"device {device_id!r} is already enrolled: enroll it again with its "
                        "current credential (Authorization: Bearer), or after "
                        f"`portier-central device reset {device_id}`"
                    )
            if device_id is None:
                device_id = "dev-" + secrets.token_hex(6)
            issued = "pd1_" + secrets.token_urlsafe(32)
            if device is None:
                next_seq, last_hash, anchor_seq, anchor_prev = 1, _GENESIS_HEX, None, None
                if head is not None and head["next_seq"] != 1:
                    next_seq, last_hash = head["next_seq"], head["prev_hash"]
                    anchor_seq, anchor_prev = next_seq, last_hash
                conn.execute(
                    "INSERT INTO devices (device_id, site, door, credential_hash, enrolled_at_ms, "
                    "hardware, versions, next_seq, last_hash, anchor_seq, anchor_prev_hash, "
                    "zones, guard_console) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        device_id,
                        row["site"],
                        row["door"],
                        _sha256(issued),
                        now,
                        _dumps(hardware),
                        _dumps(versions),
                        next_seq,
                        last_hash,
                        anchor_seq,
                        anchor_prev,
                        row["zones"],
                        int(guard_console),
                    ),
                )
            else:
                # Re-enrollment keeps the event history and the chain state.
                conn.execute(
                    "UPDATE devices SET site = ?, door = ?, credential_hash = ?, enabled = 1, "
                    "hardware = ?, versions = ?, zones = ?, guard_console = ?, "
                    "reset_allowed = 0 WHERE device_id = ?",
                    (
                        row["site"],
                        row["door"],
                        _sha256(issued),
                        _dumps(hardware),
                        _dumps(versions),
                        row["zones"],
                        int(guard_console),
                        device_id,
                    ),
                )
            conn.execute(
                "UPDATE enroll_tokens SET used_by = ?, used_at_ms = coalesce(used_at_ms, ?), "
                "retry_hash = coalesce(retry_hash, ?) WHERE token_hash = ?",
                (
                    device_id,
                    now,
                    None if retry_secret is None else _sha256(retry_secret),
                    _sha256(token),
                ),
            )
            next_seq = conn.execute(
                "SELECT next_seq FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()[0]
        log.info("device %s enrolled for %s/%s", device_id, row["site"], row["door"])
        return {
            "device_id": device_id,
            "device_token": issued,
            "token_type": "Bearer",
            "site": row["site"],
            "door": row["door"],
            "zones": json.loads(row["zones"]),
            "guard_console": guard_console,
            "next_seq": next_seq,
            "server_time_ms": self.now_ms(),
            "limits": self.settings.limits(),
            "delta_key": self.delta_key(),
        }

    def reset_device(self, device_id: str) -> dict[str, Any]:
        """Allow *device_id* one new enrollment without its credential (a re-installed
        device); its current credential stops working at once.

        Raises:
            NotFound: no such device.
        """
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE devices SET reset_allowed = 1, credential_hash = NULL WHERE device_id = ?",
                (device_id,),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")
            row = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        log.warning("device %s reset: it may enroll once more with a new token", device_id)
        return self._summary(row, None)

    def authenticate(self, credential: str | None) -> dict[str, Any]:
        """Return ``{"device_id", "site", "door", "guard_console"}`` of the device holding
        *credential*.

        Raises:
            Unauthorized: no credential, or an unknown one.
            DeviceDisabled: the device is disabled.
        """
        if not credential:
            raise Unauthorized("missing device credential (Authorization: Bearer ...)")
        with self._tx() as conn:
            row = conn.execute(
                "SELECT device_id, site, door, enabled, guard_console FROM devices "
                "WHERE credential_hash = ?",
                (_sha256(credential),),
            ).fetchone()
        if row is None:
            raise Unauthorized("unknown device credential: enroll again")
        if not row["enabled"]:
            raise DeviceDisabled(f"device {row['device_id']} is disabled")
        return {
            "device_id": row["device_id"],
            "site": row["site"],
            "door": row["door"],
            "guard_console": bool(row["guard_console"]),
        }

    def disable_device(self, device_id: str) -> dict[str, Any]:
        """Disable *device_id* (its calls then get 403); return its summary.

        Raises:
            NotFound: no such device.
        """
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE devices SET enabled = 0 WHERE device_id = ?", (device_id,)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")
            row = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return self._summary(row, None)

    # -- events -----------------------------------------------------------------

    def upload_events(self, device_id: str, events: Sequence[object]) -> dict[str, Any]:
        """Store a batch of events for *device_id*; return the ``EventsResponse``.

        The whole batch is one transaction. Each event is acked ``accepted``,
        ``duplicate``, ``rejected`` or ``retry_later`` (docs/central-api.yaml).

        Raises:
            NotFound: no such device (a caller bug: authenticate first).
        """
        now = self.now_ms()
        acks: list[dict[str, Any] | None] = [None] * len(events)
        placeable: list[tuple[int, int, str, Mapping[str, Any], bytes]] = []
        for index, raw in enumerate(events):
            event_id, id_bytes, seq, problem = self._identify(raw)
            if problem is not None:
                sent_id = raw.get("id") if isinstance(raw, Mapping) else None
                acks[index] = {
                    "id": sent_id if isinstance(sent_id, str) else None,
                    "seq": seq,
                    "status": "rejected",
                    "reason": "invalid",
                    "detail": problem,
                }
                continue
            placeable.append((seq, index, event_id, raw, id_bytes))  # type: ignore[arg-type]
        placeable.sort(key=lambda item: (item[0], item[1]))

        with self._tx() as conn:
            dev = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            state = _ChainState(dev)
            known = self._known_ids(conn, device_id, [item[2] for item in placeable])
            counts = {
                "duplicates": 0,
                "rejected": len(events) - len(placeable),
                "gaps": 0,
                "new": 0,
            }
            rows: list[tuple[Any, ...]] = []
            for seq, index, event_id, raw, id_bytes in placeable:
                ack = {"id": event_id, "seq": seq}
                acks[index] = ack
                claimed = raw.get("hash")
                if event_id in known:
                    stored_seq, stored_hash, status, reason = known[event_id]
                    if status == "rejected":
                        assert reason is not None  # a rejection always has its reason
                        ack.update(status="rejected", reason=reason.split(":", 1)[0], detail=reason)
                        counts["rejected"] += 1
                    elif stored_hash == claimed and stored_seq == seq:
                        ack["status"] = "duplicate"
                        counts["duplicates"] += 1
                    else:
                        ack.update(
                            status="rejected",
                            reason="id_conflict",
                            detail=f"id already stored at seq {stored_seq} with another hash",
                        )
                        counts["rejected"] += 1
                    continue
                if raw.get("type") == "journal.gap" and seq >= state.next_seq:
                    self._skip_declared_gap(conn, device_id, state, seq, raw, rows)
                if seq < state.next_seq:
                    ack.update(
                        status="rejected",
                        reason="seq_conflict",
                        detail=f"seq {seq} is already held by another event id",
                    )
                    counts["rejected"] += 1
                    continue
                if seq > state.next_seq:
                    ack.update(
                        status="retry_later",
                        reason="gap",
                        detail=f"waiting for seq {state.next_seq} first",
                    )
                    counts["gaps"] += 1
                    continue
                stored = self._place(conn, dev, state, seq, event_id, id_bytes, raw, now, rows)
                known[event_id] = (seq, stored["hash"], stored["status"], stored["reason"])
                if stored["status"] == "stored":
                    ack["status"] = "accepted"
                    counts["new"] += 1
                else:
                    ack.update(status="rejected", reason="invalid", detail=stored["reason"])
                    counts["rejected"] += 1
            conn.executemany(
                "INSERT INTO events (device_id, seq, id, wall_ms, mono_ns, type, payload, "
                "prev_hash, hash, received_at_ms, link_ok, status, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "UPDATE devices SET next_seq = ?, last_hash = ?, chain_ok = ?, "
                "chain_broken_at = ?, chain_break_reason = ?, unique_events = unique_events + ?, "
                "duplicates = duplicates + ?, rejected = rejected + ?, gaps = gaps + ?, "
                "last_event_at_ms = CASE WHEN ? > 0 THEN ? ELSE last_event_at_ms END "
                "WHERE device_id = ?",
                (
                    state.next_seq,
                    state.last_hash,
                    int(state.chain_ok),
                    state.broken_at,
                    state.break_reason,
                    counts["new"],
                    counts["duplicates"],
                    counts["rejected"],
                    counts["gaps"],
                    counts["new"],
                    now,
                    device_id,
                ),
            )
        return {
            "acks": acks,
            "next_seq": state.next_seq,
            "chain_ok": state.chain_ok,
            "server_time_ms": self.now_ms(),
        }

    @staticmethod
    def _identify(raw: object) -> tuple[str | None, bytes, int | None, str | None]:
        """Return (canonical id, id bytes, seq, problem): what is needed to place an event."""
        if not isinstance(raw, Mapping):
            return None, b"", None, "event: must be a JSON object"
        seq = raw.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= _MAX_SEQ:
            return None, b"", None, f"seq: must be an integer >= 1, got {seq!r}"
        text = raw.get("id")
        try:
            if not isinstance(text, str):
                raise ValueError
            parsed = uuid.UUID(text)
        except ValueError:
            return None, b"", seq, f"id: must be a UUID, got {text!r}"
        return str(parsed), parsed.bytes, seq, None

    @staticmethod
    def _known_ids(
        conn: sqlite3.Connection, device_id: str, ids: list[str]
    ) -> dict[str, tuple[int, str | None, str, str | None]]:
        known: dict[str, tuple[int, str | None, str, str | None]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT id, seq, hash, status, reason FROM events "
                f"WHERE device_id = ? AND id IN ({marks})",
                (device_id, *chunk),
            ):
                known[row["id"]] = (row["seq"], row["hash"], row["status"], row["reason"])
        return known

    @staticmethod
    def _skip_declared_gap(
        conn: sqlite3.Connection,
        device_id: str,
        state: _ChainState,
        seq: int,
        raw: Mapping[str, Any],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Let a device's ``journal.gap`` event continue its chain past events it lost.

        The device lost events ``from_seq..to_seq`` (its WAL was damaged) and journaled
        the gap at ``to_seq + 1``, chained to its last surviving event (``from_seq - 1``).
        Accepted when ``from_seq <= next_seq <= seq``: the central moves its cursor to
        the gap event and checks its ``prev_hash`` against the hash it holds for
        ``from_seq - 1`` -- the lost events it already received stay as they are, and
        the ones it never received are gone for good (the gap event says how many).
        Anything else is left to the usual checks (``gap``, ``seq_conflict``).
        """
        try:
            payload = json.loads(raw.get("payload_json") or "")
            first, last = payload["from_seq"], payload["to_seq"]
        except (TypeError, ValueError, KeyError):
            return
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last)):
            return
        if last != seq - 1 or not 1 <= first <= state.next_seq <= seq:
            return
        if first < state.next_seq:
            anchor = first - 1
            pending = [row[8] for row in rows if row[1] == anchor]
            dev = conn.execute(
                "SELECT anchor_seq, anchor_prev_hash FROM devices WHERE device_id = ?",
                (device_id,),
            ).fetchone()
            if pending:
                state.last_hash = pending[-1]
            elif anchor == 0:
                state.last_hash = _GENESIS_HEX
            elif dev is not None and dev["anchor_seq"] == anchor + 1:
                state.last_hash = dev["anchor_prev_hash"]
            else:
                row = conn.execute(
                    "SELECT hash FROM events WHERE device_id = ? AND seq = ?", (device_id, anchor)
                ).fetchone()
                state.last_hash = row["hash"] if row is not None else None
        log.warning(
            "device %s lost journal events %d..%d (%d never received here)",
            device_id,
            first,
            last,
            seq - state.next_seq,
        )
        state.next_seq = seq

    def _place(
        self,
        conn: sqlite3.Connection,
        dev: sqlite3.Row,
        state: _ChainState,
        seq: int,
        event_id: str,
        id_bytes: bytes,
        raw: Mapping[str, Any],
        now: int,
        rows: list[tuple[Any, ...]],
    ) -> dict[str, Any]:
        """Queue the event's row at ``state.next_seq`` (stored or rejected) in *rows*, and
        advance the chain."""
        claimed = raw.get("hash") if isinstance(raw.get("hash"), str) else None
        prev_claimed = raw.get("prev_hash") if isinstance(raw.get("prev_hash"), str) else None
        values: dict[str, Any] = {}
        reason: str | None = None
        computed: str | None = None
        try:
            values["wall_ms"] = _int_field(raw, "wall_ms", -_I64, _I64 - 1)
            values["mono_ns"] = _int_field(raw, "mono_ns", -_I64, _I64 - 1)
            type_ = raw.get("type")
            if not isinstance(type_, str):
                raise InvalidEvent(f"type: must be a string, got {type_!r}")
            values["type"] = check_type(type_)
            values["payload"], payload = self._payload(raw.get("payload_json"))
            values["prev_hash"] = _hash_field(raw, "prev_hash")
            values["hash"] = _hash_field(raw, "hash")
            computed = event_hash(
                bytes.fromhex(values["prev_hash"]),
                seq,
                id_bytes,
                values["wall_ms"],
                values["mono_ns"],
                values["type"],
                values["payload"],
            ).hex()
            reason = self._apply_side_effects(conn, dev, values, payload)
        except InvalidEvent as exc:
            reason = f"invalid: {exc}"

        prev_ok = state.last_hash is not None and prev_claimed == state.last_hash
        hash_ok = computed is not None and computed == claimed
        link_ok = prev_ok and hash_ok
        if not link_ok:
            if computed is None:
                why = f"seq {seq}: event could not be hashed ({reason}); link unverifiable"
            elif not prev_ok:
                why = f"seq {seq}: prev_hash is not the hash of seq {seq - 1}"
            else:
                why = f"seq {seq}: hash does not match the event's content"
            state.broke(seq, why)
        # A claim the central does not believe is still the device's journal: stored,
        # with the reason it was not shared.
        status = "stored" if reason is None or reason.startswith("not_shared") else "rejected"
        rows.append(
            (
                dev["device_id"],
                seq,
                event_id,
                values.get("wall_ms"),
                values.get("mono_ns"),
                values.get("type"),
                values.get("payload"),
                prev_claimed if prev_claimed is not None and _HASH_RE.match(prev_claimed) else None,
                claimed if claimed is not None and _HASH_RE.match(claimed) else None,
                now,
                int(link_ok),
                status,
                reason,
            ),
        )
        # The device chains on from its own hash: one altered event then shows
        # as one broken link, not as every link after it.
        state.advance(claimed if claimed is not None and _HASH_RE.match(claimed) else None)
        return {"status": status, "reason": reason, "hash": claimed}

    def _payload(self, text: object) -> tuple[str, dict[str, Any]]:
        """Return the payload text as sent (what the hash covers) and its parsed object.

        Raises:
            InvalidEvent: not text, too long, not a JSON object, or not the
                canonical form the journal writes (docs/journal.md).
        """
        if not isinstance(text, str):
            raise InvalidEvent("payload_json: must be the payload's canonical JSON text")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidEvent("payload_json: not valid Unicode text") from None
        if size > self.settings.max_payload_bytes:
            raise InvalidEvent(
                f"payload_json: {size} bytes exceeds {self.settings.max_payload_bytes}"
            )
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise InvalidEvent(f"payload_json: not JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise InvalidEvent("payload_json: must hold a JSON object")
        # Same function the journal wrote it with: equal text for every allowed value.
        if canonical_json(payload) != text:
            raise InvalidEvent("payload_json: not in canonical form (docs/journal.md)")
        return text, payload

    def _apply_side_effects(
        self,
        conn: sqlite3.Connection,
        dev: sqlite3.Row,
        values: Mapping[str, Any],
        payload: Mapping[str, Any],
    ) -> str | None:
        """Share single-use invitation use and NTAG 424 counters with the site's doors.

        Returns None (shared, or nothing to share), ``"invalid: ..."`` (the event is
        rejected), or ``"not_shared: ..."``: the event is stored (it is the device's
        journal) but the claim is not believed, so no other door hears of it. A claim
        is believed only from a device whose door the credential is valid for, and a
        counter only with evidence (a SUN message that verifies, or -- without keys --
        a bounded advance).
        """
        if values["type"] == EVENT_INVITATION_USED:
            return self._share_invitation_use(conn, dev, values, payload)
        if values["type"] == EVENT_BADGE_COUNTER:
            return self._share_badge_counter(conn, dev, values, payload)
        return None

    @staticmethod
    def _valid_here(dev: sqlite3.Row, doors: Sequence[str], zones: Sequence[str]) -> bool:
        """True if a credential for *doors* / *zones* is valid at the device's door."""
        device_zones = set(json.loads(dev["zones"] or "[]"))
        return dev["door"] in doors or bool(device_zones & set(zones))

    def _not_shared(self, dev: sqlite3.Row, what: str, why: str) -> str:
        log.warning("device %s: %s not shared: %s", dev["device_id"], what, why)
        return f"not_shared: {why}"

    def _share_invitation_use(
        self,
        conn: sqlite3.Connection,
        dev: sqlite3.Row,
        values: Mapping[str, Any],
        payload: Mapping[str, Any],
    ) -> str | None:
        site = dev["site"]
        inv_id, door, expires = (
            payload.get("invitation_id"),
            payload.get("door"),
            payload.get("expires"),
        )
        if not isinstance(inv_id, str) or not 1 <= len(inv_id) <= 64:
            return "invalid: payload.invitation_id must be text of 1 to 64 characters"
        if not isinstance(door, str) or isinstance(expires, bool) or not isinstance(expires, int):
            return "invalid: payload.door must be text and payload.expires Unix seconds"
        what = f"invitation.used {inv_id}"
        if door != dev["door"]:
            return self._not_shared(dev, what, f"door {door!r} is not the device's door")
        row = conn.execute(
            "SELECT data FROM invitations WHERE id = ? AND site = ?", (inv_id, site)
        ).fetchone()
        if row is None:
            return self._not_shared(dev, what, "unknown invitation")
        invitation = json.loads(row["data"])
        if not invitation.get("single_use"):
            return self._not_shared(dev, what, "the invitation is not single-use")
        if not self._valid_here(dev, invitation["doors"], invitation["zones"]):
            return self._not_shared(dev, what, f"the invitation is not valid at {dev['door']}")
        if conn.execute("SELECT 1 FROM used_invitations WHERE id = ?", (inv_id,)).fetchone():
            return None  # first use wins; later ones are in the journal anyway
        data = {
            "id": inv_id,
            "used_at": values["wall_ms"] // 1000,
            # The central's own record, not what the device says.
            "expires_at": invitation["expires"],
            "door": door,
            "device_id": dev["device_id"],
        }
        conn.execute(
            "INSERT INTO used_invitations (id, site, data) VALUES (?, ?, ?)",
            (inv_id, site, _dumps(data)),
        )
        self._change(conn, site, "used_invitation", inv_id, data)
        return None

    def _share_badge_counter(
        self,
        conn: sqlite3.Connection,
        dev: sqlite3.Row,
        values: Mapping[str, Any],
        payload: Mapping[str, Any],
    ) -> str | None:
        site = dev["site"]
        try:
            uid = _uid(payload.get("uid"))
        except BadRequest as exc:
            return f"invalid: payload.{exc.detail}"
        counter = payload.get("counter")
        if isinstance(counter, bool) or not isinstance(counter, int):
            return "invalid: payload.counter must be an integer"
        if not 0 <= counter <= _MAX_COUNTER:
            return "invalid: payload.counter must be 0 to 16777215"
        what = f"badge.counter {uid}={counter}"
        door, sun_url = payload.get("door"), payload.get("sun_url")
        if door != dev["door"]:
            return self._not_shared(dev, what, f"door {door!r} is not the device's door")
        badge_row = conn.execute(
            "SELECT data FROM badges WHERE uid = ? AND site = ?", (uid, site)
        ).fetchone()
        if badge_row is None:
            return self._not_shared(dev, what, "unknown badge")
        badge = json.loads(badge_row["data"])
        if not self._valid_here(dev, badge["doors"], badge["zones"]):
            return self._not_shared(dev, what, f"the badge is not valid at {dev['door']}")
        row = conn.execute(
            "SELECT counter FROM badge_counters WHERE site = ? AND uid = ?", (site, uid)
        ).fetchone()
        last = None if row is None else row["counter"]
        if self._sun is not None:
            if not isinstance(sun_url, str) or not sun_url:
                return self._not_shared(dev, what, "no SUN message (payload.sun_url)")
            try:
                tap = self._sun.verify(sun_url)
            except (SunError, ValueError) as exc:
                return self._not_shared(dev, what, f"SUN message does not verify: {exc}")
            if tap.uid_hex.lower() != uid or tap.counter != counter:
                return self._not_shared(
                    dev, what, f"SUN message is for {tap.uid_hex.lower()}={tap.counter}"
                )
        else:
            ceiling = (last or 0) + self.settings.counter_max_advance
            if counter > ceiling:
                return self._not_shared(
                    dev,
                    what,
                    f"counter {counter} is more than {self.settings.counter_max_advance} above "
                    f"the last shared ({last or 0}) and no SUN keys verify it",
                )
        if last is not None and last >= counter:
            return None
        updated = values["wall_ms"] // 1000
        conn.execute(
            "INSERT INTO badge_counters (site, uid, counter, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (site, uid) DO UPDATE SET counter = excluded.counter, "
            "updated_at = excluded.updated_at",
            (site, uid, counter, updated),
        )
        self._change(
            conn,
            site,
            "badge_counter",
            uid,
            {"uid": uid, "counter": counter, "updated_at": updated},
        )
        return None

    # -- heartbeat --------------------------------------------------------------

    def heartbeat(
        self, device_id: str, body: Mapping[str, Any], received_at_ms: int
    ) -> dict[str, Any]:
        """Record a health report; return the ``HeartbeatResponse``.

        Raises:
            BadRequest: *body* is not an object with an integer ``sent_at_ms``.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        sent = body.get("sent_at_ms")
        if isinstance(sent, bool) or not isinstance(sent, int):
            raise BadRequest("sent_at_ms: must be an integer (Unix ms)")
        for field, kind in (
            ("backlog", dict),
            ("disk", dict),
            ("versions", dict),
            ("alarms", list),
            ("doors", list),
        ):
            if field in body and not isinstance(body[field], kind):
                raise BadRequest(f"{field}: must be {'an object' if kind is dict else 'a list'}")
        with self._tx() as conn:
            dev = conn.execute(
                "SELECT next_seq, chain_ok FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            conn.execute(
                "UPDATE devices SET last_heartbeat_at_ms = ?, last_heartbeat = ? "
                "WHERE device_id = ?",
                (received_at_ms, _dumps(dict(body)), device_id),
            )
            head = self._head(conn)
        return {
            "sent_at_ms": sent,
            "received_at_ms": received_at_ms,
            "deltas_cursor": str(head),
            "next_seq": dev["next_seq"],
            "chain_ok": bool(dev["chain_ok"]),
            "heartbeat_interval_s": self.settings.heartbeat_interval_s,
            "poll_interval_s": self.settings.poll_interval_s,
            # Last, as close to the answer leaving as possible (t2).
            "server_time_ms": self.now_ms(),
        }

    # -- self-test reports -------------------------------------------------------

    def put_selftest(
        self, device_id: str, body: Mapping[str, Any], received_at_ms: int
    ) -> dict[str, Any]:
        """Keep *body* (a ``SelfTestReport``) as the latest report of *device_id*.

        Returns:
            a ``SelfTestStored`` dict (``device_id``, ``received_at_ms``, ``ok``).

        Raises:
            BadRequest: *body* is not an object with a boolean ``ok`` and a list
                ``results``. NotFound: no such device.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        ok = body.get("ok")
        if not isinstance(ok, bool):
            raise BadRequest("ok: must be true or false")
        results = body.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise BadRequest("results: must be a list of objects")
        with self._tx() as conn:
            if (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no device {device_id!r}")
            conn.execute(
                "INSERT INTO selftest_reports (device_id, received_at_ms, ok, report) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                "received_at_ms = excluded.received_at_ms, ok = excluded.ok, "
                "report = excluded.report",
                (device_id, received_at_ms, int(ok), _dumps(dict(body))),
            )
        return {"device_id": device_id, "received_at_ms": received_at_ms, "ok": ok}

    def selftest(self, device_id: str) -> dict[str, Any]:
        """Return the ``StoredSelfTest`` of *device_id*: its latest report and when it came.

        Raises:
            NotFound: no such device, or it never sent a report.
        """
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM selftest_reports WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no self-test report from device {device_id!r}")
        return {
            "device_id": device_id,
            "received_at_ms": row["received_at_ms"],
            "ok": bool(row["ok"]),
            "report": json.loads(row["report"]),
        }

    # -- deltas -----------------------------------------------------------------

    @staticmethod
    def _head(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]

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
        so a stolen door holds nothing to search a guard's PIN from.

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
        page: dict[str, Any] = {name: [] for name in _DELTA_LISTS.values()}
        removed: dict[str, list[Any]] = {name: [] for name in _REMOVABLE.values()}
        with self._tx() as conn:
            head = self._head(conn)
            if after > head:
                raise CursorUnknown(f"cursor {cursor!r} is unknown here: resync without a cursor")
            rows = conn.execute(
                "SELECT seq, kind, key, op, data FROM changes "
                "WHERE seq > ? AND (site IS NULL OR site = ?) ORDER BY seq LIMIT ?",
                (after, site, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        latest: dict[tuple[str, str], sqlite3.Row] = {}
        for row in rows:
            latest.pop((row["kind"], row["key"]), None)  # keep the order of last change
            latest[(row["kind"], row["key"])] = row
        for row in latest.values():
            if row["op"] == "delete" and row["kind"] == "revocation":
                kind, _, item = row["key"].partition(":")
                removed["revocations"].append({"kind": kind, "id": item})
            elif row["op"] == "delete":
                removed[_REMOVABLE[row["kind"]]].append(row["key"])
            else:
                item = json.loads(row["data"])
                if row["kind"] == "badge" and not guard_console:
                    item.pop("pin_hash", None)
                page[_DELTA_LISTS[row["kind"]]].append(item)
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
        with self._tx() as conn:
            return str(self._head(conn))

    # -- invitations ------------------------------------------------------------

    def create_invitation(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Mint a signed invitation (an ``InvitationCreate`` body) with the active key.

        Returns:
            ``{"token": "PT1:...", "invitation": InvitationDelta}``.

        Raises:
            BadRequest: a bad field (named), or claims the token format refuses.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        _only(
            "invitation",
            body,
            ("visitor", "host", "site", "doors", "zones", "not_before", "expires", "single_use"),
        )
        now_s = self.now_ms() // 1000
        site = _name("site", body.get("site", self.settings.site))
        not_before = _opt_seconds("not_before", body.get("not_before"))
        not_before = now_s if not_before is None else not_before
        expires = _opt_seconds("expires", body.get("expires"))
        if expires is None:
            expires = not_before + self.settings.invitation_default_s
        invitation_id = "i" + secrets.token_urlsafe(9)
        try:
            claims = InvitationClaims(
                invitation_id=invitation_id,
                visitor=body.get("visitor"),  # type: ignore[arg-type]
                site=site,
                not_before=not_before,
                expires=expires,
                single_use=_bool("single_use", body.get("single_use", False)),
                doors=tuple(_names("doors", body.get("doors"))),
                zones=tuple(_names("zones", body.get("zones"))),
                host=body.get("host", ""),
            )
        except ClaimsError as exc:
            raise BadRequest(str(exc)) from None
        with self._tx() as conn:
            row, key = self._active_key(conn)
            try:
                token = mint(claims, key)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            data = {
                "id": invitation_id,
                "site": site,
                "visitor": claims.visitor,
                "host": claims.host,
                "doors": list(claims.doors),
                "zones": list(claims.zones),
                "not_before": claims.not_before,
                "expires": claims.expires,
                "single_use": claims.single_use,
                "kid": row["kid"],
            }
            conn.execute(
                "INSERT INTO invitations (id, site, kid, expires, data) VALUES (?, ?, ?, ?, ?)",
                (invitation_id, site, row["kid"], expires, _dumps(data)),
            )
            self._change(conn, site, "invitation", invitation_id, data)
        log.info("invitation %s minted for %s", invitation_id, claims.visitor)
        return {"token": token, "invitation": data}

    def revoke_invitation(self, invitation_id: str) -> dict[str, Any]:
        """Revoke an invitation; idempotent. Return the ``Revocation``.

        Raises:
            NotFound: no such invitation.
        """
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            row = conn.execute(
                "SELECT site, expires, revoked_at FROM invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no invitation {invitation_id!r}")
            revoked_at = row["revoked_at"] if row["revoked_at"] is not None else now_s
            data = {
                "kind": "invitation",
                "id": invitation_id,
                "revoked_at": revoked_at,
                "expires_at": row["expires"],
            }
            if row["revoked_at"] is None:
                conn.execute(
                    "UPDATE invitations SET revoked_at = ? WHERE id = ?", (now_s, invitation_id)
                )
                self._revoke(conn, row["site"], data)
        return data

    # -- badges -----------------------------------------------------------------

    def put_badge(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Add or replace a badge (a ``BadgeCreate`` body); return the ``Badge``.

        Raises:
            BadRequest: a bad field (named), or no door and no zone.
        """
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        _only(
            "badge",
            body,
            (
                "uid",
                "site",
                "kind",
                "holder",
                "doors",
                "zones",
                "enabled",
                "not_before",
                "not_after",
                "role",
                "pin_hash",
                "guard_id",
            ),
        )
        uid = _uid(body.get("uid"))
        kind = body.get("kind", "ntag424")
        if kind not in _BADGE_KINDS:
            raise BadRequest(f"kind: must be one of {list(_BADGE_KINDS)}")
        badge = {
            "uid": uid,
            "site": _name("site", body.get("site", self.settings.site)),
            "kind": kind,
            "holder": _text("holder", body.get("holder")),
            "doors": _names("doors", body.get("doors")),
            "zones": _names("zones", body.get("zones")),
            "enabled": _bool("enabled", body.get("enabled", True)),
            "not_before": _opt_seconds("not_before", body.get("not_before")),
            "not_after": _opt_seconds("not_after", body.get("not_after")),
        }
        if not badge["doors"] and not badge["zones"]:
            raise BadRequest("doors: a badge needs at least one door or zone")
        badge.update(_guard_fields(body))
        if (
            badge["not_before"] is not None
            and badge["not_after"] is not None
            and badge["not_after"] < badge["not_before"]
        ):
            raise BadRequest("not_after: must not be before not_before")
        with self._tx() as conn:
            old = conn.execute("SELECT site FROM badges WHERE uid = ?", (uid,)).fetchone()
            if old is not None and old["site"] != badge["site"]:
                # Moving a badge to another site: the old site's doors forget it.
                self._change(conn, old["site"], "badge", uid, None)
            if badge["enabled"]:
                # Adding a revoked badge again (found again) lifts its revocation.
                self._unrevoke(conn, "badge", uid)
            conn.execute(
                "INSERT INTO badges (uid, site, data) VALUES (?, ?, ?) ON CONFLICT (uid) DO "
                "UPDATE SET site = excluded.site, data = excluded.data",
                (uid, badge["site"], _dumps(badge)),
            )
            self._change(conn, badge["site"], "badge", uid, badge)
        return badge

    def revoke_badge(self, uid: str) -> dict[str, Any]:
        """Disable a badge and publish its revocation; idempotent. Return the ``Revocation``.

        Raises:
            BadRequest: a malformed UID. NotFound: no such badge.
        """
        uid = _uid(uid)
        now_s = self.now_ms() // 1000
        with self._tx() as conn:
            row = conn.execute("SELECT site, data FROM badges WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                raise NotFound(f"no badge {uid}")
            previous = conn.execute(
                "SELECT data FROM revocations WHERE kind = 'badge' AND id = ?", (uid,)
            ).fetchone()
            if previous is not None:
                return json.loads(previous["data"])
            badge = json.loads(row["data"])
            badge["enabled"] = False
            conn.execute("UPDATE badges SET data = ? WHERE uid = ?", (_dumps(badge), uid))
            self._change(conn, row["site"], "badge", uid, badge)
            data = {"kind": "badge", "id": uid, "revoked_at": now_s, "expires_at": None}
            self._revoke(conn, row["site"], data)
        return data

    def _revoke(self, conn: sqlite3.Connection, site: str, data: Mapping[str, Any]) -> None:
        conn.execute(
            "INSERT INTO revocations (kind, id, site, data) VALUES (?, ?, ?, ?)",
            (data["kind"], data["id"], site, _dumps(data)),
        )
        self._change(conn, site, "revocation", f"{data['kind']}:{data['id']}", data)

    def _unrevoke(self, conn: sqlite3.Connection, kind: str, item: str) -> None:
        row = conn.execute(
            "DELETE FROM revocations WHERE kind = ? AND id = ? RETURNING site", (kind, item)
        ).fetchone()
        if row is not None:
            self._change(conn, row["site"], "revocation", f"{kind}:{item}", None)

    def delete_badge(self, uid: str) -> None:
        """Forget a badge (it goes out in ``removed.badges``).

        Raises:
            BadRequest: a malformed UID. NotFound: no such badge.
        """
        uid = _uid(uid)
        with self._tx() as conn:
            row = conn.execute("SELECT site FROM badges WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                raise NotFound(f"no badge {uid}")
            conn.execute("DELETE FROM badges WHERE uid = ?", (uid,))
            self._change(conn, row["site"], "badge", uid, None)
            self._unrevoke(conn, "badge", uid)

    # -- schedules and door settings ---------------------------------------------

    def put_schedule(self, schedule_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Set the schedule of the door or zone *schedule_id* (a ``ScheduleInput`` body).

        One schedule per door or zone of a site, as the agent's cache keeps them.

        Returns:
            the ``Schedule``.

        Raises:
            BadRequest: a bad field (named).
        """
        schedule_id = _name("schedule_id", schedule_id)
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        _only("schedule", body, ("site", "timezone", "rules"))
        timezone = body.get("timezone", "UTC")
        if not isinstance(timezone, str) or not timezone or len(timezone) > 64:
            raise BadRequest("timezone: must be an IANA zone name")
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(timezone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise BadRequest(f"timezone: {timezone!r} is not a known IANA zone") from None
        rules = body.get("rules")
        if not isinstance(rules, list):
            raise BadRequest("rules: must be a list")
        clean = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or set(rule) != {"days", "start", "end"}:
                raise BadRequest(f"rules[{i}]: must be an object with days, start and end")
            days = rule["days"]
            if not isinstance(days, list) or not days or not all(d in _DAYS for d in days):
                raise BadRequest(f"rules[{i}].days: must be a non-empty list of {list(_DAYS)}")
            start, end = rule["start"], rule["end"]
            if not isinstance(start, str) or not _TIME_RE.match(start):
                raise BadRequest(f"rules[{i}].start: must be HH:MM")
            if not isinstance(end, str) or not (_TIME_RE.match(end) or end == "24:00"):
                raise BadRequest(f"rules[{i}].end: must be HH:MM or 24:00")
            if end <= start:
                raise BadRequest(f"rules[{i}].end: must be after start")
            clean.append({"days": list(dict.fromkeys(days)), "start": start, "end": end})
        schedule: dict[str, Any] = {
            "id": schedule_id,
            "site": _name("site", body.get("site", self.settings.site)),
            "timezone": timezone,
            "rules": clean,
        }
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO schedules (site, id, data) VALUES (?, ?, ?) ON CONFLICT (site, id) "
                "DO UPDATE SET data = excluded.data",
                (schedule["site"], schedule_id, _dumps(schedule)),
            )
            self._change(conn, schedule["site"], "schedule", schedule_id, schedule)
        return schedule

    def delete_schedule(self, schedule_id: str, site: str | None = None) -> None:
        """Remove the schedule of a door or zone (it goes out in ``removed.schedules``).

        Raises:
            BadRequest: a bad site name. NotFound: no such schedule.
        """
        site = _name("site", site if site is not None else self.settings.site)
        with self._tx() as conn:
            cursor = conn.execute(
                "DELETE FROM schedules WHERE site = ? AND id = ?", (site, schedule_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no schedule {schedule_id!r} at site {site!r}")
            self._change(conn, site, "schedule", schedule_id, None)

    def put_door_settings(self, door: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the settings of *door* (a ``DoorSettingsInput`` body); return ``DoorSettings``.

        Raises:
            BadRequest: a bad field (named).
        """
        door = _name("door", door)
        if not isinstance(body, Mapping):
            raise BadRequest("body: must be a JSON object")
        _only("door settings", body, ("site", "settings"))
        site = _name("site", body.get("site", self.settings.site))
        settings = body.get("settings")
        if not isinstance(settings, dict):
            raise BadRequest("settings: must be an object")
        _check_door_settings(settings)
        with self._tx() as conn:
            row = conn.execute(
                "SELECT version FROM door_settings WHERE site = ? AND door = ?", (site, door)
            ).fetchone()
            version = 1 if row is None else row["version"] + 1
            data = {"door": door, "site": site, "version": version, "settings": settings}
            conn.execute(
                "INSERT INTO door_settings (site, door, version, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site, door) DO UPDATE SET version = excluded.version, "
                "data = excluded.data",
                (site, door, version, _dumps(data)),
            )
            self._change(conn, site, "door_settings", door, data)
        return data

    # -- what was received ------------------------------------------------------

    def _summary(self, row: sqlite3.Row, verified: bool | None) -> dict[str, Any]:
        heartbeat = row["last_heartbeat"]
        return {
            "device_id": row["device_id"],
            "site": row["site"],
            "door": row["door"],
            "enabled": bool(row["enabled"]),
            "guard_console": bool(row["guard_console"]),
            "reset_pending": bool(row["reset_allowed"]),
            "unique_events": row["unique_events"],
            "duplicates_seen": row["duplicates"],
            "rejected": row["rejected"],
            "gaps_answered": row["gaps"],
            "next_seq": row["next_seq"],
            "chain_ok": bool(row["chain_ok"]),
            "chain_broken_at": row["chain_broken_at"],
            "chain_break_reason": row["chain_break_reason"],
            "chain_verified": verified,
            "anchor_seq": row["anchor_seq"],
            "enrolled_at_ms": row["enrolled_at_ms"],
            "last_event_at_ms": row["last_event_at_ms"],
            "last_heartbeat_at_ms": row["last_heartbeat_at_ms"],
            "last_heartbeat": None if heartbeat is None else json.loads(heartbeat),
        }

    def received(self, *, verify: bool = False) -> dict[str, Any]:
        """Return the ``ReceivedView``: per-device counts and chain state, and totals.

        With *verify*, each device's stored chain is walked again from the
        database (:meth:`verify_chain`) into ``chain_verified``.
        """
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        devices = [
            self._summary(row, self.verify_chain(row["device_id"])[0] if verify else None)
            for row in rows
        ]
        return {
            "devices": devices,
            "totals": {
                "devices": len(devices),
                "unique_events": sum(d["unique_events"] for d in devices),
                "duplicates_seen": sum(d["duplicates_seen"] for d in devices),
                "rejected": sum(d["rejected"] for d in devices),
                "chain_ok": all(
                    d["chain_ok"] and d["chain_verified"] is not False for d in devices
                ),
            },
        }

    def verify_chain(self, device_id: str) -> tuple[bool, int | None]:
        """Walk the stored events of *device_id* and recompute every link.

        Returns:
            ``(True, None)`` if every event from seq 1 (or the enrollment
            anchor) links to the one before and hashes to its stored hash,
            else ``(False, seq of the first bad event)``.

        Raises:
            NotFound: no such device.
        """
        with self._tx() as conn:
            dev = conn.execute(
                "SELECT anchor_seq, anchor_prev_hash FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
            if dev is None:
                raise NotFound(f"no device {device_id!r}")
            expected_seq = dev["anchor_seq"] or 1
            prev = dev["anchor_prev_hash"] or _GENESIS_HEX
            anchor_seq = dev["anchor_seq"] or 1
            anchor_prev = dev["anchor_prev_hash"] or _GENESIS_HEX
            for row in conn.execute(
                "SELECT seq, id, wall_ms, mono_ns, type, payload, prev_hash, hash FROM events "
                "WHERE device_id = ? ORDER BY seq",
                (device_id,),
            ).fetchall():
                first = _declared_gap_start(row, expected_seq)
                if first is not None:
                    # The device lost first..seq-1; its chain goes on from first - 1.
                    expected_seq = row["seq"]
                    if first == anchor_seq:
                        prev = anchor_prev
                    else:
                        kept = conn.execute(
                            "SELECT hash FROM events WHERE device_id = ? AND seq = ?",
                            (device_id, first - 1),
                        ).fetchone()
                        prev = kept["hash"] if kept is not None else ""
                if row["seq"] != expected_seq or row["prev_hash"] != prev or row["payload"] is None:
                    return False, row["seq"]
                computed = event_hash(
                    bytes.fromhex(prev),
                    row["seq"],
                    uuid.UUID(row["id"]).bytes,
                    row["wall_ms"],
                    row["mono_ns"],
                    row["type"],
                    row["payload"],
                ).hex()
                if computed != row["hash"]:
                    return False, row["seq"]
                prev = row["hash"]
                expected_seq += 1
        return True, None

    def device_events(
        self, device_id: str, after_seq: int = 0, limit: int = 1000
    ) -> dict[str, Any]:
        """Return a ``StoredEventsPage``: events of *device_id* with seq > *after_seq*.

        Raises:
            BadRequest: a bad *after_seq* or *limit*. NotFound: no such device.
        """
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise BadRequest("after_seq: must be an integer >= 0")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise BadRequest("limit: must be 1 to 10000")
        with self._tx() as conn:
            if (
                conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no device {device_id!r}")
            rows = conn.execute(
                "SELECT * FROM events WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device_id, after_seq, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        events = [
            {
                "id": row["id"],
                "seq": row["seq"],
                "wall_ms": row["wall_ms"],
                "mono_ns": row["mono_ns"],
                "type": row["type"],
                "payload_json": row["payload"],
                "payload": None if row["payload"] is None else json.loads(row["payload"]),
                "prev_hash": row["prev_hash"],
                "hash": row["hash"],
                "received_at_ms": row["received_at_ms"],
                "link_ok": bool(row["link_ok"]),
                "status": row["status"],
                "reason": row["reason"],
            }
            for row in rows
        ]
        return {
            "device_id": device_id,
            "events": events,
            "next_after_seq": rows[-1]["seq"] if rows else after_seq,
            "more": more,
        }

    def info(self) -> dict[str, Any]:
        """Return the ``AdminInfo``: site, active kid, head cursor, time, limits."""
        with self._tx() as conn:
            kid = conn.execute("SELECT kid FROM signing_keys WHERE active = 1").fetchone()[0]
            head = self._head(conn)
        return {
            "site": self.settings.site,
            "active_kid": kid,
            "deltas_cursor": str(head),
            "server_time_ms": self.now_ms(),
            "limits": self.settings.limits(),
        }


def _check_door_settings(settings: Mapping[str, Any]) -> None:
    def number(field: str, high: float) -> None:
        value = settings[field]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise BadRequest(f"settings.{field}: must be a number in (0, {high}]")

    if "mode" in settings and settings["mode"] not in _MODES:
        raise BadRequest(f"settings.mode: must be one of {list(_MODES)}")
    if "unlock_s" in settings:
        number("unlock_s", 60)
    if "held_open_s" in settings:
        number("held_open_s", 3600)
    if "accept" in settings:
        accept = settings["accept"]
        if not isinstance(accept, list) or not all(kind in _ACCEPT for kind in accept):
            raise BadRequest(f"settings.accept: must be a list of {list(_ACCEPT)}")
    if "max_offline_staleness_s" in settings:
        value = settings["max_offline_staleness_s"]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise BadRequest("settings.max_offline_staleness_s: must be an integer >= 0 or null")


def _declared_gap_start(row: sqlite3.Row, expected_seq: int) -> int | None:
    """``from_seq`` of a stored ``journal.gap`` event that covers ``expected_seq``
    (the device lost ``from_seq..seq - 1``), else None."""
    if row["type"] != "journal.gap" or row["payload"] is None:
        return None
    try:
        payload = json.loads(row["payload"])
        first, last = payload["from_seq"], payload["to_seq"]
    except (TypeError, ValueError, KeyError):
        return None
    if not isinstance(first, int) or isinstance(first, bool) or last != row["seq"] - 1:
        return None
    return first if 1 <= first <= expected_seq <= row["seq"] else None


class _ChainState:
    """The per-device chain cursor while a batch is processed."""

    def __init__(self, dev: sqlite3.Row) -> None:
        self.next_seq: int = dev["next_seq"]
        self.last_hash: str | None = dev["last_hash"]
        self.chain_ok = bool(dev["chain_ok"])
        self.broken_at: int | None = dev["chain_broken_at"]
        self.break_reason: str | None = dev["chain_break_reason"]

    def broke(self, seq: int, reason: str) -> None:
        if self.chain_ok:
            self.chain_ok = False
            self.broken_at = seq
            self.break_reason = reason
            log.warning("hash chain broken: %s", reason)

    def advance(self, claimed_hash: str | None) -> None:
        self.next_seq += 1
        self.last_hash = claimed_hash


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on any exception)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
