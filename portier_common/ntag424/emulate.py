"""The tag side, for simulators and tests: :func:`emulate_sun_url` writes the URL an
NTAG 424 DNA would write for one tap."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portier_common.ntag424.crypto import (
    _TAG_CTR_MIRROR,
    _TAG_UID_MIRROR,
    COUNTER_SIZE,
    PICC_DATA_SIZE,
    UID_SIZE,
    _aes_ecb_encrypt,
    _check_key,
    _check_uid,
    _cmac,
    _counter_bytes,
    _session_enc_key,
    _session_mac_key,
    truncate_mac,
)
from portier_common.ntag424.message import (
    _DEFAULT_SETTINGS,
    MAX_FILE_DATA_SIZE,
    SunSettings,
    _query_params,
)

__all__ = ["emulate_sun_url"]


def emulate_sun_url(
    base_url: str,
    *,
    uid: bytes,
    counter: int,
    file_read_key: bytes,
    meta_read_key: bytes | None = None,
    file_data: bytes | None = None,
    settings: SunSettings | None = None,
    picc_padding: bytes | None = None,
) -> str:
    """Build the URL an NTAG 424 DNA would write for one tap, for simulators and tests.

    With ``meta_read_key`` the UID and counter are encrypted into PICCData
    (PICCDataTag C7h, then ``picc_padding`` or 5 random bytes, as the tag
    pads); without it they are mirrored in clear. ``file_data`` (whole AES
    blocks) is encrypted as SDMENCFileData and needs ``settings.mac_input_from``
    so that the MAC covers it. Parameters are appended to ``base_url`` in the
    order PICCData or UID/counter, file data, MAC.

    Returns:
        The URL, hex in upper case as the tag writes it.

    Raises:
        ValueError: bad keys, UID, counter, padding or file data, or a layout
            the tag could not produce.
    """
    settings = settings or _DEFAULT_SETTINGS
    if "#" in base_url:
        raise ValueError("base_url: a tag's URL has no fragment")
    key = _check_key("file_read_key", file_read_key)
    uid = _check_uid(uid)
    counter_le = _counter_bytes(counter)
    parts: list[str] = []
    if meta_read_key is not None:
        meta = _check_key("meta_read_key", meta_read_key)
        padding = os.urandom(5) if picc_padding is None else bytes(picc_padding)
        if len(padding) != PICC_DATA_SIZE - 1 - UID_SIZE - COUNTER_SIZE:
            raise ValueError("picc_padding: expected 5 bytes")
        tag = _TAG_UID_MIRROR | _TAG_CTR_MIRROR | UID_SIZE
        picc = _aes_ecb_encrypt(meta, bytes([tag]) + uid + counter_le + padding)
        parts.append(f"{settings.picc_param}={picc.hex().upper()}")
    else:
        parts.append(f"{settings.uid_param}={uid.hex().upper()}")
        parts.append(f"{settings.ctr_param}={counter:06X}")
    if file_data is not None:
        if not file_data or len(file_data) % 16 or len(file_data) > MAX_FILE_DATA_SIZE:
            raise ValueError(
                f"file_data: expected 16 to {MAX_FILE_DATA_SIZE} bytes in whole blocks"
            )
        if settings.mac_input_from is None:
            raise ValueError("file_data needs settings.mac_input_from so the MAC covers it")
        enc_key = _session_enc_key(key, uid, counter)
        iv = _aes_ecb_encrypt(enc_key, counter_le + bytes(16 - COUNTER_SIZE))
        encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
        encrypted = encryptor.update(bytes(file_data)) + encryptor.finalize()
        parts.append(f"{settings.enc_param}={encrypted.hex().upper()}")
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}{'&'.join(parts)}&{settings.mac_param}="
    if settings.mac_input_from is None:
        mac_input = b""
    else:
        found = _query_params(url, {settings.mac_input_from})
        if settings.mac_input_from not in found:
            raise ValueError(
                f"settings.mac_input_from: {settings.mac_input_from!r} is not in the URL"
            )
        mac_input = url[found[settings.mac_input_from][0] :].encode("ascii")
    mac = truncate_mac(_cmac(_session_mac_key(key, uid, counter), mac_input))
    return url + mac.hex().upper()
