"""Benchmark QR decoders and pipeline variants on one core.

Generates a seeded hard set of 640x480 greyscale frames (hardware.qr.synth: small, blurred,
noisy, tilted, glare, low contrast, phone screens, no code, two codes), then decodes every frame
with every variant, interleaved frame by frame so that load from other processes falls on all
variants alike, and prints one table: frames decoded exactly (every expected payload, nothing
else), median and p90 milliseconds per frame, frames per second (1000 / mean ms), the median on
frames holding no code (every retry runs there), and decoded/137 on the real photos of
../shared/data/qr-real when present. The process is pinned to one core and OpenCV/OpenMP run
single-threaded.

    .venv/bin/python bench/qr.py              # 300 frames, 1 timing run
    .venv/bin/python bench/qr.py --runs 3     # medians of 3 timing runs
    .venv/bin/python bench/qr.py --quick      # 100 frames, for a quick look
"""

from __future__ import annotations

import os

# Before numpy/OpenCV load: one thread each, the figure is per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hardware.qr import Decoder

REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qr-real"


def variants() -> dict[str, Decoder]:
    """Decoders to compare, by label (raw decoders, then pipeline variants)."""
    from hardware.qr import QRSettings, open_decoder

    def pipe(**kw: Any) -> Decoder:
        return open_decoder(QRSettings(**kw))

    return {
        "zbar (raw)": pipe(backend="zbar", pipeline=False),
        "zxing (raw)": pipe(backend="zxing", pipeline=False),
        "zxing no-invert (raw)": pipe(backend="zxing", pipeline=False, try_invert=False),
        "zbar + default retries": pipe(backend="zbar"),
        "zxing + candidates": pipe(retries=("candidates",)),
        "zxing + upscale": pipe(retries=("upscale",)),
        "zxing + candidates, upscale": pipe(retries=("candidates", "upscale")),
        "zxing + ..., sharpen": pipe(retries=("candidates", "upscale", "sharpen")),
        "zxing + ..., denoise_sharpen": pipe(retries=("candidates", "upscale", "denoise_sharpen")),
        "zxing + default retries": pipe(),
        "zxing + default, zbar fallback": pipe(fallback="zbar"),
        "zxing + default, exhaustive": pipe(exhaustive=True),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="hard-set size (default 300)")
    parser.add_argument("--quick", action="store_true", help="100 frames, skip the real photos")
    parser.add_argument("--runs", type=int, default=1, help="timing runs; medians are printed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: last)")
    parser.add_argument("--by-kind", action="store_true", help="also print success per kind")
    args = parser.parse_args(argv)
    n = 100 if args.quick else args.frames

    cpus = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else cpus[-1]
    os.sched_setaffinity(0, {cpu})
    import cv2

    cv2.setNumThreads(1)

    from hardware.qr import load_image, synth

    t0 = time.perf_counter()
    frames = synth.hard_set(n, seed=args.seed)
    kinds = dict(Counter(f.kind for f in frames))
    print(
        f"hard set: {n} frames 640x480, seed {args.seed}, kinds {kinds}"
        f" (generated in {time.perf_counter() - t0:.1f} s); pinned to CPU {cpu}",
        flush=True,
    )
    decs = variants()

    ok: dict[str, list[bool]] = {}
    times: dict[str, list[list[float]]] = defaultdict(list)
    for run in range(max(1, args.runs)):
        run_times: dict[str, list[float]] = defaultdict(list)
        run_ok: dict[str, list[bool]] = defaultdict(list)
        for frame in frames:
            for label, dec in decs.items():
                t = time.perf_counter()
                codes = dec.decode(frame.image)
                run_times[label].append((time.perf_counter() - t) * 1000)
                run_ok[label].append([c.text for c in codes] == list(frame.payloads))
        for label in decs:
            times[label].append(run_times[label])
            if run == 0:
                ok[label] = run_ok[label]

    # Which step completed each hard-set frame (pipelines count every frame they decode).
    steps = {label: dict(getattr(dec, "stats", {})) for label, dec in decs.items()}

    real: dict[str, int] = {}
    n_real = 0
    if not args.quick and (REAL_DIR / "manifest.json").is_file():
        manifest = json.loads((REAL_DIR / "manifest.json").read_text())
        n_real = len(manifest)
        images = {name: load_image(REAL_DIR / name) for name in manifest}
        for label, dec in decs.items():
            real[label] = sum(
                expected in [c.text for c in dec.decode(images[name])]
                for name, expected in manifest.items()
            )

    empty = [i for i, f in enumerate(frames) if not f.payloads]
    header = (
        f"{'variant':32s} {'decoded':>9s} {'%':>6s} {'median ms':>9s} {'p90 ms':>7s} "
        f"{'frames/s':>8s} {'no-code ms':>10s} {'real':>8s}"
    )
    print(header)
    print("-" * len(header))
    for label in decs:
        good = sum(ok[label])
        med = statistics.median(statistics.median(r) for r in times[label])
        p90 = statistics.median(percentile(r, 0.9) for r in times[label])
        fps = statistics.median(1000 / statistics.fmean(r) for r in times[label])
        empty_ms = (
            statistics.median(statistics.median([r[i] for i in empty]) for r in times[label])
            if empty
            else float("nan")
        )
        real_txt = f"{real[label]}/{n_real}" if label in real else "-"
        print(
            f"{label:32s} {good:4d}/{n:<4d} {100 * good / n:5.1f}% {med:9.2f} {p90:7.2f} "
            f"{fps:8.1f} {empty_ms:10.2f} {real_txt:>8s}"
        )
    if args.by_kind:
        print()
        print(f"{'variant':32s} " + " ".join(f"{k[:8]:>8s}" for k in kinds))
        for label in decs:
            cells = []
            for k in kinds:
                idx = [i for i, f in enumerate(frames) if f.kind == k]
                cells.append(f"{100 * sum(ok[label][i] for i in idx) / len(idx):7.0f}%")
            print(f"{label:32s} " + " ".join(cells))
        for label, counts in steps.items():
            if counts:
                print(f"{label}: frames completed per step over {args.runs} run(s): {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
