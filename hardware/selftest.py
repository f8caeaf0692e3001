"""Installer self-test: one check per component, each pass / fail / skipped with a hint.

The checks run against whatever backends the configuration chose. Checks that
need a person (open the door, tap a badge, show the QR test card) ask an
:class:`Operator`; on a device that is the installer reading the prompts, in
the simulator it is :class:`SimulatedInstaller`, which performs each step on
the simulated hardware. Nothing here pretends: a check without the device or
the person it needs is *skipped*, with a hint saying what would make it run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: The text of the QR test card shipped in the installer kit (and shown by the
#: simulator's camera). ``edge-agent selftest --print-card FILE`` writes it.
TEST_CARD_PAYLOAD = "PORTIER-SELFTEST"

#: The installer kit's Wiegand test card (H10301, facility 1, card 1), as its 26 bits.
TEST_CARD_H10301 = 0b1_00000001_0000000000000001_0

#: No appliance can legitimately believe it is earlier than this.
CLOCK_FLOOR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Status(StrEnum):
    """Outcome of one check."""

    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, with what an installer should do about it."""

    component: str
    check: str
    status: Status
    detail: str
    hint: str = ""
    duration_s: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        return out


@dataclass
class SelfTestReport:
    """All check results of one run."""

    started_at: str
    host: str
    results: list[CheckResult] = field(default_factory=list)
    finished_at: str = ""

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail the run)."""
        return all(r.status is not Status.FAIL for r in self.results)

    def counts(self) -> dict[str, int]:
        """Number of results per status."""
        return {s.value: sum(r.status is s for r in self.results) for s in Status}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the report the installer keeps)."""
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "host": self.host,
            "ok": self.ok,
            "counts": self.counts(),
            "results": [r.to_dict() for r in self.results],
        }

    def to_text(self) -> str:
        """Return a human-readable report, one line per check plus hints."""
        mark = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIPPED: "SKIP"}
        lines = [f"Portier self-test on {self.host} at {self.started_at}"]
        for r in self.results:
            lines.append(f"  [{mark[r.status]}] {r.component:<7} {r.check:<16} {r.detail}")
            if r.hint and r.status is not Status.PASS:
                lines.append(f"         hint: {r.hint}")
        c = self.counts()
        verdict = "PASSED" if self.ok else "FAILED"
        lines.append(f"{verdict}: {c['pass']} passed, {c['fail']} failed, {c['skipped']} skipped")
        return "\n".join(lines)


@dataclass(frozen=True)
class Step:
    """Something the installer has to do for a check to proceed."""

    key: str  # open_door, close_door, press_rex, tap_badge, present_card:<reader>, show_qr_card
    message: str
    timeout_s: float


class Operator(Protocol):
    """Whoever performs the physical steps of the self-test."""

    def perform(self, step: Step) -> None:
        """Ask for ``step`` to be done; return at once (the check waits for the effect)."""


