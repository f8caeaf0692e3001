"""The UI tests' session: one Xvfb, one agent, one kiosk app for the whole run.

Kivy has one window per process, so every UI test module (``test_kiosk_ui.py``,
``test_journey_*.py``) must share the same app: these fixtures are registered
once for the suite by ``conftest.py`` (``pytest_plugins``) instead of being
defined, or imported, in each module (each module would start its own app).

* ``xvfb`` -- an Xvfb server on a free display, as ``DISPLAY``;
* ``rig`` -- ``edge-agent run`` on simulated hardware with demo material;
* ``session_driver`` -- the app, 800x480, demo panel, a fake clock (``driver.clock``);
* ``kiosk`` -- the driver with the app on the attract screen in English, agent clean.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from tests.support.kiosk_rig import AgentRig, running_rig, xvfb_display


class FakeClock:
    """Real monotonic time plus an offset that tests advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(scope="session")
def xvfb():
    """An Xvfb server on a free display, as DISPLAY for this process."""
    with xvfb_display() as display:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        yield display
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old


@pytest.fixture(scope="session")
def rig():
    with running_rig() as agent:
        yield agent


@pytest.fixture(scope="session")
def session_driver(xvfb, rig, tmp_path_factory):
    """The app, started once: 800x480, windowed, demo panel enabled, fake clock."""
    from kiosk.app import configure_kivy
    from kiosk.config import demo_config

    config = demo_config(rig.root)
    ui = dataclasses.replace(config.ui, fullscreen=False, size=(800, 480), demo=True)
    config = dataclasses.replace(config, ui=ui)
    configure_kivy(config, kivy_home=tmp_path_factory.mktemp("kivy-home"))
    from kiosk.ui.app import KioskApp
    from kiosk.ui.driver import Driver

    clock = FakeClock()
    app = KioskApp(config, material=rig.material, clock=clock)
    driver = Driver(app)
    driver.clock = clock
    driver.start()
    driver.wait_for(lambda: app.online, 20, "the app never reached the agent")
    yield driver
    driver.stop()


def _agent_clean(rig: AgentRig) -> bool:
    if rig.process is None or rig.process.poll() is not None:
        return False
    status = rig.client().status()
    door = status.get("door") or {}
    return door.get("mode") == "normal" and not door.get("alarms")


@pytest.fixture
def kiosk(session_driver, rig):
    """The driver, with the app on the attract screen in English and the agent clean."""
    driver = session_driver
    app = driver.app
    if not _agent_clean(rig):
        rig.reset()
        app.material = rig.material
    if app.demo_panel is not None and app.demo_panel.parent is not None:
        app.demo_panel.dismiss(animation=False)
    camera = app.demo_camera
    if camera is not None and camera.showing is not None:
        # Lower the code a previous test held up, and let a few empty frames go by, so
        # nothing still in view is presented at the next screen.
        camera.hide()
        driver.wait_for(lambda: camera.showing is None, 5, "the demo camera kept the code")
        read = app.scanner.frames_read
        driver.wait_for(lambda: app.scanner.frames_read >= read + 3, 5, "no camera frames")
    if app.guard_id:
        app.guard_logout(go_home=False)
    driver.wait_for(lambda: app.online, 20, "agent not reachable")
    driver.wait_for(
        lambda: rig.client().status().get("event_streams", 0) >= 1, 10, "no event stream"
    )
    app.go_home(new_visitor=True)  # a new visitor: the default language
    driver.wait_screen("attract")
    yield driver
    # Leave no outcome pending for the next test (welcome screens check in on leave).
    app.go_home()
    driver.frames(2)
