"""QR invitations: minting, every reason code the verifier gives, keys and rotation, skew."""

from __future__ import annotations

import hashlib
import hmac
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import cbor2
import pytest
import segno

from portier_common.reasons import Reason
from portier_common.tokens import (
    MAX_SKEW_LIMIT_S,
    MAX_TOKEN_CHARS,
    PREFIX,
    ClaimsError,
    Denied,
    InvitationClaims,
    Keyring,
    KeyringError,
    SigningKey,
    TrustedKey,
    Verified,
    b45decode,
    b45encode,
    mint,
    verify,
)
from portier_common.tokens.cose import (
    ALG_EDDSA,
    HEADER_ALG,
    HEADER_KID,
    encode_protected,
    encode_sign1,
    sig_structure,
)

NBF = 1_767_225_600  # 2026-01-01T00:00:00Z
EXP = NBF + 86_400
NOW = NBF + 3_600
SITE, DOOR = "hq", "lobby"

KEY = SigningKey.from_private_bytes("2026a", bytes(range(32)))
OTHER = SigningKey.from_private_bytes("2026a", bytes([7]) * 32)  # same kid, other key


def claims(**changes: Any) -> InvitationClaims:
    fields: dict[str, Any] = {
        "invitation_id": "inv-7Q2K9XW4",
        "visitor": "Marie Dupont",
        "host": "Jean Martin",
        "site": SITE,
        "doors": ("lobby",),
        "zones": ("floor-3",),
        "not_before": NBF,
        "expires": EXP,
        "single_use": True,
        "extra": {"company": "Acme"},
    }
    fields.update(changes)
    return InvitationClaims(**fields)


def keyring(*keys: SigningKey) -> Keyring:
    return Keyring(key.trusted_key() for key in (keys or (KEY,)))


def check(text: object, ring: Keyring | None = None, **context: Any) -> Verified | Denied:
    args: dict[str, Any] = {"now": NOW, "site": SITE, "door": DOOR, "zones_of_door": ()}
    args.update(context)
    return verify(text, ring if ring is not None else keyring(), **args)


def forge(
    *,
    protected: Mapping[int, Any] | bytes | None = None,
    unprotected: Mapping[Any, Any] | None = None,
    payload: Mapping[int, Any] | bytes | None = None,
    signer: SigningKey | None = KEY,
    signature: bytes | None = None,
    aad: bytes | None = None,
    tagged: bool = True,
    detached: bool = False,
) -> str:
    """Build a token the way an attacker or a buggy issuer might, signed by *signer*."""
    if protected is None:
        protected = {HEADER_ALG: ALG_EDDSA, HEADER_KID: KEY.kid.encode()}
    prot = protected if isinstance(protected, bytes) else encode_protected(protected)
    if payload is None:
        payload = claims().to_cbor_map()
    body = payload if isinstance(payload, bytes) else cbor2.dumps(dict(payload), canonical=True)
    if signature is None:
        assert signer is not None
        to_sign = sig_structure(prot, body) if aad is None else sig_structure(prot, body, aad)
        signature = signer.sign(to_sign)
    cose = encode_sign1(
        prot, unprotected or {}, None if detached else body, signature, tagged=tagged
    )
    return PREFIX + b45encode(cose)


def cose_bytes(text: str) -> bytes:
    return b45decode(text[len(PREFIX) :])


def wrap(cose: bytes) -> str:
    return PREFIX + b45encode(cose)


# --- the happy path -----------------------------------------------------------------------


def test_mint_then_verify_returns_the_claims() -> None:
    text = mint(claims(), KEY)
    result = check(text)
    assert isinstance(result, Verified)
    assert result.ok and result.reason is Reason.GRANTED
    assert result.claims == claims()
    assert result.kid == "2026a"
    assert (result.invitation_id, result.single_use, result.expires) == ("inv-7Q2K9XW4", True, EXP)


