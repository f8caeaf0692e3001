"""Enrollment: trade the one-time token for the device's own credential, and keep it.

``edge-agent enroll --config FILE --token TOKEN`` (or :func:`enroll`, which the
first-boot program calls) posts the token to ``/v1/enroll`` with the device id
from the configuration and stores the answer -- the device credential -- in the
state directory with mode 0600, written atomically (temporary file, fsync,
rename, fsync of the directory). The credential is never logged: its
``repr`` masks it and no message includes it.

The token enrolls a **new** device id. A device already enrolled sends its
current credential with the call (``Authorization: Bearer``), read from the
credential file; one whose credential is lost (a re-installed card) needs an
admin reset at the central first (``portier-central device reset DEVICE_ID``).

A lost answer is safe: the same device id may use the same token again within
the central's retry window, proving it is the same device with the random
``retry_secret`` it sent with the first try. The secret is kept (0600) next to
the credential file until the credential is saved, so a retry after a restart
sends the same one. The answer also carries the central's delta signing key,
which the credential file pins: every deltas page must be signed with it.

A device whose journal already holds events the
central never acknowledged sends where its unacknowledged events start
(``journal_head``), so a rebuilt central expects the right sequence number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig, check_central_url
from edge_agent.fsutil import atomic_write
from edge_agent.retry import Backoff, GaveUp, retry_until
from edge_agent.store import Store, StoreError, StoreSettings, SyncStatus
from edge_agent.sync.client import CentralClient, CentralRefused, central_transient
from portier_common.signing import DeltaKey

log = logging.getLogger(__name__)

__all__ = [
    "CREDENTIAL_FORMAT",
    "DeviceCredential",
    "EnrollError",
    "credential_path",
    "enroll",
    "load_credential",
    "software_versions",
]

#: ``format`` of the credential file.
CREDENTIAL_FORMAT = "portier-device-credential/1"
#: Seconds between enrollment attempts while the central cannot be reached (at most).
_ENROLL_BACKOFF_CAP_S = 60.0


class EnrollError(Exception):
    """Enrollment failed for good. ``code`` is the central's error code
    (``token_used``, ``token_invalid``, ``token_expired``, ``token_scope``,
    ``device_enrolled``, ``bad_request``) or ``unreachable`` / ``no_url`` /
    ``insecure_url`` / ``bad_answer``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DeviceCredential:
    """What enrollment returned. ``device_token`` is secret: it never appears in a repr."""

    device_id: str
    device_token: str = field(repr=False)
    site: str
    door: str
    central_url: str
    enrolled_at_ms: int
    next_seq: int = 1
    limits: Mapping[str, int] = field(default_factory=dict)
    #: The central's delta signing key, pinned at enrollment (None: a credential from
    #: before signed deltas; such a device must enroll again to sync).
    delta_key: DeltaKey | None = None

    def __post_init__(self) -> None:
        for name in ("device_id", "device_token", "site", "door", "central_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}: must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        """Return the file's JSON form."""
        return {
            "format": CREDENTIAL_FORMAT,
            "device_id": self.device_id,
            "device_token": self.device_token,
            "token_type": "Bearer",
            "site": self.site,
            "door": self.door,
            "central_url": self.central_url,
            "enrolled_at_ms": self.enrolled_at_ms,
            "next_seq": self.next_seq,
            "limits": dict(self.limits),
            "delta_key": None if self.delta_key is None else self.delta_key.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceCredential:
        """Build from the file's JSON form. Raises :class:`ValueError` naming the field."""
        if data.get("format") != CREDENTIAL_FORMAT:
            raise ValueError(f"format: {data.get('format')!r} is not {CREDENTIAL_FORMAT!r}")
        limits = data.get("limits") or {}
        if not isinstance(limits, Mapping):
            raise ValueError("limits: must be an object")
        raw_key = data.get("delta_key")
        delta_key = None if raw_key is None else DeltaKey.from_dict(raw_key)
        try:
            return cls(
                device_id=data["device_id"],
                device_token=data["device_token"],
                site=data["site"],
                door=data["door"],
                central_url=data["central_url"],
                enrolled_at_ms=int(data.get("enrolled_at_ms", 0)),
                next_seq=int(data.get("next_seq", 1)),
                limits={k: int(v) for k, v in limits.items()},
                delta_key=delta_key,
            )
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]}: is required") from None


