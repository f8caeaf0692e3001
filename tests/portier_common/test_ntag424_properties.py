"""Hypothesis properties of the SUN verifier: any input, any tampering, any counter order."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from portier_common.ntag424 import (
    BadSunMac,
    MalformedSun,
    SunError,
    SunSettings,
    SunTap,
    SunVerifier,
    counter_verdict,
    emulate_sun_url,
)
from portier_common.reasons import Reason

ZERO_KEY = bytes(16)
ENC_SETTINGS = SunSettings(mac_input_from="enc")
VERIFIERS = (
    SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY),
    SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY, settings=ENC_SETTINGS),
    SunVerifier(file_read_key={}, meta_read_key=ZERO_KEY),
    SunVerifier(file_read_key=ZERO_KEY),
)
SUN_REASONS = {Reason.MALFORMED, Reason.BAD_SIGNATURE, Reason.UNKNOWN_BADGE}

keys = st.binary(min_size=16, max_size=16)
uids = st.binary(min_size=7, max_size=7)
counters = st.integers(min_value=0, max_value=0xFFFFFF)
HEX_DIGITS = "0123456789abcdefABCDEF"
# The lengths the parser expects (UID, counter, MAC, PICCData, file data, LRP PICCData)
# as well as any length, so that random queries get past the length checks.
hex_text = st.one_of(
    st.sampled_from([14, 6, 16, 32, 64, 48]).flatmap(
        lambda n: st.text(alphabet=HEX_DIGITS, min_size=n, max_size=n)
    ),
    st.text(alphabet=HEX_DIGITS, max_size=80),
)
names = st.sampled_from(["picc_data", "enc", "cmac", "uid", "ctr", "e", "c", "v", ""])
values = st.one_of(hex_text, st.text(max_size=40))


def only_typed_errors(url: object) -> None:
    for verifier in VERIFIERS:
        try:
            result = verifier.verify(url)
        except SunError as error:
            assert error.reason in SUN_REASONS
        else:
            # Random input that verifies would be a forged MAC: it must not happen.
            raise AssertionError(f"verified random input {url!r} as {result!r}")


@given(st.text(max_size=300))
# Deep paths random text rarely reaches: non-ASCII inside the MAC input, LRP-sized
# PICCData, file data after the MAC.
@example("https://a/?picc_data=" + "0" * 32 + "&enc=" + "0" * 32 + "&v=é&cmac=" + "0" * 16)
@example("https://a/?picc_data=" + "0" * 48 + "&cmac=" + "0" * 16)
@example("?uid=" + "0" * 14 + "&ctr=000001&cmac=" + "0" * 16 + "&enc=" + "0" * 32)
def test_random_text_raises_only_sun_errors(url: str) -> None:
    only_typed_errors(url)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_sun_errors(url: bytes) -> None:
    only_typed_errors(url)


@settings(max_examples=400)
@given(
    st.lists(st.tuples(names, st.sampled_from(["=", ""]), values), max_size=8),
    st.sampled_from(["https://a/?", "?", "https://a/?v=1&", "x#?"]),
)
def test_random_query_strings_raise_only_sun_errors(
    pairs: list[tuple[str, str, str]], prefix: str
) -> None:
    # Built from the parameter names the verifier looks for, so the search
    # reaches the hex, length, mode and MAC-input checks, not only "no query".
    only_typed_errors(prefix + "&".join(name + sep + value for name, sep, value in pairs))


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.lists(st.integers()),
        st.dictionaries(st.text(), st.text()),
    )
)
def test_non_text_objects_raise_only_sun_errors(url: object) -> None:
    only_typed_errors(url)


def tap_urls() -> st.SearchStrategy[tuple[str, SunVerifier, SunTap]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, SunVerifier, SunTap]:
        file_key = draw(keys)
        meta_key = draw(st.one_of(st.none(), keys))
        uid = draw(uids)
        counter = draw(counters)
        blocks = draw(st.integers(min_value=0, max_value=4))
        file_data = draw(st.binary(min_size=16 * blocks, max_size=16 * blocks)) if blocks else None
        # Encrypted file data must be MACed, so its layout starts the MAC input there.
        layout = ENC_SETTINGS if file_data is not None else SunSettings()
        url = emulate_sun_url(
            "https://badge.example/t",
            uid=uid,
            counter=counter,
            file_read_key=file_key,
            meta_read_key=meta_key,
            file_data=file_data,
            settings=layout,
        )
        verifier = SunVerifier(file_read_key=file_key, meta_read_key=meta_key, settings=layout)
        expected = SunTap(
            uid=uid, counter=counter, file_data=file_data, encrypted=meta_key is not None
        )
        return url, verifier, expected

    return build()


@given(tap_urls())
def test_emulated_taps_verify(case: tuple[str, SunVerifier, SunTap]) -> None:
    url, verifier, expected = case
    assert verifier.verify(url) == expected


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(tap_urls(), st.data())
def test_any_change_to_a_value_is_refused(
    case: tuple[str, SunVerifier, SunTap], data: st.DataObject
) -> None:
    url, verifier, _ = case
    query_at = url.index("?") + 1
    # Positions inside parameter values (the base URL is not MACed with these layouts).
    positions = [i for i in range(query_at, len(url)) if url[i] in "0123456789ABCDEF"]
    position = data.draw(st.sampled_from(positions))
    replacement = data.draw(st.characters(codec="ascii"))
    # Changing a digit's case keeps the same bytes: not a change for PICCData or
    # the MAC (the file data is MACed as text, so there it is refused anyway).
    assume(replacement.upper() != url[position])
    tampered = url[:position] + replacement + url[position + 1 :]
    try:
        result = verifier.verify(tampered)
    except (BadSunMac, MalformedSun):
        return
    raise AssertionError(f"tampered URL {tampered!r} verified as {result!r}")


@given(st.lists(counters, max_size=30))
def test_counter_verdict_accepts_exactly_increasing_counters(sequence: list[int]) -> None:
    highest: int | None = None
    for counter in sequence:
        fresh = highest is None or counter > highest
        assert counter_verdict(highest, counter) is (None if fresh else Reason.REPLAYED)
        if fresh:
            highest = counter