def test_token_is_qr_alphanumeric_text() -> None:
    text = mint(claims(), KEY)
    assert text.startswith("PT1:")
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert segno.make(text, error="m", boost_error=False).mode == "alphanumeric"


def test_minting_is_deterministic() -> None:
    # Ed25519 signatures are deterministic and the CBOR encoding is canonical.
    assert mint(claims(), KEY) == mint(claims(), KEY)
    assert mint(claims(), KEY) != mint(claims(), OTHER)


def test_zone_grants_a_door_of_that_zone() -> None:
    text = mint(claims(doors=(), zones=("floor-3", "lab")), KEY)
    assert check(text, door="east-2", zones_of_door=["lab", "annex"]).ok
    assert check(text, door="east-2", zones_of_door=["annex"]).reason is Reason.WRONG_DOOR


def test_typical_token_size(capsys: pytest.CaptureFixture[str]) -> None:
    """Print the size of a typical invitation and keep it in a fast-scanning QR version."""
    typical = claims(extra={})
    text = mint(typical, KEY)
    qr = segno.make(text, error="m", boost_error=False)
    compressed = wrap(zlib.compress(cose_bytes(text), 9))
    with capsys.disabled():
        print(
            f"\ntypical invitation: {len(cose_bytes(text))} bytes COSE, {len(text)} characters, "
            f"QR version {qr.version} ({qr.symbol_size(border=0)[0]} modules) at level M, "
            f"{qr.mode} mode; zlib would give {len(compressed)} characters"
        )
    assert qr.version <= 10
    assert len(compressed) > len(text)  # why the format does not compress


@pytest.mark.parametrize("decoder", ["zxingcpp", "pyzbar"])
def test_printed_qr_code_scans_back_and_verifies(decoder: str) -> None:
    """segno draws the code, a real decoder reads the picture, the text verifies."""
    import io

    from PIL import Image

    text = mint(claims(), KEY)
    png = io.BytesIO()
    segno.make(text, error="m", boost_error=False).save(png, kind="png", scale=3, border=4)
    image = Image.open(io.BytesIO(png.getvalue())).convert("L")
    if decoder == "zxingcpp":
        zxingcpp = pytest.importorskip("zxingcpp")
        scanned = [result.text for result in zxingcpp.read_barcodes(image)]
    else:
        pyzbar = pytest.importorskip("pyzbar.pyzbar")
        scanned = [result.data.decode("ascii") for result in pyzbar.decode(image)]
    assert scanned == [text]
    assert check(scanned[0]).ok


# --- every reason code, in a table ------------------------------------------------------


def _payload_with(**changes: Any) -> dict[int, Any]:
    payload = claims().to_cbor_map()
    for key, value in changes.items():
        number = int(key.removeprefix("k"))
        if value is _DROP:
            del payload[number]
        else:
            payload[number] = value
    return payload


_DROP = object()
_PUB = KEY.public_bytes()


def _hmac_swap() -> str:
    """alg HMAC-256 (5), "signed" with the public key bytes as the HMAC secret."""
    prot = encode_protected({HEADER_ALG: 5, HEADER_KID: KEY.kid.encode()})
    body = cbor2.dumps(claims().to_cbor_map(), canonical=True)
    mac = hmac.new(_PUB, sig_structure(prot, body), hashlib.sha256).digest()
    return wrap(encode_sign1(prot, {}, body, mac))


def _non_canonical_int() -> str:
    # The array header 0x84 spelled with a one-byte length (0x98 0x04): same value, other bytes.
    cose = cose_bytes(mint(claims(), KEY))
    assert cose[:2] == b"\xd2\x84"
    return wrap(b"\xd2\x98\x04" + cose[2:])


def _valid() -> str:
    return mint(claims(), KEY)


def _raw_sign1(payload: object = b"x", signature: object = b"s") -> str:
    """A COSE_Sign1 whose payload or signature has a type encode_sign1 would not take."""
    prot = encode_protected({HEADER_ALG: ALG_EDDSA, HEADER_KID: KEY.kid.encode()})
    return wrap(cbor2.dumps(cbor2.CBORTag(18, [prot, {}, payload, signature]), canonical=True))


