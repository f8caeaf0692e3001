"""Suite-wide pytest set-up: slow tests run only when asked for; the UI session fixtures.

``@pytest.mark.slow`` tests (the arm64 image build under emulation, the
ten-minute chaos soak) are skipped unless the run selects them with
``-m slow`` or sets ``PORTIER_SLOW=1``; the default run stays quick.
"""

from __future__ import annotations

import os

import pytest

#: The UI tests' session fixtures (one Kivy app per process, shared by every UI module).
pytest_plugins = ["tests.support.kiosk_ui_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless they were asked for."""
    if "slow" in (config.option.markexpr or "") or os.environ.get("PORTIER_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or PORTIER_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