def credential_path(config: AgentConfig) -> Path:
    """Where this agent's credential lives: ``[central] credential_file`` or
    ``<state_dir>/central-credential.json``."""
    return config.central.credential_file or config.paths.state_dir / "central-credential.json"


def load_credential(path: Path) -> DeviceCredential | None:
    """Return the stored credential, or None if there is none.

    Raises :class:`ValueError` for a file that exists but is not a credential,
    and :class:`OSError` if it cannot be read.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return DeviceCredential.from_dict(data)


def save_credential(path: Path, credential: DeviceCredential) -> None:
    """Write the credential atomically with mode 0600 (never readable by others,
    not even for a moment: the temporary file is created 0600)."""
    data = (json.dumps(credential.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    atomic_write(path, data, 0o600)


def _retry_path(path: Path) -> Path:
    return path.with_name(path.name + ".enroll-retry")


def _retry_secret(path: Path, token: str) -> str:
    """Return the retry secret for *token*: the one kept from an earlier try with the
    same token, or a new one, written (0600, atomically) before it is sent."""
    token_hash = hashlib.sha256(token.encode("utf-8")).hexdigest()
    retry = _retry_path(path)
    try:
        kept = json.loads(retry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = None
    if (
        isinstance(kept, dict)
        and kept.get("token_sha256") == token_hash
        and isinstance(kept.get("retry_secret"), str)
    ):
        return kept["retry_secret"]
    secret = secrets.token_urlsafe(32)
    data = json.dumps({"token_sha256": token_hash, "retry_secret": secret}) + "\n"
    atomic_write(retry, data.encode("utf-8"), 0o600)
    return secret


def software_versions() -> dict[str, str]:
    """Return the versions reported at enrollment and in heartbeats."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        agent = version("portier")
    except PackageNotFoundError:
        agent = "unknown"
    return {"agent": agent, "python": platform.python_version(), "os": platform.release()}


def journal_head(database: Path) -> dict[str, Any] | None:
    """Return ``{"next_seq", "prev_hash"}`` where this journal's unacknowledged events
    start, or None when nothing was ever acknowledged (the central expects seq 1).

    Opens the store read-only (the agent may be running). Raises :class:`StoreError`.
    """
    if not database.exists():
        return None
    with Store.open(StoreSettings(path=database), read_only=True) as store:
        counts = store.journal.counts()
        if counts.acked == 0 and counts.trimmed_through == 0:
            return None
        seq = counts.trimmed_through + 1
        while True:
            events = store.journal.events(from_seq=seq, limit=1000)
            for event in events:
                if event.status is not SyncStatus.ACKED:
                    return {"next_seq": event.seq, "prev_hash": event.prev_hash.hex()}
            if not events:
                head = store.journal.head()
                return {"next_seq": head.seq + 1, "prev_hash": head.hash.hex()}
            seq = events[-1].seq + 1


def _current_credential(path: Path, config: AgentConfig) -> DeviceCredential | None:
    """The stored credential of this device id at this central, if any (sent to prove
    a re-enrolling device is itself)."""
    try:
        stored = load_credential(path)
    except (OSError, ValueError) as exc:
        log.warning("enroll: ignoring the stored credential: %s", exc)
        return None
    if stored is None or stored.device_id != config.device.id:
        return None
    if stored.central_url.rstrip("/") != (config.central.url or "").rstrip("/"):
        return None
    return stored