def _changed_after_signing() -> str:
    """The expiry pushed by a year after the issuer signed."""
    cose = cbor2.loads(cose_bytes(_valid()))
    prot, _, _, signature = cose.value
    payload = _payload_with(k8=EXP + 365 * 86_400)
    return forge(protected=prot, payload=payload, signature=signature)


CASES: list[tuple[str, Callable[[], object], Reason, dict[str, Any]]] = [
    ("valid", _valid, Reason.GRANTED, {}),
    (
        "valid at a door of a named zone",
        _valid,
        Reason.GRANTED,
        {"door": "x", "zones_of_door": ["floor-3"]},
    ),
    # malformed: text, base45, CBOR, COSE structure
    ("not text", lambda: cose_bytes(_valid()), Reason.MALFORMED, {}),
    ("None", lambda: None, Reason.MALFORMED, {}),
    ("empty", lambda: "", Reason.MALFORMED, {}),
    ("prefix only", lambda: PREFIX, Reason.MALFORMED, {}),
    ("EU DCC prefix", lambda: "HC1:" + _valid()[4:], Reason.MALFORMED, {}),
    ("lower-case prefix", lambda: "pt1:" + _valid()[4:], Reason.MALFORMED, {}),
    ("future version", lambda: "PT2:" + _valid()[4:], Reason.MALFORMED, {}),
    ("trailing newline", lambda: _valid() + "\n", Reason.MALFORMED, {}),
    ("lower-case base45", lambda: _valid().lower().replace("pt1:", PREFIX), Reason.MALFORMED, {}),
    ("too long", lambda: PREFIX + "0" * MAX_TOKEN_CHARS, Reason.MALFORMED, {}),
    ("10 MB of text", lambda: "PT1:" + "A" * 10_000_000, Reason.MALFORMED, {}),
    ("truncated", lambda: _valid()[:-3], Reason.MALFORMED, {}),
    ("not CBOR", lambda: wrap(b"\xff\xfe\xfd"), Reason.MALFORMED, {}),
    ("trailing CBOR bytes", lambda: wrap(cose_bytes(_valid()) + b"\x00"), Reason.MALFORMED, {}),
    ("non-deterministic CBOR", _non_canonical_int, Reason.MALFORMED, {}),
    ("zlib-compressed", lambda: wrap(zlib.compress(cose_bytes(_valid()))), Reason.MALFORMED, {}),
    ("untagged COSE_Sign1", lambda: forge(tagged=False), Reason.MALFORMED, {}),
    (
        "COSE_Sign tag 98",
        lambda: wrap(b"\xd8\x62" + cose_bytes(_valid())[1:]),
        Reason.MALFORMED,
        {},
    ),
    (
        "array of 3",
        lambda: wrap(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""]))),
        Reason.MALFORMED,
        {},
    ),
    ("detached payload", lambda: forge(detached=True), Reason.MALFORMED, {}),
    ("payload as text", lambda: _raw_sign1(payload="x"), Reason.MALFORMED, {}),
    ("signature as text", lambda: _raw_sign1(signature="s"), Reason.MALFORMED, {}),
    (
        "protected header not a map",
        lambda: forge(protected=cbor2.dumps([1, -8])),
        Reason.MALFORMED,
        {},
    ),
    ("protected header not CBOR", lambda: forge(protected=b"\xff"), Reason.MALFORMED, {}),
    (
        "kid in the unprotected header",
        lambda: forge(protected={1: -8}, unprotected={4: b"2026a"}),
        Reason.MALFORMED,
        {},
    ),
    (
        "crit in the protected header",
        lambda: forge(protected={1: -8, 2: [4], 4: b"2026a"}),
        Reason.MALFORMED,
        {},
    ),
    ("no kid", lambda: forge(protected={1: -8}), Reason.MALFORMED, {}),
    ("kid as text", lambda: forge(protected={1: -8, 4: "2026a"}), Reason.MALFORMED, {}),
    # malformed, but signed: an issuer bug
    (
        "signed claims missing the expiry",
        lambda: forge(payload=_payload_with(k8=_DROP)),
        Reason.MALFORMED,
        {},
    ),
    (
        "signed claims with an unknown key",
        lambda: forge(payload=_payload_with(k99="x")),
        Reason.MALFORMED,
        {},
    ),
    (
        "signed claims with a text expiry",
        lambda: forge(payload=_payload_with(k8="tomorrow")),
        Reason.MALFORMED,
        {},
    ),
    (
        "signed claims with doors as text",
        lambda: forge(payload=_payload_with(k5="lobby")),
        Reason.MALFORMED,
        {},
    ),
    (
        "signed claims with an int single-use",
        lambda: forge(payload=_payload_with(k9=1)),
        Reason.MALFORMED,
        {},
    ),
    (
        "signed claims with an empty door list",
        lambda: forge(payload=_payload_with(k5=[])),
        Reason.MALFORMED,
        {},
    ),
    ("signed claims not a map", lambda: forge(payload=cbor2.dumps([1, 2])), Reason.MALFORMED, {}),
    # algorithm
    ("alg HMAC with the public key", _hmac_swap, Reason.BAD_ALGORITHM, {}),
    ("alg ES256", lambda: forge(protected={1: -7, 4: b"2026a"}), Reason.BAD_ALGORITHM, {}),
    ("alg unknown", lambda: forge(protected={1: -65000, 4: b"2026a"}), Reason.BAD_ALGORITHM, {}),
    ("alg 0", lambda: forge(protected={1: 0, 4: b"2026a"}), Reason.BAD_ALGORITHM, {}),
    (
        "alg as the text EdDSA",
        lambda: forge(protected={1: "EdDSA", 4: b"2026a"}),
        Reason.BAD_ALGORITHM,
        {},
    ),
    (
        "alg as the float -8.0",
        lambda: forge(protected={1: -8.0, 4: b"2026a"}),
        Reason.BAD_ALGORITHM,
        {},
    ),
    ("alg missing", lambda: forge(protected={4: b"2026a"}), Reason.BAD_ALGORITHM, {}),
    (
        "alg none-like: no header, no signature",
        lambda: forge(protected=b"", signature=b""),
        Reason.BAD_ALGORITHM,
        {},
    ),
    (
        "alg only in the unprotected header",
        lambda: forge(protected={4: b"2026a"}, unprotected={1: -8}),
        Reason.BAD_ALGORITHM,
        {},
    ),
    (
        "alg also in the unprotected header",
        lambda: forge(unprotected={1: -8}),
        Reason.BAD_ALGORITHM,
        {},
    ),
    ("unprotected alg swap", lambda: forge(unprotected={1: 5}), Reason.BAD_ALGORITHM, {}),
    # key
    ("unknown kid", lambda: mint(claims(), SigningKey.generate("rogue")), Reason.UNKNOWN_KEY, {}),
    ("kid not UTF-8", lambda: forge(protected={1: -8, 4: b"\xff\xfe"}), Reason.UNKNOWN_KEY, {}),
    ("empty keyring", _valid, Reason.UNKNOWN_KEY, {"ring": Keyring()}),
    (
        "key retired",
        _valid,
        Reason.UNKNOWN_KEY,
        {"ring": Keyring([KEY.trusted_key(not_after=NOW - 61)])},
    ),
    (
        "key not active yet",
        _valid,
        Reason.UNKNOWN_KEY,
        {"ring": Keyring([KEY.trusted_key(not_before=NOW + 61)])},
    ),
    # signature
    (
        "signed by another key under the same kid",
        lambda: mint(claims(), OTHER),
        Reason.BAD_SIGNATURE,
        {},
    ),
    ("empty signature", lambda: forge(signature=b""), Reason.BAD_SIGNATURE, {}),
    ("63-byte signature", lambda: forge(signature=KEY.sign(b"x")[:63]), Reason.BAD_SIGNATURE, {}),
    ("all-zero signature", lambda: forge(signature=bytes(64)), Reason.BAD_SIGNATURE, {}),
    ("signature without the Portier AAD", lambda: forge(aad=b""), Reason.BAD_SIGNATURE, {}),
    ("claims changed after signing", _changed_after_signing, Reason.BAD_SIGNATURE, {}),
    # time
    ("not yet valid", lambda: mint(claims(not_before=NOW + 3_600), KEY), Reason.NOT_YET_VALID, {}),
    (
        "expired",
        lambda: mint(claims(not_before=NOW - 7_200, expires=NOW - 3_600), KEY),
        Reason.EXPIRED,
        {},
    ),
    # scope
    ("wrong site", _valid, Reason.WRONG_SITE, {"site": "annex"}),
    (
        "wrong door",
        _valid,
        Reason.WRONG_DOOR,
        {"door": "server-room", "zones_of_door": ["floor-1"]},
    ),
]


