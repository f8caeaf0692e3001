"""The Kivy application: screens, navigation, the agent link, the scanner, idle timeouts.

The app wires three worker-thread services to the screens and never waits on
them:

* :class:`~kiosk.agent_link.AgentLink` -- API calls, status polling and the
  agent's event stream (badge taps, door state, alarms);
* :class:`~kiosk.scanner.Scanner` -- camera frames and QR decoding;
* the demo camera (:mod:`kiosk.demo_camera`) in demo mode.

Their results come back on the UI thread through :meth:`KioskApp.deliver`
(``Clock.schedule_once``). Navigation goes through :meth:`KioskApp.go`, which
lets the target screen :meth:`~kiosk.ui.screens.base.KioskScreen.prepare`
itself first.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import (
    BooleanProperty,
    DictProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kiosk.agent_link import AgentLink
from kiosk.config import KioskConfig
from kiosk.demo_material import DemoMaterial
from kiosk.photo import encode_jpeg, portrait_crop
from kiosk.scanner import Scanner
from kiosk.ui import theme, widgets  # (importing widgets registers the kv widget classes)
from kiosk.ui.translator import Translator
from portier_common.passes import PassQrError, parse_pass_qr, pass_qr_text

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
#: Screen name -> "module:Class" under kiosk.ui.screens.
SCREENS: dict[str, str] = {
    "attract": "attract:AttractScreen",
    "scan": "scan:ScanScreen",
    "welcome": "welcome:WelcomeScreen",
    "denied": "denied:DeniedScreen",
    "checkout": "checkout:CheckoutScreen",
    "photo": "photo:PhotoScreen",
    "out_of_service": "out_of_service:OutOfServiceScreen",
    "evacuation": "evacuation:EvacuationScreen",
    "guard_login": "guard_login:GuardLoginScreen",
    "guard_console": "guard_console:GuardConsoleScreen",
    "guard_reason": "guard_reason:GuardReasonScreen",
    "guard_visitors": "guard_visitors:GuardVisitorsScreen",
    "guard_events": "guard_events:GuardEventsScreen",
    "muster": "muster:MusterScreen",
    "guard_muster": "muster:GuardMusterScreen",
}
#: Visitor screens a fire alarm does not replace with the evacuation screen.
_NOT_EVACUATED = frozenset({"evacuation", "muster", "out_of_service"})
#: Seconds the "a guard has been called" confirmation stays up (a tap closes it sooner).
HELP_SHOWN_S = 10.0
KEY_ESCAPE = 27
KEY_F12 = 293


def _load_kv(path: Path) -> None:
    if str(path) not in Builder.files:
        Builder.load_file(str(path))


class KioskApp(App):
    """The kiosk. ``settings`` is the validated :class:`~kiosk.config.KioskConfig`.

    ``open_camera`` (a callable returning an opened frame source) replaces
    the configured camera; ``material`` is the demo panel's material;
    ``clock`` (default :func:`time.monotonic`) times the idle timeouts and
    countdowns, so tests advance it instead of waiting.
    """

    title = "Portier"
    tr = ObjectProperty(None)
    #: Size unit: 1 on the 800x480 display, scaled with the window.
    u = NumericProperty(1.0)
    clock_text = StringProperty("")
    online = BooleanProperty(False)
    status = DictProperty({})
    door_title = StringProperty("")
    demo = BooleanProperty(False)
    guard_name = StringProperty("")
    #: Whole seconds until the door relocks (0: locked; -1: held open, no countdown).
    door_remaining = NumericProperty(0)
    #: The visitor pass of the last check-in: "" (none: no printer, or not yet),
    #: "printing" (sent to the agent), "printed", "guard" (it could not be printed: a
    #: guard hands the pass). kiosk.passes.printing, docs/passes.md.
    pass_state = StringProperty("")
    #: The door's mode as the agent last said (status poll or pushed ``mode.changed``).
    door_mode = StringProperty("normal")
    #: "close": the door is held or forced open now (visitors are asked to close it).
    door_notice = StringProperty("")
    #: The off-site event of the installed event pack while it is on (the agent's status
    #: ``event_pack`` with ``in_force``), else "": its name, the organiser's welcome line
    #: and the language that line is written in (docs/kiosk.md, "Event packs on the
    #: attract screen").
    event_name = StringProperty("")
    event_welcome = StringProperty("")
    event_lang = StringProperty("")

    def __init__(
        self,
        settings: KioskConfig,
        *,
        material: DemoMaterial | None = None,
        open_camera: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        #: The UI's monotonic clock (idle timeouts, countdowns); tests pass a fake one.
        self.now = clock
        self.settings = settings
        self.material = material
        self.demo = settings.ui.demo
        self.tr = Translator(settings.ui.language)
        #: (invitation id, scanned text) of the last granted QR invitation: its pass.
        self._granted_qr: tuple[str, str] = ("", "")
        #: Demo only: the QR text of the last check-in's pass (the demo visitor shows it).
        self.demo_pass_qr = ""
        self.link = AgentLink(
            settings.agent.socket,
            deliver=self.deliver,
            timeout_s=settings.agent.timeout_s,
            status_interval_s=settings.agent.status_interval_s,
            retry_interval_s=settings.agent.retry_interval_s,
        )
        self.demo_camera: Any = None
        self._open_camera = open_camera or self._default_camera
        self.scanner: Scanner | None = None
        self.sm: ScreenManager | None = None
        self.demo_panel: Any = None
        self._last_touch = self.now()
        #: ``app.now()`` until which touches are ignored (a new screen, a pop-up).
        self._touch_guard_until = 0.0
        self._help_view: Any = None
        self._door_relocks_at: float | None = 0.0
        self._allow_close = False
        self._ticker: Any = None
        self._stopping = False
        self.guard_id = ""

    # -- plumbing -----------------------------------------------------------------
    def deliver(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the UI thread at the next frame (callable from any thread).

        Results that arrive once the app is stopping are dropped: the screens they
        would update are going away.
        """

        def run(_dt: float) -> None:
            if not self._stopping:
                fn()

        Clock.schedule_once(run, 0)

    def _default_camera(self) -> Any:
        # A demo directory means the demo camera, whether or not the panel is shown.
        if self.demo or self.settings.demo_dir is not None:
            from kiosk.demo_camera import DemoCamera

            self.demo_camera = DemoCamera(self.settings.camera).open()
            return self.demo_camera
        from hardware.camera import open_camera

        return open_camera(self.settings.camera)

    def build(self) -> ScreenManager:
        """Load the kv files and build the screen manager with every screen."""
        import importlib

        _load_kv(HERE / "widgets.kv")
        _load_kv(HERE / "demo_panel.kv")
        self.sm = ScreenManager(transition=NoTransition())
        for name, target in SCREENS.items():
            module_name, class_name = target.split(":")
            module = importlib.import_module(f"kiosk.ui.screens.{module_name}")
            _load_kv(Path(inspect.getfile(module)).with_suffix(".kv"))
            screen = getattr(module, class_name)(name=name)
            self.sm.add_widget(screen)
            # Help is on visitor screens only (a guard is the one who answers it).
            for header in screen.walk():
                if isinstance(header, widgets.Header):
                    header.show_help = bool(screen.visitor and screen.offers_help)
        Window.clearcolor = theme.BG
        Window.bind(size=self._resized, on_keyboard=self._on_keyboard)
        Window.bind(on_request_close=self._on_request_close, on_touch_down=self._touched)
        self._resized(Window, Window.size)
        return self.sm

    def on_start(self) -> None:
        """Start the agent link, the scanner and the UI clock."""
        from hardware.qr import open_decoder

        qr = self.settings.qr
        # The quick pass between the attract screen's full decodes: the same raw
        # decoder without the pipeline's retries (see kiosk.scanner).
        quick = open_decoder(dataclasses.replace(qr, pipeline=False)) if qr.pipeline else None
        self.link.on_online(self._online_changed)
        self.link.on_status(self._status)
        self.link.on_event(self._event)
        self.link.start()
        self.scanner = Scanner(
            self._open_camera,
            open_decoder(qr),
            on_code=lambda text: self.deliver(lambda: self._code_read(text)),
            on_error=lambda message: log.error("camera: %s", message),
            debounce_s=self.settings.scan.debounce_s,
            quick=quick,
        )
        self.scanner.start(decode=False)
        self._tick(0)
        self._ticker = Clock.schedule_interval(self._tick, 0.25)
        self.go("out_of_service" if self.link.online is False else "attract")

    def on_stop(self) -> None:
        """Stop the worker threads and close the camera."""
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.guard_id:
            self.guard_logout(go_home=False)
        self.link.stop()
        if self.scanner is not None:
            self.scanner.stop()

    def quit(self) -> None:
        """Leave the app (demo panel only: on a kiosk, only SIGTERM stops it)."""
        self._allow_close = True
        self.stop()

    # -- window ---------------------------------------------------------------------
    def _resized(self, _window: object, size: tuple[int, int]) -> None:
        width, height = size
        self.u = max(0.5, min(width / theme.DESIGN_SIZE[0], height / theme.DESIGN_SIZE[1]))

    def _on_keyboard(self, _window: object, key: int, *_args: object) -> bool:
        # Escape (and Android's back) would close a Kivy app: swallow it.
        if key == KEY_ESCAPE:
            return True
        if key == KEY_F12 and self.demo:
            self.toggle_demo_panel()
            return True
        return False

    def _on_request_close(self, *_args: object, **_kwargs: object) -> bool:
        # Alt+F4, the window manager's close button: refused unless quit() was called.
        return not self._allow_close

    def _touched(self, *_args: object) -> bool:
        """Every touch on the window, before any widget: counts as activity.

        For ``ui.touch_guard_s`` after a screen (or a pop-up) is shown, touches are
        swallowed here, in one place for every button: the second tap of a double
        tap on "Done" never lands on the next screen's "Staff" button.
        """
        now = self.now()
        self._last_touch = now
        panel = self.demo_panel
        if panel is not None and panel.parent is not None:
            return False  # the demo panel is a presenter's tool, not a visitor's screen
        return now < self._touch_guard_until

    def accepts_touches(self) -> bool:
        """True once the touch guard of the screen shown last is over."""
        return self.now() >= self._touch_guard_until

    def guard_touches(self) -> None:
        """Ignore touches for ``ui.touch_guard_s`` from now (something new is shown)."""
        self._touch_guard_until = self.now() + self.settings.ui.touch_guard_s

    @property
    def last_touch(self) -> float:
        """``now()`` of the last touch (or screen change): idle timeouts count from it."""
        return self._last_touch

    def touch_activity(self) -> None:
        """Count as a touch (screens call it on a key press of a physical keyboard)."""
        self._last_touch = self.now()

    # -- navigation -----------------------------------------------------------------
    @property
    def screen(self) -> Any:
        """The screen shown now."""
        assert self.sm is not None
        return self.sm.current_screen

    def go(self, name: str, **kwargs: Any) -> None:
        """Show screen ``name`` after calling its ``prepare(**kwargs)``.

        While the agent is unreachable every screen is the out-of-service one:
        nothing a visitor or a guard can do works without it.
        A fire alarm (``emergency``) turns every visitor screen into the evacuation
        screen; guard screens (the login included) are left alone.
        """
        assert self.sm is not None
        if self.link.online is False and name != "out_of_service":
            name, kwargs = "out_of_service", {}
        target = self.sm.get_screen(name)
        if self.door_mode == "emergency" and target.visitor and name not in _NOT_EVACUATED:
            name, kwargs = "evacuation", {}
            target = self.sm.get_screen(name)
        target.prepare(**kwargs)
        target.entered_at = self.now()
        self._last_touch = self.now()
        if self.sm.current != name:
            self.guard_touches()
            self.dismiss_help()
        self.sm.current = name
        if self.scanner is not None:
            self.scanner.set_decoding(
                bool(target.decodes) and self.link.online is not False, target.decode_interval_s
            )
        log.info("screen %s", name)

    def go_home(self, *, new_visitor: bool = False) -> None:
        """Back to the attract screen.

        The visitor's language stays (Done, Cancel, Scan again are the same visitor);
        ``new_visitor`` (the idle return, a guard leaving, the end of an evacuation)
        puts the default language back. That is the only rule, kept here.
        """
        if new_visitor:
            self.new_visitor()
        self.go("attract" if self.link.online is not False else "out_of_service")

    def new_visitor(self) -> None:
        """Forget the previous visitor's choices: the default language."""
        self.tr.lang = self.settings.ui.language

    def set_language(self, lang: str) -> None:
        """Switch every screen to ``lang`` (``en`` or ``fr``) until the next visitor."""
        self.tr.lang = lang
        self._last_touch = self.now()

    def _tick(self, _dt: float) -> None:
        now = self.now()
        self.clock_text = time.strftime("%H:%M")
        self._update_door_remaining()
        if self.sm is None:
            return
        screen = self.screen
        timeout = screen.idle_timeout()
        if timeout is not None and now - max(self._last_touch, screen.entered_at) > timeout:
            if screen.visitor:
                # Nobody at the kiosk for a while: whoever comes next is a new visitor.
                self.new_visitor()
                self.dismiss_help()
            screen.on_idle()
        screen.tick()
        view = self._help_view
        if view is not None and view.parent is not None and now - view.opened_at > HELP_SHOWN_S:
            self.dismiss_help()

    def _update_door_remaining(self) -> None:
        if self._door_relocks_at is None:
            self.door_remaining = -1
        else:
            self.door_remaining = max(0, int(self._door_relocks_at - self.now() + 0.999))

    # -- agent ----------------------------------------------------------------------
    def _online_changed(self, online: bool) -> None:
        self.online = online
        if not online:
            self.guard_id = ""
            self.guard_name = ""
            self.link.guard_client.token = None
            self._door_relocks_at = 0.0
            if self.sm is not None and self.sm.current != "out_of_service":
                self.go("out_of_service")
        elif self.sm is not None and self.sm.current == "out_of_service":
            self.go_home()

    def _status(self, status: dict[str, Any]) -> None:
        self.status = status
        self.door_title = self.settings.ui.door_name or str(status.get("door_id", ""))
        door = status.get("door") or {}
        if not door.get("unlocked"):
            self._door_relocks_at = 0.0
        elif door.get("unlocked_for_s") is None:
            self._door_relocks_at = None  # free access or emergency: no countdown
        else:
            self._door_relocks_at = self.now() + float(door["unlocked_for_s"])
        self._update_door_remaining()
        alarms = door.get("alarms") or []
        opened = {a.get("alarm") for a in alarms if a.get("active")}
        self.door_notice = "close" if opened & {"held_open", "forced_open"} else ""
        self._follow_mode(str(door.get("mode") or "normal"))
        self._follow_event(status.get("event_pack"))
        if self.sm is not None:
            self.screen.on_status(status)

    def _follow_event(self, pack: object) -> None:
        """The event of the installed pack while it is on (the agent decides ``in_force``
        by its clock; the UI reads nothing else)."""
        kiosk = pack.get("kiosk") if isinstance(pack, dict) else None
        if not isinstance(pack, dict) or pack.get("in_force") is not True:
            self.event_name = self.event_welcome = self.event_lang = ""
            return
        kiosk = kiosk if isinstance(kiosk, dict) else {}
        self.event_name = str(pack.get("name") or "")
        self.event_welcome = str(kiosk.get("welcome") or "")
        self.event_lang = str(kiosk.get("language") or "")

    def _follow_mode(self, mode: str) -> None:
        """Show the evacuation screen as soon as the mode is ``emergency``; leave it after."""
        self.door_mode = mode
        if self.sm is None or self.link.online is False:
            return
        current = self.sm.current
        if mode == "emergency":
            if self.screen.visitor and current not in _NOT_EVACUATED:
                log.warning("fire alarm: evacuation screen")
                self.go("evacuation")
        elif current in ("evacuation", "muster"):
            log.warning("fire alarm over: attract screen")
            self.go_home(new_visitor=True)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind == "door.unlocked":
            unlock_ms = event.get("unlock_ms")
            self._door_relocks_at = None if unlock_ms is None else self.now() + unlock_ms / 1000.0
        elif kind == "door.locked":
            self._door_relocks_at = 0.0
        elif kind == "access.decision" and event.get("source") == "nfc" and self.sm is not None:
            self.screen.on_badge(event)
        elif kind == "mode.changed" and event.get("mode"):
            # Pushed at once: the evacuation screen does not wait for the next poll.
            self._follow_mode(str(event["mode"]))
        elif kind == "alarm.raised" and event.get("alarm") == "fire":
            self._follow_mode("emergency")
        elif kind == "guard.tap" and self.sm is not None:
            # A guard's badge at this console's reader: a login step, never an entry.
            self.screen.on_guard_tap(event)
        self._update_door_remaining()
        if kind.startswith(("alarm.", "mode.", "door.")):
            self.link.check_now()
        if self.sm is not None:
            self.screen.on_agent_event(event)

    def _code_read(self, text: str) -> None:
        if self.sm is not None and self.screen.decodes and self.link.online is not False:
            self.screen.on_code(text)

    def show_outcome(self, decision: dict[str, Any]) -> None:
        """Show a decision (QR or badge): the welcome or the denied screen."""
        if self.demo_camera is not None and decision.get("kind") == "qr":
            self.demo_camera.hide()  # the demo visitor lowers the invitation
        self.pass_state = ""
        self.go("welcome" if decision.get("granted") else "denied", decision=decision)

    def present_qr(self, text: str, on_error: Callable[[Exception], None]) -> None:
        """Present a decoded QR text to the agent; the outcome screen follows.

        The agent decides and journals now but opens the door only when the welcome
        screen asks (:meth:`open_grant`): the visitor may pose for a photo first.
        """
        client = self.link.client

        def decided(decision: dict[str, Any]) -> None:
            if decision.get("granted") and decision.get("kind") == "qr":
                # The pass printed at check-in shows what this invitation says.
                self._granted_qr = (str(decision.get("credential_id") or ""), text)
            self.show_outcome(decision)

        self.link.submit(
            lambda: client.present_qr(text, source="kiosk-camera", open_mode="on_request"),
            on_done=decided,
            on_error=on_error,
        )

    def open_grant(
        self,
        grant_id: str,
        *,
        on_done: Callable[[dict[str, Any]], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Ask the agent to open the door for the visitor's grant (held since the scan).

        The countdown follows the agent's answer at once (the ``door.unlocked`` event
        that follows says the same): it starts at the unlock, not at the scan.
        """
        client = self.link.client

        def opened(answer: dict[str, Any]) -> None:
            door = answer.get("door") or {}
            if door.get("unlocked"):
                left = door.get("unlocked_for_s")
                self._door_relocks_at = None if left is None else self.now() + float(left)
                self._update_door_remaining()
            on_done(answer)

        self.link.submit(lambda: client.open_grant(grant_id), on_done=opened, on_error=on_error)

    def checkin(
        self,
        invitation_id: str,
        *,
        photo: Any = None,
        on_done: Callable[[dict[str, Any]], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Record the visitor's check-in; with ``photo`` (a greyscale frame) only after consent.

        The photo is cropped and JPEG-encoded in the worker thread.
        """
        client = self.link.client
        granted_id, token = self._granted_qr
        printer = (self.link.last_status or {}).get("printer")
        print_pass = bool(token) and granted_id == invitation_id and printer is not None
        lang = self.tr.lang

        def call() -> dict[str, Any]:
            jpeg = None if photo is None else encode_jpeg(portrait_crop(photo))
            answer = client.checkin(invitation_id, consent=photo is not None, photo_jpeg=jpeg)
            pass_id = str(answer.get("pass_id") or "")
            if pass_id and self.demo_camera is not None:
                self.demo_pass_qr = pass_qr_text(pass_id)  # the demo visitor's pass, to show
            if print_pass:
                self._print_pass(client, token, invitation_id, pass_id, lang, jpeg)
            return answer

        self.link.submit(
            call,
            on_done=on_done,
            on_error=on_error or (lambda exc: log.warning("check-in failed: %s", exc)),
        )

    def _print_pass(
        self,
        client: Any,
        token: str,
        invitation_id: str,
        pass_id: str,
        lang: str,
        jpeg: bytes | None,
    ) -> None:
        """In the check-in's worker: render the pass (the check-in's ``pass_id`` in its QR
        code) and have the agent print it."""
        from kiosk.passes.printing import print_checkin_pass

        self._granted_qr = ("", "")  # one pass per check-in
        self.deliver(lambda: setattr(self, "pass_state", "printing"))
        try:
            outcome = print_checkin_pass(
                client,
                token=token,
                invitation_id=invitation_id,
                pass_id=pass_id,
                config=self.settings,
                lang=lang,
                now=time.time(),
                photo_jpeg=jpeg,
            )
        except Exception:  # a rendering bug must not lose the check-in that succeeded
            log.exception("the pass could not be rendered")
            outcome = "guard"
        self.deliver(lambda: setattr(self, "pass_state", outcome))

    def checkout_with_pass(
        self, qr_text: str, *, on_error: Callable[[Exception], None] | None = None
    ) -> None:
        """A visitor showed their pass (QR ``PV1:<pass id>``): check out, show the outcome.

        The scan path routes a pass QR here (an invitation goes to :meth:`present_qr`).
        The agent checks out the visit the pass was issued for (``POST /v1/checkout``);
        the check-out screen says goodbye, or why not (``not_on_site``: checked out
        already; ``unknown_pass``). A text that is no well-formed pass is refused here.
        ``on_error`` gets an unreachable agent (the scan screen shows out of service).
        """
        from edge_agent.client import AgentUnavailable, ApiError

        if self.demo_camera is not None:
            self.demo_camera.hide()  # the demo visitor lowers the pass
        try:
            pass_id = parse_pass_qr(qr_text)
        except PassQrError:
            self.go("checkout", outcome="unknown_pass")
            return
        client = self.link.client

        def done(answer: dict[str, Any]) -> None:
            self.go("checkout", outcome="done", visitor=str(answer.get("visitor") or ""))

        def failed(exc: Exception) -> None:
            if isinstance(exc, AgentUnavailable) and on_error is not None:
                on_error(exc)
                return
            log.warning("check-out failed: %s", exc)
            code = exc.code if isinstance(exc, ApiError) else "error"
            self.go(
                "checkout", outcome=code if code in ("not_on_site", "unknown_pass") else "error"
            )

        self.link.submit(lambda: client.checkout(pass_id), on_done=done, on_error=failed)

    def print_muster(
        self,
        answer: dict[str, Any],
        *,
        on_done: Callable[[str], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Print the muster list ``answer`` (``GET /v1/muster``): rendered in the worker
        (kiosk.passes.muster), printed by the agent. ``on_done`` gets ``printed``,
        ``guard`` (the printer cannot print) or ``""`` (no printer)."""
        from kiosk.passes.printing import print_muster

        client = self.link.client
        lang, door = self.tr.lang, self.door_title
        self.link.submit(
            lambda: print_muster(client, answer, config=self.settings, lang=lang, door=door),
            on_done=on_done,
            on_error=on_error,
        )

    def reprint_pass(
        self,
        invitation_id: str,
        *,
        on_done: Callable[[str], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """A guard's reprint from the console (its session): a new pass, printed by the
        agent; ``on_done`` gets ``printed``, ``guard`` (cannot print) or ``""`` (no printer)."""
        from kiosk.passes.printing import reprint_pass

        client = self.link.guard_client
        lang = self.tr.lang
        self.link.submit(
            lambda: reprint_pass(
                client,
                invitation_id=invitation_id,
                config=self.settings,
                lang=lang,
                now=time.time(),
            ),
            on_done=on_done,
            on_error=on_error,
        )

    # -- a visitor's call for help -------------------------------------------------------
    def call_help(self) -> None:
        """The visitor pressed Help: ask the agent to call a guard; confirm on screen.

        The agent raises one ``help_requested`` alarm however often it is pressed;
        the visitor sees the same confirmation every time.
        """
        client = self.link.client
        screen = self.sm.current if self.sm is not None else "attract"
        lang = self.tr.lang
        self.show_help("calling")
        self.link.submit(
            lambda: client.call_help(screen, lang),
            on_done=lambda _answer: self.show_help("called"),
            on_error=self._help_failed,
        )

    def _help_failed(self, exc: Exception) -> None:
        log.warning("help call failed: %s", exc)
        self.show_help("failed")

    def show_help(self, state: str) -> None:
        """Show the Help pop-up in ``state`` (calling, called, failed)."""
        from kiosk.ui.widgets import HelpView

        if self._help_view is None:
            self._help_view = HelpView()
        view = self._help_view
        view.state = state
        view.opened_at = self.now()
        if view.parent is None:
            view.open(animation=False)
            self.guard_touches()

    def dismiss_help(self) -> None:
        """Close the Help pop-up if it is open."""
        view = self._help_view
        if view is not None and view.parent is not None:
            view.dismiss(animation=False)

    # -- guard session ----------------------------------------------------------------
    def guard_logged_in(self, answer: dict[str, Any]) -> None:
        """Remember the guard of a successful login and open the console."""
        self.guard_id = str(answer.get("guard_id", ""))
        self.guard_name = str(answer.get("name", ""))
        self.go("guard_console")

    def guard_logout(self, *, go_home: bool = True) -> None:
        """Close the guard session (the agent is told in the background)."""
        client = self.link.guard_client
        if client.token:
            self.link.submit(client.guard_logout)
        self.guard_id = ""
        self.guard_name = ""
        if go_home:
            self.go_home(new_visitor=True)

    def guard_session_lost(self) -> None:
        """The agent says the session is gone (expired, agent restarted): log in again."""
        self.link.guard_client.token = None
        self.guard_id = ""
        self.guard_name = ""
        self.go("guard_login", message="not_logged_in")

    # -- demo panel -------------------------------------------------------------------
    def toggle_demo_panel(self) -> None:
        """Open or close the demo panel (demo mode only)."""
        if not self.demo:
            return
        if self.demo_panel is None:
            from kiosk.ui.demo_panel import DemoPanel

            self.demo_panel = DemoPanel()
        # No animation: a button tapped mid-animation would miss, and a Pi has better uses
        # for its GPU.
        if self.demo_panel.parent is None:
            self.demo_panel.open(animation=False)
        else:
            self.demo_panel.dismiss(animation=False)

    def demo_invitation(self, label: str) -> None:
        """Hold the material's invitation ``label`` up to the demo camera."""
        item = self.material.invitation(label) if self.material else None
        if item is None or self.demo_camera is None:
            log.warning("demo: no invitation %r or no demo camera", label)
            return
        if self.sm is not None and not self.screen.decodes:
            self.go("scan")
        self.demo_camera.show(item.token, "screen" if label == "forged" else "paper")

    def demo_pass(self) -> None:
        """Hold the pass of the demo's last check-in up to the demo camera (check-out)."""
        if not self.demo_pass_qr or self.demo_camera is None:
            log.warning("demo: no pass printed yet, or no demo camera")
            return
        if self.sm is not None and not self.screen.decodes:
            self.go("scan")
        self.demo_camera.show(self.demo_pass_qr, "paper")

    def demo_badge(self, label: str) -> None:
        """Tap the material's badge ``label`` on the simulated reader."""
        if label == "guard":
            uid = self.material.guard.uid if self.material and self.material.guard else None
        else:
            item = self.material.badge(label) if self.material else None
            uid = item.uid if item else None
        if uid is None:
            log.warning("demo: no badge %r", label)
            return
        self.demo_sim("badge", uid=uid)

    def demo_sim(self, action: str, **body: Any) -> None:
        """POST /v1/sim/{action} (door contact, fire alarm, badge)."""
        client = self.link.client
        self.link.submit(lambda: client.simulate(action, **body))
