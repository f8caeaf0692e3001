"""Exposure figures of a greyscale frame, for the installer self-test.

The self-test asks "are camera frames arriving with a sane exposure?": a lens cap,
a camera facing a lamp or a dead sensor each give frames that no QR code can be
read from, and these figures tell them apart in words an installer can act on.
"""

from __future__ import annotations

import numpy as np

from hardware.camera.base import Frame

#: Pixels at or below this level count as clipped dark (crushed blacks).
DARK_LEVEL = 8
#: Pixels at or above this level count as clipped bright (blown highlights).
BRIGHT_LEVEL = 247

#: Default limits of :func:`exposure_problem`.
MIN_MEAN = 35.0
MAX_MEAN = 220.0
# Sensor noise alone gives a standard deviation of 2-3 levels: below this the
# image holds no detail (lens covered, badly out of focus, blank surface).
MIN_STD = 6.0
MAX_CLIPPED = 0.25


def _pixels(frame: Frame | np.ndarray) -> np.ndarray:
    image = frame.image if isinstance(frame, Frame) else frame
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("frame: expected a Frame or a 2-D uint8 array")
    if image.size == 0:
        raise ValueError("frame: the image is empty")
    return image


def exposure_stats(frame: Frame | np.ndarray) -> dict[str, float]:
    """Return the exposure figures of a greyscale frame.

    Keys: ``mean`` and ``std`` of the grey levels (0-255), ``dark_fraction`` and
    ``bright_fraction``, the share of pixels clipped at or below
    :data:`DARK_LEVEL` / at or above :data:`BRIGHT_LEVEL` (0.0-1.0).
    Raises ``ValueError`` when ``frame`` is not a 2-D ``uint8`` image.
    """
    image = _pixels(frame)
    size = float(image.size)
    return {
        "mean": float(image.mean()),
        "std": float(image.std()),
        "dark_fraction": float(np.count_nonzero(image <= DARK_LEVEL)) / size,
        "bright_fraction": float(np.count_nonzero(image >= BRIGHT_LEVEL)) / size,
    }


def exposure_problem(
    frame: Frame | np.ndarray,
    *,
    min_mean: float = MIN_MEAN,
    max_mean: float = MAX_MEAN,
    min_std: float = MIN_STD,
    max_clipped: float = MAX_CLIPPED,
) -> str | None:
    """Return what is wrong with the frame's exposure in plain words, or ``None``.

    The message names the figure that failed and what to check, e.g.
    ``"too dark (mean 12.0 < 35): lens cap on, or no light"``.
    Raises ``ValueError`` when ``frame`` is not a 2-D ``uint8`` image.
    """
    stats = exposure_stats(frame)
    mean, std = stats["mean"], stats["std"]
    if mean < min_mean:
        return f"too dark (mean {mean:.1f} < {min_mean:g}): lens cap on, or no light"
    if mean > max_mean:
        return f"too bright (mean {mean:.1f} > {max_mean:g}): camera facing a light or the sun"
    if stats["dark_fraction"] > max_clipped:
        return (
            f"{stats['dark_fraction']:.0%} of the image is black: part of the lens is "
            "covered or the scene is badly lit"
        )
    if stats["bright_fraction"] > max_clipped:
        return f"{stats['bright_fraction']:.0%} of the image is blown out: glare or a light in view"
    if std < min_std:
        return (
            f"no detail (std {std:.1f} < {min_std:g}): lens covered, out of focus or "
            "facing a blank surface"
        )
    return None


def is_sane_exposure(frame: Frame | np.ndarray, **limits: float) -> bool:
    """Return True when :func:`exposure_problem` finds nothing wrong.

    ``limits`` are passed on to :func:`exposure_problem` (``min_mean``, ``max_mean``,
    ``min_std``, ``max_clipped``). Raises ``ValueError`` for a non-image ``frame``.
    """
    return exposure_problem(frame, **limits) is None
