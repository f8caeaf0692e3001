"""Raw QR decoder backend on zxing-cpp (the ``zxingcpp`` wheel).

zxing-cpp locates finder patterns with a local-average binarizer, so it copes with uneven light
and tilt, and it reports symbols it located but could not decode (``return_errors``), which
the pipeline uses to retry on just those regions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hardware.errors import BackendUnavailable
from hardware.qr.base import Decoder, QRCode, ScanResult, check_frame, sort_codes

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class ZXingDecoder(Decoder):
    """Decode QR codes with zxing-cpp.

    Args:
        try_invert: also look for light-on-dark codes.
        try_downscale: let zxing-cpp also scan downscaled copies of the frame (finds codes
            with very large modules; cheap).

    Raises:
        BackendUnavailable: the ``zxing-cpp`` package is not installed.
    """

    name = "zxing"

    def __init__(self, *, try_invert: bool = True, try_downscale: bool = True) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise BackendUnavailable(
                "QR backend 'zxing' needs the zxing-cpp package: pip install zxing-cpp==3.1.1"
            ) from exc
        self._zx = zxingcpp
        self._options: dict[str, Any] = {
            "formats": zxingcpp.BarcodeFormat.QRCode,
            # Plain: the payload's own text, without the HRI escaping of control characters
            # or the brackets zxing-cpp adds around GS1 application identifiers.
            "text_mode": zxingcpp.TextMode.Plain,
            "try_rotate": False,  # only matters for 1-D symbologies
            "try_invert": try_invert,
            "try_downscale": try_downscale,
            "return_errors": True,
        }

    def decode(self, frame: np.ndarray) -> list[QRCode]:
        """Return the codes in ``frame`` in reading order (see :meth:`Decoder.decode`).

        Raises:
            ValueError: ``frame`` is not a 2-D ``uint8`` array.
        """
        return self.scan(frame).codes

    def scan(self, frame: np.ndarray) -> ScanResult:
        """Return the decoded codes and the polygons of located-but-undecoded symbols.

        Raises:
            ValueError: ``frame`` is not a 2-D ``uint8`` array.
        """
        frame = check_frame(frame)
        if frame.size == 0:  # the libraries fail on an empty image; it holds no code
            return ScanResult(codes=[])
        codes: list[QRCode] = []
        misses: list[tuple[tuple[float, float], ...]] = []
        for barcode in self._zx.read_barcodes(frame, **self._options):
            pos = barcode.position
            polygon = tuple(
                (float(p.x), float(p.y))
                for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)
            )
            if barcode.valid:
                codes.append(QRCode(text=barcode.text, raw=bytes(barcode.bytes), polygon=polygon))
            else:
                misses.append(polygon)
        return ScanResult(codes=sort_codes(codes), misses=tuple(misses))
