"""Micro-benchmark of NTAG 424 DNA SUN verification (portier_common.ntag424).

Prints the median and p99 of one ``SunVerifier.verify()`` call, in
microseconds, for the message layouts a door meets: encrypted PICCData with an
empty MAC input (AN12196 Table 4), encrypted PICCData plus encrypted file data
(Table 3), plain UID/counter mirroring, a per-card diversified key (AN10922),
and a forged MAC (refused). Run:

    .venv/bin/python bench/ntag424.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import cryptography

from portier_common.ntag424 import (
    DiversifiedKeys,
    SunError,
    SunSettings,
    SunVerifier,
    emulate_sun_url,
)

ZERO_KEY = bytes(16)
AN_PICC_URL = (
    "https://www.my424dna.com/?picc_data=EF963FF7828658A599F3041510671E88&cmac=94EED9EE65337086"
)
AN_ENC_URL = (
    "https://my424dna.com/?picc_data=FDE4AFA99B5C820A2C1BB0F1C792D0EB"
    "&enc=94592FDE69FA06E8E3B6CA686A22842B&cmac=C48B89C17A233B2C"
)
PLAIN_URL = "https://sdm.nfcdeveloper.com/tagpt?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"


def measure(call: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Returns (median, p99) of ``call`` in microseconds over ``rounds`` timed calls."""
    for _ in range(min(rounds, 1000)):
        call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples) / 1000, p99 / 1000


def refused(verifier: SunVerifier, url: str) -> Callable[[], object]:
    def call() -> object:
        try:
            return verifier.verify(url)
        except SunError as error:
            return error

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000, help="timed calls per case")
    rounds = parser.parse_args().rounds

    meta = os.urandom(16)
    master = os.urandom(16)
    keys = DiversifiedKeys(master, system_identifier=b"bench")
    uid = bytes.fromhex("04A1B2C3D4E5F6")
    diversified_url = emulate_sun_url(
        "https://badge.example/t", uid=uid, counter=7, file_read_key=keys(uid), meta_read_key=meta
    )
    zero = SunVerifier(file_read_key=ZERO_KEY, meta_read_key=ZERO_KEY)
    enc = SunVerifier(
        file_read_key=ZERO_KEY,
        meta_read_key=ZERO_KEY,
        settings=SunSettings(mac_input_from="enc"),
    )
    diversified = SunVerifier(file_read_key=keys, meta_read_key=meta)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("encrypted PICCData, empty MAC input", lambda: zero.verify(AN_PICC_URL)),
        ("encrypted PICCData + file data", lambda: enc.verify(AN_ENC_URL)),
        ("plain UID + counter", lambda: zero.verify(PLAIN_URL)),
        ("encrypted, AN10922 diversified key", lambda: diversified.verify(diversified_url)),
        ("forged MAC (refused)", refused(zero, AN_PICC_URL[:-1] + "7")),
    ]
    print(
        f"portier_common.ntag424 verify(), {rounds} calls per case; Python "
        f"{platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()}"
    )
    print(f"{'case':40} {'median µs':>10} {'p99 µs':>10}")
    for name, call in cases:
        median, p99 = measure(call, rounds)
        print(f"{name:40} {median:10.1f} {p99:10.1f}")


if __name__ == "__main__":
    main()
