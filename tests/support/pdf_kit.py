"""PDF to image (poppler's ``pdftoppm``) and QR codes read back with the kiosk's decoder."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hardware.qr import QRSettings, open_decoder


def pdf_to_image(pdf: Path, dpi: int = 300) -> Image.Image:
    """The first page of ``pdf`` as an RGB image."""
    if shutil.which("pdftoppm") is None:
        pytest.fail("pdftoppm is missing: apt-get install poppler-utils (tools/dev test does)")
    with tempfile.TemporaryDirectory(prefix="pdf-kit-") as folder:
        out = Path(folder) / "page"
        subprocess.run(
            ["pdftoppm", "-png", "-r", str(dpi), "-singlefile", str(pdf), str(out)],
            check=True,
            timeout=60,
        )
        with Image.open(out.with_suffix(".png")) as image:
            return image.convert("RGB")


def qr_texts(image: Image.Image) -> list[str]:
    """The texts of the QR codes in ``image`` (hardware.qr's pipeline over zxing-cpp)."""
    decoder = open_decoder(QRSettings())
    return [code.text for code in decoder.decode(np.asarray(image.convert("L")))]
