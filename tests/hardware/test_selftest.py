"""Installer self-test: passes end to end on the simulator, and fails loudly where it should."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config import load_config, simulator_config_path
from edge_agent.devices import open_devices
from hardware.camera import CameraSettings, open_camera
from hardware.qr import open_decoder
from hardware.qr.synth import render
from hardware.selftest import (
    TEST_CARD_PAYLOAD,
    SelfTest,
    SimulatedInstaller,
    Status,
    write_test_card,
)

EDGE_AGENT = [sys.executable, "-c", "import sys; from edge_agent.cli import main; sys.exit(main())"]


def by_check(report):
    return {(r.component, r.check): r for r in report.results}


@pytest.fixture
def sim_devices():
    cfg = load_config(simulator_config_path())
    devices = open_devices(cfg.hardware)
    yield devices
    devices.close()


def run(devices, **kw):
    operator = kw.pop("operator", None) or SimulatedInstaller(devices.door_sim, devices.reader)
    kw.setdefault("step_timeout_s", 2.0)
    return SelfTest(
        operator=operator,
        door_io=devices.door_io,
        reader=devices.reader,
        camera=devices.camera,
        decoder=devices.decoder,
        **kw,
    ).run()


@pytest.mark.processes
def test_cli_passes_end_to_end_on_the_simulator(tmp_path):
    report_file = tmp_path / "report.json"
    proc = subprocess.run(
        [*EDGE_AGENT, "selftest", "--simulator", "--json", "--report", str(report_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report == json.loads(report_file.read_text())
    assert report["ok"] is True
    statuses = {(r["component"], r["check"]): r["status"] for r in report["results"]}
    assert statuses == {
        ("clock", "wall_clock"): "pass",
        ("relay", "pulse_readback"): "pass",
        ("door", "door_contact"): "pass",
        ("door", "rex"): "pass",
        ("fire", "fire"): "pass",
        ("tamper", "tamper"): "pass",
        ("nfc", "reader"): "pass",
        ("nfc", "badge_read"): "pass",
        ("reader", "wall_reader"): "skipped",  # the simulator has no wall reader
        ("camera", "frames"): "pass",
        ("camera", "exposure"): "pass",
        ("qr", "test_card"): "pass",
    }


@pytest.mark.processes
def test_cli_text_report_and_exit_code(tmp_path):
    proc = subprocess.run(
        [*EDGE_AGENT, "selftest", "--simulator", "--no-prompts"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[SKIP] door    door_contact" in proc.stdout
    assert "PASSED:" in proc.stdout


def test_broken_relay_is_a_failure(sim_devices):
    sim_devices.door_sim.break_relay_feedback()
    result = by_check(run(sim_devices))[("relay", "pulse_readback")]
    assert result.status is Status.FAIL and "never closed" in result.detail
    assert "lock_relay_active_high" in result.hint


def test_fire_input_asserted_at_rest_fails(sim_devices):
    sim_devices.door_sim.fire_alarm(True)
    report = run(sim_devices)
    assert by_check(report)[("fire", "fire")].status is Status.FAIL
    assert not report.ok


def test_nobody_at_the_door_fails_the_interactive_checks(sim_devices):
    report = run(sim_devices, operator=SimulatedInstaller(None, None), step_timeout_s=0.3)
    results = by_check(report)
    assert results[("door", "door_contact")].status is Status.FAIL
    assert results[("door", "rex")].status is Status.FAIL
    assert results[("nfc", "badge_read")].status is Status.FAIL
    assert "no badge read" in results[("nfc", "badge_read")].detail


def test_dark_camera_fails_exposure(tmp_path, sim_devices):
    frames = tmp_path / "dark"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((480, 640), 4, np.uint8))
    sim_devices.camera.close()
    sim_devices.camera = open_camera(
        CameraSettings(backend="replay", replay_path=frames, replay_rate=30, loop=True)
    )
    results = by_check(run(sim_devices))
    assert results[("camera", "frames")].status is Status.PASS
    assert results[("camera", "exposure")].status is Status.FAIL
    assert results[("qr", "test_card")].status is Status.FAIL


def test_wrong_card_is_reported(tmp_path, sim_devices):
    frames = tmp_path / "other"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), render("paper", 3, ["SOMETHING-ELSE"]).image)
    sim_devices.camera.close()
    sim_devices.camera = open_camera(
        CameraSettings(backend="replay", replay_path=frames, replay_rate=30, loop=True)
    )
    result = by_check(run(sim_devices, step_timeout_s=1.0))[("qr", "test_card")]
    assert result.status is Status.FAIL and "SOMETHING-ELSE" in result.detail


@pytest.mark.processes
def test_device_that_cannot_open_fails_not_skips(tmp_path):
    cfg_text = (
        simulator_config_path().read_text().replace('backend = "mock"', 'backend = "rpigpio"')
    )
    cfg_text = cfg_text.replace(
        'replay_path = "sim-camera"',
        f'replay_path = "{simulator_config_path().parent / "sim-camera"}"',
    )
    path = tmp_path / "agent.toml"
    path.write_text(cfg_text)
    proc = subprocess.run(
        [*EDGE_AGENT, "selftest", "--config", str(path), "--json", "--no-prompts"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = {(r["component"], r["check"]): r for r in json.loads(proc.stdout)["results"]}
    relay = results[("relay", "pulse")]
    assert relay["status"] == "fail" and "rpigpio" in relay["detail"]
    assert results[("door", "door_contact")]["status"] == "fail"


def test_clock_in_the_past_fails(sim_devices):
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    report = run(sim_devices, now=lambda: past, ntp_synchronized=lambda: False)
    result = by_check(report)[("clock", "wall_clock")]
    assert result.status is Status.FAIL and "NTP not synchronised" in result.detail


def test_nothing_configured_is_all_skipped():
    report = SelfTest(operator=SimulatedInstaller()).run()
    statuses = {r.status for r in report.results if r.component != "clock"}
    assert statuses == {Status.SKIPPED}
    assert report.ok


def test_printed_test_card_decodes(tmp_path):
    card = write_test_card(tmp_path / "card.png")
    image = cv2.imread(str(card), cv2.IMREAD_GRAYSCALE)
    assert [c.text for c in open_decoder().decode(image)] == [TEST_CARD_PAYLOAD]


def test_report_text_has_hints(sim_devices):
    sim_devices.door_sim.break_relay_feedback()
    text = run(sim_devices).to_text()
    # Skipped: the wall-reader check (the simulator has none).
    assert "[FAIL] relay" in text and "hint:" in text and text.endswith("1 skipped")


def test_packaged_sim_frames_exist():
    frames = sorted((Path(simulator_config_path()).parent / "sim-camera").glob("*.png"))
    assert len(frames) >= 3
