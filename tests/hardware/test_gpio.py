"""The door's GPIO lines under MockFactory: the code that runs on a Pi, driven by a simulator."""

from __future__ import annotations

import threading
import time

import pytest

from hardware.errors import BackendUnavailable, DeviceError, UnknownBackend
from hardware.gpio import (
    DoorSimulator,
    GpioSettings,
    InputSettings,
    create_pin_factory,
    open_door_io,
)


def full_settings(**overrides) -> GpioSettings:
    base = dict(
        backend="mock",
        lock_relay_pin=17,
        aux_relay_pin=18,
        relay_feedback=InputSettings(pin=5, asserted_level="high"),
        door_contact=InputSettings(pin=27, asserted_level="high"),
        rex=InputSettings(pin=22, asserted_level="low"),
        fire=InputSettings(pin=6, asserted_level="high"),
        tamper=InputSettings(pin=13, asserted_level="high"),
        debounce_s=0.02,
    )
    base.update(overrides)
    return GpioSettings(**base)


class Events:
    """Collects input callbacks and lets a test wait for one without sleeping blindly."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bool, float]] = []
        self._cond = threading.Condition()

    def __call__(self, name: str, asserted: bool, ts: float) -> None:
        with self._cond:
            self.items.append((name, asserted, ts))
            self._cond.notify_all()

    def wait_for(self, name: str, asserted: bool, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(n == name and a == asserted for n, a, _ in self.items):
                left = deadline - time.monotonic()
                assert left > 0, f"no {name}={asserted} event; got {self.items}"
                self._cond.wait(left)

    def names(self) -> list[tuple[str, bool]]:
        return [(n, a) for n, a, _ in self.items]


@pytest.fixture
def door():
    io = open_door_io(full_settings())
    sim = DoorSimulator(io)
    events = Events()
    io.on_input = events
    yield io, sim, events
    sim.close()
    io.close()


def test_starts_safe_and_at_rest(door):
    io, sim, _ = door
    assert io.lock_relay_energised is False
    assert sim.relay_energised is False
    assert io.relay_feedback is False
    assert io.door_open is False
    assert io.is_asserted("rex") is False
    assert io.is_asserted("fire") is False
    assert io.is_asserted("tamper") is False


def test_pulse_unlock_states_and_times(door):
    io, sim, events = door
    pin = io.lock_relay_pin
    pin.clear_states()
    io.pulse_unlock(0.3)
    events.wait_for("relay_feedback", True)
    assert sim.relay_energised
    events.wait_for("relay_feedback", False)
    assert not io.lock_relay_energised
    # gpiozero's own assertion: ~0 s low, then high, then low ~0.3 s later
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.3, False)])
    assert [s.state for s in pin.states] == [False, True, False]


def test_lock_cuts_a_pulse_short(door):
    io, _, events = door
    io.pulse_unlock(5)
    events.wait_for("relay_feedback", True)
    io.lock()
    events.wait_for("relay_feedback", False)
    assert not io.lock_relay_energised


def test_active_low_relay_board():
    settings = full_settings(
        lock_relay_active_high=False,
        relay_feedback=InputSettings(pin=5, asserted_level="low"),
    )
    with open_door_io(settings) as io:
        sim = DoorSimulator(io)
        # de-energised relay on an active-low board means the pin is HIGH
        assert io.lock_relay_pin.state is True
        assert io.relay_feedback is False
        io.unlock()
        assert io.lock_relay_pin.state is False
        assert sim.relay_energised


def test_inputs_follow_wiring(door):
    io, sim, events = door
    sim.open_door()
    events.wait_for("door_contact", True)
    assert io.door_open is True
    sim.close_door()
    events.wait_for("door_contact", False)
    sim.press_rex(0.05)
    events.wait_for("rex", True)
    events.wait_for("rex", False)
    sim.fire_alarm(True)
    events.wait_for("fire", True)
    sim.tamper(True)
    events.wait_for("tamper", True)
    assert io.is_asserted("fire") and io.is_asserted("tamper")


def test_rex_is_active_low_electrically(door):
    io, sim, events = door
    pin = io.input_pin("rex")
    assert pin.state is True  # pulled up at rest
    sim.set_input("rex", True)
    events.wait_for("rex", True)
    assert pin.state is False


def test_contact_chatter_is_debounced():
    settings = full_settings(debounce_s=0.1)
    with open_door_io(settings) as io:
        sim = DoorSimulator(io)
        events = Events()
        io.on_input = events
        # A bouncing reed switch: many edges within the debounce window,
        # settling on "open". Only one change may be reported.
        for i in range(15):
            sim.set_input("door_contact", i % 2 == 0)
        events.wait_for("door_contact", True)
        time.sleep(0.25)  # let any (wrong) extra report arrive
        assert events.names() == [("door_contact", True)]
        # chatter that settles back where it started reports nothing
        for i in range(6):
            sim.set_input("door_contact", i % 2 == 1)
        time.sleep(0.25)
        assert events.names() == [("door_contact", True)]


def test_aux_relay(door):
    io, _, _ = door
    assert io.has_aux
    io.aux(True)
    aux_pin = io.factory.pin(18)
    assert aux_pin.state is True
    io.aux(False)
    assert aux_pin.state is False


def test_close_is_idempotent_and_de_energises():
    io = open_door_io(full_settings())
    io.unlock()
    assert io.lock_relay_energised
    relay_pin = io.lock_relay_pin
    io.close()
    io.close()
    assert io.closed
    assert relay_pin.state is False


def test_broken_relay_feedback_is_visible(door):
    io, sim, events = door
    sim.break_relay_feedback()
    io.unlock()
    time.sleep(0.1)
    assert io.lock_relay_energised is True
    assert io.relay_feedback is False
    assert ("relay_feedback", True) not in events.names()


def test_callback_errors_do_not_kill_inputs(door):
    io, sim, events = door

    def boom(name, asserted, ts):
        events(name, asserted, ts)
        raise RuntimeError("handler bug")

    io.on_input = boom
    sim.open_door()
    events.wait_for("door_contact", True)
    sim.close_door()
    events.wait_for("door_contact", False)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"backend": "pigpio"}, "backend"),
        ({"lock_relay_pin": 40}, "lock_relay_pin"),
        ({"lock_relay_pin": True}, "lock_relay_pin"),
        ({"aux_relay_pin": 17}, "aux_relay_pin"),
        ({"rex": InputSettings(pin=27)}, "rex"),
        ({"debounce_s": 5.0}, "debounce_s"),
    ],
)
def test_settings_errors_name_the_field(kwargs, key):
    with pytest.raises(ValueError, match=rf"^{key}: "):
        full_settings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"pin": 1}, "pin"),
        ({"pin": 5, "asserted_level": "up"}, "asserted_level"),
        ({"pin": 5, "pull": "sideways"}, "pull"),
    ],
)
def test_input_settings_errors(kwargs, key):
    with pytest.raises(ValueError, match=rf"^{key}: "):
        InputSettings(**kwargs)


def test_unknown_backend_is_refused():
    settings = full_settings()
    object.__setattr__(settings, "backend", "gpiod")
    with pytest.raises(UnknownBackend):
        create_pin_factory(settings)


@pytest.mark.parametrize("backend", ["rpigpio", "lgpio"])
def test_real_backends_say_why_they_cannot_load_here(backend):
    # This machine is not a Pi: the real backends must refuse clearly, never
    # hand back a simulator in disguise.
    with pytest.raises(BackendUnavailable, match=backend):
        open_door_io(full_settings(backend=backend))


def test_pin_conflict_with_claimed_pin_is_a_device_error():
    settings = full_settings()
    factory = create_pin_factory(settings)
    from gpiozero import DigitalOutputDevice

    squatter = DigitalOutputDevice(17, pin_factory=factory)
    try:
        with pytest.raises(DeviceError):
            open_door_io(settings, pin_factory=factory)
    finally:
        squatter.close()
