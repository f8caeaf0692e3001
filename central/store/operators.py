"""Operators of the central: accounts with a role, API tokens, browser sessions, lock-out,
and the operator journal (who did what, when, from where).

* **Accounts** (``operators``): a name, one role of :data:`ROLES`, an optional password
  hashed with argon2id (memory-hard, ``argon2-cffi``), enabled or disabled.
* **API tokens** (``api_tokens``): random secrets for the CLI, shown once, stored as
  SHA-256 (a 256-bit random secret needs no slow hash), with an expiry, revocable.
* **Sessions** (``operator_sessions``): what a password login gives a browser: a session
  secret (the cookie) and a CSRF token, both stored hashed, with an expiry.
* **Lock-out**: :data:`LOCKOUT_FAILURES` wrong passwords for one account within
  :data:`LOCKOUT_WINDOW_MS` lock its password login for :data:`LOCKOUT_MS` (its API
  tokens keep working, so nobody can lock the security office out of the CLI by guessing).
* **Audit log** (``operator_journal``): every admin action, login, failure and lock-out,
  with the operator's name, the time, the route and ids, the status and the client address;
  hash-chained (:mod:`central.store.auditchain`), append-only (the database's triggers
  refuse UPDATE and DELETE), checked by :meth:`OperatorsMixin.verify_audit` and exported
  with its chain proof by :meth:`OperatorsMixin.audit_export`.

Which role may call which admin route is :mod:`central.auth`'s one table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import BadRequest, NotFound, Unauthorized
from .auditchain import AUDIT_GENESIS, row_hash
from .base import StoreBase, dumps
from .db import Connection, Row

__all__ = [
    "LOCKOUT_FAILURES",
    "LOCKOUT_MS",
    "LOCKOUT_WINDOW_MS",
    "ROLES",
    "SESSION_TTL_MS",
    "TOKEN_PREFIX",
    "OperatorsMixin",
]

#: The operator roles (docs/central.md, "Operators and roles").
ROLES = ("pass_office", "security_officer", "auditor", "installer")
#: Wrong passwords within the window that lock an account's password login...
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW_MS = 15 * 60 * 1000
#: ... for this long.
LOCKOUT_MS = 15 * 60 * 1000
#: A browser session's life.
SESSION_TTL_MS = 8 * 3600 * 1000
#: API tokens start with this, so a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "pct_"
#: Default and longest API token life.
TOKEN_TTL_S = 90 * 86400
TOKEN_MAX_TTL_S = 366 * 86400

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, t=3, p=4)
#: Verified against when the account is unknown, so both cost the same time.
_DUMMY_HASH = _hasher.hash("portier: no such operator")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise BadRequest("operator name: 1-64 of a-z 0-9 . _ - @")
    return name


def _operator(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "role": row["role"],
        "enabled": bool(row["enabled"]),
        "has_password": row["password_hash"] is not None,
        "created_at_ms": row["created_ms"],
        "locked_until_ms": row["locked_until_ms"],
    }


def journal(
    conn: Connection,
    at_ms: int,
    operator: str | None,
    action: str,
    detail: dict[str, Any] | None = None,
    *,
    remote: str | None = None,
    status: int | None = None,
) -> None:
    """Append one entry to the audit log, chained to the one before, inside the caller's
    transaction: it commits with the change it records, or neither does.

    The head is read and the row written under the store's write lock (every transaction
    takes it first), so concurrent centrals on one database extend one linear chain.
    """
    head = conn.execute(
        "SELECT seq, hash FROM operator_journal ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    row: dict[str, Any] = {
        "seq": 1 if head is None else int(head["seq"]) + 1,
        "at_ms": at_ms,
        "operator": operator,
        "action": action,
        "detail": dumps(detail or {}),
        "remote": remote,
        "status": status,
        "prev_hash": AUDIT_GENESIS if head is None else head["hash"],
    }
    row["hash"] = row_hash(row)
    conn.execute(
        "INSERT INTO operator_journal (seq, at_ms, operator, action, detail, remote, status, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(row[name] for name in _COLUMNS),
    )


_COLUMNS = ("seq", "at_ms", "operator", "action", "detail", "remote", "status", "prev_hash", "hash")


def _entry(row: Row) -> dict[str, Any]:
    return {name: row[name] for name in _COLUMNS}


class OperatorsMixin(StoreBase):
    """Operator accounts, API tokens, sessions, lock-out and the operator journal."""

    # -- accounts -----------------------------------------------------------------

    def add_operator(self, name: str, role: str, password: str | None = None) -> dict[str, Any]:
        """Create an operator; *password* None: an account that uses API tokens only.

        Raises:
            BadRequest: a bad name, role or password, or the name is taken.
        """
        _check_name(name)
        if role not in ROLES:
            raise BadRequest(f"role: one of {', '.join(ROLES)}")
        if password is not None and len(password) < 12:
            raise BadRequest("password: at least 12 characters")
        hashed = None if password is None else _hasher.hash(password)
        now = self.now_ms()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
                raise BadRequest(f"operator {name!r} exists")
            conn.execute(
                "INSERT INTO operators (name, role, password_hash, enabled, created_ms, "
                "failed_count) VALUES (?, ?, ?, 1, ?, 0)",
                (name, role, hashed, now),
            )
            journal(conn, now, None, "operator.add", {"name": name, "role": role})
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return _operator(row)

    def list_operators(self) -> list[dict[str, Any]]:
        """Return every operator (no secrets)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM operators ORDER BY name").fetchall()
        return [_operator(row) for row in rows]

    def disable_operator(self, name: str) -> dict[str, Any]:
        """Disable an operator: their tokens and sessions stop working at once.

        Raises:
            NotFound: no such operator.
        """
        now = self.now_ms()
        with self._tx() as conn:
            if conn.execute("UPDATE operators SET enabled = 0 WHERE name = ?", (name,)).rowcount:
                conn.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
                journal(conn, now, None, "operator.disable", {"name": name})
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no operator {name!r}")
        return _operator(row)

    # -- API tokens -----------------------------------------------------------------

    def create_api_token(
        self,
        operator: str,
        *,
        ttl_s: int = TOKEN_TTL_S,
        label: str = "",
        secret: str | None = None,
    ) -> dict[str, Any]:
        """Mint an API token for *operator*; return ``{"token", "token_id", "operator",
        "expires_at_ms"}``. The token is shown this once: only its hash is stored.

        *secret*: use this secret instead of a random one (a demo or test harness that
        chose it; at least 32 characters).

        Raises:
            BadRequest: a bad ttl or secret. NotFound: no such operator.
        """
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 60:
            raise BadRequest("ttl_s: an integer >= 60")
        if ttl_s > TOKEN_MAX_TTL_S:
            raise BadRequest(f"ttl_s: at most {TOKEN_MAX_TTL_S} (a year)")
        if secret is None:
            secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        elif len(secret) < 32:
            raise BadRequest("token: at least 32 characters")
        token_id = secrets.token_hex(6)
        now = self.now_ms()
        expires = now + ttl_s * 1000
        with self._tx() as conn:
            if (
                conn.execute("SELECT 1 FROM operators WHERE name = ?", (operator,)).fetchone()
                is None
            ):
                raise NotFound(f"no operator {operator!r}")
            conn.execute(
                "INSERT INTO api_tokens (token_id, token_hash, operator, label, created_ms, "
                "expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, _digest(secret), operator, label, now, expires),
            )
            journal(conn, now, None, "token.create", {"token_id": token_id, "operator": operator})
        return {
            "token": secret,
            "token_id": token_id,
            "operator": operator,
            "expires_at_ms": expires,
        }

    def list_api_tokens(self) -> list[dict[str, Any]]:
        """Return every API token's id, operator, label, expiry and revocation (no secret)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM api_tokens ORDER BY created_ms").fetchall()
        return [
            {
                "token_id": row["token_id"],
                "operator": row["operator"],
                "label": row["label"],
                "expires_at_ms": row["expires_ms"],
                "revoked_at_ms": row["revoked_ms"],
            }
            for row in rows
        ]

    def revoke_api_token(self, token_id: str) -> None:
        """Revoke an API token at once.

        Raises:
            NotFound: no such token.
        """
        now = self.now_ms()
        with self._tx() as conn:
            done = conn.execute(
                "UPDATE api_tokens SET revoked_ms = ? WHERE token_id = ? AND revoked_ms IS NULL",
                (now, token_id),
            ).rowcount
            if (
                not done
                and not conn.execute(
                    "SELECT 1 FROM api_tokens WHERE token_id = ?", (token_id,)
                ).fetchone()
            ):
                raise NotFound(f"no token {token_id!r}")
            journal(conn, now, None, "token.revoke", {"token_id": token_id})

    def authenticate_operator(self, token: str) -> dict[str, Any]:
        """Return ``{"name", "role", "via": "token"}`` for a valid API token.

        Raises:
            Unauthorized: ``reason`` ``bad_token``, ``token_expired``, ``token_revoked`` or
                ``operator_disabled``.
        """
        now = self.now_ms()
        with self._read() as conn:
            row = conn.execute(
                "SELECT t.expires_ms, t.revoked_ms, o.name, o.role, o.enabled "
                "FROM api_tokens t JOIN operators o ON o.name = t.operator "
                "WHERE t.token_hash = ?",
                (_digest(token),),
            ).fetchone()
        if row is None:
            raise Unauthorized("unknown operator token", reason="bad_token")
        if row["revoked_ms"] is not None:
            raise Unauthorized("the operator token was revoked", reason="token_revoked")
        if row["expires_ms"] <= now:
            raise Unauthorized("the operator token has expired", reason="token_expired")
        if not row["enabled"]:
            raise Unauthorized("the operator is disabled", reason="operator_disabled")
        return {"name": row["name"], "role": row["role"], "via": "token"}

    # -- password login, lock-out, sessions --------------------------------------------

    def login(self, name: str, password: str, *, remote: str | None = None) -> dict[str, Any]:
        """Check *name*'s password; return a new session ``{"session", "csrf_token",
        "operator", "role", "expires_at_ms"}``.

        Raises:
            Unauthorized: ``reason`` ``bad_password`` (also for an unknown name),
                ``locked_out`` or ``operator_disabled``.
        """
        now = self.now_ms()
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        if row is not None and row["locked_until_ms"] is not None and row["locked_until_ms"] > now:
            with self._tx() as conn:
                journal(conn, now, name, "login.locked", remote=remote, status=401)
            raise Unauthorized(
                "too many failed logins: the account is locked for now",
                reason="locked_out",
                retry_after_s=max(1, (row["locked_until_ms"] - now + 999) // 1000),
            )
        stored = row["password_hash"] if row is not None else None
        try:
            ok = _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if row is None or not ok:
            self._login_failed(name if row is not None else None, name, now, remote)
            raise Unauthorized("wrong name or password", reason="bad_password")
        if not row["enabled"]:
            raise Unauthorized("the operator is disabled", reason="operator_disabled")
        session = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + SESSION_TTL_MS
        with self._tx() as conn:
            conn.execute(
                "UPDATE operators SET failed_count = 0, first_failed_ms = NULL, "
                "locked_until_ms = NULL WHERE name = ?",
                (name,),
            )
            conn.execute(
                "INSERT INTO operator_sessions (session_hash, operator, csrf_hash, created_ms, "
                "expires_ms) VALUES (?, ?, ?, ?, ?)",
                (_digest(session), name, _digest(csrf), now, expires),
            )
            journal(conn, now, name, "login", remote=remote, status=200)
        return {
            "session": session,
            "csrf_token": csrf,
            "operator": name,
            "role": row["role"],
            "expires_at_ms": expires,
        }

    def _login_failed(self, account: str | None, name: str, now: int, remote: str | None) -> None:
        with self._tx() as conn:
            journal(conn, now, account, "login.failed", {"name": name}, remote=remote, status=401)
            if account is None:
                return
            row = conn.execute(
                "SELECT failed_count, first_failed_ms FROM operators WHERE name = ?", (account,)
            ).fetchone()
            count, first = row["failed_count"], row["first_failed_ms"]
            if first is None or now - first > LOCKOUT_WINDOW_MS:
                count, first = 0, now
            count += 1
            locked = now + LOCKOUT_MS if count >= LOCKOUT_FAILURES else None
            conn.execute(
                "UPDATE operators SET failed_count = ?, first_failed_ms = ?, locked_until_ms = ? "
                "WHERE name = ?",
                (0 if locked else count, None if locked else first, locked, account),
            )
            if locked:
                journal(conn, now, account, "operator.locked", {"until_ms": locked}, remote=remote)

    def session_operator(self, session: str, csrf: str | None) -> dict[str, Any]:
        """Return ``{"name", "role", "via": "session", "csrf_ok"}`` for a live session;
        ``csrf_ok`` says whether *csrf* is the session's CSRF token.

        Raises:
            Unauthorized: ``reason`` ``bad_session`` (unknown or expired) or
                ``operator_disabled``.
        """
        now = self.now_ms()
        with self._read() as conn:
            row = conn.execute(
                "SELECT s.csrf_hash, s.expires_ms, o.name, o.role, o.enabled "
                "FROM operator_sessions s JOIN operators o ON o.name = s.operator "
                "WHERE s.session_hash = ?",
                (_digest(session),),
            ).fetchone()
        if row is None or row["expires_ms"] <= now:
            raise Unauthorized("no such session (log in again)", reason="bad_session")
        if not row["enabled"]:
            raise Unauthorized("the operator is disabled", reason="operator_disabled")
        csrf_ok = csrf is not None and hmac.compare_digest(_digest(csrf), bytes(row["csrf_hash"]))
        return {"name": row["name"], "role": row["role"], "via": "session", "csrf_ok": csrf_ok}

    def logout(self, session: str) -> None:
        """End a session (unknown: nothing to do)."""
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM operator_sessions WHERE session_hash = ?", (_digest(session),)
            )

    # -- journal ----------------------------------------------------------------------

    def record_action(
        self,
        operator: str,
        action: str,
        detail: dict[str, Any] | None = None,
        *,
        remote: str | None = None,
        status: int | None = None,
    ) -> None:
        """Journal an admin action by *operator* (the server calls it for each change)."""
        with self._tx() as conn:
            journal(conn, self.now_ms(), operator, action, detail, remote=remote, status=status)

    def operator_journal(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Return audit log entries with seq > *after*, oldest first (with their hashes)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM operator_journal WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def verify_audit(self) -> dict[str, Any]:
        """Walk the whole audit log and check every row's hash, link and number.

        Returns ``{"ok", "rows", "head_seq", "head_hash", "problems"}``; each problem is
        ``{"seq", "problem", "detail"}`` with ``problem`` one of ``changed`` (the row's
        content no longer hashes to its stored hash), ``missing`` (seq numbers absent:
        rows deleted; ``seq`` is the first missing one), ``broken_link`` (the row's
        prev_hash is not the hash of the row before it: a row before it was deleted,
        replaced or moved). Rows deleted from the end leave no trace inside the chain:
        compare ``head_seq``/``head_hash`` with a head exported earlier
        (docs/threat-model.md).
        """
        problems: list[dict[str, Any]] = []
        count = 0
        expected_seq, prev = 1, AUDIT_GENESIS
        head_seq, head_hash = 0, AUDIT_GENESIS
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM operator_journal ORDER BY seq").fetchall()
        for row in rows:
            count += 1
            entry = _entry(row)
            seq = int(entry["seq"])
            if seq != expected_seq:
                problems.append(
                    {
                        "seq": expected_seq,
                        "problem": "missing",
                        "detail": f"rows {expected_seq}..{seq - 1} are missing",
                    }
                )
            if entry["prev_hash"] != prev:
                problems.append(
                    {
                        "seq": seq,
                        "problem": "broken_link",
                        "detail": "prev_hash is not the hash of the row before it",
                    }
                )
            try:
                recomputed = row_hash(entry)
            except ValueError:
                recomputed = ""
            if recomputed != entry["hash"]:
                problems.append(
                    {
                        "seq": seq,
                        "problem": "changed",
                        "detail": "the row does not hash to its stored hash",
                    }
                )
            expected_seq, prev = seq + 1, entry["hash"]
            head_seq, head_hash = seq, entry["hash"]
        return {
            "ok": not problems,
            "rows": count,
            "head_seq": head_seq,
            "head_hash": head_hash,
            "problems": problems,
        }

    def audit_export(
        self, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[str, Any]:
        """Return the audit rows from the first with ``at_ms >= since_ms`` to the last with
        ``at_ms < until_ms`` (a contiguous run of the chain) and their chain proof.

        ``{"since_ms", "until_ms", "prev_hash", "entries", "head_seq", "head_hash",
        "hashing"}``: ``prev_hash`` is the hash of the row before the first one exported
        (the genesis for the first row), each entry carries its ``prev_hash`` and
        ``hash``, and ``head_*`` is the whole chain's head now, so an auditor re-hashes
        the rows (``central.store.auditchain.row_hash``), checks each link from
        ``prev_hash`` on, and keeps the head to compare with the next export.

        Raises:
            BadRequest: since/until not integers, or until before since.
        """
        for name, value in (("since", since_ms), ("until", until_ms)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BadRequest(f"{name}: Unix milliseconds (an integer)")
        if since_ms is not None and until_ms is not None and until_ms < since_ms:
            raise BadRequest("until is before since")
        low = since_ms if since_ms is not None else -(2**62)
        high = until_ms if until_ms is not None else 2**62
        with self._tx() as conn:
            # A contiguous run of the chain (from the first row at or after since to the
            # last before until), so the links prove it even if the clock stepped back.
            span = conn.execute(
                "SELECT (SELECT min(seq) FROM operator_journal WHERE at_ms >= ?) AS first, "
                "(SELECT max(seq) FROM operator_journal WHERE at_ms < ?) AS last",
                (low, high),
            ).fetchone()
            rows = []
            if span["first"] is not None and span["last"] is not None:
                rows = conn.execute(
                    "SELECT * FROM operator_journal WHERE seq >= ? AND seq <= ? ORDER BY seq",
                    (span["first"], span["last"]),
                ).fetchall()
            head = conn.execute(
                "SELECT seq, hash FROM operator_journal ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        entries = [_entry(row) for row in rows]
        return {
            "since_ms": since_ms,
            "until_ms": until_ms,
            "prev_hash": entries[0]["prev_hash"] if entries else None,
            "entries": entries,
            "head_seq": 0 if head is None else int(head["seq"]),
            "head_hash": AUDIT_GENESIS if head is None else head["hash"],
            "hashing": "sha256 hex of canonical JSON of "
            "{seq, at_ms, operator, action, detail (the stored text), remote, status, "
            "prev_hash}; the first row's prev_hash is 64 zeros",
        }
