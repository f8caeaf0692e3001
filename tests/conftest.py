"""Suite-wide pytest set-up: slow tests run only when asked for; the UI session fixtures.

``@pytest.mark.slow`` tests (the arm64 image build under emulation, the
ten-minute chaos soak) are skipped unless the run selects them with
``-m slow`` or sets ``PORTIER_SLOW=1``; the default run stays quick.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

#: The UI tests' session fixtures (one Kivy app per process, shared by every UI module).
pytest_plugins = ["kiosk_ui_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless they were asked for."""
    if "slow" in (config.option.markexpr or "") or os.environ.get("PORTIER_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or PORTIER_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def central_operator_token() -> Iterator[str]:
    """One operator API token for the session, in ``$PORTIER_CENTRAL_TOKEN``: every
    ``CentralProcess`` registers it (operator ``tests``, a security officer) and
    ``CentralAdmin``, ``enroll_device`` and ``portier-central`` children send it."""
    token = os.environ.get("PORTIER_CENTRAL_TOKEN") or "pct_tests_" + secrets.token_urlsafe(32)
    previous = os.environ.get("PORTIER_CENTRAL_TOKEN")
    os.environ["PORTIER_CENTRAL_TOKEN"] = token
    yield token
    if previous is None:
        os.environ.pop("PORTIER_CENTRAL_TOKEN", None)
