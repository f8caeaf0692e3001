"""The default decoding pipeline: a raw decoder plus retries that pay on a real camera.

One frame goes through these steps, stopping as soon as a step leaves nothing undecoded
(some code was decoded and the raw decoder reports no symbol it located but failed on), or
through all of them with ``QRSettings(exhaustive=True)``:

1. the raw decoder on the frame as it is (most frames stop here: ~1-2 ms with zxing-cpp);
2. ``candidates``: for each symbol zxing-cpp located but could not decode, its region cut out,
   upscaled and sharpened (cheap: a small crop; ZBar reports no such symbols);
3. ``upscale``: the whole frame enlarged (linear interpolation). A code of 2-3 pixels per
   module, blurred or noisy, binarizes far better once its modules span more pixels;
4. ``sharpen``: the enlarged frame through a strong unsharp mask, against defocus and motion
   blur;
5. ``denoise_sharpen``: the enlarged frame smoothed (Gaussian) before the same unsharp mask,
   for noisy, dim or low-contrast frames, where sharpening alone amplifies the noise;
6. ``fallback``: another raw backend, when configured, on a frame where nothing was decoded.

Which steps are on by default, and why, comes from ``bench/qr.py`` (figures in docs/qr.md):
each default step decodes frames the previous ones missed on the hard set and costs nothing
on a frame decoded at step 1. A frame with no code at all runs every step (the worst case).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from hardware.qr.base import Decoder, QRCode, QRSettings, ScanResult, check_frame, sort_codes

if TYPE_CHECKING:
    import numpy as np

    from hardware.qr.zbar import ZBarDecoder
    from hardware.qr.zxing import ZXingDecoder

    RawDecoder = ZXingDecoder | ZBarDecoder

log = logging.getLogger(__name__)

#: Margin around a located symbol when cutting it out, as a share of its size.
_CROP_MARGIN = 0.25
#: A located symbol's crop is enlarged to about this many pixels on its longer side.
_CROP_TARGET = 480
#: Unsharp masks as (amount of detail added back, sigma of the blur it is taken against, in
#: pixels of the upscaled frame), and the Gaussian smoothing before ``denoise_sharpen``'s.
#: Chosen by a grid search on the frames of the hard set (seeds 0 and 1) that reach these steps.
_SHARPEN = (5.0, 3.0)
_DENOISE_SHARPEN = (3.0, 2.0)
_DENOISE_SIGMA = 1.5
#: Unsharp mask of the candidates step's crops.
_CROP_SHARPEN = (3.0, 2.0)


class Pipeline(Decoder):
    """Decode with a raw decoder, retrying on transformed frames where it pays.

    Args:
        raw: the raw decoder of step 1 (``ZXingDecoder`` or ``ZBarDecoder``).
        settings: the retry steps, upscale factor and cap (``settings.backend`` is not
            used here: ``raw`` already is that backend).
        fallback: a second raw decoder tried last on a frame where nothing was decoded.
        retry: the raw decoder of the retry steps (default: ``raw``). :func:`open_decoder`
            passes a zxing-cpp decoder without the light-on-dark pass: on the hard set that
            pass decoded nothing more in retries, and it nearly doubles their cost.
    """

    def __init__(
        self,
        raw: RawDecoder,
        settings: QRSettings | None = None,
        fallback: RawDecoder | None = None,
        retry: RawDecoder | None = None,
    ) -> None:
        import cv2

        self._cv2 = cv2
        self.raw = raw
        self.retry = retry or raw
        self.fallback = fallback
        self.settings = settings or QRSettings(backend=raw.name)
        self.name = f"pipeline:{raw.name}" + (f"+{fallback.name}" if fallback else "")
        self._steps = {
            "candidates": self._candidates,
            "upscale": self._upscale,
            "sharpen": self._sharpen_step,
            "denoise_sharpen": self._denoise_sharpen,
        }
        #: Per step name, how many frames it was the one that completed (for the benchmark).
        self.stats: dict[str, int] = {}

    def decode(self, frame: np.ndarray) -> list[QRCode]:
        """Return the codes in ``frame`` in reading order (see :meth:`Decoder.decode`).

        Raises:
            ValueError: ``frame`` is not a 2-D ``uint8`` array.
        """
        frame = check_frame(frame)
        if frame.size == 0:
            return []
        found: list[QRCode] = []
        first = self.raw.scan(frame)
        misses = self._merge(found, first)
        done = not self.settings.exhaustive
        if done and found and not misses:
            self._count("raw")
            return sort_codes(found)
        for step in self.settings.retries:
            result = self._steps[step](frame, misses)
            if result is None:
                continue
            new_misses = self._merge(found, result)
            if step != "candidates":
                misses = new_misses
            else:
                # Misses of the crops repeat the ones we had; keep only those still open.
                misses = tuple(m for m in misses if not _covered(m, found))
            if done and found and not misses:
                self._count(step)
                return sort_codes(found)
        if not found and self.fallback is not None:
            self._merge(found, self.fallback.scan(frame))
            if found:
                self._count("fallback")
        if not found:
            self._count("none")
        elif not done:
            self._count("exhaustive")
        return sort_codes(found)

    # -- steps -----------------------------------------------------------------------------

    def _candidates(self, frame: np.ndarray, misses: tuple) -> ScanResult | None:
        """Retry each located-but-undecoded symbol on its own upscaled, sharpened crop."""
        if not misses:
            return None
        cv2 = self._cv2
        h, w = frame.shape
        codes: list[QRCode] = []
        for polygon in misses:
            xs = [p[0] for p in polygon]
            ys = [p[1] for p in polygon]
            size = max(max(xs) - min(xs), max(ys) - min(ys), 8.0)
            margin = size * _CROP_MARGIN + 4
            x0, y0 = max(0, int(min(xs) - margin)), max(0, int(min(ys) - margin))
            x1, y1 = min(w, int(max(xs) + margin) + 1), min(h, int(max(ys) + margin) + 1)
            crop = frame[y0:y1, x0:x1]
            if crop.size == 0:
                continue
            factor = min(4.0, max(1.5, _CROP_TARGET / max(crop.shape)))
            big = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            for image in (self._sharpen(big, *_CROP_SHARPEN), big):
                result = self.retry.scan(image)
                if result.codes:
                    codes.extend(_moved(c, factor, x0, y0) for c in result.codes)
                    break
        return ScanResult(codes=codes)

    def _upscale(self, frame: np.ndarray, misses: tuple) -> ScanResult:
        factor = self._factor(frame)
        if factor <= 1.0:
            return self.retry.scan(frame)
        return _scaled(self.retry.scan(self._resize(frame, factor)), factor)

    def _sharpen_step(self, frame: np.ndarray, misses: tuple) -> ScanResult:
        factor = self._factor(frame)
        big = self._resize(frame, factor) if factor > 1.0 else frame
        return _scaled(self.retry.scan(self._sharpen(big, *_SHARPEN)), max(factor, 1.0))

    def _denoise_sharpen(self, frame: np.ndarray, misses: tuple) -> ScanResult:
        factor = self._factor(frame)
        big = self._resize(frame, factor) if factor > 1.0 else frame
        smooth = self._cv2.GaussianBlur(big, (0, 0), _DENOISE_SIGMA)
        return _scaled(self.retry.scan(self._sharpen(smooth, *_DENOISE_SHARPEN)), max(factor, 1.0))

    # -- helpers ---------------------------------------------------------------------------

    def _factor(self, frame: np.ndarray) -> float:
        cap = self.settings.max_upscaled_side / max(frame.shape)
        return min(float(self.settings.upscale), cap)

    def _resize(self, frame: np.ndarray, factor: float) -> np.ndarray:
        cv2 = self._cv2
        return cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)

    def _sharpen(self, image: np.ndarray, amount: float, sigma: float) -> np.ndarray:
        cv2 = self._cv2
        blurred = cv2.GaussianBlur(image, (0, 0), sigma)
        return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)

    def _merge(self, found: list[QRCode], result: ScanResult) -> tuple:
        """Add ``result``'s new codes to ``found``; return its misses not already decoded."""
        for code in result.codes:
            if not any(_same(code, other) for other in found):
                found.append(code)
        return tuple(m for m in result.misses if not _covered(m, found))

    def _count(self, step: str) -> None:
        self.stats[step] = self.stats.get(step, 0) + 1


