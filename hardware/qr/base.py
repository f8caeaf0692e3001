"""The QR decoder interface, its result type and its settings.

A :class:`Decoder` turns one greyscale camera frame into the list of QR codes it can read.
Raw decoders wrap one library each (:mod:`hardware.qr.zxing`, :mod:`hardware.qr.zbar`); the
default pipeline (:mod:`hardware.qr.pipeline`) wraps a raw decoder with retries that the
benchmark showed worth their time. :func:`hardware.qr.open_decoder` builds one from
:class:`QRSettings`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hardware.registry import BackendRegistry

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

Point = tuple[float, float]

#: Raw decoder backends, by the name :class:`QRSettings` takes, and their :class:`Decoder`
#: classes (each opened as ``cls(try_invert=...)``).
BACKENDS = BackendRegistry(
    "QR",
    {"zxing": "hardware.qr.zxing:ZXingDecoder", "zbar": "hardware.qr.zbar:ZBarDecoder"},
)

#: Retry steps the pipeline knows, in the order they are tried (see :mod:`hardware.qr.pipeline`).
RETRY_STEPS: tuple[str, ...] = ("candidates", "upscale", "sharpen", "denoise_sharpen")

#: The retries the benchmark kept for the default pipeline (docs/qr.md has the figures).
DEFAULT_RETRIES: tuple[str, ...] = ("candidates", "upscale", "sharpen", "denoise_sharpen")


@dataclass(frozen=True)
class QRCode:
    """One decoded QR code.

    Attributes:
        text: the payload as text (bytes decoded by the library's character-set rules,
            no escaping or GS1 formatting).
        raw: the payload bytes as the library hands them over (zxing-cpp: the exact bytes of
            the code; zbar: its text re-encoded as UTF-8).
        polygon: the symbol's corners in frame pixel coordinates (x, y). zxing-cpp gives four,
            starting at the top-left finder pattern, clockwise as the code is read; zbar gives
            its own location polygon (four points for a QR code, in ZBar's order).
    """

    text: str
    raw: bytes
    polygon: tuple[Point, ...] = field(default=())

    @property
    def centre(self) -> Point:
        """Return the mean of the polygon's corners, or (0, 0) when there is no polygon."""
        if not self.polygon:
            return (0.0, 0.0)
        n = len(self.polygon)
        return (sum(p[0] for p in self.polygon) / n, sum(p[1] for p in self.polygon) / n)


@dataclass(frozen=True)
class ScanResult:
    """What a raw decoder saw in one frame.

    ``codes`` are the decoded codes; ``misses`` the polygons of symbols the library located
    but could not decode (only zxing-cpp reports these; zbar always gives an empty tuple).
    The pipeline retries on the misses first.
    """

    codes: list[QRCode]
    misses: tuple[tuple[Point, ...], ...] = ()


class Decoder(ABC):
    """Decode the QR codes in a greyscale frame.

    Implementations import their library when constructed and raise
    :class:`hardware.errors.BackendUnavailable` if it is missing. ``decode`` never raises on a
    frame without a code (it returns ``[]``); it raises ``ValueError`` on a frame that is not
    a 2-D ``uint8`` array. A decoder is not thread-safe: use one per thread.
    """

    #: Name of the backend (``"zxing"``, ``"zbar"``) or pipeline (``"pipeline:zxing"``).
    name: str = ""

    @abstractmethod
    def decode(self, frame: np.ndarray) -> list[QRCode]:
        """Return the codes found in ``frame``, in reading order.

        Order: by the centre of each code's polygon, left to right, then top to bottom
        (see :func:`sort_codes`). The same frame always gives the same list.

        Raises:
            ValueError: ``frame`` is not a 2-D ``uint8`` array.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def sort_codes(codes: list[QRCode]) -> list[QRCode]:
    """Return ``codes`` sorted left to right by centre, ties top to bottom, then by text."""
    return sorted(codes, key=lambda c: (round(c.centre[0], 1), round(c.centre[1], 1), c.text))


def check_frame(frame: object) -> np.ndarray:
    """Return ``frame`` as a C-contiguous 2-D ``uint8`` array.

    Raises:
        ValueError: it is not a numpy array of that kind (the message names ``frame``).
    """
    import numpy as np

    if not isinstance(frame, np.ndarray) or frame.ndim != 2 or frame.dtype != np.uint8:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(
            f"frame: expected a 2-D uint8 greyscale array, got shape {shape} dtype {dtype}"
        )
    return np.ascontiguousarray(frame)


@dataclass(frozen=True)
class QRSettings:
    """How to decode QR codes.

    Invalid values raise ``ValueError`` naming the field (:class:`UnknownBackend`, a
    ``ValueError``, for an unknown backend name).

    Attributes:
        backend: raw decoder, one of :data:`BACKENDS`. zxing-cpp is the default: on the
            benchmark's hard set it decodes more codes than zbar in a fraction of the time.
        pipeline: ``True`` wraps the raw decoder in :class:`hardware.qr.pipeline.Pipeline`;
            ``False`` gives the raw decoder alone.
        retries: the pipeline's retry steps, each one of :data:`RETRY_STEPS`, tried in this
            order until a step decodes every symbol it saw.
        fallback: a second raw backend tried last on a frame where nothing was decoded
            (``None``: no fallback). Costs its full decode time on every empty frame.
        exhaustive: run every retry even after a step decoded everything it located. Finds a
            second code the raw decoder did not even locate (a frame with two codes, or a hard
            code beside an easy poster), at the cost of every retry on every frame.
        try_invert: also look for light-on-dark codes (phones in dark mode) at step 1.
        upscale: enlargement factor of the ``upscale``, ``sharpen`` and ``denoise_sharpen``
            steps (1 < factor <= 4).
        max_upscaled_side: the upscaled frame's longer side is capped at this many pixels, so a
            large frame is not blown up into a slow one.
    """

    backend: str = "zxing"
    pipeline: bool = True
    retries: tuple[str, ...] = DEFAULT_RETRIES
    fallback: str | None = None
    exhaustive: bool = False
    try_invert: bool = True
    upscale: float = 2.0
    max_upscaled_side: int = 1600

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        if not isinstance(self.retries, tuple):
            raise ValueError(f"retries: expected a tuple of step names, got {self.retries!r}")
        for step in self.retries:
            if step not in RETRY_STEPS:
                raise ValueError(f"retries: unknown step {step!r}, expected some of {RETRY_STEPS}")
        if len(set(self.retries)) != len(self.retries):
            raise ValueError(f"retries: a step is listed twice in {self.retries!r}")
        if self.fallback is not None:
            BACKENDS.check(self.fallback, key="fallback")
        if self.fallback == self.backend:
            raise ValueError(f"fallback: must differ from backend {self.backend!r}")
        if not isinstance(self.pipeline, bool):
            raise ValueError(f"pipeline: expected a bool, got {self.pipeline!r}")
        if not isinstance(self.exhaustive, bool):
            raise ValueError(f"exhaustive: expected a bool, got {self.exhaustive!r}")
        if not isinstance(self.try_invert, bool):
            raise ValueError(f"try_invert: expected a bool, got {self.try_invert!r}")
        if not isinstance(self.upscale, int | float) or not 1.0 < self.upscale <= 4.0:
            raise ValueError(f"upscale: expected a factor in (1, 4], got {self.upscale!r}")
        if not isinstance(self.max_upscaled_side, int) or self.max_upscaled_side < 64:
            raise ValueError(
                f"max_upscaled_side: expected an int >= 64, got {self.max_upscaled_side!r}"
            )
