"""Regenerate edge_agent/data/sim-camera/: the simulator camera's view of the QR test card.

Run: .venv/bin/python tools/make_sim_frames.py
"""

from __future__ import annotations

from pathlib import Path

import cv2

from hardware.qr.synth import render
from hardware.selftest import TEST_CARD_PAYLOAD

OUT = Path(__file__).resolve().parents[1] / "edge_agent" / "data" / "sim-camera"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate((11, 12, 13)):
        frame = render("paper", seed, [TEST_CARD_PAYLOAD])
        cv2.imwrite(str(OUT / f"test-card-{i}.png"), frame.image)
    print(f"wrote {len(list(OUT.glob('*.png')))} frames to {OUT}")


if __name__ == "__main__":
    main()