def _moved(code: QRCode, factor: float, dx: float, dy: float) -> QRCode:
    """``code`` found in a crop at ``(dx, dy)`` enlarged by ``factor``, in frame coordinates."""
    polygon = tuple((x / factor + dx, y / factor + dy) for x, y in code.polygon)
    return QRCode(text=code.text, raw=code.raw, polygon=polygon)


def _scaled(result: ScanResult, factor: float) -> ScanResult:
    if factor == 1.0:
        return result
    return ScanResult(
        codes=[_moved(c, factor, 0, 0) for c in result.codes],
        misses=tuple(tuple((x / factor, y / factor) for x, y in m) for m in result.misses),
    )


def _size(polygon: tuple) -> float:
    xs = [p[0] for p in polygon] or [0.0]
    ys = [p[1] for p in polygon] or [0.0]
    return max(max(xs) - min(xs), max(ys) - min(ys), 1.0)


def _same(a: QRCode, b: QRCode) -> bool:
    """The same symbol seen twice: same bytes, centres closer than half its size."""
    if a.raw != b.raw:
        return False
    (ax, ay), (bx, by) = a.centre, b.centre
    return math.hypot(ax - bx, ay - by) < 0.5 * max(_size(a.polygon), _size(b.polygon))


def _covered(polygon: tuple, found: list[QRCode]) -> bool:
    """Whether a located symbol lies on a code that is already decoded."""
    n = len(polygon) or 1
    cx = sum(p[0] for p in polygon) / n
    cy = sum(p[1] for p in polygon) / n
    for code in found:
        (x, y), size = code.centre, _size(code.polygon)
        if math.hypot(cx - x, cy - y) < 0.5 * size:
            return True
    return False
