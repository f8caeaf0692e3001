"""Ed25519 signing keys (for the issuer) and the verifier's keyring of pinned public keys.

The central holds :class:`SigningKey` objects and mints invitations with them.
Each device holds a :class:`Keyring`: the public keys it trusts, by key id
(``kid``), each with an optional validity window. Rotation is a matter of
adding the new key, then letting the old one run out (``not_after``) or
removing it; both happen at run time, without a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALGORITHM_NAME",
    "KEYRING_FORMAT",
    "MAX_KID_BYTES",
    "Keyring",
    "KeyringError",
    "SigningKey",
    "TrustedKey",
]

log = logging.getLogger(__name__)

#: The only signature algorithm: EdDSA over Ed25519 (COSE alg -8).
ALGORITHM_NAME = "EdDSA"
#: Version of the dict/JSON form written by :meth:`Keyring.to_dict`.
KEYRING_FORMAT = 1
#: A key id is a short text, sent as UTF-8 bytes in every token.
MAX_KID_BYTES = 32


class KeyringError(ValueError):
    """A key or a serialised keyring is invalid; the message names the bad field."""


def _check_kid(kid: object) -> str:
    if not isinstance(kid, str):
        raise KeyringError(f"kid must be a str, not {type(kid).__name__}")
    try:
        size = len(kid.encode("utf-8"))
    except UnicodeEncodeError:
        size = 0
    if not 1 <= size <= MAX_KID_BYTES or not kid.isprintable():
        raise KeyringError(f"kid must be 1 to {MAX_KID_BYTES} printable UTF-8 bytes, got {kid!r}")
    return kid


def _check_bound(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise KeyringError(f"{name} must be Unix seconds or None, not {value!r}")
    return value


@dataclass(frozen=True)
class TrustedKey:
    """A pinned Ed25519 public key, with the window in which it may verify tokens.

    ``not_before`` and ``not_after`` are Unix seconds, both inclusive, or None
    for no bound.

    Raises:
        KeyringError: (a ValueError) a bad kid, a public key that is not 32
            bytes of an Ed25519 key, or a window that ends before it starts.
    """

    kid: str
    public_key: bytes
    not_before: float | None = None
    not_after: float | None = None
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_kid(self.kid)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise KeyringError(f"public_key of {self.kid!r} must be 32 raw bytes")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise KeyringError(f"public_key of {self.kid!r} is not an Ed25519 key") from exc
        object.__setattr__(self, "_key", key)
        nbf = _check_bound("not_before", self.not_before)
        naf = _check_bound("not_after", self.not_after)
        if nbf is not None and naf is not None and naf < nbf:
            raise KeyringError(f"not_after of {self.kid!r} is before its not_before")

    def valid_at(self, now: float, skew: float = 0.0) -> bool:
        """Return True if the key may verify at *now*, allowing *skew* seconds either way."""
        if self.not_before is not None and now < self.not_before - skew:
            return False
        return self.not_after is None or now <= self.not_after + skew

    def verify_signature(self, signature: bytes, message: bytes) -> bool:
        """Return True if *signature* is this key's Ed25519 signature of *message*."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form: kid, alg, base64 public key, window."""
        return {
            "kid": self.kid,
            "alg": ALGORITHM_NAME,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustedKey:
        """Return the key described by *data* (the form :meth:`to_dict` writes).

        Raises:
            KeyringError: a missing or bad field (named in the message).
        """
        if not isinstance(data, Mapping):
            raise KeyringError(f"a key must be a mapping, not {type(data).__name__}")
        unknown = set(data) - {"kid", "alg", "public_key", "not_before", "not_after"}
        if unknown:
            raise KeyringError(f"unknown key fields {sorted(unknown)}")
        if "kid" not in data or "public_key" not in data:
            raise KeyringError("a key needs 'kid' and 'public_key'")
        if data.get("alg", ALGORITHM_NAME) != ALGORITHM_NAME:
            raise KeyringError(f"alg of {data['kid']!r} must be {ALGORITHM_NAME!r}")
        encoded = data["public_key"]
        if not isinstance(encoded, str):
            raise KeyringError(f"public_key of {data['kid']!r} must be base64 text")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise KeyringError(f"public_key of {data['kid']!r} is not valid base64") from exc
        return cls(
            kid=data["kid"],
            public_key=raw,
            not_before=data.get("not_before"),
            not_after=data.get("not_after"),
        )


class SigningKey:
    """An Ed25519 private key with its key id, used by the issuer to mint invitations.

    Build one with :meth:`generate`, :meth:`from_private_bytes` or
    :meth:`from_pem`. Devices never hold one: they hold :class:`TrustedKey`.
    """

    __slots__ = ("_key", "kid")

    def __init__(self, kid: str, private_key: Ed25519PrivateKey) -> None:
        """Wrap *private_key* under *kid*.

        Raises:
            KeyringError: a bad kid.
            TypeError: *private_key* is not an Ed25519 private key.
        """
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        self.kid = _check_kid(kid)
        self._key = private_key

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        """Return a new random key (from the OS's CSPRNG) under *kid*."""
        return cls(kid, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, kid: str, seed: bytes) -> SigningKey:
        """Return the key whose 32-byte raw private key (seed) is *seed*.

        Raises:
            ValueError: *seed* is not 32 bytes.
        """
        return cls(kid, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, kid: str, pem: bytes, password: bytes | None = None) -> SigningKey:
        """Return the key in the PKCS#8 PEM *pem*.

        Raises:
            ValueError: not a PEM private key, or a wrong password.
            TypeError: the PEM holds another kind of key.
        """
        key = serialization.load_pem_private_key(pem, password=password)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError(f"the PEM holds a {type(key).__name__}, not an Ed25519 key")
        return cls(kid, key)

    def private_bytes(self) -> bytes:
        """Return the 32-byte raw private key (keep it secret)."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def to_pem(self, password: bytes | None = None) -> bytes:
        """Return the key as PKCS#8 PEM, encrypted when *password* is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def public_bytes(self) -> bytes:
        """Return the 32-byte raw public key."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def trusted_key(
        self, *, not_before: float | None = None, not_after: float | None = None
    ) -> TrustedKey:
        """Return the public half as a :class:`TrustedKey` for a keyring."""
        return TrustedKey(self.kid, self.public_bytes(), not_before, not_after)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of *message*."""
        return self._key.sign(message)


class Keyring:
    """The public keys a verifier trusts, by kid; safe to change while others verify.

    Readers never lock: every change builds a new dict and swaps it in, so a
    verification in flight sees the keyring either before or after a change,
    never half of it.
    """

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        """Start with *keys*.

        Raises:
            KeyringError: two keys share a kid.
        """
        self._lock = threading.Lock()
        self._keys: dict[str, TrustedKey] = self._index(keys)

    @staticmethod
    def _index(keys: Iterable[TrustedKey]) -> dict[str, TrustedKey]:
        index: dict[str, TrustedKey] = {}
        for key in keys:
            if not isinstance(key, TrustedKey):
                raise KeyringError(f"keyring entries must be TrustedKey, not {type(key).__name__}")
            if key.kid in index:
                raise KeyringError(f"kid {key.kid!r} appears twice")
            index[key.kid] = key
        return index

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(list(self._keys.values()))

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __repr__(self) -> str:
        return f"Keyring(kids={sorted(self._keys)!r})"

    def get(self, kid: str) -> TrustedKey | None:
        """Return the key pinned under *kid*, or None."""
        return self._keys.get(kid)

    def add(self, key: TrustedKey) -> None:
        """Pin *key*; a key already under the same kid is replaced (a moved window)."""
        if not isinstance(key, TrustedKey):
            raise TypeError(f"key must be a TrustedKey, not {type(key).__name__}")
        with self._lock:
            keys = dict(self._keys)
            replaced = key.kid in keys
            keys[key.kid] = key
            self._keys = keys
        log.info("signing key %r %s", key.kid, "replaced" if replaced else "added")

    def remove(self, kid: str) -> bool:
        """Unpin *kid*; return True if it was there. Tokens under it then give unknown_key."""
        with self._lock:
            if kid not in self._keys:
                return False
            keys = dict(self._keys)
            del keys[kid]
            self._keys = keys
        log.info("signing key %r removed", kid)
        return True

    def replace_all(self, keys: Iterable[TrustedKey]) -> None:
        """Swap the whole set of keys at once (a full sync from the central).

        Raises:
            KeyringError: two keys share a kid (nothing is changed then).
        """
        index = self._index(keys)
        with self._lock:
            self._keys = index
        log.info("keyring replaced: %d keys", len(index))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: ``{"format": 1, "keys": [TrustedKey.to_dict(), ...]}``."""
        keys = sorted(self._keys.values(), key=lambda key: key.kid)
        return {"format": KEYRING_FORMAT, "keys": [key.to_dict() for key in keys]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Keyring:
        """Return the keyring that :meth:`to_dict` described.

        Raises:
            KeyringError: an unknown format, a bad key (named) or a repeated kid.
        """
        if not isinstance(data, Mapping) or data.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"keyring format must be {KEYRING_FORMAT}")
        keys = data.get("keys")
        if not isinstance(keys, list):
            raise KeyringError("keyring 'keys' must be a list")
        return cls(TrustedKey.from_dict(key) for key in keys)

    def to_json(self) -> str:
        """Return :meth:`to_dict` as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Keyring:
        """Return the keyring in JSON *text*.

        Raises:
            KeyringError: not JSON, or as :meth:`from_dict`.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KeyringError(f"keyring is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
