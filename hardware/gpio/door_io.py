"""The door's lines as one object over any gpiozero pin factory.

The same class drives a real Pi (RPi.GPIO or lgpio pin factory) and the
simulator (gpiozero's MockFactory); only the factory differs, so the code
tested here is the code that runs at the door.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from hardware.errors import DeviceError
from hardware.gpio.settings import GpioSettings, InputSettings

log = logging.getLogger(__name__)

#: Called with (input name, asserted, monotonic timestamp) from a timer thread.
InputCallback = Callable[[str, bool, float], None]


class _Input:
    """One debounced input line.

    gpiozero's own ``bounce_time`` is not used: MockFactory ignores it and
    RPi.GPIO's suppresses edges *after* the first one, which can leave the last
    reported state wrong after contact chatter. Instead a change is reported
    only once the level has been stable for the debounce time, on every backend.
    """

    def __init__(
        self,
        name: str,
        cfg: InputSettings,
        factory: Any,
        debounce_s: float,
        notify: Callable[[str, bool, float], None],
    ) -> None:
        from gpiozero import DigitalInputDevice

        self.name = name
        self._cfg = cfg
        self._debounce_s = debounce_s
        self._notify = notify
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        pull_up = {"up": True, "down": False, "none": None}[cfg.pull]
        # With a pull resistor gpiozero fixes the active state itself; we keep
        # our own notion of "asserted" on top of the electrical level.
        active_state = True if pull_up is None else None
        self._dev = DigitalInputDevice(
            cfg.pin, pull_up=pull_up, active_state=active_state, pin_factory=factory
        )
        self._pull_up = pull_up
        self.asserted = self._read()
        self._dev.when_activated = self._edge
        self._dev.when_deactivated = self._edge

    def _read(self) -> bool:
        level_high = (not self._dev.value) if self._pull_up else bool(self._dev.value)
        return level_high == (self._cfg.asserted_level == "high")

    def _edge(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._debounce_s <= 0:
                self._timer = None
                self._settle()
                return
            self._timer = threading.Timer(self._debounce_s, self._settle)
            self._timer.daemon = True
            self._timer.start()

    def _settle(self) -> None:
        try:
            now = self._read()
        except Exception:  # the device was closed while the timer was pending
            return
        if now != self.asserted:
            self.asserted = now
            self._notify(self.name, now, time.monotonic())

    @property
    def pin(self) -> Any:
        """The gpiozero pin object (a MockPin under the simulator)."""
        return self._dev.pin

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._dev.close()


class DoorIO:
    """Lock relay, optional auxiliary relay and the door's inputs.

    Thread-safe for the relay methods. Input changes are delivered to
    :attr:`on_input` (from a timer thread) after debouncing; keep the callback
    short and hand work to your own thread or queue.

    Opening the lines de-energises both relays first, so a restart never
    leaves a door unlocked. :meth:`close` is idempotent and also de-energises.

    Raises :class:`~hardware.errors.DeviceError` if a pin cannot be claimed.
    """

    def __init__(self, settings: GpioSettings, pin_factory: Any) -> None:
        from gpiozero import DigitalOutputDevice
        from gpiozero.exc import GPIOZeroError

        self.settings = settings
        self.factory = pin_factory
        self.on_input: InputCallback | None = None
        self._closed = False
        self._relay_lock = threading.RLock()
        self._inputs: dict[str, _Input] = {}
        self._aux = None
        try:
            self._lock_relay = DigitalOutputDevice(
                settings.lock_relay_pin,
                active_high=settings.lock_relay_active_high,
                initial_value=False,
                pin_factory=pin_factory,
            )
            if settings.aux_relay_pin is not None:
                self._aux = DigitalOutputDevice(
                    settings.aux_relay_pin,
                    active_high=settings.aux_relay_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            for name, cfg in settings.inputs().items():
                self._inputs[name] = _Input(
                    name, cfg, pin_factory, settings.debounce_s, self._dispatch
                )
        except GPIOZeroError as exc:
            self.close()
            raise DeviceError(f"cannot claim the door's GPIO lines: {exc}") from exc
        log.info("door GPIO ready (lock relay GPIO%d)", settings.lock_relay_pin)

    def _dispatch(self, name: str, asserted: bool, ts: float) -> None:
        log.debug("input %s -> %s", name, "asserted" if asserted else "released")
        callback = self.on_input
        if callback is not None:
            try:
                callback(name, asserted, ts)
            except Exception:
                log.exception("on_input callback failed for %s", name)

    # -- relays -----------------------------------------------------------
    def unlock(self) -> None:
        """Energise the lock relay until :meth:`lock` (free access, open once held)."""
        with self._relay_lock:
            self._lock_relay.on()

    def lock(self) -> None:
        """De-energise the lock relay now, cancelling any pulse in progress."""
        with self._relay_lock:
            self._lock_relay.off()

    def pulse_unlock(self, seconds: float) -> None:
        """Energise the lock relay for ``seconds``, in the background.

        Returns at once. A new pulse restarts the time; :meth:`lock` cuts it short.
        """
        if not 0 < seconds <= 3600:
            raise ValueError(f"unlock time {seconds!r} s must be between 0 and 3600")
        with self._relay_lock:
            self._lock_relay.blink(on_time=seconds, off_time=0, n=1, background=True)

    @property
    def lock_relay_energised(self) -> bool:
        """True while the lock relay is energised (door unlocked)."""
        return bool(self._lock_relay.value)

    def aux(self, on: bool) -> None:
        """Switch the auxiliary relay (buzzer, LED). No-op when none is wired."""
        if self._aux is not None:
            with self._relay_lock:
                self._aux.value = bool(on)

    def aux_pulse(self, seconds: float) -> None:
        """Energise the auxiliary relay for ``seconds`` (a beep); no-op if not wired."""
        if self._aux is not None:
            with self._relay_lock:
                self._aux.blink(on_time=seconds, off_time=0, n=1, background=True)

    @property
    def has_aux(self) -> bool:
        """True when an auxiliary relay is configured."""
        return self._aux is not None

    # -- inputs -----------------------------------------------------------
    def is_asserted(self, name: str) -> bool | None:
        """Debounced state of input ``name``; None when it is not wired."""
        line = self._inputs.get(name)
        return None if line is None else line.asserted

    @property
    def door_open(self) -> bool | None:
        """True when the door contact reads open; None without a contact."""
        return self.is_asserted("door_contact")

    @property
    def relay_feedback(self) -> bool | None:
        """Relay read-back (True = energised); None when not wired."""
        return self.is_asserted("relay_feedback")

    @property
    def wired_inputs(self) -> tuple[str, ...]:
        """Names of the inputs that are configured."""
        return tuple(self._inputs)

    def input_pin(self, name: str) -> Any:
        """The underlying gpiozero pin of input ``name`` (KeyError if not wired)."""
        return self._inputs[name].pin

    @property
    def lock_relay_pin(self) -> Any:
        """The underlying gpiozero pin of the lock relay."""
        return self._lock_relay.pin

    # -- life cycle -------------------------------------------------------
    def safe_state(self) -> None:
        """De-energise every relay (locked, buzzer off)."""
        with self._relay_lock:
            lock_relay = getattr(self, "_lock_relay", None)
            if lock_relay is not None and not lock_relay.closed:
                lock_relay.off()
            if self._aux is not None and not self._aux.closed:
                self._aux.off()

    def close(self) -> None:
        """De-energise the relays and release every line. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.on_input = None
        self.safe_state()
        for line in self._inputs.values():
            line.close()
        for dev in (getattr(self, "_lock_relay", None), self._aux):
            if dev is not None:
                dev.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> DoorIO:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
