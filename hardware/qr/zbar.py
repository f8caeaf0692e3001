"""Raw QR decoder backend on ZBar through pyzbar (needs Debian's ``libzbar0``).

ZBar is the decoder Debian ships and the design first named. On the benchmark it decodes fewer
hard frames than zxing-cpp and is several times slower, so it is offered, not the default.
ZBar hands back text it has already converted to UTF-8 (guessing the code's character set), so
:attr:`QRCode.raw` is that text's UTF-8 bytes, not the code's original bytes, and it does not
report symbols it located but failed to decode.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hardware.errors import BackendUnavailable
from hardware.qr.base import Decoder, QRCode, ScanResult, check_frame, sort_codes

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class ZBarDecoder(Decoder):
    """Decode QR codes with ZBar (pyzbar).

    Raises:
        BackendUnavailable: pyzbar is not installed or ``libzbar0`` cannot be loaded.
    """

    name = "zbar"

    def __init__(self, *, try_invert: bool = True) -> None:
        # ``try_invert`` is there so that every raw decoder opens the same way
        # (hardware.qr.BACKENDS); ZBar has no light-on-dark pass to turn off.
        del try_invert
        try:
            from pyzbar import pyzbar
        except ImportError as exc:  # pyzbar raises ImportError when libzbar is missing too
            raise BackendUnavailable(
                "QR backend 'zbar' needs pyzbar and the ZBar library: "
                "pip install pyzbar==0.1.9 and apt-get install libzbar0"
            ) from exc
        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, frame: np.ndarray) -> list[QRCode]:
        """Return the codes in ``frame`` in reading order (see :meth:`Decoder.decode`).

        Raises:
            ValueError: ``frame`` is not a 2-D ``uint8`` array.
        """
        return self.scan(frame).codes

    def scan(self, frame: np.ndarray) -> ScanResult:
        """Return the decoded codes (ZBar never reports undecoded symbols).

        Raises:
            ValueError: ``frame`` is not a 2-D ``uint8`` array.
        """
        frame = check_frame(frame)
        if frame.size == 0:  # the libraries fail on an empty image; it holds no code
            return ScanResult(codes=[])
        codes = []
        for symbol in self._pyzbar.decode(frame, symbols=self._symbols):
            data = bytes(symbol.data)
            polygon = tuple((float(p.x), float(p.y)) for p in symbol.polygon)
            codes.append(
                QRCode(text=data.decode("utf-8", errors="replace"), raw=data, polygon=polygon)
            )
        return ScanResult(codes=sort_codes(codes))
