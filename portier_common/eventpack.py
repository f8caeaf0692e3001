"""Event packs: a kiosk's cache for an off-site event, signed by the central and
encrypted to that one device (docs/sync.md "Event packs", docs/threat-model.md).

A pack is one JSON file::

    {"format": "portier-event-pack/1", "device_id", "serial", "pack_id", "kid",
     "not_after_ms", "epk", "nonce", "ciphertext"}

* **Encrypted to the device.** Each device makes an X25519 key pair at enrollment
  (:func:`generate_key`, kept 0600 in its state directory) and sends the public half to
  the central. The central draws an ephemeral X25519 key per pack, derives an AES-256-GCM
  key with HKDF-SHA256 from the shared secret (salt: both public keys, info: the context
  and the device id) and encrypts; every header field above is the AEAD's associated
  data, so none can be changed (another serial, another device, a later expiry) without
  the decryption failing.
* **Signed by the central.** The plaintext is the 64-byte Ed25519 signature of the
  central's **delta signing key** (the key the device pinned at enrollment) followed by
  the body, canonical JSON. The signature covers :data:`PACK_CONTEXT`, the device id and
  the body, so it is never valid as a deltas page, nor for another device. Encryption
  alone would not be enough: the device's public key is not a secret, anyone may encrypt
  to it; only the central can sign.

:func:`open_pack` checks in this order and refuses with :class:`PackRefused` (``code``):
``malformed``, ``wrong_device``, ``tampered`` (authentication of the ciphertext failed:
a changed byte, or sealed to another device's key), ``bad_signature``, ``expired``,
``replayed`` (a serial not above the last one installed).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT",
    "MAX_PACK_BYTES",
    "PACK_CONTEXT",
    "REASONS",
    "PackRefused",
    "export_mac",
    "generate_key",
    "open_pack",
    "pack_message",
    "private_key_from_bytes",
    "public_key_bytes",
    "public_key_from_text",
    "seal",
]

FORMAT = "portier-event-pack/1"
#: ``format`` of a journal exported by ``edge-agent journal export`` (merged back by
#: ``portier-central event-pack merge``).
EXPORT_FORMAT = "portier-journal-export/1"
EXPORT_CONTEXT = b"portier-journal-export/1\n"
PACK_CONTEXT = b"portier-event-pack/1\n"
#: A pack larger than this is refused before it is parsed (a site's whole cache of
#: invitations and badges fits in a few MiB).
MAX_PACK_BYTES = 64 * 1024 * 1024
#: Every reason :class:`PackRefused` may give.
REASONS = ("malformed", "wrong_device", "tampered", "bad_signature", "expired", "replayed")
_HEADER = ("format", "device_id", "serial", "pack_id", "kid", "not_after_ms", "epk", "nonce")


class PackRefused(ValueError):
    """A pack this device must not install; ``code`` is one of :data:`REASONS`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise PackRefused("malformed", f"{what}: expected base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PackRefused("malformed", f"{what}: not base64url") from None
    if size is not None and len(raw) != size:
        raise PackRefused("malformed", f"{what}: expected {size} bytes")
    return raw


def _canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def export_mac(credential_hash: bytes, body: Mapping[str, Any]) -> str:
    """The HMAC-SHA256 (hex) of a journal export's *body* (everything but ``mac``), keyed
    with the SHA-256 of the device's credential: the device computes it from its
    credential, the central from the hash it keeps (it never stores the credential)."""
    return hmac.new(credential_hash, EXPORT_CONTEXT + _canonical(body), "sha256").hexdigest()


def generate_key() -> X25519PrivateKey:
    """A new device key pair for event packs."""
    return X25519PrivateKey.generate()


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    """The device's private key from its 32 raw bytes."""
    return X25519PrivateKey.from_private_bytes(raw)


def public_key_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key (of a private key's public half)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_from_text(text: object) -> bytes:
    """Check a device's public key as enrollment sends it (base64url, 32 bytes); return it.

    Raises:
        ValueError: not a 32-byte X25519 public key.
    """
    try:
        raw = _unb64(text, "event_pack_key", 32)
    except PackRefused as exc:
        raise ValueError(str(exc)) from None
    X25519PublicKey.from_public_bytes(raw)
    return raw


def pack_message(device_id: str, body: bytes) -> bytes:
    """The bytes the central signs for the pack *body* of *device_id*."""
    return PACK_CONTEXT + device_id.encode("utf-8") + b"\n" + body


def _aead_key(shared: bytes, epk: bytes, device_public: bytes, device_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=epk + device_public,
        info=PACK_CONTEXT + device_id.encode("utf-8"),
    ).derive(shared)


def seal(
    body: Mapping[str, Any],
    *,
    device_public_key: bytes,
    kid: str,
    sign: Any,
) -> bytes:
    """Sign *body* with *sign* (the delta key's ``sign(message) -> 64 bytes``, kid *kid*)
    and encrypt it to *device_public_key*; return the pack file's bytes.

    *body* must hold ``device_id``, ``serial``, ``pack_id`` and ``not_after_ms``: they are
    repeated in the header (authenticated as associated data).
    """
    device_id = str(body["device_id"])
    plain = _canonical(body)
    signature = sign(pack_message(device_id, plain))
    ephemeral = X25519PrivateKey.generate()
    epk = public_key_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(device_public_key))
    nonce = os.urandom(12)
    header = {
        "format": FORMAT,
        "device_id": device_id,
        "serial": body["serial"],
        "pack_id": body["pack_id"],
        "kid": kid,
        "not_after_ms": body["not_after_ms"],
        "epk": _b64(epk),
        "nonce": _b64(nonce),
    }
    key = _aead_key(shared, epk, device_public_key, device_id)
    ciphertext = AESGCM(key).encrypt(nonce, signature + plain, _canonical(header))
    return _canonical({**header, "ciphertext": _b64(ciphertext)}) + b"\n"


def open_pack(
    data: bytes,
    *,
    device_id: str,
    private_key: X25519PrivateKey,
    delta_kid: str,
    delta_public_key: bytes,
    now_ms: int,
    last_serial: int | None,
) -> dict[str, Any]:
    """Decrypt and verify the pack *data* for this device; return its body.

    *delta_kid* / *delta_public_key*: the central's delta signing key pinned at
    enrollment. *now_ms*: the time to check the expiry against (the device's trusted
    time). *last_serial*: the serial of the last pack installed here (None: none).

    Raises:
        PackRefused: with the first reason that applies (module docstring).
    """
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_PACK_BYTES:
        raise PackRefused("malformed", "not a pack: too large or not bytes")
    try:
        outer = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise PackRefused("malformed", "not a pack: not JSON") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise PackRefused("malformed", f"not a pack: format is not {FORMAT!r}")
    header: dict[str, Any] = {name: outer.get(name) for name in _HEADER}
    if set(outer) != {*_HEADER, "ciphertext"}:
        raise PackRefused("malformed", "pack: unexpected or missing fields")
    if header["device_id"] != device_id:
        raise PackRefused(
            "wrong_device", f"this pack is for device {header['device_id']!r}, not {device_id!r}"
        )
    for name in ("serial", "not_after_ms"):
        value = header[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PackRefused("malformed", f"pack: {name} must be a non-negative integer")
    serial: int = header["serial"]
    not_after: int = header["not_after_ms"]
    epk = _unb64(header["epk"], "epk", 32)
    nonce = _unb64(header["nonce"], "nonce", 12)
    ciphertext = _unb64(outer["ciphertext"], "ciphertext")
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError:
        raise PackRefused("tampered", "pack: the ephemeral key is not usable") from None
    key = _aead_key(shared, epk, public_key_bytes(private_key), device_id)
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, _canonical(header))
    except InvalidTag:
        raise PackRefused(
            "tampered",
            "the pack does not decrypt with this device's key: altered, or sealed for "
            "another device",
        ) from None
    signature, body_bytes = plain[:64], plain[64:]
    if header["kid"] != delta_kid:
        raise PackRefused(
            "bad_signature", f"signed by key {header['kid']!r}, not the pinned {delta_kid!r}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(delta_public_key).verify(
            signature, pack_message(device_id, body_bytes)
        )
    except InvalidSignature:
        raise PackRefused(
            "bad_signature", "the pack is not signed by this device's central"
        ) from None
    try:
        body = json.loads(body_bytes)
    except (ValueError, UnicodeDecodeError):
        raise PackRefused("malformed", "pack body: not JSON") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise PackRefused("malformed", "pack body: not an event pack")
    for name in ("device_id", "serial", "pack_id", "not_after_ms"):
        if body.get(name) != header[name]:
            raise PackRefused("malformed", f"pack body: {name} differs from the header")
    if now_ms >= not_after:
        raise PackRefused("expired", f"the pack expired at {not_after} ms (now {now_ms} ms)")
    if last_serial is not None and serial <= last_serial:
        raise PackRefused(
            "replayed",
            f"pack serial {serial} is not newer than the installed serial {last_serial}",
        )
    return body
