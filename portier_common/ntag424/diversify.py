"""Per-card keys from a master key: AES-128 key diversification (NXP AN10922 §2.2)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portier_common.ntag424.crypto import _ZERO_BLOCK, UID_SIZE, _aes_ecb_encrypt, _check_key

__all__ = ["DiversifiedKeys", "diversify_aes128"]


def _dbl(block: bytes) -> bytes:
    # Doubling in GF(2^128) as CMAC's subkey generation defines it (NIST SP 800-38B).
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(16, "big")


def _cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    k1 = _dbl(_aes_ecb_encrypt(key, _ZERO_BLOCK))
    return k1, _dbl(k1)


def diversify_aes128(
    master_key: bytes,
    uid: bytes,
    application_id: bytes = b"",
    system_identifier: bytes = b"",
) -> bytes:
    """Derive a per-card AES-128 key from a master key (NXP AN10922 §2.2).

    The diversification input is M = UID || application id || system
    identifier (1 to 31 bytes). AN10922 CMACs ``01h || M`` padded to 32 bytes
    (not to 16 as RFC 4493 would for a short M), XORing the last block with the
    CMAC subkey K2 when padding was added and K1 when not.

    Returns:
        The 16-byte diversified key.

    Raises:
        ValueError: the master key is not 16 bytes or M is empty or over 31 bytes.
    """
    key = _check_key("master_key", master_key)
    data = bytes(uid) + bytes(application_id) + bytes(system_identifier)
    if not 1 <= len(data) <= 31:
        raise ValueError(
            "diversification input (uid + application_id + system_identifier) "
            f"must be 1..31 bytes, got {len(data)}"
        )
    block = b"\x01" + data
    k1, k2 = _cmac_subkeys(key)
    if len(block) < 32:
        block = (block + b"\x80").ljust(32, b"\x00")
        last_key = k2
    else:
        last_key = k1
    last = bytes(a ^ b for a, b in zip(block[16:], last_key, strict=True))
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_BLOCK)).encryptor()
    out = encryptor.update(block[:16] + last) + encryptor.finalize()
    return out[16:]


@dataclass(frozen=True, repr=False)
class DiversifiedKeys:
    """A file-read key lookup that diversifies a master key per UID (AN10922).

    Use an instance as :class:`SunVerifier`'s ``file_read_key``. It answers
    for every UID, so it never yields :class:`UnknownBadge`: whether the badge is
    enrolled is the credential cache's business. Pick a ``system_identifier``
    per site and key role so one master key never yields the same card key
    twice.

    Raises:
        ValueError: naming the field, for a master key that is not 16 bytes or
            identifiers too long to leave room for a 7-byte UID.
    """

    master_key: bytes
    application_id: bytes = b""
    system_identifier: bytes = b""

    def __post_init__(self) -> None:
        _check_key("DiversifiedKeys.master_key", self.master_key)
        if len(self.application_id) + len(self.system_identifier) > 31 - UID_SIZE:
            raise ValueError(
                "DiversifiedKeys.system_identifier: application_id + system_identifier must "
                f"be at most {31 - UID_SIZE} bytes"
            )

    def __call__(self, uid: bytes) -> bytes:
        """Returns the diversified key for ``uid``."""
        return diversify_aes128(self.master_key, uid, self.application_id, self.system_identifier)

    def __repr__(self) -> str:
        return f"DiversifiedKeys(system_identifier={self.system_identifier!r})"
