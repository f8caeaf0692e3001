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

* **Administered over HTTP** by a security officer (``/admin/operators...``, central/server.py):
  each method takes ``by`` (the operator acting; None: a local command) and ``remote`` for its
  audit row, written in its transaction. A password someone else set must be changed at the
  next login (``must_change_password``); an operator may not disable or demote the last
  enabled security officer (:class:`~central.errors.LastAdministrator`).
* **Anchors**: :meth:`OperatorsMixin.audit_head` signs the chain's head for the site to keep
  outside the central; :meth:`OperatorsMixin.verify_audit` checks a kept one.

Which role may call which admin route is :mod:`central.auth`'s one table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from portier_common.signing import b64url

from ..errors import BadRequest, LastAdministrator, NotFound, Unauthorized
from .auditchain import AUDIT_GENESIS, anchor_message, row_hash
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
    "session_id",
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


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise BadRequest(
            "operator name: 1-64 of a-z 0-9 . _ - @", field="name", reason="operator_name"
        )
    return name


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not 12 <= len(password) <= 1024:
        raise BadRequest(
            "password: at least 12 characters", field="password", reason="too_short", min=12
        )
    return password


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise BadRequest(f"role: one of {', '.join(ROLES)}", field="role", reason="role")
    assert isinstance(role, str)
    return role


def session_id(session_hash: bytes) -> str:
    """The public id of a session (the first 12 bytes of its stored hash, hex): what lists
    show and ``DELETE /admin/sessions/{id}`` takes; it reveals nothing of the secret."""
    return bytes(session_hash)[:12].hex()


def _operator(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "role": row["role"],
        "enabled": bool(row["enabled"]),
        "has_password": row["password_hash"] is not None,
        "must_change_password": bool(row["must_change_password"]),
        "created_at_ms": row["created_ms"],
        "locked_until_ms": row["locked_until_ms"],
    }


#: The role that administers operators (and may do everything).
ADMIN_ROLE = "security_officer"


