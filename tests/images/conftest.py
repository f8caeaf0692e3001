"""Fixtures of the image tests: each module builds its own ``base_image`` (module scope)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.image_kit import private_copy


@pytest.fixture
def image(base_image: Path, tmp_path: Path) -> Path:
    """A private copy of the module's synthetic image with its .bmap and .sha256."""
    return private_copy(base_image, tmp_path)
