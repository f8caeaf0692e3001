"""Micro-benchmark of QR invitations: verify() latency and token size.

Run: .venv/bin/python bench/tokens.py [--n 20000]

Prints, for a minimal, a typical and a large invitation: the COSE size in
bytes, the token length in characters, the QR version (and modules a side) at
error level M, and what zlib would have made of it (the format does not
compress; this is the figure behind that choice). Then median and p99 of
verify() in microseconds on this machine, for a grant and for three kinds of
denial, and of mint().
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import segno

from portier_common.tokens import (
    PREFIX,
    InvitationClaims,
    Keyring,
    SigningKey,
    b45decode,
    b45encode,
    mint,
    verify,
)

NBF = 1_767_225_600
NOW = NBF + 3_600


def _claims() -> dict[str, InvitationClaims]:
    base: dict[str, Any] = {"site": "hq", "not_before": NBF, "expires": NBF + 86_400}
    return {
        "minimal": InvitationClaims(
            invitation_id="7Q2K9XW4", visitor="M. Dupont", doors=("lobby",), single_use=True, **base
        ),
        "typical": InvitationClaims(
            invitation_id="inv-7Q2K9XW4",
            visitor="Marie Dupont",
            host="Jean Martin",
            doors=("lobby",),
            zones=("floor-3",),
            single_use=True,
            extra={"company": "Acme"},
            **base,
        ),
        "large": InvitationClaims(
            invitation_id="inv-2026-01-7Q2K9XW4-0001",
            visitor="Marie-Hélène Dupont-Lefebvre",
            host="Jean-Baptiste Martin (Facilities)",
            doors=("lobby", "b2-east", "b2-west", "loading-dock"),
            zones=("floor-3", "lab", "canteen"),
            single_use=False,
            extra={"company": "Acme Industries SA", "badge": "V-0042", "car": "AB-123-CD"},
            **base,
        ),
    }


def _timed(call: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(n, 500)):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(0.99 * (n - 1))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per measurement")
    args = parser.parse_args()

    key = SigningKey.generate("2026a")
    ring = Keyring([key.trusted_key(), SigningKey.generate("2025b").trusted_key()])
    tokens = {name: mint(claims, key) for name, claims in _claims().items()}

    print("size          COSE bytes  chars  QR@M (modules)   zlib chars  zlib QR@M")
    for name, text in tokens.items():
        cose = b45decode(text[len(PREFIX) :])
        qr = segno.make(text, error="m", boost_error=False)
        packed = PREFIX + b45encode(zlib.compress(cose, 9))
        qz = segno.make(packed, error="m", boost_error=False)
        modules = qr.symbol_size(border=0)[0]
        print(
            f"{name:12s}  {len(cose):10d}  {len(text):5d}  v{qr.version:<2d} ({modules:3d})"
            f"        {len(packed):10d}  v{qz.version}"
        )

    typical = tokens["typical"]
    forged = mint(_claims()["typical"], SigningKey.from_private_bytes("2026a", bytes(32)))
    cases: dict[str, Callable[[], object]] = {
        "verify: granted": lambda: verify(typical, ring, now=NOW, site="hq", door="lobby"),
        "verify: bad signature": lambda: verify(forged, ring, now=NOW, site="hq", door="lobby"),
        "verify: expired": lambda: verify(typical, ring, now=NOW + 10**6, site="hq", door="lobby"),
        "verify: malformed": lambda: verify(typical[:-3], ring, now=NOW, site="hq", door="lobby"),
        "mint (typical)": lambda: mint(_claims()["typical"], key),
    }
    assert verify(typical, ring, now=NOW, site="hq", door="lobby").ok
    print(f"\nlatency over {args.n} calls   median µs    p99 µs")
    for name, call in cases.items():
        median, p99 = _timed(call, args.n)
        print(f"{name:25s}  {median:9.1f}  {p99:8.1f}")


if __name__ == "__main__":
    main()
