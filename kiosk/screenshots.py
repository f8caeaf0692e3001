"""Save a screenshot of every kiosk screen, in English and French.

Usage::

    python -m kiosk.screenshots docs/screens --demo DIR [--size 800x480]

``DIR`` is a running demo (``edge-agent demo --headless --dir DIR``, or
``python tests/support/kiosk_rig.py DIR``): an agent on simulated hardware and
its demo material. The script drives the real app in-process through real
flows -- invitations shown to the demo camera, badges tapped on the simulated
reader, the guard console with a real login -- and saves ``NAME-LANG.png``
files. It changes the demo agent's state: check-ins, door modes and alarms
(put back to normal), and the *unknown* badge locked out of the guard login
for the agent's ``lockout_s`` (the demo's guard badge stays usable). It needs
a display (``DISPLAY``, e.g. Xvfb).

The guard's idle warning is shown by moving the app's clock forward (no wait).

The attract screen of an off-site event needs an event pack installed in the demo
(``python tests/support/kiosk_rig.py DIR --event-pack``), then ``--event-only``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

from kiosk.config import KioskConfig, demo_config

log = logging.getLogger(__name__)

LANGUAGES = ("en", "fr")


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


class ShiftedClock:
    """The monotonic clock plus an offset: the idle warning without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class Shooter:
    """Walks through every screen and saves screenshots into ``out``."""

    def __init__(
        self, driver: Any, out: Path, suffix: str = "", clock: ShiftedClock | None = None
    ) -> None:
        self.driver = driver
        self.clock = clock
        self.app = driver.app
        self.out = out
        self.suffix = suffix
        self.saved: list[Path] = []

    def shot(self, name: str) -> None:
        """Save the window as ``NAME-LANG[-SUFFIX].png``."""
        lang = self.app.tr.lang
        path = self.out / f"{name}-{lang}{self.suffix}.png"
        self.saved.append(self.driver.screenshot(path))
        log.info("saved %s", path)

    def t(self, msgid: str) -> str:
        """``msgid`` in the current language (to find a button by its caption)."""
        return self.app.tr.gettext(msgid)

    def home(self, lang: str) -> None:
        """The attract screen in ``lang``."""
        self.app.go_home()
        self.app.set_language(lang)
        self.driver.wait_screen("attract")

    def present(self, label: str, expect: str) -> Any:
        """Show the demo invitation ``label`` to the camera from the scan screen."""
        self.app.demo_invitation(label)
        return self.driver.wait_screen(expect, timeout=20)

    def visitor_screens(self, lang: str) -> None:
        """Attract, scan, welcome, photo, denied, badge outcomes, out of service.

        (The door states follow in :meth:`door_states`.)"""
        d = self.driver
        self.home(lang)
        self.shot("attract")
        d.tap_text(self.t("Scan my QR invitation"))
        d.wait_screen("scan")
        d.wait_for(lambda: self.app.screen.ids.viewfinder.texture is not None, 10, "no frame")
        self.shot("scan")
        welcome = self.present("valid", "welcome")
        # The door waits for the visitor's answer to the photo offer (issue #11).
        self.shot("welcome")
        d.tap_text(self.t("Yes, take my photo"))
        d.wait_screen("photo")
        d.wait_for(lambda: self.app.screen.ids.viewfinder.texture is not None, 10, "no frame")
        self.shot("photo")
        d.tap_text(self.t("Take photo"))
        d.wait_for(lambda: self.app.screen.state == "preview", 10, "no preview")
        self.shot("photo-preview")
        d.tap_text(self.t("Use this photo"))
        d.wait_for(lambda: self.app.screen.state == "done", 10, "photo not sent")
        self.shot("photo-saved")
        # Back on the welcome screen the door opens, counting down from the unlock ...
        d.wait_screen("welcome")
        d.wait_for(lambda: welcome.door == "open", 10, "the door did not open")
        d.wait_for(lambda: self.app.door_remaining > 0, 10, "no door countdown")
        self.shot("door-open")
        # ... and once the visitor went through, it says so and offers to open again.
        self.app.demo_sim("door_open")
        d.pump(0.3)
        self.app.demo_sim("door_close")
        d.wait_for(lambda: welcome.door == "relocked", 10, "the relock was not shown")
        self.shot("door-relocked")
        for label, name in (
            ("expired", "expired"),  # says since when
            ("forged", "forged"),
            ("wrong_door", "wrong-door"),  # says which entrance to use
            ("replayed", "replayed"),
        ):
            if self.app.material.invitation(label) is None:
                continue  # older demo material
            self.home(lang)
            d.tap_text(self.t("Scan my QR invitation"))
            d.wait_screen("scan")
            self.present(label, "denied")
            self.shot(f"denied-{name}")
        # The agent's answer to an invitation during a fire alarm: no "see the guard".
        self.app.go("denied", decision={"granted": False, "reason": "emergency", "kind": "qr"})
        d.wait_screen("denied")
        self.shot("denied-emergency")
        self.home(lang)
        self.app.demo_badge("staff")
        d.wait_screen("welcome")
        d.wait_for(lambda: self.app.door_remaining > 0, 10, "no door countdown")
        self.shot("welcome-badge")
        self.home(lang)
        self.app.demo_badge("unknown")
        d.wait_screen("denied")
        self.shot("denied-unknown-badge")
        self.app.go("out_of_service")  # the screen as shown while the agent is down
        d.wait_screen("out_of_service")
        self.shot("out-of-service")
        self.home(lang)

    def door_states(self, lang: str) -> None:
        """What a visitor sees in each door state: fire, lockdown, free access, held open,
        and after pressing Help. Mode changes go through a guard session of the demo's
        guard (journaled like any guard's); every state is put back to normal."""
        from edge_agent.client import AgentClient

        d, app = self.driver, self.app
        self.home(lang)
        d.tap_text(self.t("Scan my QR invitation"))
        d.wait_screen("scan")
        app.demo_sim("fire", on=True)
        evacuation = d.wait_screen("evacuation")
        d.wait_for(lambda: evacuation.site_count >= 0, 10, "no on-site count")
        self.shot("evacuation")
        # The muster list: the visitor checked in above (welcome, photo) is on it.
        d.tap_text(evacuation.site_count_text(evacuation.site_count, app.tr._))
        muster = d.wait_screen("muster")
        d.wait_for(muster.names, 10, "nobody on the muster list")
        self.shot("muster")
        app.demo_sim("fire", on=False)
        d.wait_screen("attract")
        guard = app.material.guard
        client = AgentClient(app.link.socket_path, timeout=app.link.timeout_s)
        client.guard_login(guard.uid, guard.pin)
        try:
            for mode, name in (("lockdown", "lockdown"), ("free_access", "free-access")):
                client.guard_action(mode, "Drill or test")
                self.home(lang)
                d.wait_for(lambda m=mode: app.door_mode == m, 10, f"no {mode}")
                self.shot(name)
            client.guard_action("normal", "Drill or test")
            d.wait_for(lambda: app.door_mode == "normal", 10, "not back to normal")
            d.pump(2.5)  # past the door's grace after relocking: an opening is now forced
            app.demo_sim("door_open")  # opened without a grant: the door must be closed
            d.wait_for(lambda: app.door_notice, 10, "no close-the-door notice")
            self.shot("held-open")
            app.demo_sim("door_close")
            d.wait_for(lambda: not app.door_notice, 10, "the notice stayed")
            self.home(lang)
            d.tap_text(self.t("Help"))
            d.wait_for(
                lambda: app._help_view is not None and app._help_view.state == "called",
                10,
                "no help confirmation",
            )
            self.shot("help-called")
            app.dismiss_help()
            # The guard came: the help_requested alarm ends (the console shots start clean).
            client.guard_action("acknowledge", "Drill or test", "help_requested")
        finally:
            client.guard_logout()
        self.home(lang)

    def guard_screens(self, lang: str) -> None:
        """Login (badge, PIN), console, reason, alarm, visitors, events."""
        d, app = self.driver, self.app
        material = app.material
        self.home(lang)
        d.tap_text(self.t("Staff"))
        d.wait_screen("guard_login")
        self.shot("guard-login")
        app.demo_badge("guard")
        d.wait_for(lambda: app.screen.step == "pin", 10, "guard badge not read")
        d.press_keys(app.screen.ids.pinpad, list(material.guard.pin[:2]))
        self.shot("guard-pin")
        d.press_keys(app.screen.ids.pinpad, [*material.guard.pin[2:], "ok"])
        d.wait_screen("guard_console")
        d.wait_for(lambda: app.status.get("door"), 10, "no status")
        self.shot("guard-console")
        d.tap_text(self.t("Lockdown"))
        d.wait_screen("guard_reason")
        self.shot("guard-reason")
        d.tap_text(self.t("Security incident"))
        d.wait_screen("guard_console")
        d.wait_for(lambda: app.status["door"]["mode"] == "lockdown", 10, "no lockdown")
        self.shot("guard-console-lockdown")
        d.tap_text(self.t("Back to normal"))
        d.wait_screen("guard_reason")
        d.tap_text(self.t("Drill or test"))
        d.wait_screen("guard_console")
        app.demo_sim("fire", on=True)
        d.wait_for(lambda: app.screen.ids.alarms.children, 10, "no alarm row")
        self.shot("guard-console-alarm")
        app.demo_sim("fire", on=False)
        d.wait_for(
            lambda: not any(a["active"] for a in app.status["door"]["alarms"]), 10, "fire on"
        )
        d.wait_for(lambda: app.screen.ids.alarms.children, 10, "no alarm row")
        d.tap_text(self.t("Acknowledge"))
        d.wait_screen("guard_reason")
        d.tap_text(self.t("False alarm"))
        d.wait_screen("guard_console")
        self.printer_alarm()
        self.forced_door()
        self.idle_warning()
        d.tap_text(self.t("Visitors"))
        d.wait_screen("guard_visitors")
        d.wait_for(lambda: app.screen.count and not app.screen.busy, 10, "nobody expected")
        self.shot("guard-expected-today")
        self.refused_checkin()
        d.tap_text(self.t("Search by name"))
        visitor = material.invitation("valid").visitor if material.invitation("valid") else "A"
        d.press_keys(app.screen.ids.letters, list(visitor.split()[0][:3].upper()))
        d.tap_text(self.t("Search"))
        d.wait_for(lambda: app.screen.count and not app.screen.busy, 10, "nobody found")
        self.shot("guard-visitors")
        d.tap_text(self.t("Back"))
        d.wait_screen("guard_console")
        d.tap_text(self.t("Recent events"))
        d.wait_screen("guard_events")
        d.wait_for(lambda: app.screen.ids.events.children, 10, "no events")
        self.shot("guard-events")
        d.tap_text(self.t("Back"))
        d.wait_screen("guard_console")
        d.tap_text(self.t("On site"))
        muster = d.wait_screen("guard_muster")
        d.wait_for(muster.names, 10, "nobody on the guard's muster list")
        self.shot("guard-muster")
        d.tap_text(self.t("Back"))
        d.wait_screen("guard_console")
        self.found_by_pass()
        d.tap_text(self.t("Log out"))
        d.wait_screen("attract")

    def found_by_pass(self) -> None:
        """A guard types the reference printed under a pass's code: the on-site list opens
        on that visitor."""
        d, app = self.driver, self.app
        refs = [v.get("pass_ref") for v in app.link.client.muster()["visitors"]]
        ref = next((r for r in refs if r), None)
        if ref is None:
            log.warning("nobody on site with a pass: no guard-muster-found screenshot")
            return
        d.tap_text(self.t("Visitors"))
        d.wait_screen("guard_visitors")
        d.tap_text(self.t("Search by name"))
        d.press_keys(app.screen.ids.letters, list(ref))
        d.tap_text(self.t("Search"))
        found = d.wait_screen("guard_muster")
        d.wait_for(lambda: found.only and found.names() and not found.busy, 10, "not found")
        self.shot("guard-muster-found")
        d.tap_text(self.t("Back"))
        d.wait_screen("guard_console")

    def printer_alarm(self) -> None:
        """The console with the pass printer out of labels (as CUPS would report it), then
        the printer back and the alarm acknowledged. Skipped without a pass printer."""
        d, app = self.driver, self.app
        client = app.link.client
        if (client.status() or {}).get("printer") is None:
            return

        def rows(active: bool) -> list[Any]:
            return [
                r
                for r in app.screen.ids.alarms.children
                if r.alarm == "printer_fault" and r.active == active
            ]

        try:
            client.simulate("printer", status="out_of_media", message="no labels")
            d.wait_for(lambda: rows(True), 20, "no printer alarm on the console")
            d.frames(3)
            self.shot("guard-console-printer")
        finally:
            client.simulate("printer", status="ready")
        d.wait_for(lambda: rows(False), 20, "the printer alarm did not clear")
        for row in rows(False):
            button = next(
                w for w in row.children if getattr(w, "text", "") == self.t("Acknowledge")
            )
            d.tap(button)
            d.wait_screen("guard_reason")
            d.tap_text(self.t("False alarm"))
            d.wait_screen("guard_console")

    def forced_door(self) -> None:
        """The console with a door forced open (red banner), then acknowledged."""
        d, app = self.driver, self.app
        d.wait_for(lambda: not app.status["door"]["unlocked"], 15, "door still unlocked")
        time.sleep(2.5)  # past the door's rex grace: the opening counts as forced
        app.demo_sim("door_open")
        d.wait_for(lambda: app.screen.ids.door_alarm_banner.text, 10, "no forced-door banner")
        d.frames(3)
        self.shot("guard-console-forced")
        app.demo_sim("door_close")
        d.wait_for(lambda: not app.status["door"]["door_open"], 10, "door still open")
        d.tap_text(self.t("Acknowledge"))
        d.wait_screen("guard_reason")
        d.tap_text(self.t("Security incident"))
        d.wait_screen("guard_console")

    def idle_warning(self) -> None:
        """The banner of the last seconds before the idle log-out (then a touch)."""
        d, app = self.driver, self.app
        if self.clock is None:
            return
        app.touch_activity()
        self.clock.offset += app.settings.ui.guard_idle_timeout_s - 12
        d.wait_for(lambda: 0 < app.screen.idle_left <= 12, 5, "no idle warning")
        self.shot("guard-idle-warning")
        app.touch_activity()
        d.wait_for(lambda: app.screen.idle_left == -1, 5, "idle warning stayed")

    def refused_checkin(self) -> None:
        """A manual check-in the agent refuses (an expired, early, cancelled or wrong-door
        invitation of the demo material, the first one the door's cache holds)."""
        d, app = self.driver, self.app
        from kiosk.ui.screens.guard_visitors import VisitorRow

        screen = app.screen
        for label in ("expired", "not_yet_valid", "revoked", "wrong_door"):
            item = app.material.invitation(label)
            if item is None or not item.visitor:
                continue
            d.tap_text(self.t("Search by name"))
            d.press_keys(screen.ids.letters, list(item.visitor.split()[0][:3].upper()))
            d.tap_text(self.t("Search"))
            d.wait_for(lambda: not screen.busy, 10, "no answer")
            d.frames(2)
            rows = [w for w in d.walk() if isinstance(w, VisitorRow)]
            row = next((r for r in rows if r.visitor == item.visitor), None)
            if row is not None and not row.checked_in:
                d.tap(d.button(self.t("Check in"), root=row))
                d.wait_for(lambda: row.refused or row.checked_in, 10, "no answer")  # noqa: B023
                if row.refused:
                    self.shot("guard-checkin-refused")
                    d.tap(d.button(self.t("Check in anyway"), root=row))
                    d.wait_screen("guard_reason")
                    self.shot("guard-checkin-override")
                    d.tap_text(self.t("Cancel"))
                    d.wait_screen("guard_visitors")
                    break
            d.tap_text(self.t("Expected today"))
            d.wait_for(lambda: not screen.busy, 10, "no answer")
        else:
            log.warning("no demo invitation the door refuses: no guard-checkin-refused shot")
        if screen.mode == "search":
            d.tap_text(self.t("Expected today"))
            d.wait_for(lambda: not screen.busy, 10, "no answer")

    def lockout(self) -> None:
        """Wrong PINs lock a badge out; shown in every language.

        The unknown badge is used (the agent counts failures per badge, guard or not),
        so the demo's guard can still log in afterwards.
        """
        d, app = self.driver, self.app
        self.home(LANGUAGES[0])
        d.tap_text(self.t("Staff"))
        d.wait_screen("guard_login")
        app.demo_badge("unknown")
        d.wait_for(lambda: app.screen.step == "pin", 10, "guard badge not read")
        wrong = "0000" if app.material.guard.pin != "0000" else "1111"
        for attempt in range(25):  # the agent's guard.max_pin_failures is at most 20
            d.press_keys(app.screen.ids.pinpad, [*wrong, "ok"])
            d.wait_for(lambda: app.screen.step == "pin", 10, "no answer")
            if app.screen.locked_for:
                break
            if attempt == 0:
                for lang in LANGUAGES:
                    app.set_language(lang)
                    self.shot("guard-attempts-left")
                app.set_language(LANGUAGES[0])
        for lang in LANGUAGES:
            app.set_language(lang)
            self.shot("guard-locked-out")

    def pass_screens(self, lang: str) -> None:
        """The welcome screen with the visitor pass printed, then with the printer out of
        labels (a guard hands the pass). Needs an agent with a ``mock`` pass printer (the
        test rig's; ``POST /v1/sim/printer``): skipped, with a log line, without one."""
        client = self.app.link.client
        if (client.status() or {}).get("printer") is None:
            log.warning("no pass printer on this agent: no pass screenshots")
            return
        d = self.driver
        try:
            for state, name in (("ready", "printed"), ("out_of_media", "guard")):
                client.simulate("printer", status=state)
                self.home(lang)
                d.tap_text(self.t("Scan my QR invitation"))
                d.wait_screen("scan")
                self.present("valid", "welcome")
                d.tap_text(self.t("No, thank you"))
                d.wait_for(lambda name=name: self.app.pass_state == name, 20, "no pass outcome")
                d.wait_for(lambda: self.app.door_remaining > 0, 10, "no door countdown")
                self.shot(f"welcome-pass-{name}")
        finally:
            client.simulate("printer", status="ready")

    def checkout_screens(self, lang: str) -> None:
        """The visitor shows the pass of their check-in to the camera: goodbye; shown
        again: checked out already; a pass nobody was given: not recognised."""
        from portier_common.passes import new_pass_id, pass_qr_text

        d, app = self.driver, self.app
        # A check-in of its own first: the guard screens check the same visitor in again,
        # and each check-in gives the visit a new pass (the one printed before is void).
        before = app.demo_pass_qr
        self.home(lang)
        d.tap_text(self.t("Scan my QR invitation"))
        d.wait_screen("scan")
        self.present("valid", "welcome")
        d.tap_text(self.t("No, thank you"))
        d.wait_for(lambda: app.demo_pass_qr != before, 20, "no pass for the check-in")
        shown = app.demo_pass_qr
        if not shown:
            log.warning("no check-in pass to show: no check-out screenshots")
            return
        for qr, outcome, name in (
            (shown, "done", "checkout"),
            (shown, "not_on_site", "checkout-already"),
            (pass_qr_text(new_pass_id()), "unknown_pass", "checkout-unknown"),
        ):
            self.home(lang)
            d.tap_text(self.t("Scan my QR invitation"))
            d.wait_screen("scan")
            app.demo_camera.show(qr, "paper")
            d.wait_for(
                lambda o=outcome: app.sm.current == "checkout" and app.screen.outcome == o,
                20,
                f"no check-out outcome {outcome}",
            )
            d.frames(3)
            self.shot(name)
        self.home(lang)

    def event_screens(self) -> None:
        """The attract screen of an off-site event (an event pack in force on the demo
        agent: ``python tests/support/kiosk_rig.py DIR --event-pack``), in both languages.

        Raises:
            ValueError: the demo agent has no event pack in force.
        """
        d = self.driver
        d.wait_for(lambda: self.app.status, 20, "no status from the demo agent")
        if not self.app.event_name:
            raise ValueError("the demo agent has no event pack in force (--event-pack)")
        for lang in LANGUAGES:
            self.home(lang)
            d.frames(3)
            self.shot("attract-event")

    def extra(self) -> None:
        """More states after the catalogue (none here; the legibility test adds some)."""

    def demo_panel(self) -> None:
        """The demo panel over the attract screen."""
        app = self.app
        app.demo = True
        for lang in LANGUAGES:
            self.home(lang)
            app.toggle_demo_panel()
            self.driver.frames(3)
            self.shot("demo-panel")
            app.demo_panel.dismiss(animation=False)
            self.driver.frames(2)
        app.demo = False


