"""Shared by the synthetic-image tests (test_images, test_flash, test_provision):
the tools they need, private copies of a module's image, blank cards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Where Debian puts sfdisk, mkfs.* and friends, even for a user whose PATH lacks it.
SEARCH_PATH = os.environ["PATH"] + ":/usr/sbin:/sbin"


def requires_tools(*tools: str) -> pytest.MarkDecorator:
    """A skip mark naming the tools that are missing (none: never skips)."""
    missing = [t for t in tools if shutil.which(t, path=SEARCH_PATH) is None]
    return pytest.mark.skipif(bool(missing), reason=f"missing tools: {missing}")


def private_copy(base_image: Path, tmp_path: Path) -> Path:
    """Copy ``base_image`` and its ``.bmap``/``.sha256`` (when present) into ``tmp_path``."""
    out = tmp_path / "portier.img"
    for suffix in ("", ".bmap", ".sha256"):
        source = Path(str(base_image) + suffix)
        if source.exists():
            shutil.copyfile(source, str(out) + suffix)
    return out


def blank_card(tmp_path: Path, size: int) -> Path:
    """A sparse file of ``size`` bytes standing in for an SD card."""
    path = tmp_path / "card.bin"
    with open(path, "wb") as f:
        f.truncate(size)
    return path