@pytest.mark.parametrize(
    ("make", "reason", "context"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_reason_table(make: Callable[[], object], reason: Reason, context: dict[str, Any]) -> None:
    ring = context.pop("ring", None)
    result = check(make(), ring, **context)
    assert result.reason is reason, getattr(result, "detail", "")
    assert result.ok is (reason is Reason.GRANTED)


def test_table_covers_every_reason_the_verifier_gives() -> None:
    expected = {
        Reason.GRANTED,
        Reason.MALFORMED,
        Reason.BAD_ALGORITHM,
        Reason.UNKNOWN_KEY,
        Reason.BAD_SIGNATURE,
        Reason.NOT_YET_VALID,
        Reason.EXPIRED,
        Reason.WRONG_SITE,
        Reason.WRONG_DOOR,
    }
    assert {case[2] for case in CASES} == expected


def test_denials_after_the_signature_carry_the_trusted_claims() -> None:
    expired = check(mint(claims(), KEY), now=EXP + 3_600)
    assert isinstance(expired, Denied) and expired.reason is Reason.EXPIRED
    assert expired.claims == claims() and expired.kid == "2026a"
    forged = check(mint(claims(), OTHER))
    assert isinstance(forged, Denied) and forged.claims is None and forged.kid is None


def test_order_signature_before_time_and_scope() -> None:
    """A forged token for another site, already expired, is reported as forged."""
    text = mint(claims(site="annex", expires=NOW - 100, not_before=NOW - 200), OTHER)
    assert check(text).reason is Reason.BAD_SIGNATURE


def test_every_truncation_is_denied() -> None:
    text = mint(claims(), KEY)
    for end in range(len(text)):
        assert not check(text[:end]).ok, end


# --- clock skew ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "skew", "reason"),
    [
        (NBF - 60, 60, Reason.GRANTED),
        (NBF - 60.001, 60, Reason.NOT_YET_VALID),
        (EXP + 59.999, 60, Reason.GRANTED),
        (EXP + 60, 60, Reason.EXPIRED),
        (NBF, 0, Reason.GRANTED),
        (NBF - 0.001, 0, Reason.NOT_YET_VALID),
        (EXP - 0.001, 0, Reason.GRANTED),
        (EXP, 0, Reason.EXPIRED),
        (EXP + 3_599, MAX_SKEW_LIMIT_S, Reason.GRANTED),
    ],
)
def test_clock_skew_boundaries(now: float, skew: float, reason: Reason) -> None:
    assert check(mint(claims(), KEY), now=now, max_skew_s=skew).reason is reason


@pytest.mark.parametrize("skew", [-1, MAX_SKEW_LIMIT_S + 1, float("nan"), "60", True])
def test_skew_outside_its_bounds_is_the_callers_error(skew: Any) -> None:
    with pytest.raises(ValueError, match="max_skew_s"):
        check(mint(claims(), KEY), max_skew_s=skew)


@pytest.mark.parametrize(
    ("context", "error"),
    [
        ({"now": float("inf")}, ValueError),
        ({"now": "now"}, ValueError),
        ({"now": 10**400}, ValueError),
        ({"site": ""}, ValueError),
        ({"door": None}, ValueError),
        ({"zones_of_door": "floor-3"}, TypeError),
        ({"zones_of_door": [3]}, TypeError),
    ],
)
def test_bad_context_is_the_callers_error(context: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        check(mint(claims(), KEY), **context)


def test_keyring_must_be_a_keyring() -> None:
    with pytest.raises(TypeError):
        verify(mint(claims(), KEY), {"2026a": KEY.public_bytes()}, now=NOW, site=SITE, door=DOOR)  # type: ignore[arg-type]


# --- keys and rotation --------------------------------------------------------------------


def test_rotation_old_key_until_its_not_after_new_key_from_its_not_before() -> None:
    old = KEY
    new = SigningKey.from_private_bytes("2026b", bytes([9]) * 32)
    switch = NOW
    ring = Keyring(
        [
            old.trusted_key(not_after=switch + 600),
            new.trusted_key(not_before=switch - 600),
        ]
    )
    old_token, new_token = mint(claims(), old), mint(claims(), new)
    skew = 30
    assert check(old_token, ring, now=switch + 600 + skew, max_skew_s=skew).ok
    late = check(old_token, ring, now=switch + 600 + skew + 1, max_skew_s=skew)
    assert late.reason is Reason.UNKNOWN_KEY
    assert check(new_token, ring, now=switch - 600 - skew, max_skew_s=skew).ok
    early = check(new_token, ring, now=switch - 600 - skew - 1, max_skew_s=skew)
    assert early.reason is Reason.UNKNOWN_KEY
    lasting = mint(claims(expires=switch + 10**7), new)
    assert check(lasting, ring, now=switch + 10**6).ok
    assert check(mint(claims(expires=switch + 10**7), old), ring, now=switch + 10**6).reason is (
        Reason.UNKNOWN_KEY
    )


def test_keys_added_and_removed_at_run_time() -> None:
    ring = Keyring()
    text = mint(claims(), KEY)
    assert check(text, ring).reason is Reason.UNKNOWN_KEY
    ring.add(KEY.trusted_key())
    assert check(text, ring).ok
    ring.add(KEY.trusted_key(not_after=NOW - 3_600))  # same kid: the window moves
    assert check(text, ring).reason is Reason.UNKNOWN_KEY
    assert ring.remove("2026a") is True
    assert ring.remove("2026a") is False
    assert "2026a" not in ring and len(ring) == 0
    ring.replace_all([KEY.trusted_key()])
    assert check(text, ring).ok


def test_keyring_changes_while_verifying_in_other_threads() -> None:
    ring = keyring()
    text = mint(claims(), KEY)
    reasons: set[Reason] = set()
    stop = threading.Event()

    def verifier() -> None:
        while not stop.is_set():
            reasons.add(check(text, ring).reason)

    threads = [threading.Thread(target=verifier) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(300):
        ring.remove("2026a")
        ring.add(KEY.trusted_key())
    stop.set()
    for thread in threads:
        thread.join()
    assert reasons <= {Reason.GRANTED, Reason.UNKNOWN_KEY}
    assert Reason.GRANTED in reasons


def test_keyring_round_trips_through_json() -> None:
    ring = Keyring(
        [KEY.trusted_key(not_before=NBF, not_after=EXP), SigningKey.generate("b").trusted_key()]
    )
    again = Keyring.from_json(ring.to_json())
    assert list(again) == sorted(ring, key=lambda key: key.kid)
    assert check(mint(claims(), KEY), again).ok
    entry = ring.to_dict()["keys"][0]
    assert entry == {
        "kid": "2026a",
        "alg": "EdDSA",
        "public_key": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
        "not_before": NBF,
        "not_after": EXP,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": 2, "keys": []}, "format"),
        ({"format": 1}, "keys"),
        ({"format": 1, "keys": [{"kid": "a"}]}, "public_key"),
        ({"format": 1, "keys": [{"kid": "a", "public_key": "!!"}]}, "base64"),
        ({"format": 1, "keys": [{"kid": "a", "public_key": "AAAA"}]}, "32 raw bytes"),
        ({"format": 1, "keys": [{"kid": "a", "public_key": 5}]}, "base64 text"),
        ({"format": 1, "keys": [{"kid": "a", "alg": "HS256", "public_key": "A" * 44}]}, "alg"),
        ({"format": 1, "keys": [{"kid": "", "public_key": "A" * 43 + "="}]}, "kid"),
        ({"format": 1, "keys": [{"kid": "a", "public_key": "A" * 43 + "=", "x": 1}]}, "unknown"),
        (
            {
                "format": 1,
                "keys": [{"kid": "a", "public_key": "A" * 43 + "=", "not_after": "soon"}],
            },
            "not_after",
        ),
        (
            {
                "format": 1,
                "keys": [
                    {"kid": "a", "public_key": "A" * 43 + "=", "not_before": 5, "not_after": 4}
                ],
            },
            "not_after",
        ),
        (
            {"format": 1, "keys": [{"kid": "a", "public_key": "A" * 43 + "="}] * 2},
            "twice",
        ),
    ],
)
def test_bad_keyring_data_names_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        Keyring.from_dict(data)


def test_keyring_from_json_refuses_bad_json() -> None:
    with pytest.raises(KeyringError, match="JSON"):
        Keyring.from_json("{")


def test_signing_key_pem_round_trip_and_public_half() -> None:
    pem = KEY.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = SigningKey.from_pem("2026a", pem)
    assert again.private_bytes() == bytes(range(32))
    encrypted = KEY.to_pem(password=b"secret")
    assert b"ENCRYPTED" in encrypted
    assert SigningKey.from_pem("2026a", encrypted, b"secret").public_bytes() == KEY.public_bytes()
    assert TrustedKey("2026a", KEY.public_bytes()) == KEY.trusted_key()
    assert "secret" not in repr(KEY) and repr(KEY) == "SigningKey(kid='2026a')"


@pytest.mark.parametrize("kid", ["", "x" * 33, "tab\there", 5])
def test_bad_kid_is_refused(kid: Any) -> None:
    with pytest.raises(KeyringError, match="kid"):
        SigningKey.generate(kid)


# --- claims -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"invitation_id": ""}, "invitation_id"),
        ({"invitation_id": 42}, "invitation_id"),
        ({"invitation_id": "x" * 65}, "invitation_id"),
        ({"visitor": ""}, "visitor"),
        ({"visitor": "x" * 129}, "visitor"),
        ({"visitor": "Marie\nDupont"}, "visitor"),
        ({"host": None}, "host"),
        ({"site": ""}, "site"),
        ({"not_before": 1.5}, "not_before"),
        ({"not_before": -1}, "not_before"),
        ({"expires": True}, "expires"),
        ({"expires": 2**40}, "expires"),
        ({"expires": NBF}, "expires"),
        ({"single_use": 1}, "single_use"),
        ({"doors": "lobby"}, "doors"),
        ({"doors": ("lobby", "lobby")}, "doors"),
        ({"doors": ("",)}, r"doors\[0\]"),
        ({"zones": (3,)}, r"zones\[0\]"),
        ({"doors": (), "zones": ()}, "doors and zones"),
        ({"doors": tuple(f"d{i}" for i in range(33)), "zones": ()}, "doors and zones"),
        ({"extra": ["company"]}, "extra"),
        ({"extra": {"company": 5}}, "extra"),
        ({"extra": {f"k{i}": "v" for i in range(9)}}, "extra"),
    ],
)
def test_bad_claims_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ClaimsError, match=field):
        claims(**changes)


