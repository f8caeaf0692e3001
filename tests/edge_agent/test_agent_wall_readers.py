"""The agent with OSDP wall readers: card read -> decision -> relay and LED, alarms, lockdown.

The readers are libosdp's own Peripheral Device on an in-memory bus; the door is the
simulator's (gpiozero MockFactory); the decision is the agent's policy over a real store.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.config import parse_config
from edge_agent.devices import Devices, open_devices
from edge_agent.door import ManualScheduler
from edge_agent.store import Badge, Delta, Store, StoreSettings
from hardware.reader import BUILTIN_FORMATS, PeripheralSettings, ReaderSettings, open_door_reader
from hardware.reader.emulator import EmulatedBus, EmulatedReader
from hardware.reader.osdp import write_key
from portier_common.pins import hash_pin
from portier_common.settings import ConfigError
from tests.edge_agent.test_agent import NOW, Clock, make_config

H10301 = BUILTIN_FORMATS["h10301"]
STAFF_CARD = H10301.encode(42, 1001)
STAFF_UID = STAFF_CARD.to_bytes(4, "big").hex().upper()  # the 26 bits, right-aligned
NO_PIN_CARD = H10301.encode(42, 1003)
NO_PIN_UID = NO_PIN_CARD.to_bytes(4, "big").hex().upper()
LED, GREEN, RED = 2, 2, 1


@dataclass
class DoorRig:
    agent: Agent
    store: Store
    devices: Devices
    reader: EmulatedReader
    clock: Clock

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.store.journal.events(limit=10_000) if e.type == kind]


def wait_until(condition: Any, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"condition not met within {timeout} s")


def build_rig(
    tmp_path: Path, stack: ExitStack, *, require_pin: bool = False, staff_data: Any = None
) -> DoorRig:
    key = os.urandom(16)
    write_key(tmp_path / "entry.scbk", key)
    bus = EmulatedBus()
    emulated = EmulatedReader(bus, 1, key=key).start()
    stack.callback(emulated.stop)
    config = make_config(
        tmp_path, door={"accept_uid": True}, guard={"max_pin_failures": 3, "lockout_s": 60}
    )
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    store = stack.enter_context(
        Store.open(StoreSettings(path=config.paths.database, reserve_bytes=0), clock=clock)
    )
    store.cache.apply_delta(
        Delta(
            cursor="c-1",
            badges=[
                Badge(STAFF_UID, "uid", "Sam Staff", data=staff_data),
                Badge(NO_PIN_UID, "uid", "Noa No-PIN"),
            ],
        ),
        synced_at_ms=int((NOW - 600) * 1000),
    )
    devices = stack.enter_context(open_devices(config.hardware, camera=False, nfc=False))
    settings = ReaderSettings(
        backend="osdp",
        peripherals=(
            PeripheralSettings("entry", 1, tmp_path / "entry.scbk", require_pin=require_pin),
        ),
        pin_timeout_s=1,
    )
    devices.door_reader = open_door_reader(settings, channel=bus.controller_channel())
    agent = Agent(
        config,
        store,
        devices,
        scheduler=ManualScheduler(),
        wall_clock=lambda: clock.wall,
        mono_clock=lambda: clock.mono,
    )
    stack.callback(agent.close)
    assert devices.door_reader.wait_secure("entry", 3.0)
    agent.start_reader()
    return DoorRig(agent, store, devices, emulated, clock)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[DoorRig]:
    with ExitStack() as stack:
        yield build_rig(tmp_path, stack)


def test_card_read_decision_relay_and_green_led(rig: DoorRig) -> None:
    rig.reader.present_card(STAFF_CARD, 26)
    decision = wait_until(lambda: rig.events("access.decision"))[0].payload
    assert decision["granted"] is True and decision["source"] == "reader:entry"
    assert rig.devices.door_sim.relay_energised
    led = rig.reader.wait_for(lambda c: c["command"] == LED and c.get("temporary"))
    assert led is not None and led["on_color"] == GREEN


def test_unknown_card_denied_red_led_relay_stays_off(rig: DoorRig) -> None:
    rig.reader.present_card(H10301.encode(42, 1002), 26)
    decision = wait_until(lambda: rig.events("access.decision"))[0].payload
    assert decision["granted"] is False
    led = rig.reader.wait_for(lambda c: c["command"] == LED and c.get("temporary"))
    assert led is not None and led["on_color"] == RED
    assert not rig.devices.door_sim.relay_energised


def test_bad_read_is_journaled_and_denied_without_a_decision(rig: DoorRig) -> None:
    rig.reader.present_card(STAFF_CARD ^ 1 << 4, 26)  # noise flipped a bit
    bad = wait_until(lambda: rig.events("reader.bad_read"))[0].payload
    assert bad["reader"] == "entry" and "parity" in bad["error"]
    assert rig.events("access.decision") == []
    assert not rig.devices.door_sim.relay_energised


def test_lockdown_shows_on_the_reader_and_denies(rig: DoorRig) -> None:
    def at_rest(color: int) -> Any:
        return rig.reader.wait_for(
            lambda c: c["command"] == LED and not c["temporary"] and c["on_color"] == color
        )

    assert at_rest(0) is not None  # the agent started in normal mode: the LED off at rest
    rig.agent.set_mode("lockdown", by="guard:g-7", why="drill")
    assert at_rest(RED) is not None  # red at rest
    rig.reader.present_card(STAFF_CARD, 26)
    decision = wait_until(lambda: rig.events("access.decision"))[0].payload
    assert decision["granted"] is False and decision["reason"] == "lockdown"
    assert not rig.devices.door_sim.relay_energised


def test_reader_gone_is_an_alarm_in_the_journal(rig: DoorRig) -> None:
    rig.reader.stop()
    raised = wait_until(lambda: rig.events("alarm.raised"), timeout=2.0)[0].payload
    assert raised["alarm"] == "reader_offline" and raised["reader"] == "entry"


def test_config_takes_card_and_pin_and_resolves_key_files(tmp_path: Path) -> None:
    import tomllib

    from edge_agent.config import simulator_config_path

    data = tomllib.loads(simulator_config_path().read_text())
    reader = {
        "backend": "osdp",
        "peripherals": [{"name": "entry", "address": 1, "key_file": "keys/entry.scbk"}],
    }
    data["hardware"]["reader"] = reader
    config = parse_config(data, tmp_path)
    assert config.hardware.reader is not None
    assert config.hardware.reader.peripherals[0].key_file == tmp_path / "keys" / "entry.scbk"
    reader["peripherals"][0]["require_pin"] = True  # card + PIN: checked by the agent
    assert parse_config(data, tmp_path).hardware.reader.peripherals[0].require_pin  # type: ignore[union-attr]
    reader["peripherals"][0]["require_pin"] = "yes"
    with pytest.raises(ConfigError, match=r"require_pin: expected true or false"):
        parse_config(data, tmp_path)
    data["hardware"]["reader"] = {"backend": "wiegand", "d0_pin": 17}  # the lock relay's
    with pytest.raises(ConfigError, match=r"^hardware\.reader\.d0_pin: is already used"):
        parse_config(data, tmp_path)


def test_cli_commissions_then_rekeys_a_reader_on_a_serial_port(tmp_path: Path) -> None:
    """`edge-agent reader commission` / `rekey` on a real serial device (a pty) with the
    emulated reader behind it; commissioning again is refused."""
    import tomllib

    import tomli_w

    from edge_agent.cli import main
    from edge_agent.config import simulator_config_path
    from hardware.reader.emulator import PtyEnd
    from hardware.reader.osdp import read_key

    pty = PtyEnd()
    emulated = EmulatedReader(None, 3, channel=pty, install_mode=True).start()
    try:
        data = tomllib.loads(simulator_config_path().read_text())
        data["hardware"]["reader"] = {
            "backend": "osdp",
            "port": pty.port,
            "peripherals": [{"name": "entry", "address": 3, "key_file": "entry.scbk"}],
        }
        data["paths"] = {"state_dir": str(tmp_path / "state")}
        config = tmp_path / "agent.toml"
        config.write_bytes(tomli_w.dumps(data).encode())
        assert main(["reader", "commission", "entry", "--config", str(config)]) == 0
        first = read_key(tmp_path / "entry.scbk")
        assert emulated.key == first
        assert main(["reader", "commission", "entry", "--config", str(config)]) == 1
        assert main(["reader", "rekey", "entry", "--config", str(config)]) == 0
        assert read_key(tmp_path / "entry.scbk") == emulated.key != first
        assert main(["reader", "rekey", "nobody", "--config", str(config)]) == 2
    finally:
        emulated.stop()
        pty.close()


def test_status_lists_the_wall_readers_as_documented(rig: DoorRig) -> None:
    from tests.edge_agent.test_local_api import _spec, conformance

    status = rig.agent.status()
    [entry] = status["wall_readers"]
    assert (entry["name"], entry["online"], entry["secure_channel"]) == ("entry", True, True)
    assert entry["alarms"] == []
    spec = _spec()
    assert conformance(status, spec["components"]["schemas"]["Status"], spec) == []
    rig.reader.tamper(True)
    wait_until(lambda: rig.agent.status()["wall_readers"][0]["alarms"] == ["reader_tamper"])


# -- card + PIN --------------------------------------------------------------------------------
#: The staff badge's PIN: its hash is all the door holds (a cheap scrypt cost for the tests;
#: verify_pin takes any cost from 2**10 up).
STAFF_PIN = "493817"
AMBER = 3


@pytest.fixture
def pin_rig(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[DoorRig]:
    caplog.set_level(logging.DEBUG)  # every logger, libosdp's included
    data = {"pin_hash": hash_pin(STAFF_PIN, n=2**10)}
    with ExitStack() as stack:
        yield build_rig(tmp_path, stack, require_pin=True, staff_data=data)


def decisions(rig: DoorRig, count: int) -> list[dict[str, Any]]:
    found = wait_until(lambda: len(rig.events("access.decision")) >= count and True)
    assert found
    return [e.payload for e in rig.events("access.decision")]


def led_after(rig: DoorRig, seen: int, color: int) -> Any:
    return rig.reader.wait_for(
        lambda c: c["command"] == LED and c.get("temporary") and c["on_color"] == color,
        after=seen,
    )


def card_then_pin(rig: DoorRig, card: int, keys: str | None) -> int:
    """Present ``card``, wait for the amber prompt, type ``keys``; the commands seen before."""
    seen = len(rig.reader.commands())
    rig.reader.present_card(card, 26)
    assert led_after(rig, seen, AMBER) is not None  # the reader asks for the PIN
    if keys is not None:
        rig.reader.type_keys(keys)
    return seen


def assert_pin_kept_secret(rig: DoorRig, caplog: pytest.LogCaptureFixture) -> None:
    journal = json.dumps([e.payload for e in rig.store.journal.events(limit=10_000)])
    assert STAFF_PIN not in journal and "pin_hash" not in journal
    assert STAFF_PIN not in caplog.text
    assert "scrypt$" not in journal + caplog.text


def test_card_then_pin_grants_and_opens(pin_rig: DoorRig, caplog: pytest.LogCaptureFixture) -> None:
    seen = card_then_pin(pin_rig, STAFF_CARD, STAFF_PIN[:2])
    time.sleep(0.2)
    assert pin_rig.events("access.decision") == []  # the card alone decides nothing
    assert not pin_rig.devices.door_sim.relay_energised
    pin_rig.reader.type_keys(STAFF_PIN[2:] + "#")
    [decision] = decisions(pin_rig, 1)
    assert decision["granted"] is True and decision["reason"] == "granted"
    assert decision["source"] == "reader:entry"
    assert pin_rig.devices.door_sim.relay_energised
    assert led_after(pin_rig, seen, GREEN) is not None
    assert_pin_kept_secret(pin_rig, caplog)


def test_wrong_pin_is_denied_and_a_few_lock_the_badge_out(
    pin_rig: DoorRig, caplog: pytest.LogCaptureFixture
) -> None:
    # Three wrong PINs in a row ([guard] max_pin_failures = 3) lock the badge out.
    for n in (1, 2, 3):
        seen = card_then_pin(pin_rig, STAFF_CARD, "111111#")
        decision = decisions(pin_rig, n)[-1]
        assert decision["granted"] is False and decision["reason"] == "wrong_pin"
        assert decision["extra"]["pin_failures"] == n
        assert led_after(pin_rig, seen, RED) is not None
    assert decision["extra"]["locked_s"] == 60
    # Locked out: even the right PIN is refused, without being checked.
    card_then_pin(pin_rig, STAFF_CARD, STAFF_PIN + "#")
    assert decisions(pin_rig, 4)[-1]["reason"] == "pin_locked_out"
    assert not pin_rig.devices.door_sim.relay_energised
    # The lock-out survives nothing but time: after lockout_s the right PIN opens.
    pin_rig.clock.advance(61)
    card_then_pin(pin_rig, STAFF_CARD, STAFF_PIN + "#")
    assert decisions(pin_rig, 5)[-1]["granted"] is True
    assert pin_rig.devices.door_sim.relay_energised
    assert pin_rig.store.guard_lockouts.get(f"pin:{STAFF_UID}") is None  # forgotten
    assert_pin_kept_secret(pin_rig, caplog)


def test_a_right_pin_forgets_earlier_failures(pin_rig: DoorRig) -> None:
    for n, keys in enumerate(("000000#", "000000#", STAFF_PIN + "#", "000000#"), start=1):
        card_then_pin(pin_rig, STAFF_CARD, keys)
        decisions(pin_rig, n)
    last = pin_rig.events("access.decision")[-1].payload
    assert last["reason"] == "wrong_pin" and last["extra"]["pin_failures"] == 1


def test_pin_not_typed_in_time_is_journaled_pin_timeout(
    pin_rig: DoorRig, caplog: pytest.LogCaptureFixture
) -> None:
    seen = card_then_pin(pin_rig, STAFF_CARD, STAFF_PIN[:3])  # never finished
    [decision] = decisions(pin_rig, 1)  # pin_timeout_s = 1
    assert decision["granted"] is False and decision["reason"] == "pin_timeout"
    assert led_after(pin_rig, seen, RED) is not None
    assert not pin_rig.devices.door_sim.relay_energised
    pin_rig.reader.type_keys("#")  # too late: it belongs to no card
    time.sleep(0.3)
    assert len(pin_rig.events("access.decision")) == 1
    # A timeout is not a guess: it counts no failure.
    assert pin_rig.store.guard_lockouts.get(f"pin:{STAFF_UID}") is None
    assert STAFF_PIN[:3] not in json.dumps(decision)
    assert_pin_kept_secret(pin_rig, caplog)


def test_lockdown_while_the_pin_is_typed_is_journaled_lockdown(
    pin_rig: DoorRig, caplog: pytest.LogCaptureFixture
) -> None:
    """A lockdown that comes between the card and its '#' refuses that card in the journal
    (it used to vanish: the lockdown's feedback dropped the pending card unjournaled)."""
    card_then_pin(pin_rig, STAFF_CARD, STAFF_PIN[:3])  # the card read, the PIN half typed
    seen = len(pin_rig.reader.commands())
    pin_rig.agent.set_mode("lockdown", by="guard:g-7", why="intruder")
    [decision] = decisions(pin_rig, 1)
    assert decision["granted"] is False and decision["reason"] == "lockdown"
    assert decision["source"] == "reader:entry" and decision["credential_id"] == STAFF_UID
    assert "extra" not in decision or "pin_failures" not in decision["extra"]
    red_at_rest = pin_rig.reader.wait_for(
        lambda c: c["command"] == LED and not c["temporary"] and c["on_color"] == RED, after=seen
    )
    assert red_at_rest is not None  # the reader shows the lockdown
    assert not pin_rig.devices.door_sim.relay_energised
    # The rest of the PIN belongs to no card any more: nothing more is decided.
    pin_rig.reader.type_keys(STAFF_PIN[3:] + "#")
    time.sleep(1.3)  # past pin_timeout_s: no late pin_timeout either
    assert len(pin_rig.events("access.decision")) == 1
    assert not pin_rig.devices.door_sim.relay_energised
    # Not a guess: no failure counted; and no digit typed reaches the journal or the log.
    assert pin_rig.store.guard_lockouts.get(f"pin:{STAFF_UID}") is None
    assert STAFF_PIN[:3] not in json.dumps(decision)
    assert_pin_kept_secret(pin_rig, caplog)


def test_a_pin_cut_by_lockdown_is_refused_before_the_door_is_in_lockdown(
    pin_rig: DoorRig,
) -> None:
    """The reader shows the lockdown (and presents the card) before the door takes the new
    mode: a card decided in between is refused ``lockdown`` although the policy grants."""
    from hardware.reader import CardRead, Presentation

    assert pin_rig.agent.mode.value == "normal"
    card = CardRead.from_bits("entry", STAFF_CARD, 26, (H10301,))
    result = pin_rig.agent.present_wall_card(
        Presentation(card, pin_interrupted=True, interrupted_by="lockdown")
    )
    assert result["granted"] is False and result["reason"] == "lockdown"
    [decision] = decisions(pin_rig, 1)
    assert decision["reason"] == "lockdown" and decision["source"] == "reader:entry"
    assert not pin_rig.devices.door_sim.relay_energised
    assert pin_rig.store.guard_lockouts.get(f"pin:{STAFF_UID}") is None


def test_lockdown_lifted_while_the_pin_is_typed_is_journaled_pin_interrupted(
    pin_rig: DoorRig, caplog: pytest.LogCaptureFixture
) -> None:
    """The door back to rest (``idle``) between the card and its '#' refuses that card
    ``pin_interrupted`` in the journal (it used to vanish: the idle signal dropped it)."""
    pin_rig.agent.set_mode("lockdown", by="guard:g-7", why="drill")
    card_then_pin(pin_rig, STAFF_CARD, STAFF_PIN[:3])  # the reader asks for the PIN anyway
    time.sleep(0.2)
    assert pin_rig.events("access.decision") == []
    pin_rig.agent.set_mode("normal", by="guard:g-7", why="drill over")
    [decision] = decisions(pin_rig, 1)
    assert decision["granted"] is False and decision["reason"] == "pin_interrupted"
    assert decision["source"] == "reader:entry" and decision["credential_id"] == STAFF_UID
    assert not pin_rig.devices.door_sim.relay_energised
    # The rest of the PIN belongs to no card: no grant, no late pin_timeout either.
    pin_rig.reader.type_keys(STAFF_PIN[3:] + "#")
    time.sleep(1.3)
    assert len(pin_rig.events("access.decision")) == 1
    assert not pin_rig.devices.door_sim.relay_energised
    assert pin_rig.store.guard_lockouts.get(f"pin:{STAFF_UID}") is None  # not a guess
    assert STAFF_PIN[:3] not in json.dumps(decision)
    assert_pin_kept_secret(pin_rig, caplog)


def test_another_card_before_the_pin_journals_the_first_pin_interrupted(
    pin_rig: DoorRig, caplog: pytest.LogCaptureFixture
) -> None:
    """A second card at the same reader while the first waits for its PIN: the first is
    refused ``pin_interrupted`` in the journal (it used to be replaced silently), the
    second waits for its own PIN."""
    card_then_pin(pin_rig, NO_PIN_CARD, "12")
    seen = card_then_pin(pin_rig, STAFF_CARD, None)  # the new card's prompt
    [first] = decisions(pin_rig, 1)
    assert first["granted"] is False and first["reason"] == "pin_interrupted"
    assert first["credential_id"] == NO_PIN_UID and first["source"] == "reader:entry"
    assert "12" not in json.dumps(first.get("extra", {}))
    # The second card's PIN is its own: it opens, as if the first had never been.
    pin_rig.reader.type_keys(STAFF_PIN + "#")
    second = decisions(pin_rig, 2)[-1]
    assert second["granted"] is True and second["credential_id"] == STAFF_UID
    assert pin_rig.devices.door_sim.relay_energised
    assert led_after(pin_rig, seen, GREEN) is not None
    # The same card twice: the first presentation journaled, the second decides.
    card_then_pin(pin_rig, STAFF_CARD, "000")
    card_then_pin(pin_rig, STAFF_CARD, "111111#")
    third, fourth = decisions(pin_rig, 4)[2:]
    assert third["reason"] == "pin_interrupted" and third["credential_id"] == STAFF_UID
    assert fourth["reason"] == "wrong_pin" and fourth["extra"]["pin_failures"] == 1
    assert_pin_kept_secret(pin_rig, caplog)


def test_an_earlier_cards_outcome_keeps_the_next_card_waiting(
    pin_rig: DoorRig, caplog: pytest.LogCaptureFixture
) -> None:
    """The grant of a card shown while the next card already waits for its PIN: the next
    card stays waiting (it used to be dropped unjournaled), its prompt comes back after
    the grant is shown, and its PIN is still taken."""
    from hardware.reader import CardRead, Presentation

    card_then_pin(pin_rig, NO_PIN_CARD, "12")  # the next card, read before the grant
    # The earlier card (its '#' came just before) reaches the agent now.
    earlier = CardRead.from_bits("entry", STAFF_CARD, 26, (H10301,))
    seen = len(pin_rig.reader.commands())
    result = pin_rig.agent.present_wall_card(Presentation(earlier, pin=STAFF_PIN))
    assert result["granted"] is True and pin_rig.devices.door_sim.relay_energised
    assert led_after(pin_rig, seen, GREEN) is not None  # the grant is shown
    reprompt = pin_rig.reader.wait_for(
        lambda c: c["command"] == LED and c.get("temporary") and c["on_color"] == AMBER,
        timeout=3.0,
        after=seen,
    )
    assert reprompt is not None  # then the waiting card's prompt again
    assert len(pin_rig.events("access.decision")) == 1  # the next card not decided yet
    pin_rig.reader.type_keys("34#")
    second = decisions(pin_rig, 2)[-1]
    assert second["credential_id"] == NO_PIN_UID and second["reason"] == "pin_required"
    assert "1234" not in json.dumps(second)
    assert_pin_kept_secret(pin_rig, caplog)


def test_badge_without_a_pin_is_denied_pin_required(pin_rig: DoorRig) -> None:
    seen = card_then_pin(pin_rig, NO_PIN_CARD, "123456#")
    [decision] = decisions(pin_rig, 1)
    assert decision["granted"] is False and decision["reason"] == "pin_required"
    assert decision["credential_id"] == NO_PIN_UID
    assert led_after(pin_rig, seen, RED) is not None
    assert not pin_rig.devices.door_sim.relay_energised


def test_policy_refusals_keep_their_reason_before_the_pin(pin_rig: DoorRig) -> None:
    card_then_pin(pin_rig, H10301.encode(42, 1002), STAFF_PIN + "#")  # not in the cache
    assert decisions(pin_rig, 1)[0]["reason"] == "unknown_badge"
    # An unknown card's wrong PINs lock nothing out (nor fill the table).
    assert pin_rig.store.guard_lockouts.count() == 0


def test_the_pin_of_one_badge_does_not_open_another(pin_rig: DoorRig) -> None:
    """The PIN is checked against the hash of the card just read, not any badge's."""
    pin_rig.store.cache.apply_delta(
        Delta(
            cursor="c-2",
            badges=[
                Badge(NO_PIN_UID, "uid", "Noa", data={"pin_hash": hash_pin("777777", n=2**10)})
            ],
        ),
        synced_at_ms=int((NOW - 60) * 1000),
    )
    card_then_pin(pin_rig, NO_PIN_CARD, STAFF_PIN + "#")
    assert decisions(pin_rig, 1)[0]["reason"] == "wrong_pin"
    card_then_pin(pin_rig, NO_PIN_CARD, "777777#")
    assert decisions(pin_rig, 2)[1]["granted"] is True


def test_agent_waits_for_an_rs485_adapter_missing_at_start(tmp_path: Path) -> None:
    """The agent's devices open the OSDP bus although its adapter is not plugged in yet:
    no device error that only a restart would clear; the reader is offline meanwhile and
    comes up once the adapter appears (tests/hardware/test_osdp.py covers the reconnection)."""
    import tomllib

    from edge_agent.config import simulator_config_path
    from hardware.reader.osdp import OsdpReader

    write_key(tmp_path / "entry.scbk", os.urandom(16))
    data = tomllib.loads(simulator_config_path().read_text())
    data["hardware"]["reader"] = {
        "backend": "osdp",
        "port": str(tmp_path / "usb-FTDI_RS485-if00-port0"),
        "peripherals": [{"name": "entry", "address": 1, "key_file": "entry.scbk"}],
    }
    config = parse_config(data, tmp_path)
    with open_devices(config.hardware, gpio=False, camera=False, printer=False) as devices:
        assert "reader" not in devices.errors
        readers = devices.door_reader
        assert isinstance(readers, OsdpReader)
        wait_until(lambda: ("entry", "reader_offline") in readers.alarms(), timeout=3.0)
