"""Start the kiosk: configure Kivy (before it is imported), then run the app.

Kivy reads its configuration when it is first imported and, by default,
parses ``sys.argv`` and writes ``~/.kivy``. :func:`configure_kivy` sets the
environment first (``KIVY_NO_ARGS``, ``KIVY_HOME``) and then every option
the kiosk depends on, explicitly, so a stray ``config.ini`` cannot change
them:

* ``[kivy] exit_on_escape = 0`` and no inspector/screen modules: Escape
  does nothing (the app also swallows it and refuses window-close requests);
* ``[graphics]`` fullscreen or the configured window size, no resizing, no
  cursor on a touch-only kiosk;
* ``[input]``: exactly ONE provider (see :class:`kiosk.config.InputSection`).
  Kivy's defaults add a ``mouse`` provider *and* a ``probesysfs`` provider on
  Linux; on a Raspberry Pi with SDL2 the touch panel then arrives twice (as
  kernel touch events and as SDL's emulated mouse clicks) and every touch
  counts twice. The kiosk removes every default and sets only ``mouse``
  (desktop, demo, tests) or only ``mtdev``/``hidinput`` (the panel read from
  the kernel).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

from kiosk.config import KioskConfig

log = logging.getLogger(__name__)


def kivy_input_options(config: KioskConfig) -> dict[str, str]:
    """Return the ``[input]`` section the kiosk gives Kivy: one provider, exactly.

    ``mouse`` -> ``{"mouse": "mouse,disable_multitouch"}``; ``mtdev`` ->
    ``{"touchscreen": "mtdev,DEVICE"}`` or ``"probesysfs,provider=mtdev"``
    when no device is configured (same for ``hidinput``).
    """
    section = config.input
    if section.provider == "mouse":
        # disable_multitouch: a right click must not leave a red "multitouch" dot.
        return {"mouse": "mouse,disable_multitouch"}
    if section.device:
        return {"touchscreen": f"{section.provider},{section.device}"}
    return {"touchscreen": f"probesysfs,provider={section.provider}"}


def configure_kivy(config: KioskConfig, *, kivy_home: Path | None = None) -> None:
    """Set Kivy's environment and configuration for ``config``; call before importing Kivy UI.

    ``kivy_home`` (default: ``$KIVY_HOME``, else ``~/.kivy``) holds Kivy's
    config file and logs. Raises ``RuntimeError`` if a Kivy window was
    already created (too late to configure it).
    """
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    # SDL would turn SIGTERM into a window-close request, which the kiosk refuses:
    # keep the signals for Python, where run() stops the app cleanly on SIGTERM.
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    # Kivy's messages go through Python's logging like everything else (no stderr capture).
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    if kivy_home is not None:
        os.environ["KIVY_HOME"] = str(kivy_home)
    import sys

    if "kivy.core.window" in sys.modules:
        raise RuntimeError("configure_kivy() must run before a Kivy window is created")
    from kivy.config import Config

    ui = config.ui
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "pause_on_minimize", "0")
    Config.set("kivy", "keyboard_mode", "system")
    Config.set("kivy", "log_level", "info")
    for module in Config.options("modules"):
        Config.remove_option("modules", module)
    Config.set("graphics", "resizable", "0")
    Config.set("graphics", "borderless", "1" if ui.fullscreen else "0")
    Config.set("graphics", "fullscreen", "auto" if ui.fullscreen else "0")
    Config.set("graphics", "width", str(ui.size[0]))
    Config.set("graphics", "height", str(ui.size[1]))
    Config.set("graphics", "show_cursor", "0" if config.input.provider != "mouse" else "1")
    Config.set("graphics", "multisamples", "0")
    for option in Config.options("input"):
        Config.remove_option("input", option)
    for name, value in kivy_input_options(config).items():
        Config.set("input", name, value)
    # Not written back to KIVY_HOME: the kiosk's TOML is the only source of truth.


def run(config: KioskConfig, **app_options: Any) -> int:
    """Run the kiosk until it is stopped; return the process exit code.

    ``app_options`` go to :class:`~kiosk.ui.app.KioskApp` (``material``,
    ``open_camera``). The demo material is loaded from ``config.demo_dir``.
    """
    configure_kivy(config)
    if config.demo_dir is not None and "material" not in app_options:
        from kiosk import demo_material

        try:
            app_options["material"] = demo_material.load(config.demo_dir)
        except FileNotFoundError:
            log.warning(
                "no demo material in %s: the demo panel drives the door only", config.demo_dir
            )
    from kivy.clock import Clock

    from kiosk.ui.app import KioskApp

    app = KioskApp(config, **app_options)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        Clock.schedule_once(lambda _dt: app.quit(), 0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app.run()
    return 0