def enroll(
    config: AgentConfig,
    token: str,
    *,
    wait_s: float | None = 0.0,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> DeviceCredential:
    """Enroll this device with the one-time ``token`` and store its credential.

    ``wait_s`` is how long to keep retrying while the central cannot be reached
    or answers 429/5xx (0: one attempt; None: until it works -- what the first-boot
    program wants, with ``stop`` to give up). Returns the stored credential.

    Raises :class:`EnrollError` when the central refuses the token (used, unknown,
    expired, another door) or cannot be reached in time, :class:`OSError` if the
    credential cannot be written.
    """
    central = config.central
    if not central.url:
        raise EnrollError("no_url", "[central] url is not set in the configuration")
    try:
        check_central_url(central.url)
    except ValueError as exc:
        raise EnrollError("insecure_url", f"[central] url: {exc}") from None
    if not isinstance(token, str) or not token.strip():
        raise EnrollError("bad_request", "the enrollment token is empty")
    from edge_agent.eventpack import load_or_create_key  # it imports this module

    path = credential_path(config)
    current = _current_credential(path, config)
    body: dict[str, Any] = {
        "enroll_token": token.strip(),
        "device_id": config.device.id,
        "site": config.device.site,
        "door": config.door.id,
        "guard_console": config.guard.console,
        "retry_secret": _retry_secret(path, token.strip()),
        # The X25519 public key event packs are encrypted to (edge_agent/eventpack.py).
        "event_pack_key": load_or_create_key(config),
        "versions": software_versions(),
        "hardware": {
            "machine": platform.machine(),
            "simulated": bool(
                config.hardware.gpio is not None and config.hardware.gpio.backend == "mock"
            ),
        },
    }
    try:
        head = journal_head(config.paths.database)
    except (StoreError, OSError) as exc:
        # OSError: first boot runs as root without capabilities, so the agent's 0700
        # state directory is closed to it (EACCES). On a freshly flashed card there is
        # no journal yet; on a re-provisioned one the central then reports the gap.
        log.warning("enroll: journal not readable (%s); enrolling without journal_head", exc)
        head = None
    if head is not None:
        body["journal_head"] = head
    deadline = None if wait_s is None else time.monotonic() + wait_s
    backoff = Backoff(min(1.0, central.backoff_cap_s), _ENROLL_BACKOFF_CAP_S)
    stop = stop or threading.Event()
    with CentralClient(central.url, ca_file=central.ca_file, timeout_s=central.timeout_s) as client:
        try:
            answer = retry_until(
                lambda: client.enroll(
                    body, credential=None if current is None else current.device_token
                ),
                transient=central_transient,
                backoff=backoff,
                deadline=deadline,
                what="enroll",
                progress=progress,
                wait=stop.wait,
            )
        except CentralRefused as exc:  # not transient: central_transient said so
            raise EnrollError(exc.code, f"the central refused enrollment: {exc}") from None
        except GaveUp as exc:
            if exc.stopped:
                raise EnrollError("unreachable", "enrollment stopped before it succeeded") from None
            raise EnrollError("unreachable", f"enrollment did not succeed: {exc.reason}") from None
    try:
        credential = DeviceCredential(
            device_id=answer["device_id"],
            device_token=answer["device_token"],
            site=answer["site"],
            door=answer["door"],
            central_url=central.url,
            enrolled_at_ms=time.time_ns() // 1_000_000,
            next_seq=int(answer.get("next_seq", 1)),
            limits={k: int(v) for k, v in dict(answer.get("limits") or {}).items()},
            delta_key=DeltaKey.from_dict(answer["delta_key"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EnrollError(
            "bad_answer", f"the central's enrollment answer is incomplete: {exc}"
        ) from None
    save_credential(path, credential)
    _retry_path(path).unlink(missing_ok=True)
    log.info(
        "enrolled as device %s for %s/%s (credential in %s)",
        credential.device_id,
        credential.site,
        credential.door,
        path,
    )
    return credential
