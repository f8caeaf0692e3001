"""The Pass Office operator's login at the station: name and password, not a raw token.

``portier-badge login`` asks the operator's name and password (the password with
``getpass``: never on the command line, never echoed), logs in at the central's
``POST /admin/login`` (the console's own login: the same lock-out after five wrong
passwords, the same audit rows) and keeps the session in a file only its owner may read
(0600, in a 0700 folder): the central's URL, the operator, the session cookie's value, its
CSRF token and when it ends (the console's 8 hours: a working day at the desk). Later
``portier-badge`` commands use it when no token is given; ``portier-badge logout`` ends
the session at the central and deletes the file. A session is worth less to a thief than
an API token: it ends with the day, and a security officer ends it from the console.

Where: ``--session FILE``, else ``$PORTIER_BADGE_SESSION``, else
``$XDG_CONFIG_HOME/portier/badge-session.json`` (``~/.config/...``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from portier_common.settings import ConfigError, read_private_file

__all__ = [
    "SESSION_ENV",
    "SessionFileError",
    "default_session_path",
    "delete_session",
    "load_session",
    "save_session",
]

#: The environment variable naming the session file.
SESSION_ENV = "PORTIER_BADGE_SESSION"
_FIELDS = ("url", "operator", "role", "session", "csrf_token", "expires_at_ms")


class SessionFileError(Exception):
    """The session file cannot be used (the message says why and what to do)."""


def default_session_path() -> Path:
    """``$PORTIER_BADGE_SESSION``, else ``$XDG_CONFIG_HOME/portier/badge-session.json``."""
    named = os.environ.get(SESSION_ENV)
    if named:
        return Path(named)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "portier" / "badge-session.json"


def save_session(path: Path, session: dict[str, Any]) -> None:
    """Write *session* to *path*, created 0600 (its folder 0700 when made here), replacing
    any older file atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps({k: session[k] for k in _FIELDS}, sort_keys=True).encode()
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask, or an older file's mode
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def load_session(path: Path, *, now_ms: int | None = None) -> dict[str, Any] | None:
    """The session kept in *path*; None when there is no file.

    Raises:
        SessionFileError: others may read it, it is unreadable, or the session ended.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(read_private_file("session file", path))
    except ConfigError as exc:
        raise SessionFileError(str(exc)) from None
    except ValueError:
        raise SessionFileError(f"{path}: not a session file; log in again") from None
    if not isinstance(data, dict) or any(k not in data for k in _FIELDS):
        raise SessionFileError(f"{path}: not a session file; log in again")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if int(data["expires_at_ms"]) <= now_ms:
        raise SessionFileError("your session at the central has ended: portier-badge login")
    return data


def delete_session(path: Path) -> bool:
    """Delete the session file; return whether there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