def _keep_an_administrator(
    conn: Connection, name: str, by: str | None, *, role: str | None = None
) -> None:
    """Refuse an operator's (*by*) change that leaves no enabled security officer: *name*
    disabled (*role* None) or given *role*. A local command (*by* None) may: whoever runs it
    holds the database and can add a security officer as well (break-glass, decommission).

    Raises:
        LastAdministrator: *name* is the last enabled security officer.
    """
    if by is None:
        return
    row = conn.execute("SELECT role, enabled FROM operators WHERE name = ?", (name,)).fetchone()
    if row is None or row["role"] != ADMIN_ROLE or not row["enabled"] or role == ADMIN_ROLE:
        return
    others = conn.execute(
        "SELECT count(*) AS n FROM operators WHERE role = ? AND enabled = 1 AND name <> ?",
        (ADMIN_ROLE, name),
    ).fetchone()["n"]
    if not others:
        raise LastAdministrator(
            f"{name!r} is the last enabled {ADMIN_ROLE}: make another one first",
            field="operator",
            reason="last_administrator",
            name=name,
        )


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

    def add_operator(
        self,
        name: str,
        role: str,
        password: str | None = None,
        *,
        by: str | None = None,
        remote: str | None = None,
        must_change_password: bool = False,
    ) -> dict[str, Any]:
        """Create an operator; *password* None: an account that uses API tokens only.

        *by*, *remote*: the operator who did it and from where (None: a local command), for
        the audit row. *must_change_password*: the password was set by someone else (over
        HTTP): the operator's first session may only change it.

        Raises:
            BadRequest: a bad name, role or password, or the name is taken.
        """
        _check_name(name)
        _check_role(role)
        if password is not None:
            _check_password(password)
        hashed = None if password is None else _hasher.hash(password)
        must = int(must_change_password and password is not None)
        now = self.now_ms()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
                raise BadRequest(
                    f"operator {name!r} exists", field="name", reason="operator_exists", name=name
                )
            conn.execute(
                "INSERT INTO operators (name, role, password_hash, enabled, created_ms, "
                "failed_count, must_change_password) VALUES (?, ?, ?, 1, ?, 0, ?)",
                (name, role, hashed, now, must),
            )
            journal(conn, now, by, "operator.add", {"name": name, "role": role}, remote=remote)
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return _operator(row)

    def list_operators(self) -> list[dict[str, Any]]:
        """Return every operator (no secrets)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM operators ORDER BY name").fetchall()
        return [_operator(row) for row in rows]

    def get_operator(self, name: str) -> dict[str, Any]:
        """Return one operator (no secrets).

        Raises:
            NotFound: no such operator.
        """
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no operator {name!r}", field="operator", reason="not_found", name=name)
        return _operator(row)

    def disable_operator(
        self, name: str, *, by: str | None = None, remote: str | None = None
    ) -> dict[str, Any]:
        """Disable an operator: their tokens and sessions stop working at once.

        Raises:
            NotFound: no such operator. LastAdministrator: the last enabled security
                officer.
        """
        now = self.now_ms()
        with self._tx() as conn:
            _keep_an_administrator(conn, name, by)
            if conn.execute("UPDATE operators SET enabled = 0 WHERE name = ?", (name,)).rowcount:
                conn.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
                journal(conn, now, by, "operator.disable", {"name": name}, remote=remote)
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no operator {name!r}", field="operator", reason="not_found", name=name)
        return _operator(row)

    def enable_operator(
        self, name: str, *, by: str | None = None, remote: str | None = None
    ) -> dict[str, Any]:
        """Enable a disabled operator again (their unexpired, unrevoked tokens work again).

        Raises:
            NotFound: no such operator.
        """
        now = self.now_ms()
        with self._tx() as conn:
            if not conn.execute(
                "UPDATE operators SET enabled = 1 WHERE name = ?", (name,)
            ).rowcount:
                raise NotFound(
                    f"no operator {name!r}", field="operator", reason="not_found", name=name
                )
            journal(conn, now, by, "operator.enable", {"name": name}, remote=remote)
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return _operator(row)

    def set_operator_role(
        self, name: str, role: str, *, by: str | None = None, remote: str | None = None
    ) -> dict[str, Any]:
        """Give *name* another role; it applies to their tokens and sessions at once.

        Raises:
            BadRequest: a bad role. NotFound: no such operator. LastAdministrator: the last
                enabled security officer would lose the role.
        """
        _check_role(role)
        now = self.now_ms()
        with self._tx() as conn:
            old = conn.execute("SELECT role FROM operators WHERE name = ?", (name,)).fetchone()
            if old is None:
                raise NotFound(
                    f"no operator {name!r}", field="operator", reason="not_found", name=name
                )
            _keep_an_administrator(conn, name, by, role=role)
            conn.execute("UPDATE operators SET role = ? WHERE name = ?", (role, name))
            journal(
                conn,
                now,
                by,
                "operator.role",
                {"name": name, "role": role, "was": old["role"]},
                remote=remote,
            )
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return _operator(row)

    def reset_password(
        self,
        name: str,
        password: str | None = None,
        *,
        by: str | None = None,
        remote: str | None = None,
    ) -> dict[str, Any]:
        """Set a new password for *name* (a random one when *password* is None), which they
        must change at their next login; end their sessions and lift a lock-out.

        Returns the operator with ``password``: the new password, shown this once.

        Raises:
            BadRequest: a bad password. NotFound: no such operator.
        """
        if password is None:
            password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
        _check_password(password)
        hashed = _hasher.hash(password)
        now = self.now_ms()
        with self._tx() as conn:
            if not conn.execute(
                "UPDATE operators SET password_hash = ?, must_change_password = 1, "
                "failed_count = 0, first_failed_ms = NULL, locked_until_ms = NULL "
                "WHERE name = ?",
                (hashed, name),
            ).rowcount:
                raise NotFound(
                    f"no operator {name!r}", field="operator", reason="not_found", name=name
                )
            conn.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
            journal(conn, now, by, "operator.password_reset", {"name": name}, remote=remote)
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return {**_operator(row), "password": password}

    def change_password(
        self, name: str, current: str, new: str, *, remote: str | None = None
    ) -> dict[str, Any]:
        """*name* changes their own password (*current* must be right); clears
        ``must_change_password``. A wrong *current* counts as a failed login.

        Raises:
            BadRequest: a bad new password, or the same as the current one.
            Unauthorized: ``reason`` ``bad_password`` or ``locked_out``.
        """
        _check_password(new)
        if new == current:
            raise BadRequest(
                "password: the new one must differ from the current one",
                field="password",
                reason="password_same",
            )
        now = self.now_ms()
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no operator {name!r}", field="operator", reason="not_found", name=name)
        if row["locked_until_ms"] is not None and row["locked_until_ms"] > now:
            raise Unauthorized(
                "too many failed logins: the account is locked for now", reason="locked_out"
            )
        try:
            ok = row["password_hash"] is not None and _hasher.verify(row["password_hash"], current)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            self._login_failed(name, name, now, remote)
            raise Unauthorized("wrong current password", reason="bad_password")
        hashed = _hasher.hash(new)
        with self._tx() as conn:
            conn.execute(
                "UPDATE operators SET password_hash = ?, must_change_password = 0 WHERE name = ?",
                (hashed, name),
            )
            journal(conn, now, name, "operator.password_change", {"name": name}, remote=remote)
            row = conn.execute("SELECT * FROM operators WHERE name = ?", (name,)).fetchone()
        return _operator(row)

    # -- sessions, listed and ended -------------------------------------------------

    def list_sessions(self, operator: str | None = None) -> list[dict[str, Any]]:
        """Return the live sessions (of *operator*, else everyone's): ``session_id``,
        ``operator``, ``created_at_ms``, ``expires_at_ms``."""
        now = self.now_ms()
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM operator_sessions WHERE expires_ms > ? ORDER BY created_ms", (now,)
            ).fetchall()
        return [
            {
                "session_id": session_id(row["session_hash"]),
                "operator": row["operator"],
                "created_at_ms": row["created_ms"],
                "expires_at_ms": row["expires_ms"],
            }
            for row in rows
            if operator is None or row["operator"] == operator
        ]

    def end_sessions(
        self,
        operator: str,
        *,
        only: str | None = None,
        by: str | None = None,
        remote: str | None = None,
    ) -> int:
        """End *operator*'s sessions (only the one with id *only*, if given); return how many.

        Raises:
            NotFound: no such operator, or *only* is not one of their sessions.
        """
        now = self.now_ms()
        with self._tx() as conn:
            if (
                conn.execute("SELECT 1 FROM operators WHERE name = ?", (operator,)).fetchone()
                is None
            ):
                raise NotFound(
                    f"no operator {operator!r}", field="operator", reason="not_found", name=operator
                )
            hashes = [
                bytes(row["session_hash"])
                for row in conn.execute(
                    "SELECT session_hash FROM operator_sessions WHERE operator = ?", (operator,)
                ).fetchall()
                if only is None or session_id(row["session_hash"]) == only
            ]
            if only is not None and not hashes:
                raise NotFound(
                    f"no session {only!r} of {operator!r}",
                    field="session",
                    reason="not_found",
                    name=only,
                )
            for digest in hashes:
                conn.execute("DELETE FROM operator_sessions WHERE session_hash = ?", (digest,))
            detail: dict[str, Any] = {"name": operator, "ended": len(hashes)}
            if only is not None:
                detail["session_id"] = only
            journal(conn, now, by, "operator.logout", detail, remote=remote)
        return len(hashes)

    def session_owner(self, sid: str) -> str:
        """Return the operator of the live session with id *sid*.

        Raises:
            NotFound: no such session.
        """
        for session in self.list_sessions():
            if session["session_id"] == sid:
                return str(session["operator"])
        raise NotFound(f"no session {sid!r}", field="session", reason="not_found", name=sid)

    # -- API tokens -----------------------------------------------------------------

    def create_api_token(
        self,
        operator: str,
        *,
        ttl_s: int = TOKEN_TTL_S,
        label: str = "",
        secret: str | None = None,
        by: str | None = None,
        remote: str | None = None,
    ) -> dict[str, Any]:
        """Mint an API token for *operator*; return ``{"token", "token_id", "operator",
        "expires_at_ms"}``. The token is shown this once: only its hash is stored.

        *secret*: use this secret instead of a random one (a demo or test harness that
        chose it; at least 32 characters).

        Raises:
            BadRequest: a bad ttl or secret. NotFound: no such operator.
        """
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 60:
            raise BadRequest("ttl_s: an integer >= 60", field="ttl_s", reason="too_short", min=60)
        if ttl_s > TOKEN_MAX_TTL_S:
            raise BadRequest(
                f"ttl_s: at most {TOKEN_MAX_TTL_S} (a year)",
                field="ttl_s",
                reason="range",
                max=TOKEN_MAX_TTL_S,
            )
        if secret is None:
            secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        elif len(secret) < 32:
            raise BadRequest(
                "token: at least 32 characters", field="token", reason="too_short", min=32
            )
        if not isinstance(label, str) or len(label) > 200:
            raise BadRequest(
                "label: text, at most 200 characters", field="label", reason="too_long", max=200
            )
        token_id = secrets.token_hex(6)
        now = self.now_ms()
        expires = now + ttl_s * 1000
        with self._tx() as conn:
            if (
                conn.execute("SELECT 1 FROM operators WHERE name = ?", (operator,)).fetchone()
                is None
            ):
                raise NotFound(
                    f"no operator {operator!r}", field="operator", reason="not_found", name=operator
                )
            conn.execute(
                "INSERT INTO api_tokens (token_id, token_hash, operator, label, created_ms, "
                "expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, _digest(secret), operator, label, now, expires),
            )
            journal(
                conn,
                now,
                by,
                "token.create",
                {"token_id": token_id, "operator": operator},
                remote=remote,
            )
        return {
            "token": secret,
            "token_id": token_id,
            "operator": operator,
            "expires_at_ms": expires,
        }

    def list_api_tokens(self, operator: str | None = None) -> list[dict[str, Any]]:
        """Return every API token's (of *operator*, if given) id, operator, label, expiry and
        revocation (no secret)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM api_tokens ORDER BY created_ms").fetchall()
        rows = [row for row in rows if operator is None or row["operator"] == operator]
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

    def revoke_api_token(
        self,
        token_id: str,
        *,
        operator: str | None = None,
        by: str | None = None,
        remote: str | None = None,
    ) -> None:
        """Revoke an API token at once (*operator*: only if it is theirs).

        Raises:
            NotFound: no such token (of *operator*).
        """
        now = self.now_ms()
        with self._tx() as conn:
            owner = conn.execute(
                "SELECT operator FROM api_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
            if owner is None or (operator is not None and owner["operator"] != operator):
                raise NotFound(
                    f"no token {token_id!r}", field="token", reason="not_found", name=token_id
                )
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
                raise NotFound(
                    f"no token {token_id!r}", field="token", reason="not_found", name=token_id
                )
            journal(
                conn,
                now,
                by,
                "token.revoke",
                {"token_id": token_id, "operator": owner["operator"]},
                remote=remote,
            )

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
            "must_change_password": bool(row["must_change_password"]),
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
                "SELECT s.session_hash, s.csrf_hash, s.expires_ms, o.name, o.role, o.enabled, "
                "o.must_change_password "
                "FROM operator_sessions s JOIN operators o ON o.name = s.operator "
                "WHERE s.session_hash = ?",
                (_digest(session),),
            ).fetchone()
        if row is None or row["expires_ms"] <= now:
            raise Unauthorized("no such session (log in again)", reason="bad_session")
        if not row["enabled"]:
            raise Unauthorized("the operator is disabled", reason="operator_disabled")
        csrf_ok = csrf is not None and hmac.compare_digest(_digest(csrf), bytes(row["csrf_hash"]))
        return {
            "name": row["name"],
            "role": row["role"],
            "via": "session",
            "csrf_ok": csrf_ok,
            "session_id": session_id(row["session_hash"]),
            "must_change_password": bool(row["must_change_password"]),
        }

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

    def audit_head(self) -> dict[str, Any]:
        """Return the chain's head now, signed: an **anchor** for the site to keep where the
        central's database administrators cannot write (``portier-central audit head``).

        ``{"site", "seq", "hash", "at_ms", "kid", "signature"}``: ``signature`` is the
        central's delta key's (Ed25519, the key every device pins; ``kid`` names it) over
        :func:`~central.store.auditchain.anchor_message`, base64url. :meth:`verify_audit`
        with the anchor checks that the chain still holds row ``seq`` with ``hash``: a
        chain rewritten or cut since, even with every hash recomputed, does not.
        """
        with self._tx() as conn:
            head = conn.execute(
                "SELECT seq, hash FROM operator_journal ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        anchor: dict[str, Any] = {
            "site": self.settings.site,
            "seq": 0 if head is None else int(head["seq"]),
            "hash": AUDIT_GENESIS if head is None else head["hash"],
            "at_ms": self.now_ms(),
            "kid": self._delta_key.kid,
        }
        anchor["signature"] = b64url(self._delta_key.sign(anchor_message(anchor)))
        return anchor

    def _check_anchor(self, conn: Connection, anchor: Any) -> list[dict[str, Any]]:
        """The problems of *anchor* (a kept :meth:`audit_head`) against the stored chain."""
        try:
            seq, digest, kid = int(anchor["seq"]), str(anchor["hash"]), str(anchor["kid"])
            message = anchor_message(anchor)
            signature = _unb64url(str(anchor["signature"]))
        except (TypeError, KeyError, ValueError):
            return [{"seq": 0, "problem": "anchor", "detail": "not a signed audit head"}]
        problems: list[dict[str, Any]] = []
        key = conn.execute("SELECT public_key FROM delta_keys WHERE kid = ?", (kid,)).fetchone()
        try:
            if key is None:
                raise InvalidSignature
            Ed25519PublicKey.from_public_bytes(bytes(key["public_key"])).verify(signature, message)
        except (InvalidSignature, ValueError):
            problems.append(
                {
                    "seq": seq,
                    "problem": "anchor_signature",
                    "detail": f"the head's signature does not verify with this central's key {kid}",
                }
            )
        if seq == 0:
            return problems
        row = conn.execute("SELECT hash FROM operator_journal WHERE seq = ?", (seq,)).fetchone()
        if row is None or row["hash"] != digest:
            what = "is gone (rows cut off)" if row is None else "has another hash (rewritten)"
            problems.append(
                {
                    "seq": seq,
                    "problem": "anchor",
                    "detail": f"the kept head's row {seq} {what}",
                }
            )
        return problems

    def verify_audit(self, anchor: Any = None) -> dict[str, Any]:
        """Walk the whole audit log and check every row's hash, link and number, and (with
        *anchor*, a kept :meth:`audit_head`) that the chain still holds the kept head.

        Returns ``{"ok", "rows", "head_seq", "head_hash", "problems"}``; each problem is
        ``{"seq", "problem", "detail"}`` with ``problem`` one of ``changed`` (the row's
        content no longer hashes to its stored hash), ``missing`` (seq numbers absent:
        rows deleted; ``seq`` is the first missing one), ``broken_link`` (the row's
        prev_hash is not the hash of the row before it: a row before it was deleted,
        replaced or moved). Rows deleted from the end leave no trace inside the chain:
        compare ``head_seq``/``head_hash`` with a head exported earlier
        (docs/threat-model.md). A chain rewritten from some row on with every hash
        recomputed verifies too: only a kept *anchor* shows it, as problem ``anchor`` (its
        row is gone or has another hash) or ``anchor_signature`` (not signed by this
        central's delta key).
        """
        problems: list[dict[str, Any]] = []
        count = 0
        expected_seq, prev = 1, AUDIT_GENESIS
        head_seq, head_hash = 0, AUDIT_GENESIS
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM operator_journal ORDER BY seq").fetchall()
            anchored = [] if anchor is None else self._check_anchor(conn, anchor)
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
        problems.extend(anchored)
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
                raise BadRequest(
                    f"{name}: Unix milliseconds (an integer)", field=name, reason="seconds"
                )
        if since_ms is not None and until_ms is not None and until_ms < since_ms:
            raise BadRequest("until is before since", field="until", reason="after", other="since")
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
