"""The visitor's pass photo: cropped from a camera frame and encoded as JPEG.

Taken only after the visitor agreed on the welcome screen; sent once with the
check-in (``photo_jpeg_b64``) and never written to disk by the kiosk.
"""

from __future__ import annotations

import numpy as np

#: Width:height of the pass photo (a portrait).
PORTRAIT = (3, 4)
JPEG_QUALITY = 85


def portrait_crop(image: np.ndarray) -> np.ndarray:
    """Return the centred 3:4 portrait cut of a 2-D greyscale frame (a view, no copy).

    Raises ``ValueError`` for anything but a 2-D ``uint8`` array.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("image: expected a 2-D uint8 greyscale frame")
    height, width = image.shape
    want_w = min(width, height * PORTRAIT[0] // PORTRAIT[1])
    want_h = min(height, want_w * PORTRAIT[1] // PORTRAIT[0])
    left, top = (width - want_w) // 2, (height - want_h) // 2
    return image[top : top + want_h, left : left + want_w]


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Return ``image`` (2-D uint8) as greyscale JPEG bytes, encoded with OpenCV.

    Raises ``ValueError`` for a bad image or quality, ``RuntimeError`` if
    OpenCV cannot encode it.
    """
    import cv2

    if not 1 <= quality <= 100:
        raise ValueError(f"quality: {quality!r} must be between 1 and 100")
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("image: expected a 2-D uint8 greyscale frame")
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the photo as JPEG")
    return buffer.tobytes()
