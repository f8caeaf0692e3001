"""Exposure figures used by the installer self-test."""

from __future__ import annotations

import numpy as np
import pytest
import segno

from hardware.camera import Frame, exposure_problem, exposure_stats, is_sane_exposure


def scene(seed: int = 1) -> np.ndarray:
    """A printed QR code on a mid-grey desk with sensor noise, as a camera sees it."""
    rng = np.random.default_rng(seed)
    image = np.full((480, 640), 110, np.float32)
    code = np.array(segno.make("https://example.org/visit/42").matrix, bool)
    module = 8
    code = np.kron(code, np.ones((module, module), bool))
    top, left = 120, 200
    image[top - 32 : top + code.shape[0] + 32, left - 32 : left + code.shape[1] + 32] = 200
    image[top : top + code.shape[0], left : left + code.shape[1]][code] = 30
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_stats_of_a_known_image() -> None:
    image = np.zeros((10, 10), np.uint8)
    image[:, 5:] = 255
    stats = exposure_stats(image)
    assert stats == {
        "mean": 127.5,
        "std": 127.5,
        "dark_fraction": 0.5,
        "bright_fraction": 0.5,
    }
    frame = Frame(image=image, timestamp=0.0, seq=0)
    assert exposure_stats(frame) == stats


def test_a_real_scene_is_sane() -> None:
    image = scene()
    assert exposure_problem(image) is None
    assert is_sane_exposure(image)
    assert is_sane_exposure(Frame(image=image, timestamp=0.0, seq=0))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: np.random.default_rng(0).integers(0, 12, (480, 640), dtype=np.uint8), "too dark"),
        (lambda: np.full((480, 640), 252, np.uint8), "too bright"),
        (lambda: np.full((480, 640), 128, np.uint8), "no detail"),
        (lambda: np.hstack([np.zeros((480, 320), np.uint8), scene()[:, :320]]), "black"),
        (lambda: np.hstack([np.full((480, 320), 255, np.uint8), scene()[:, :320]]), "blown"),
    ],
)
def test_problems_are_named(make, words: str) -> None:
    image = make()
    problem = exposure_problem(image)
    assert problem is not None and words in problem
    assert not is_sane_exposure(image)


def test_limits_can_be_changed() -> None:
    flat = np.full((100, 100), 128, np.uint8)
    assert not is_sane_exposure(flat)
    assert is_sane_exposure(flat, min_std=0)
    assert not is_sane_exposure(scene(), min_mean=150)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float64), np.zeros((0, 4), np.uint8), None],
)
def test_bad_input(bad) -> None:
    with pytest.raises(ValueError, match="frame"):
        exposure_stats(bad)
    with pytest.raises(ValueError, match="frame"):
        is_sane_exposure(bad)