def test_claims_are_immutable_and_hashable() -> None:
    made = claims(doors=["lobby", "b2"])
    assert made.doors == ("lobby", "b2")
    assert hash(made) == hash(claims(doors=("lobby", "b2")))
    with pytest.raises(TypeError):
        made.extra["company"] = "Evil"  # type: ignore[index]


def test_mint_refuses_oversize_tokens_and_wrong_types() -> None:
    big = claims(
        doors=tuple(f"door-{i:02d}-" + "x" * 50 for i in range(16)),
        zones=(),
        extra={f"k{i}": "v" * 120 for i in range(8)},
    )
    with pytest.raises(ValueError, match="characters"):
        mint(big, KEY)
    with pytest.raises(TypeError):
        mint(claims().to_cbor_map(), KEY)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        mint(claims(), KEY.trusted_key())  # type: ignore[arg-type]


def test_unexpected_internal_errors_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside verification (simulated) denies instead of raising or granting."""

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(TrustedKey, "verify_signature", broken)
    result = check(mint(claims(), KEY))
    assert isinstance(result, Denied) and result.reason is Reason.MALFORMED


# --- the strict CBOR reader ---------------------------------------------------------------


def _sharing_bomb(levels: int) -> bytes:
    """[28([1, 1]), 28([29(0), 29(0)]), 28([29(1), 29(1)]), ...]: 2**levels leaves."""
    items = [b"\xd8\x1c\x82\x01\x01"]
    for level in range(1, levels):
        ref = b"\xd8\x1d" + cbor2.dumps(level - 1)
        items.append(b"\xd8\x1c\x82" + ref + ref)
    return bytes([0x98, levels]) + b"".join(items)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_sharing_bomb(5), "more items than bytes"),
        (b"\xd8\x1c\x81\xd8\x1d\x00", "more items than bytes"),  # a list that holds itself
        (cbor2.dumps({7: cbor2.CBORTag(1, 0)}), "datetime"),  # cbor2 decodes tag 1 to a date
        (cbor2.dumps(cbor2.CBORTag(18, [cbor2.CBORTag(18, [])])), "tag 18"),  # not at the root
        (cbor2.dumps(cbor2.CBORTag(258, [1, 2])), "set"),  # tag 258
        (cbor2.dumps(cbor2.CBORTag(55799, [1])), "deterministic"),  # cbor2 drops tag 55799
        (cbor2.dumps([cbor2.undefined]), "UndefinedType"),
        (cbor2.dumps(cbor2.CBORTag(30, [1, 3])), "Fraction"),  # tag 30
        (cbor2.dumps([cbor2.CBORTag(98, b"")]), "tag 98"),  # an unknown tag
        (b"\x9f\x01\xff", "not valid CBOR"),  # indefinite length
        (b"\xa2\x01\x01\x01\x02", "not valid CBOR"),  # duplicate map key
        (b"\x81" * 9 + b"\x00", "not valid CBOR"),  # deeper than MAX_CBOR_DEPTH
        (b"\x19\x00\x01", "deterministic"),  # 1 spelled on three bytes
        (b"\xa2\x02\x00\x01\x00", "deterministic"),  # map keys out of order
    ],
)
def test_strict_cbor_reader_refuses(data: bytes, message: str) -> None:
    from portier_common.tokens.cose import COSE_SIGN1_TAG, CborError, loads_strict

    with pytest.raises(CborError, match=message):
        loads_strict(data, root_tag=COSE_SIGN1_TAG)
    assert check(wrap(data)).reason is Reason.MALFORMED


def test_a_bigger_sharing_bomb_is_refused_quickly() -> None:
    """Without the item budget, re-encoding 2**60 leaves would never end."""
    assert check(wrap(_sharing_bomb(60))).reason is Reason.MALFORMED