def shoot(
    config: KioskConfig,
    out: Path,
    *,
    suffix: str = "",
    full: bool = True,
    shooter_class: type[Shooter] = Shooter,
    event_only: bool = False,
) -> list[Path]:
    """Run the app on ``config`` (a demo configuration) and save its screens into ``out``.

    ``full`` False saves only the visitor screens; ``event_only`` only the attract screen
    of the demo's event pack (:meth:`Shooter.event_screens`). Returns the files saved.
    ``shooter_class``: a :class:`Shooter` subclass (the legibility test checks every
    screen of the catalogue in its ``shot``).
    Raises ``TimeoutError`` when a step does not happen (the agent is not
    running, a code is not decoded...).
    """
    from kiosk import demo_material, i18n
    from kiosk.app import configure_kivy

    i18n.ensure_compiled()
    material = demo_material.load(config.demo_dir) if config.demo_dir else None
    if material is None or material.guard is None:
        raise ValueError("the demo directory has no demo material with a guard")
    configure_kivy(config)
    from kiosk.ui.app import KioskApp
    from kiosk.ui.driver import Driver

    # The demo camera stays (config.demo_dir is set); the demo button and panel are hidden
    # except on the demo panel's own screenshot.
    shown = dataclasses.replace(config, ui=dataclasses.replace(config.ui, demo=False))
    clock = ShiftedClock()
    app = KioskApp(shown, material=material, clock=clock)
    driver = Driver(app)
    shooter = shooter_class(driver, out, suffix, clock)
    driver.start()
    try:
        driver.wait_for(lambda: app.online, 20, "the demo agent does not answer")
        if event_only:
            shooter.event_screens()
            return shooter.saved
        for lang in LANGUAGES:
            shooter.visitor_screens(lang)
            shooter.door_states(lang)
            shooter.pass_screens(lang)
            if full:
                shooter.guard_screens(lang)
            shooter.checkout_screens(lang)  # last: the visitor leaves the on-site list
        if full:
            shooter.demo_panel()
            shooter.lockout()
            shooter.extra()
    finally:
        driver.stop()
    return shooter.saved


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m kiosk.screenshots OUT --demo DIR``."""
    parser = argparse.ArgumentParser(prog="python -m kiosk.screenshots", description=__doc__)
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    parser.add_argument("--demo", type=Path, required=True, metavar="DIR", help="a running demo")
    parser.add_argument("--size", type=_size, default=(800, 480), help="window size (800x480)")
    parser.add_argument("--suffix", default="", help="appended to every file name")
    parser.add_argument("--visitor-only", action="store_true", help="skip the guard screens")
    parser.add_argument(
        "--event-only",
        action="store_true",
        help="only the attract screen of the demo's event pack (a demo made with --event-pack)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = demo_config(args.demo)
    ui = dataclasses.replace(config.ui, fullscreen=False, size=args.size)
    config = dataclasses.replace(config, ui=ui)
    saved = shoot(
        config,
        args.out,
        suffix=args.suffix,
        full=not args.visitor_only,
        event_only=args.event_only,
    )
    log.info("saved %d screenshots in %s", len(saved), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
