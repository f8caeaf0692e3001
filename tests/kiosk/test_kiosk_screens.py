"""The screenshot script (``python -m kiosk.screenshots``) against a real demo agent.

It is what regenerates ``docs/screens/``; here it runs into a temporary folder
in its own process (a Kivy window per process) on its own Xvfb display.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.support.kiosk_rig import running_rig, xvfb_display

pytestmark = [pytest.mark.ui, pytest.mark.processes]

VISITOR = [
    "attract",
    "scan",
    "welcome",
    "photo",
    "photo-preview",
    "photo-saved",
    "door-open",
    "door-relocked",
    "denied-expired",
    "denied-forged",
    "denied-wrong-door",
    "denied-replayed",
    "denied-emergency",
    "welcome-badge",
    "denied-unknown-badge",
    "out-of-service",
    "evacuation",
    "muster",
    "lockdown",
    "free-access",
    "held-open",
    "help-called",
    "welcome-pass-printed",
    "welcome-pass-guard",
    "checkout",
    "checkout-already",
    "checkout-unknown",
]
GUARD = [
    "guard-login",
    "guard-pin",
    "guard-console",
    "guard-reason",
    "guard-console-lockdown",
    "guard-console-alarm",
    "guard-console-forced",
    "guard-console-printer",
    "guard-idle-warning",
    "guard-expected-today",
    "guard-checkin-refused",
    "guard-checkin-override",
    "guard-visitors",
    "guard-events",
    "guard-muster",
    "guard-muster-found",
    "demo-panel",
    "guard-locked-out",
    "guard-attempts-left",
]


@pytest.fixture
def demo(tmp_path):
    with running_rig() as agent:
        yield agent


def test_screenshot_script_saves_every_screen_in_both_languages(demo, tmp_path):
    out = tmp_path / "screens"
    with xvfb_display() as display:
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(tmp_path / "kivy")}
        result = subprocess.run(
            [sys.executable, "-m", "kiosk.screenshots", str(out), "--demo", str(demo.root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {f"{name}-{lang}.png" for name in VISITOR + GUARD for lang in ("en", "fr")}
    assert {p.name for p in out.iterdir()} == expected
    for name in VISITOR + GUARD:
        en, fr = (
            np.asarray(Image.open(out / f"{name}-{lang}.png").convert("L")) for lang in ("en", "fr")
        )
        assert en.shape == fr.shape == (480, 800), name
        assert en.std() > 20, f"{name}: an empty screen"
        assert (en != fr).mean() > 0.005, f"{name}: the French screen looks like the English one"
