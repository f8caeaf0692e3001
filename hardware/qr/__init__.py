"""QR decoding of camera frames.

One entry point, :func:`open_decoder`, builds a :class:`Decoder` from :class:`QRSettings`:
by default the pipeline (:mod:`hardware.qr.pipeline`) over zxing-cpp. Backends, by name:

* ``zxing`` -- zxing-cpp (:mod:`hardware.qr.zxing`), the default: the faster and more robust
  decoder on the benchmark's hard set and on the real photos;
* ``zbar``  -- ZBar through pyzbar (:mod:`hardware.qr.zbar`), needs Debian's ``libzbar0``.

A backend whose library is missing raises :class:`hardware.errors.BackendUnavailable` when
opened; nothing is ever replaced silently. :func:`decode_image` reads an image file (PNG, JPEG,
WEBP, anything Pillow reads) and decodes it; ``python -m hardware.qr IMAGE...`` is its
command line (see :mod:`hardware.qr.__main__`).

Example::

    from hardware.qr import open_decoder
    decoder = open_decoder()
    for code in decoder.decode(frame):   # frame: 2-D uint8 numpy array
        print(code.text, code.polygon)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hardware.errors import NotAnImage
from hardware.qr.base import (
    BACKENDS,
    DEFAULT_RETRIES,
    RETRY_STEPS,
    Decoder,
    QRCode,
    QRSettings,
    ScanResult,
)

if TYPE_CHECKING:
    import os

    import numpy as np

    from hardware.qr.zbar import ZBarDecoder
    from hardware.qr.zxing import ZXingDecoder

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "DEFAULT_RETRIES",
    "RETRY_STEPS",
    "Decoder",
    "QRCode",
    "QRSettings",
    "ScanResult",
    "decode_image",
    "load_image",
    "open_decoder",
    "open_raw_decoder",
]


def open_raw_decoder(backend: str, *, try_invert: bool = True) -> ZXingDecoder | ZBarDecoder:
    """Return the raw decoder called ``backend`` (no pipeline).

    Raises:
        UnknownBackend: ``backend`` is not one of :data:`BACKENDS`.
        BackendUnavailable: its library is not installed on this machine.
    """
    decoder: ZXingDecoder | ZBarDecoder = BACKENDS.load(backend)(try_invert=try_invert)
    return decoder


def open_decoder(settings: QRSettings | None = None) -> Decoder:
    """Return the decoder ``settings`` describe (defaults: the pipeline over zxing-cpp).

    Raises:
        UnknownBackend: a backend name is not one of :data:`BACKENDS` (only possible with a
            settings object that skipped validation; :class:`QRSettings` raises
            ``ValueError`` itself).
        BackendUnavailable: the backend's library is not installed on this machine.
    """
    settings = settings or QRSettings()
    raw = open_raw_decoder(settings.backend, try_invert=settings.try_invert)
    if not settings.pipeline:
        return raw
    from hardware.qr.pipeline import Pipeline

    fallback = (
        open_raw_decoder(settings.fallback, try_invert=settings.try_invert)
        if settings.fallback
        else None
    )
    # Retries run on upscaled/filtered frames, where the light-on-dark pass found nothing more
    # on the benchmark while nearly doubling their cost; dark-mode codes are read at step 1.
    retry = open_raw_decoder(settings.backend, try_invert=False)
    return Pipeline(raw, settings, fallback=fallback, retry=retry)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as a 2-D ``uint8`` greyscale array.

    Transparent pixels are put on white (a code exported with a transparent background is
    dark modules on nothing); for an animated image, the first frame is used.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: the file cannot be opened.
        NotAnImage: the file is not an image Pillow can decode (the message names the file).
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    with path.open("rb") as fh:
        if path.is_file() and path.stat().st_size == 0:
            raise NotAnImage(f"{path}: not an image (empty file)")
        try:
            with Image.open(fh) as img:
                img.load()
                if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                    rgba = img.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    grey = Image.alpha_composite(white, rgba).convert("L")
                else:
                    grey = img.convert("L")
        except UnidentifiedImageError as exc:
            raise NotAnImage(f"{path}: not an image (unknown or unsupported format)") from exc
        except Image.DecompressionBombError as exc:
            raise NotAnImage(f"{path}: image too large to decode ({exc})") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            # Pillow raises OSError for truncated data, SyntaxError/ValueError for some
            # malformed headers.
            raise NotAnImage(f"{path}: not a readable image (corrupt data: {exc})") from exc
    return np.ascontiguousarray(np.asarray(grey, dtype=np.uint8))


def decode_image(path: str | os.PathLike[str], decoder: Decoder | None = None) -> list[QRCode]:
    """Return the codes in the image file ``path`` (see :meth:`Decoder.decode` for the order).

    Args:
        path: a PNG, JPEG, WEBP... file.
        decoder: the decoder to use; a default one from :func:`open_decoder` when omitted.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: the file cannot be opened.
        NotAnImage: the file is not a readable image.
        BackendUnavailable: the default backend's library is missing.
    """
    frame = load_image(path)
    return (decoder or open_decoder()).decode(frame)
