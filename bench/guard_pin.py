"""The cost of one guard PIN check, and what it means for an offline search.

    .venv/bin/python bench/guard_pin.py            # 15 hashes at the default cost
    .venv/bin/python bench/guard_pin.py --n 16384 --runs 9

Prints the median milliseconds of one ``verify_pin`` (scrypt at ``--n``, r = 8,
p = 1, the parameters of :func:`portier_common.pins.hash_pin`) on this machine, and
the time to try 10**4, 10**6 and 10**8 PINs against one stolen hash with
``--cores`` cores (default 2) at that speed: the figures quoted in
docs/configuration.md (``[guard]``). Run it on the device (a Pi 3 or 4) to check
that a login stays under about 0.3 s there; the machine's other load moves the
figures, so run it twice.
"""

from __future__ import annotations

import argparse
import statistics
import time

from portier_common.pins import SCRYPT_N, hash_pin, verify_pin


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.1f} s"


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=SCRYPT_N, help="scrypt N (a power of two)")
    parser.add_argument("--runs", type=int, default=15, help="hashes measured")
    parser.add_argument("--cores", type=int, default=2, help="cores of the searcher")
    args = parser.parse_args()
    encoded = hash_pin("135790", n=args.n)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        verify_pin("000000", encoded)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"scrypt N={args.n} r=8 p=1 ({args.n * 128 * 8 // 2**20} MiB): "
          f"median {median * 1000:.1f} ms per PIN check ({args.runs} runs)")  # fmt: skip
    for digits, space in ((4, 10**4), (6, 10**6), (8, 10**8)):
        print(f"  search of {space:.0e} PINs ({digits} digits) on {args.cores} cores: "
              f"{_duration(space * median / args.cores)} (half that on average)")  # fmt: skip


if __name__ == "__main__":
    main()
