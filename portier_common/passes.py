"""The visitor pass's QR code: a random pass id, the same text for the kiosk and the agent.

A printed visitor pass carries a QR code whose text is ``PV1:`` followed by a pass id:
26 characters of RFC 4648 base32 (upper case, no padding) encoding 16 random bytes
(128 bits). The text uses only QR alphanumeric characters, so the code stays small and
a camera reads it from a label at arm's length.

The id is **not signed and grants nothing**: it opens no door. It names one check-in,
so that the visitor can check out by showing the pass to the kiosk's camera. The agent
mints it at check-in (the check-in answer's ``pass_id``) and keeps only its hash
(:func:`pass_hash`) in its journal and on-site list, so check-out works offline and
after a restart while the id itself is never on the live event stream nor synced to
the central: whoever reads those cannot check a visitor out. 128 random bits cannot be
guessed; a pass id found on a lost pass can only check its visitor out, which the
guard sees, and a guard's reprint mints a new id (the old pass stops working).
``docs/passes.md`` describes it.

Its first :data:`PASS_REF_CHARS` characters are the pass's **reference**
(:func:`pass_ref`), printed under the code for a guard to type when the code does not
scan: the guard's on-site list finds the visit by it. The reference is not secret (the
on-site list and its events carry it); the 88 bits that follow it still cannot be guessed,
and the kiosk checks out only with the whole id.

The ``PV1:`` prefix differs from an invitation's ``PT1:`` (:mod:`portier_common.tokens`),
so a scanner tells a pass from an invitation before it asks the agent anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

#: What every pass QR text starts with (version 1 of the format).
PASS_PREFIX = "PV1:"
#: Length of a pass id: base32 of 16 bytes without its padding.
PASS_ID_CHARS = 26
_PASS_ID = re.compile(r"^[A-Z2-7]{26}$")
#: Length of a pass's reference, the part of its id a guard types (40 bits).
PASS_REF_CHARS = 8


class PassQrError(ValueError):
    """A text is not a visitor pass's QR code (the message says why)."""


def new_pass_id() -> str:
    """Return a fresh random pass id (26 base32 characters, 128 bits)."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def check_pass_id(pass_id: str) -> str:
    """Return ``pass_id`` when it is well formed; raise :class:`PassQrError` otherwise."""
    if not isinstance(pass_id, str) or not _PASS_ID.match(pass_id):
        raise PassQrError(f"a pass id is {PASS_ID_CHARS} base32 characters (A-Z, 2-7)")
    return pass_id


def pass_qr_text(pass_id: str) -> str:
    """The QR text of the pass with id ``pass_id``: ``PV1:<id>``."""
    return PASS_PREFIX + check_pass_id(pass_id)


def is_pass_qr(text: str) -> bool:
    """True when ``text`` starts like a pass QR code (it may still be malformed)."""
    return isinstance(text, str) and text.startswith(PASS_PREFIX)


def parse_pass_qr(text: str) -> str:
    """Return the pass id in the QR text ``text``; raise :class:`PassQrError` if it is not one."""
    if not is_pass_qr(text):
        raise PassQrError(f"a pass QR code starts with {PASS_PREFIX!r}")
    return check_pass_id(text[len(PASS_PREFIX) :])


def pass_hash(pass_id: str) -> str:
    """The hash the agent journals for ``pass_id`` (SHA-256, hex): the id stays secret.

    No salt is needed: the id is 128 random bits, so the hash cannot be reversed by
    trying ids."""
    return hashlib.sha256(check_pass_id(pass_id).encode("ascii")).hexdigest()


def pass_ref(pass_id: str) -> str:
    """The reference printed under the pass's code, for a guard to type: the id's first
    :data:`PASS_REF_CHARS` characters (not secret: see the module)."""
    return check_pass_id(pass_id)[:PASS_REF_CHARS]


def normalise_pass_ref(text: str) -> str | None:
    """``text`` as a guard typed it (any case, spaces, the ``PV1:`` prefix or a whole id)
    as a pass reference, or None when it cannot be one."""
    if not isinstance(text, str):
        return None
    cleaned = "".join(text.split()).upper()
    if cleaned.startswith(PASS_PREFIX):
        cleaned = cleaned[len(PASS_PREFIX) :]
    ref = cleaned[:PASS_REF_CHARS]
    if len(ref) != PASS_REF_CHARS or not re.fullmatch(r"[A-Z2-7]+", cleaned):
        return None
    return ref
