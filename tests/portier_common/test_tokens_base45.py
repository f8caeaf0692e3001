"""Base45 (RFC 9285): the RFC's examples, round trips and the strict decoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portier_common.tokens.base45 import ALPHABET, Base45Error, b45decode, b45encode

# RFC 9285 §4.3 and §4.4.
RFC_VECTORS = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
    (b"", ""),
]


@pytest.mark.parametrize(("data", "text"), RFC_VECTORS)
def test_rfc_9285_examples(data: bytes, text: str) -> None:
    assert b45encode(data) == text
    assert b45decode(text) == data


def test_alphabet_is_the_qr_alphanumeric_set() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 45
    assert set(ALPHABET) == set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def test_edge_values() -> None:
    assert b45encode(b"\xff\xff") == "FGW"  # 65535 = 15 + 16*45 + 32*2025
    assert b45decode("FGW") == b"\xff\xff"
    assert b45encode(b"\xff") == "U5"  # 255 = 30 + 5*45
    assert b45encode(b"\x00\x00") == "000"


@pytest.mark.parametrize(
    "text",
    [
        "GGW",  # 65536: one more than two bytes hold
        ":::",  # 91124
        "V5",  # 256: one more than one byte holds
        "::",
        "A",  # length 3n+1
        "BB8A",
        "bb8",  # lower case is not in the alphabet
        "BB8\n",  # nor a trailing newline
        " BB8",  # a leading space is a valid character, but makes length 3n+1
        "BB\u00e9",
        "BB8\x00",
    ],
)
def test_strict_decoder_refuses(text: str) -> None:
    with pytest.raises(Base45Error):
        b45decode(text)


def test_decoder_refuses_non_str() -> None:
    with pytest.raises(TypeError):
        b45decode(b"BB8")  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    text = b45encode(data)
    assert len(text) == 3 * (len(data) // 2) + 2 * (len(data) % 2)
    assert set(text) <= set(ALPHABET)
    assert b45decode(text) == data


@given(st.text(alphabet=ALPHABET, max_size=60))
def test_decoding_is_a_bijection(text: str) -> None:
    """A string either fails or is the one spelling of its bytes: no second spelling exists."""
    try:
        data = b45decode(text)
    except Base45Error:
        return
    assert b45encode(data) == text


@given(st.text(max_size=60))
def test_any_text_decodes_or_raises_base45_error(text: str) -> None:
    """No other exception type, and only text within the alphabet ever decodes."""
    try:
        data = b45decode(text)
    except Base45Error:
        return
    assert set(text) <= set(ALPHABET)
    assert b45encode(data) == text