class PromptOperator:
    """Prints each step for the installer standing at the door."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def perform(self, step: Step) -> None:
        """Print the instruction and how long the check waits for it."""
        self._write(f">>> {step.message} (waiting up to {step.timeout_s:.0f} s)")


class SimulatedInstaller:
    """Performs each step on simulated hardware, a moment after being asked.

    ``door`` is a :class:`hardware.gpio.DoorSimulator`; ``reader`` a simulated
    NFC reader with ``present(uid)``. Either may be None, in which case the
    steps that need it are simply not done (and their checks time out and fail,
    as they would with nobody at the door).
    """

    def __init__(
        self,
        door: Any = None,
        reader: Any = None,
        badge_uid: str = "5E1F7E57",
        delay_s: float = 0.05,
        wall_reader: Any = None,
    ) -> None:
        self.door = door
        self.reader = reader
        #: An emulated wall reader (:class:`hardware.reader.emulator.EmulatedReader`).
        self.wall_reader = wall_reader
        self.badge_uid = badge_uid
        self.delay_s = delay_s
        self.performed: list[str] = []

    def perform(self, step: Step) -> None:
        """Schedule the simulated action for ``step``."""
        if step.key == "show_qr_card":
            return  # the simulator's camera replays frames of the test card already
        if step.key.startswith("present_card"):
            if self.wall_reader is not None:
                # The installer kit's test card: H10301, facility 1, card 1.
                card = functools.partial(self.wall_reader.present_card, TEST_CARD_H10301, 26)
                self.performed.append(step.key)
                later = threading.Timer(self.delay_s, card)
                later.daemon = True
                later.start()
            return
        device = self.reader if step.key == "tap_badge" else self.door
        if device is None:
            return
        action: Callable[[], Any]
        if step.key == "open_door":
            action = device.open_door
        elif step.key == "close_door":
            action = device.close_door
        elif step.key == "press_rex":
            action = functools.partial(device.press_rex, 0.1)
        elif step.key == "tap_badge":
            action = functools.partial(device.present, bytes.fromhex(self.badge_uid))
        else:
            return
        self.performed.append(step.key)
        timer = threading.Timer(self.delay_s, action)
        timer.daemon = True
        timer.start()


def _wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


class SelfTest:
    """Runs the checks over opened devices. Any device may be None (not configured).

    ``door_io`` is a :class:`hardware.gpio.DoorIO`; ``reader`` an NFC reader
    (``read(timeout)``); ``door_reader`` the door's wall readers
    (:class:`hardware.reader.DoorReader`); ``camera`` a frame source (``read(timeout)``);
    ``decoder`` a QR decoder (``decode(frame)``). ``interactive`` False skips
    the checks that need a person, with a hint, instead of waiting for them.
    ``unavailable`` maps "gpio", "nfc", "camera" or "qr" to the error met when
    opening that device: its checks then fail with that message (``"reader"`` for the
    wall readers).
    """

    def __init__(
        self,
        *,
        operator: Operator,
        door_io: Any = None,
        reader: Any = None,
        camera: Any = None,
        decoder: Any = None,
        door_reader: Any = None,
        interactive: bool = True,
        step_timeout_s: float = 30.0,
        now: Callable[[], dt.datetime] | None = None,
        ntp_synchronized: Callable[[], bool | None] | None = None,
        unavailable: dict[str, str] | None = None,
    ) -> None:
        self.operator = operator
        self.door_io = door_io
        self.reader = reader
        self.door_reader = door_reader
        self.camera = camera
        self.decoder = decoder
        self.interactive = interactive
        self.step_timeout_s = step_timeout_s
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._ntp = ntp_synchronized or ntp_synchronized_from_systemd
        self.unavailable = dict(unavailable or {})

    def _absent(self, component: str, check: str, key: str, detail: str, hint: str) -> CheckResult:
        """Result for a check whose device is missing: FAIL if it failed to open, else SKIPPED."""
        if key in self.unavailable:
            return CheckResult(
                component,
                check,
                Status.FAIL,
                f"cannot open: {self.unavailable[key]}",
                f"Check the [hardware.{key}] settings and the device; see the agent log.",
            )
        return CheckResult(component, check, Status.SKIPPED, detail, hint)

    # -- running ----------------------------------------------------------
    def run(self) -> SelfTestReport:
        """Run every check in installer order and return the report."""
        report = SelfTestReport(
            started_at=self._now().isoformat(timespec="seconds"), host=socket.gethostname()
        )
        for check in (
            self.check_clock,
            self.check_relay,
            self.check_door_contact,
            self.check_rex,
            self.check_fire_input,
            self.check_tamper,
            self.check_nfc,
            self.check_wall_readers,
            self.check_camera,
            self.check_qr,
        ):
            t0 = time.monotonic()
            try:
                results = list(check())
            except Exception as exc:  # a broken device must not end the whole test
                log.exception("self-test check %s crashed", check.__name__)
                name = check.__name__.removeprefix("check_")
                results = [
                    CheckResult(
                        name,
                        "error",
                        Status.FAIL,
                        f"{type(exc).__name__}: {exc}",
                        "see the agent log for the traceback",
                    )
                ]
            elapsed = time.monotonic() - t0
            for r in results:
                report.results.append(dataclasses.replace(r, duration_s=round(elapsed, 3)))
        report.finished_at = self._now().isoformat(timespec="seconds")
        return report

    def _ask(self, key: str, message: str) -> Step:
        step = Step(key, message, self.step_timeout_s)
        self.operator.perform(step)
        return step

    # -- checks -----------------------------------------------------------
    def check_clock(self) -> Iterable[CheckResult]:
        """Wall clock later than the software's floor date; NTP sync reported."""
        now = self._now()
        synced = self._ntp()
        sync_text = {True: "NTP synchronised", False: "NTP not synchronised", None: "NTP unknown"}
        detail = f"{now.isoformat(timespec='seconds')} ({sync_text[synced]})"
        if now < CLOCK_FLOOR:
            yield CheckResult(
                "clock",
                "wall_clock",
                Status.FAIL,
                detail,
                "The clock is in the past: connect the network (NTP) or fit an RTC battery; "
                "invitations cannot be checked without a sane clock.",
                data={"ntp_synchronized": synced},
            )
        else:
            hint = "" if synced else "Check NTP (timedatectl) once the network is up."
            yield CheckResult(
                "clock", "wall_clock", Status.PASS, detail, hint, data={"ntp_synchronized": synced}
            )

    def check_relay(self) -> Iterable[CheckResult]:
        """Pulse the lock relay; with read-back wiring, check it follows."""
        io = self.door_io
        if io is None:
            yield self._absent(
                "relay",
                "pulse",
                "gpio",
                "no GPIO configured",
                "Configure [hardware.gpio] to test the lock relay.",
            )
            return
        pulse_s = 0.5
        io.pulse_unlock(pulse_s)
        energised = _wait_until(lambda: io.lock_relay_energised, 0.2)
        if io.relay_feedback is None and "relay_feedback" not in io.wired_inputs:
            _wait_until(lambda: not io.lock_relay_energised, pulse_s + 1)
            if energised:
                yield CheckResult(
                    "relay",
                    "pulse",
                    Status.PASS,
                    f"relay driven for {pulse_s} s (no read-back wired: listen for the click)",
                    "Wire the relay's auxiliary contact to relay_feedback for an automatic check.",
                )
            else:
                yield CheckResult(
                    "relay",
                    "pulse",
                    Status.FAIL,
                    "relay output did not switch",
                    "Check lock_relay_pin and the relay board's supply.",
                )
            return
        followed = _wait_until(lambda: io.relay_feedback is True, pulse_s)
        released = _wait_until(lambda: io.relay_feedback is False, pulse_s + 1.0)
        if followed and released:
            yield CheckResult(
                "relay",
                "pulse_readback",
                Status.PASS,
                f"relay energised and released in a {pulse_s} s pulse (read back)",
            )
        else:
            what = "never closed" if not followed else "did not release"
            yield CheckResult(
                "relay",
                "pulse_readback",
                Status.FAIL,
                f"relay read-back {what}",
                "Check the relay board, its active level (lock_relay_active_high) and the "
                "feedback wire; a relay that does not release leaves the door unlocked.",
            )

    def _input_cycle(
        self,
        component: str,
        name: str,
        do: tuple[str, str],
        undo: tuple[str, str] | None,
        hint: str,
    ) -> Iterable[CheckResult]:
        io = self.door_io
        if io is None or name not in io.wired_inputs:
            yield self._absent(
                component,
                name,
                "gpio",
                "not wired in the configuration",
                f"Configure hardware.gpio.{name} if this door has one.",
            )
            return
        if io.is_asserted(name):
            yield CheckResult(component, name, Status.FAIL, "reads asserted at rest", hint)
            return
        if not self.interactive:
            yield CheckResult(
                component,
                name,
                Status.SKIPPED,
                "reads idle at rest; not exercised",
                "Run the self-test with an installer at the door to exercise it.",
            )
            return
        self._ask(*do)
        if not _wait_until(lambda: io.is_asserted(name) is True, self.step_timeout_s):
            yield CheckResult(component, name, Status.FAIL, f"no change seen after '{do[1]}'", hint)
            return
        if undo is not None:
            self._ask(*undo)
        if not _wait_until(lambda: io.is_asserted(name) is False, self.step_timeout_s):
            yield CheckResult(
                component, name, Status.FAIL, "asserted but never returned to idle", hint
            )
            return
        yield CheckResult(component, name, Status.PASS, "asserted and released as expected")

    def check_door_contact(self) -> Iterable[CheckResult]:
        """Door contact reads closed at rest, open when opened, closed again."""
        yield from self._input_cycle(
            "door",
            "door_contact",
            ("open_door", "Open the door"),
            ("close_door", "Close the door"),
            "Check the reed switch, its magnet gap and door_contact.asserted_level.",
        )

    def check_rex(self) -> Iterable[CheckResult]:
        """Request-to-exit button reads pressed, then released."""
        yield from self._input_cycle(
            "door",
            "rex",
            ("press_rex", "Press and release the exit button"),
            None,
            "Check the REX button wiring and rex.asserted_level.",
        )

    def _idle_input(self, component: str, name: str, hint: str) -> Iterable[CheckResult]:
        io = self.door_io
        if io is None or name not in io.wired_inputs:
            yield self._absent(
                component,
                name,
                "gpio",
                "not wired in the configuration",
                f"Configure hardware.gpio.{name} if this door has one.",
            )
        elif io.is_asserted(name):
            yield CheckResult(component, name, Status.FAIL, "asserted at rest", hint)
        else:
            yield CheckResult(component, name, Status.PASS, "idle at rest")

    def check_fire_input(self) -> Iterable[CheckResult]:
        """The fire-alarm release input must read idle when there is no alarm."""
        yield from self._idle_input(
            "fire",
            "fire",
            "The fire input reads 'alarm' with no alarm: check the fire panel's contact "
            "(normally closed) and fire.asserted_level. Never bypass it.",
        )

    def check_tamper(self) -> Iterable[CheckResult]:
        """The enclosure tamper switch must read closed."""
        yield from self._idle_input(
            "tamper", "tamper", "Close the enclosure lid; check the tamper switch wiring."
        )

    def check_nfc(self) -> Iterable[CheckResult]:
        """Reader present (it opened); then a badge tapped within the timeout is read."""
        if self.reader is None:
            yield self._absent(
                "nfc",
                "reader",
                "nfc",
                "no NFC reader configured",
                "Configure [hardware.nfc] to test the badge reader.",
            )
            return
        yield CheckResult("nfc", "reader", Status.PASS, f"reader open ({_describe(self.reader)})")
        if not self.interactive:
            yield CheckResult(
                "nfc",
                "badge_read",
                Status.SKIPPED,
                "no installer to tap a badge",
                "Run the self-test with an installer and a test badge.",
            )
            return
        self._ask("tap_badge", "Tap a badge on the reader")
        read = self.reader.read(timeout=self.step_timeout_s)
        if read is None:
            yield CheckResult(
                "nfc",
                "badge_read",
                Status.FAIL,
                "no badge read before the timeout",
                "Check the reader's cable and antenna position; try another badge.",
            )
            return
        uid = getattr(read, "uid_hex", None) or bytes(read.uid).hex().upper()
        technology = getattr(read, "technology", "?")
        yield CheckResult(
            "nfc",
            "badge_read",
            Status.PASS,
            f"read UID {uid} ({technology})",
            data={"uid": uid, "technology": str(technology)},
        )

    def check_wall_readers(self) -> Iterable[CheckResult]:
        """Each wall reader: Secure Channel up (OSDP), LED and buzzer test, a card read."""
        readers = self.door_reader
        if readers is None:
            yield self._absent(
                "reader",
                "wall_reader",
                "reader",
                "no wall reader configured",
                "Configure [hardware.reader] on a door with OSDP (or Wiegand) readers.",
            )
            return
        osdp = readers.backend == "osdp"
        for name in readers.reader_names():
            yield from self._check_wall_reader(readers, name, osdp)

    def _check_wall_reader(self, readers: Any, name: str, osdp: bool) -> Iterable[CheckResult]:
        component = f"reader:{name}"
        if not osdp:
            yield CheckResult(
                component,
                "secure_channel",
                Status.SKIPPED,
                "INSECURE: Wiegand sends card numbers in clear (sniffed and replayed)",
                "Replace it with an OSDP reader and use the Secure Channel (docs/readers.md).",
            )
        elif not readers.settings.secure_channel:
            yield CheckResult(
                component,
                "secure_channel",
                Status.FAIL,
                "Secure Channel is off ([hardware.reader] secure_channel = false)",
                "Turn it on and commission the reader (docs/readers.md, Commissioning).",
            )
        elif readers.wait_secure(name, min(5.0, self.step_timeout_s)):
            yield CheckResult(component, "secure_channel", Status.PASS, "online, Secure Channel up")
        else:
            alarms = sorted(k for (r, k) in readers.alarms() if r == name)
            yield CheckResult(
                component,
                "secure_channel",
                Status.FAIL,
                f"no Secure Channel ({', '.join(alarms) or 'no answer'})",
                "reader_offline: check the RS-485 pair (A/B), power, address and baud rate; "
                "reader_insecure: wrong key or a reader in install mode: commission it.",
                data={"alarms": alarms},
            )
            return
        if osdp:
            acked = readers.test_outputs(name)
            if all(acked.values()):
                yield CheckResult(
                    component,
                    "led_buzzer",
                    Status.PASS,
                    "LED (red, green, amber) and buzzer commands acknowledged",
                    data=acked,
                )
            else:
                yield CheckResult(
                    component,
                    "led_buzzer",
                    Status.FAIL,
                    f"LED/buzzer not acknowledged: {acked}",
                    "The reader refused or ignored LED/buzzer commands: check its OSDP "
                    "profile (LED and audible control) and firmware.",
                    data=acked,
                )
        if not self.interactive:
            yield CheckResult(
                component,
                "card_read",
                Status.SKIPPED,
                "no installer to present a card",
                "Run the self-test with an installer and the kit's test card.",
            )
            return
        self._ask(f"present_card:{name}", f"Present the test card at reader {name}")
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            presented = readers.read(max(0.0, deadline - time.monotonic()))
            if presented is None or presented.reader == name:
                break
        if presented is None:
            yield CheckResult(
                component,
                "card_read",
                Status.FAIL,
                "no card read before the timeout",
                "Check the reader's wiring and that the card's technology is one it reads.",
            )
            return
        card = presented.card
        readers.feedback(name, "deny" if card.error else "grant")
        if card.error:
            yield CheckResult(
                component,
                "card_read",
                Status.FAIL,
                f"{card.bit_length}-bit read refused: {card.error}",
                "Set [hardware.reader] formats to the site's card format (docs/readers.md).",
            )
            return
        what = card.decoded.format if card.decoded else card.format
        yield CheckResult(
            component,
            "card_read",
            Status.PASS,
            f"read a {card.bit_length}-bit card ({what})",
            data={"bits": card.bit_length, "format": what},
        )

    def check_camera(self) -> Iterable[CheckResult]:
        """Frames arrive at a usable rate with a sane exposure."""
        if self.camera is None:
            yield self._absent(
                "camera",
                "frames",
                "camera",
                "no camera configured",
                "Configure [hardware.camera] on a kiosk.",
            )
            return
        from hardware.camera import Frame, exposure_stats, is_sane_exposure

        frames: list[Frame] = []
        t0 = time.monotonic()
        deadline = t0 + 5.0
        while len(frames) < 10 and time.monotonic() < deadline:
            frame = self.camera.read(timeout=max(0.0, deadline - time.monotonic()))
            if frame is not None:
                frames.append(frame)
        elapsed = time.monotonic() - t0
        if not frames:
            yield CheckResult(
                "camera",
                "frames",
                Status.FAIL,
                "no frame within 5 s",
                "Check the camera ribbon/USB cable and that no other program uses it.",
            )
            return
        fps = (len(frames) - 1) / max(frames[-1].timestamp - frames[0].timestamp, 1e-6)
        h, w = frames[-1].image.shape[:2]
        yield CheckResult(
            "camera",
            "frames",
            Status.PASS,
            f"{len(frames)} frames of {w}x{h} in {elapsed:.1f} s (~{fps:.0f}/s)",
            data={"fps": round(fps, 1), "width": w, "height": h},
        )
        stats = exposure_stats(frames[-1])
        if is_sane_exposure(frames[-1]):
            yield CheckResult(
                "camera",
                "exposure",
                Status.PASS,
                f"mean {stats['mean']:.0f}/255",
                data=_jsonable(stats),
            )
        else:
            yield CheckResult(
                "camera",
                "exposure",
                Status.FAIL,
                f"mean {stats['mean']:.0f}/255: too dark, too bright or flat",
                "Check the lens cap, lighting and glare on the camera window.",
                data=_jsonable(stats),
            )

    def check_qr(self) -> Iterable[CheckResult]:
        """The QR test card shown to the camera decodes to the expected text."""
        if self.camera is None or self.decoder is None:
            yield self._absent(
                "qr",
                "test_card",
                "qr",
                "no camera or QR decoder configured",
                "Configure [hardware.camera] and [hardware.qr] on a kiosk.",
            )
            return
        if not self.interactive:
            yield CheckResult(
                "qr",
                "test_card",
                Status.SKIPPED,
                "no installer to show the card",
                "Run the self-test with an installer and the QR test card.",
            )
            return
        self._ask("show_qr_card", "Hold the QR test card in front of the camera")
        deadline = time.monotonic() + self.step_timeout_s
        seen: list[str] = []
        while time.monotonic() < deadline:
            frame = self.camera.read(timeout=max(0.0, deadline - time.monotonic()))
            if frame is None:
                continue
            for code in self.decoder.decode(frame.image):
                if code.text == TEST_CARD_PAYLOAD:
                    yield CheckResult("qr", "test_card", Status.PASS, "test card decoded")
                    return
                if code.text not in seen:
                    seen.append(code.text)
        detail = f"decoded other codes: {seen}" if seen else "no QR code decoded"
        yield CheckResult(
            "qr",
            "test_card",
            Status.FAIL,
            detail,
            "Show the Portier test card 20-40 cm from the camera; check focus.",
        )


def _describe(device: Any) -> str:
    return getattr(device, "description", None) or type(device).__name__


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(float(v), 4) if isinstance(v, int | float) else v) for k, v in stats.items()}


def ntp_synchronized_from_systemd() -> bool | None:
    """True/False from systemd-timesyncd's marker file; None where timesyncd is absent."""
    if not Path("/run/systemd/timesync").exists():
        return None
    return Path("/run/systemd/timesync/synchronized").exists()


def write_test_card(path: str | Path, scale: int = 12) -> Path:
    """Write the QR test card (PNG) that installers print and show to the camera."""
    import segno

    path = Path(path)
    segno.make(TEST_CARD_PAYLOAD, error="h", micro=False).save(str(path), scale=scale, border=4)
    return path
