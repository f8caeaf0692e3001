"""Properties of the invitation verifier, with hypothesis.

No mutation of a valid token is ever granted; no swapped algorithm is ever
accepted; no input makes verify() raise.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portier_common.reasons import Reason
from portier_common.tokens import (
    PREFIX,
    Denied,
    InvitationClaims,
    Keyring,
    SigningKey,
    Verified,
    b45decode,
    b45encode,
    mint,
    verify,
)
from portier_common.tokens.base45 import ALPHABET
from portier_common.tokens.cose import (
    ALG_EDDSA,
    HEADER_ALG,
    HEADER_KID,
    encode_protected,
    encode_sign1,
    sig_structure,
)

NBF = 1_767_225_600
EXP = NBF + 86_400
NOW = NBF + 3_600
KEY = SigningKey.from_private_bytes("k1", bytes(range(32)))
RING = Keyring([KEY.trusted_key()])
CLAIMS = InvitationClaims(
    invitation_id="inv-7Q2K9XW4",
    visitor="Marie Dupont",
    host="Jean Martin",
    site="hq",
    doors=("lobby",),
    zones=("floor-3",),
    not_before=NBF,
    expires=EXP,
    single_use=True,
    extra={"company": "Acme"},
)
TOKEN = mint(CLAIMS, KEY)
COSE = b45decode(TOKEN[len(PREFIX) :])
PAYLOAD = cbor2.dumps(CLAIMS.to_cbor_map(), canonical=True)

# Every example is one Ed25519 verification at most: cheap, so run plenty.
MANY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: object) -> Verified | Denied:
    return verify(text, RING, now=NOW, site="hq", door="lobby", zones_of_door=["floor-3"])


def assert_denied(text: object) -> Denied:
    result = check(text)
    assert isinstance(result, Denied), "a mutated token was granted"
    assert isinstance(result.reason, Reason) and result.reason is not Reason.GRANTED
    return result


def wrap(cose: bytes) -> str:
    return PREFIX + b45encode(cose)


def test_the_unmutated_token_is_granted() -> None:
    """Guard for the properties below: they mutate a token that does verify."""
    assert check(TOKEN).ok


# --- mutations of the CBOR bytes -----------------------------------------------------------


@MANY
@given(st.integers(0, len(COSE) * 8 - 1))
def test_any_bit_flip_in_the_cbor_is_denied(bit: int) -> None:
    mutated = bytearray(COSE)
    mutated[bit // 8] ^= 1 << (bit % 8)
    assert_denied(wrap(bytes(mutated)))


@MANY
@given(st.integers(0, len(COSE) - 1), st.integers(1, 255))
def test_any_byte_change_in_the_cbor_is_denied(index: int, delta: int) -> None:
    mutated = bytearray(COSE)
    mutated[index] = (mutated[index] + delta) % 256
    assert_denied(wrap(bytes(mutated)))


@MANY
@given(st.integers(0, len(COSE)), st.binary(min_size=1, max_size=4))
def test_any_byte_insertion_in_the_cbor_is_denied(index: int, inserted: bytes) -> None:
    assert_denied(wrap(COSE[:index] + inserted + COSE[index:]))


@MANY
@given(st.integers(0, len(COSE) - 1), st.integers(1, 4))
def test_any_byte_deletion_in_the_cbor_is_denied(index: int, count: int) -> None:
    assert_denied(wrap(COSE[:index] + COSE[index + count :]))


# --- mutations of the text -----------------------------------------------------------------

_CHARS = st.one_of(st.sampled_from(ALPHABET + "pt\n\r\t\x00é"), st.characters())


@MANY
@given(st.integers(0, len(TOKEN) - 1), _CHARS)
def test_any_character_change_in_the_text_is_denied(index: int, char: str) -> None:
    if TOKEN[index] == char:
        char = ALPHABET[(ALPHABET.index(char) + 1) % 45] if char in ALPHABET else "0"
    assert_denied(TOKEN[:index] + char + TOKEN[index + 1 :])


@MANY
@given(st.integers(0, len(TOKEN)), st.text(min_size=1, max_size=4))
def test_any_text_insertion_is_denied(index: int, inserted: str) -> None:
    assert_denied(TOKEN[:index] + inserted + TOKEN[index:])


@MANY
@given(st.integers(0, len(TOKEN) - 1), st.integers(1, 4))
def test_any_text_deletion_is_denied(index: int, count: int) -> None:
    assert_denied(TOKEN[:index] + TOKEN[index + count :])


@MANY
@given(st.integers(0, len(TOKEN) - 2))
def test_swapping_two_different_neighbours_is_denied(index: int) -> None:
    a, b = TOKEN[index], TOKEN[index + 1]
    if a != b:
        assert_denied(TOKEN[:index] + b + a + TOKEN[index + 2 :])


# --- algorithm swaps -----------------------------------------------------------------------

_NOT_EDDSA = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64).filter(lambda alg: alg != ALG_EDDSA),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
)


@MANY
@given(_NOT_EDDSA)
def test_any_other_alg_is_refused_even_with_a_valid_ed25519_signature(alg: Any) -> None:
    """The real key signs, but the protected alg says something else: refused."""
    prot = encode_protected({HEADER_ALG: alg, HEADER_KID: b"k1"})
    signature = KEY.sign(sig_structure(prot, PAYLOAD))
    assert assert_denied(wrap(encode_sign1(prot, {}, PAYLOAD, signature))).reason in {
        Reason.BAD_ALGORITHM,
        Reason.MALFORMED,  # an alg that cbor2 cannot write deterministically
    }


@MANY
@given(st.sampled_from([4, 5, 6, 7, 0, -8, -7, -35, -36, -37, -257]), st.integers(0, 64))
def test_hmac_or_truncated_signatures_under_any_alg_are_refused(alg: int, size: int) -> None:
    """HMAC keyed with the public key bytes, empty ("none") or short signatures."""
    prot = encode_protected({HEADER_ALG: alg, HEADER_KID: b"k1"})
    mac = hmac.new(KEY.public_bytes(), sig_structure(prot, PAYLOAD), hashlib.sha512).digest()
    assert_denied(wrap(encode_sign1(prot, {}, PAYLOAD, mac[:size])))


@MANY
@given(st.dictionaries(st.one_of(st.integers(-300, 300), st.text(max_size=3)), st.integers()))
def test_anything_in_the_unprotected_header_is_refused(unprotected: dict[Any, int]) -> None:
    """The valid signature stays; only the unsigned bucket changes."""
    _, _, _, signature = cbor2.loads(COSE).value
    prot = encode_protected({HEADER_ALG: ALG_EDDSA, HEADER_KID: b"k1"})
    text = wrap(encode_sign1(prot, unprotected, PAYLOAD, signature))
    if unprotected:
        assert_denied(text)
    else:
        assert check(text).ok


# --- arbitrary input never raises ----------------------------------------------------------


@MANY
@given(st.text(max_size=400))
def test_any_text_is_denied_without_raising(text: str) -> None:
    assert_denied(text)


@MANY
@given(st.binary(max_size=400))
def test_any_bytes_behind_the_prefix_are_denied_without_raising(data: bytes) -> None:
    assert_denied(wrap(data))


_CBOR_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=70),
)
_CBOR = st.recursive(
    _CBOR_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.integers(-10, 10), st.text(max_size=3)), inner, max_size=5),
        st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 18, 24, 28, 29, 98, 258]), inner),
    ),
    max_leaves=12,
)


@MANY
@given(_CBOR)
def test_any_cbor_structure_is_denied_without_raising(value: Any) -> None:
    try:
        data = cbor2.dumps(value)
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return
    assert_denied(wrap(data))


@MANY
@given(
    st.one_of(_CBOR, st.binary(max_size=40)),
    st.one_of(_CBOR, st.binary(max_size=64)),
)
def test_signed_garbage_in_a_valid_envelope_is_denied(payload: Any, signature: Any) -> None:
    """Correct headers, arbitrary payload and signature items (bytes or not)."""
    prot = encode_protected({HEADER_ALG: ALG_EDDSA, HEADER_KID: b"k1"})
    try:
        data = cbor2.dumps(cbor2.CBORTag(18, [prot, {}, payload, signature]))
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return
    assert_denied(wrap(data))


@MANY
@given(_CBOR)
def test_any_signed_claims_map_that_is_not_valid_is_malformed(payload: Any) -> None:
    """Even with a real signature, claims of the wrong shape are refused, never raise."""
    try:
        body = cbor2.dumps(payload, canonical=True)
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return
    prot = encode_protected({HEADER_ALG: ALG_EDDSA, HEADER_KID: b"k1"})
    text = wrap(encode_sign1(prot, {}, body, KEY.sign(sig_structure(prot, body))))
    assert assert_denied(text).reason is Reason.MALFORMED


# --- claims round trip ---------------------------------------------------------------------

_NAME = st.text(
    st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1, max_size=12
)
# What InvitationClaims accepts as free text: printable, which excludes spaces other than " ".
_TEXT = st.characters(
    codec="utf-8",
    exclude_categories=("C", "Zl", "Zp"),
    exclude_characters=(
        "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
        "\u200a\u202f\u205f\u3000"
    ),
)


@st.composite
def _claims(draw: st.DrawFn) -> InvitationClaims:
    doors = draw(st.lists(_NAME, max_size=3, unique=True))
    zones = draw(st.lists(_NAME, min_size=0 if doors else 1, max_size=3, unique=True))
    not_before = draw(st.integers(0, 2**34))
    return InvitationClaims(
        invitation_id=draw(_NAME),
        visitor=draw(st.text(_TEXT, min_size=1, max_size=40)),
        host=draw(st.text(_TEXT, max_size=40)),
        site=draw(_NAME),
        doors=tuple(doors),
        zones=tuple(zones),
        not_before=not_before,
        expires=draw(st.integers(not_before + 1, 2**40 - 1)),
        single_use=draw(st.booleans()),
        extra=draw(st.dictionaries(_NAME, st.text(_TEXT, max_size=20), max_size=3)),
    )


@settings(max_examples=200, deadline=None)
@given(_claims())
def test_any_valid_claims_round_trip(claims: InvitationClaims) -> None:
    text = mint(claims, KEY)
    door = claims.doors[0] if claims.doors else "some-door"
    result = verify(
        text,
        RING,
        now=claims.not_before,
        site=claims.site,
        door=door,
        zones_of_door=claims.zones[:1],
        max_skew_s=0,
    )
    assert isinstance(result, Verified), result
    assert result.claims == claims
