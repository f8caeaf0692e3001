"""The kiosk's parts without a window: configuration, demo material, wording, the
import rule, the scan loop and demo camera with the real QR decoder, photos,
colours, Kivy input settings, and the agent link against a real agent.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardware.camera import CameraSettings, open_camera
from hardware.errors import DeviceError
from hardware.qr import QRSettings, open_decoder
from hardware.qr.synth import render
from kiosk import demo_material, wording
from kiosk.config import ConfigError, demo_config, load_config, parse_config
from kiosk.demo_camera import DemoCamera
from kiosk.demo_material import DemoBadge, DemoGuard, DemoInvitation, DemoMaterial, MaterialError
from kiosk.photo import encode_jpeg, portrait_crop
from kiosk.scanner import Debouncer, Scanner
from portier_common.reasons import Reason
from tests.support.kiosk_rig import running_rig

KIOSK = Path(wording.__file__).resolve().parent
REPO = KIOSK.parent
TOKEN = "PT1:" + "6BFOXN*TS0BI$ZD.P9KGPZ6I%D" * 6


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


# -- the import rule and import side effects ----------------------------------------------
def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    return names


def test_kiosk_imports_nothing_from_the_edge_agent_but_its_client(tmp_path):
    offenders = []
    for path in sorted(KIOSK.rglob("*.py")):
        for name in _imports(path):
            if name == "edge_agent" or (
                name.startswith("edge_agent.") and not name.startswith("edge_agent.client")
            ):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, "\n".join(offenders)
    # The scan sees lazy imports inside functions too, and it would see a violation
    # (import-linter's contracts in pyproject.toml check the same rule, transitively):
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from edge_agent.store import Store\n")
    assert "edge_agent.store" in _imports(lazy)


@pytest.mark.processes
def test_kiosk_modules_import_without_kivy_or_side_effects(tmp_path):
    code = (
        "import sys\n"
        "import kiosk, kiosk.cli, kiosk.config, kiosk.demo_material, kiosk.scanner, "
        "kiosk.agent_link, kiosk.wording, kiosk.i18n, kiosk.photo, kiosk.demo_camera, kiosk.app\n"
        "assert 'kivy' not in sys.modules, 'kivy imported'\n"
        "assert 'cv2' not in sys.modules, 'cv2 imported'\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".kivy").exists()


# -- wording --------------------------------------------------------------------------------
def test_every_reason_code_has_plain_visitor_wording():
    denials = {r.value for r in Reason} - {Reason.GRANTED.value}
    assert set(wording.DENIAL) == denials
    for code, words in wording.DENIAL.items():
        assert words.title and words.text, code
        assert "_" not in words.title, f"{code}: a code, not words"


def test_unknown_reason_falls_back_to_generic_wording():
    assert wording.denial("something_new") is wording.UNKNOWN_REASON
    assert wording.denial("expired") is wording.DENIAL["expired"]


def test_badges_get_badge_words():
    assert set(wording.BADGE_DENIAL) <= set(wording.DENIAL)
    assert wording.denial("expired", "badge").title == "Your badge has expired"
    assert wording.denial("lockdown", "badge") is wording.DENIAL["lockdown"]
    for words in wording.BADGE_DENIAL.values():
        assert "invitation" not in (words.title + words.text).lower()


# -- configuration --------------------------------------------------------------------------
EXAMPLE = """
[agent]
socket = "run/agent.sock"
timeout_s = 3

[camera]
backend = "opencv"
device = "/dev/v4l/by-id/usb-cam"
resolution = [640, 480]

[qr]
backend = "zxing"
retries = ["candidates", "upscale"]

[ui]
language = "fr"
idle_timeout_s = 30
directions = { en = "Reception is on your left.", fr = "L'accueil est à gauche." }

[input]
provider = "mtdev"
device = "/dev/input/event3"
"""


def test_config_file_is_typed_and_relative_paths_resolve(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.agent.socket == tmp_path / "run" / "agent.sock"
    assert config.agent.timeout_s == 3.0 and isinstance(config.agent.timeout_s, float)
    assert config.camera == CameraSettings(backend="opencv", device="/dev/v4l/by-id/usb-cam")
    assert config.qr.retries == ("candidates", "upscale")
    assert config.ui.language == "fr" and config.ui.directions.fr == "L'accueil est à gauche."
    assert config.input.provider == "mtdev" and config.source == path


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"ui": {"langage": "fr"}}, "ui.langage"),
        ({"ui": {"language": "de"}}, "ui.language"),
        ({"ui": {"idle_timeout_s": "long"}}, "ui.idle_timeout_s"),
        ({"ui": {"idle_timeout_s": 1}}, "ui.idle_timeout_s"),
        ({"camera": {"backend": "webcam"}}, "camera.backend"),
        ({"camera": {"backend": "opencv", "resolution": [641, 480]}}, "camera.resolution"),
        ({"qr": {"retries": ["magic"]}}, "qr.retries"),
        ({"input": {"provider": "mouse", "device": "/dev/input/event1"}}, "input.device"),
        ({"agent": {"socket": 5}}, "agent.socket"),
        ({"extra": {}}, "extra"),
    ],
)
def test_config_errors_name_the_key(change, key, tmp_path):
    data = {"camera": {"backend": "replay", "replay_path": "frames"}}
    for section, values in change.items():
        data[section] = {**data.get(section, {}), **values}
    with pytest.raises(ConfigError) as error:
        parse_config(data, tmp_path)
    assert error.value.key == key, str(error.value)
    assert str(error.value).startswith(key)


def test_camera_section_is_required(tmp_path):
    with pytest.raises(ConfigError, match=r"^camera: required"):
        parse_config({}, tmp_path)


def test_unreadable_or_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ui\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def _demo_dir(tmp_path: Path) -> Path:
    shutil.copy(REPO / "edge_agent" / "data" / "simulator.toml", tmp_path / "agent.toml")
    return tmp_path


def test_demo_config_comes_from_the_demo_agent_toml(tmp_path):
    config = demo_config(_demo_dir(tmp_path))
    assert config.agent.socket == Path("/tmp/portier-sim/agent.sock")
    assert (
        config.camera.backend == "replay" and config.camera.replay_path == tmp_path / "sim-camera"
    )
    assert config.qr.backend == "zxing"
    assert config.ui.demo and not config.ui.fullscreen and config.demo_dir == tmp_path


def test_demo_dir_kiosk_toml_wins(tmp_path):
    demo = _demo_dir(tmp_path)
    (demo / "kiosk.toml").write_text('[camera]\nbackend = "replay"\nreplay_path = "x"\n')
    config = demo_config(demo)
    assert config.ui.demo and config.camera.replay_path == demo / "x"


def test_cli_check_and_errors(tmp_path, capsys):
    from kiosk.cli import main

    path = tmp_path / "kiosk.toml"
    path.write_text(EXAMPLE)
    assert main(["--config", str(path), "--check"]) == 0
    assert "OK" in capsys.readouterr().out
    path.write_text('[camera]\nbackend = "replay"\nreplay_path = "x"\n[ui]\nsize = [10, 10]\n')
    assert main(["--config", str(path), "--check"]) == 2
    assert "ui.size" in capsys.readouterr().err
    demo = tmp_path / "demo"
    demo.mkdir()
    assert main(["--demo", str(_demo_dir(demo)), "--check"]) == 0
    assert "demo" in capsys.readouterr().out


def test_kivy_gets_exactly_one_input_provider():
    from kiosk.app import kivy_input_options
    from kiosk.config import InputSection, KioskConfig

    def options(**kw):
        camera = CameraSettings(backend="replay", replay_path=Path("x"))
        return kivy_input_options(KioskConfig(camera=camera, input=InputSection(**kw)))

    assert options() == {"mouse": "mouse,disable_multitouch"}
    assert options(provider="mtdev") == {"touchscreen": "probesysfs,provider=mtdev"}
    assert options(provider="hidinput", device="/dev/input/event2") == {
        "touchscreen": "hidinput,/dev/input/event2"
    }


# -- demo material ----------------------------------------------------------------------------
def _material() -> DemoMaterial:
    return DemoMaterial(
        invitations=(
            DemoInvitation("valid", TOKEN, "Ada Lovelace", "Grace Hopper", "granted"),
            DemoInvitation("forged", TOKEN + "A", expect="bad_signature"),
        ),
        badges=(DemoBadge("staff", "04A1B2C3D4E5F6", "Sam"), DemoBadge("unknown", "0499")),
        guard=DemoGuard("04C0FFEE", "2468", "Gabrielle"),
    )


def test_demo_material_round_trips_through_the_file(tmp_path):
    material = _material()
    path = demo_material.write(material, demo_material.material_path(tmp_path))
    assert path == tmp_path / "demo" / "demo.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a PIN
    assert demo_material.load(tmp_path) == material
    assert demo_material.load(path).invitation("forged").expect == "bad_signature"
    assert demo_material.load(path).badge("unknown").uid == "0499"
    assert material.invitation("expired") is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"format": "other"}, "format"),
        (
            {"format": demo_material.FORMAT, "invitations": [{"label": "mystery", "token": "x"}]},
            "invitations.label",
        ),
        (
            {"format": demo_material.FORMAT, "badges": [{"label": "staff", "uid": "zz"}]},
            "badges.uid",
        ),
        ({"format": demo_material.FORMAT, "guard": {"uid": "04C0FFEE", "pin": "12"}}, "guard.pin"),
        (
            {"format": demo_material.FORMAT, "badges": [{"label": "staff", "uid": "04", "x": 1}]},
            "badges[0]",
        ),
        ({"format": demo_material.FORMAT, "tokens": []}, "tokens"),
    ],
)
def test_demo_material_errors_name_the_field(data, field):
    with pytest.raises(MaterialError, match=rf"^{re_escape(field)}"):
        DemoMaterial.from_dict(data)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_demo_material_labels_are_unique():
    with pytest.raises(MaterialError, match="twice"):
        DemoMaterial(badges=(DemoBadge("staff", "04"), DemoBadge("staff", "05")))


# -- scan loop ----------------------------------------------------------------------------------
def test_debouncer_accepts_a_code_once_per_sighting():
    clock = Clock()
    debouncer = Debouncer(2.0, clock)
    assert debouncer.accept("A")
    for _ in range(10):  # held in front of the camera: refused
        clock.now += 0.5
        assert not debouncer.accept("A")
    assert debouncer.accept("B")
    clock.now += 2.5  # out of sight long enough
    assert debouncer.accept("A")
    debouncer.forget()
    assert debouncer.accept("A")


def _frames_dir(tmp_path: Path, payloads: list[str | None], repeat: int = 3) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    n = 0
    for seed, payload in enumerate(payloads):
        for _ in range(repeat):
            kind, texts = ("none", None) if payload is None else ("paper", [payload])
            cv2.imwrite(str(folder / f"f-{n:03d}.png"), render(kind, seed, texts).image)
            n += 1
    return folder


def test_scanner_decodes_replayed_frames_and_debounces_repeats(tmp_path):
    folder = _frames_dir(tmp_path, [None, TOKEN, "V-00012345", None])
    settings = CameraSettings(backend="replay", replay_path=folder, replay_rate=0)
    codes: list[str] = []
    done = threading.Event()
    scanner = Scanner(
        lambda: open_camera(settings),
        open_decoder(),
        on_code=lambda text: (codes.append(text), len(codes) == 2 and done.set()),
        debounce_s=60,
    )
    scanner.start()
    try:
        assert done.wait(20), f"decoded {codes}"
        assert wait(lambda: scanner.frames_decoded >= 24)  # every frame, twice round
    finally:
        scanner.stop()
    assert codes == [TOKEN, "V-00012345"]  # each once, though each was in 3 frames, twice
    assert not scanner.running and scanner.latest() is None


def test_scanner_without_decoding_only_keeps_frames(tmp_path):
    folder = _frames_dir(tmp_path, [TOKEN], repeat=1)
    settings = CameraSettings(backend="replay", replay_path=folder, replay_rate=0)
    codes: list[str] = []
    scanner = Scanner(lambda: open_camera(settings), open_decoder(), on_code=codes.append)
    scanner.start(decode=False)
    try:
        assert wait(lambda: scanner.frames_read > 20)
        assert scanner.latest() is not None and scanner.frames_decoded == 0
        scanner.set_decoding(True)
        assert wait(lambda: codes == [TOKEN])
    finally:
        scanner.stop()


@pytest.mark.parametrize("quick", [False, True])
def test_a_throttled_scanner_reads_codes_between_full_decodes_with_its_quick_pass(tmp_path, quick):
    # The attract screen runs the full pipeline at most every interval; the frames in
    # between get the raw decoder, so a code held up is read at the camera's rate.
    folder = _frames_dir(tmp_path, [None, None, TOKEN], repeat=1)
    settings = CameraSettings(backend="replay", replay_path=folder, replay_rate=0, loop=True)
    codes: list[str] = []
    scanner = Scanner(
        lambda: open_camera(settings),
        open_decoder(),
        on_code=codes.append,
        quick=open_decoder(QRSettings(pipeline=False)) if quick else None,
    )
    scanner.start(min_interval_s=3600)  # one full decode (frame 1, empty), then throttled
    try:
        assert wait(lambda: scanner.frames_read > 30)
        if quick:
            assert wait(lambda: codes == [TOKEN])
    finally:
        scanner.stop()
    assert scanner.frames_decoded == 1
    assert codes == ([TOKEN] if quick else [])


def test_scanner_reports_a_failing_camera_and_reopens_it(tmp_path):
    folder = _frames_dir(tmp_path, [TOKEN], repeat=1)
    settings = CameraSettings(backend="replay", replay_path=folder, replay_rate=0)
    attempts = []
    errors: list[str] = []
    codes: list[str] = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise DeviceError("/dev/video0: no such device")
        return open_camera(settings)

    scanner = Scanner(flaky, open_decoder(), on_code=codes.append, on_error=errors.append)
    scanner.start()
    try:
        assert wait(lambda: codes == [TOKEN], 15)
    finally:
        scanner.stop()
    assert len(errors) == 2 and "no such device" in errors[0]
    assert scanner.error is None


def test_demo_camera_holds_a_token_up_for_the_real_decoder():
    settings = CameraSettings(backend="replay", replay_path=Path("unused"), fps=50)
    decoder = open_decoder()
    with DemoCamera(settings, hold_s=30) as camera:
        empty = camera.read(timeout=2)
        assert empty.image.shape == (480, 640) and decoder.decode(empty.image) == []
        camera.show(TOKEN, "screen")
        seen = [t.text for _ in range(4) for t in decoder.decode(camera.read(2).image)]
        assert TOKEN in seen and camera.showing == TOKEN
        camera.hide()
        frame = camera.read(timeout=2)
        assert camera.showing is None and decoder.decode(frame.image) == []
        with pytest.raises(ValueError, match="style"):
            camera.show(TOKEN, "hologram")


# -- photos -------------------------------------------------------------------------------------
def test_pass_photo_is_a_greyscale_portrait_jpeg():
    frame = render("none", 3).image
    crop = portrait_crop(frame)
    assert crop.shape == (480, 360)
    jpeg = encode_jpeg(crop)
    back = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.shape == (480, 360) and back.ndim == 2
    assert np.abs(back.astype(int) - crop.astype(int)).mean() < 6  # same picture
    with pytest.raises(ValueError, match="image"):
        encode_jpeg(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(crop, quality=0)


# -- colours ------------------------------------------------------------------------------------
def _luminance(colour) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = colour[:3]
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def _contrast(a, b) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_colours_have_high_contrast():
    import importlib.util

    spec = importlib.util.spec_from_file_location("theme", KIOSK / "ui" / "theme.py")
    theme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theme)  # without importing Kivy
    pairs = {
        "white on BG": (theme.WHITE, theme.BG, 18.0),
        "white on PANEL": (theme.WHITE, theme.PANEL, 14.2),
        "white on NEUTRAL": (theme.WHITE, theme.NEUTRAL, 8.3),
        "white on OK": (theme.WHITE, theme.OK, 6.0),
        "white on BAD": (theme.WHITE, theme.BAD, 7.3),
        "ink on PRIMARY": (theme.INK, theme.PRIMARY, 14.4),
        "ink on WARN": (theme.INK, theme.WARN, 9.8),
        "muted on BG": (theme.MUTED, theme.BG, 10.5),
        "muted on PANEL": (theme.MUTED, theme.PANEL, 8.3),
        "disabled": (theme.DISABLED_INK, theme.DISABLED_BG, 6.0),
    }
    for name, (text, background, documented) in pairs.items():
        ratio = _contrast(text, background)
        assert ratio >= 4.5, name
        assert round(ratio, 1) == documented, f"{name}: {ratio:.1f}, theme.py says {documented}"


# -- the agent link against a real agent ----------------------------------------------------------
@pytest.fixture
def rig():
    with running_rig() as agent:
        yield agent


@pytest.mark.processes
def test_agent_link_reports_status_events_and_outages(rig):
    from edge_agent.client import AgentUnavailable, ApiError
    from kiosk.agent_link import AgentLink

    delivered: list[tuple[str, object]] = []
    lock = threading.Lock()

    def deliver(fn):  # the UI thread, here: run at once, record order
        with lock:
            fn()

    link = AgentLink(rig.socket, deliver=deliver, status_interval_s=0.3, retry_interval_s=0.2)
    link.on_online(lambda online: delivered.append(("online", online)))
    link.on_event(lambda event: delivered.append(("event", event)))
    link.start()
    try:
        assert wait(lambda: ("online", True) in delivered)
        assert wait(lambda: rig.client().status()["event_streams"] >= 1)
        rig.client().simulate("badge", uid="04A1B2C3D4E5F6")
        assert wait(
            lambda: any(
                kind == "event" and e["type"] == "access.decision" and e["source"] == "nfc"
                for kind, e in delivered
            )
        )
        results: list[object] = []
        link.submit(lambda: link.client.present_qr(TOKEN), results.append, results.append)
        assert wait(lambda: results)
        assert results[0]["reason"] == "malformed"  # not a Portier token: a decision
        link.submit(link.guard_client.recent, results.append, results.append)
        assert wait(lambda: len(results) == 2)
        assert isinstance(results[1], ApiError) and results[1].status == 401
        rig.stop()
        assert wait(lambda: ("online", False) in delivered)
        link.submit(link.client.status, results.append, results.append)
        assert wait(lambda: len(results) == 3)
        assert isinstance(results[2], AgentUnavailable)
        rig.start()
        assert wait(lambda: delivered.count(("online", True)) == 2)
        assert wait(lambda: rig.client().status()["event_streams"] >= 1, 10)
    finally:
        link.stop()
    assert link.submit(link.client.status) is None  # stopped: nothing runs


def test_scanner_stop_is_prompt_with_a_slow_camera(tmp_path):
    folder = _frames_dir(tmp_path, [None], repeat=1)
    settings = CameraSettings(backend="replay", replay_path=folder, replay_rate=0.2, loop=True)
    scanner = Scanner(lambda: open_camera(settings), open_decoder(), on_code=lambda _t: None)
    scanner.start()
    assert wait(lambda: scanner.frames_read >= 1)
    worker = scanner._thread
    scanner.stop(timeout=3)
    # The next frame is 5 s away: the thread ended within stop's 3 s only because closing
    # the camera cut its wait short.
    assert not worker.is_alive()


def test_config_dataclasses_are_frozen(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ui.language = "en"


def test_packaged_device_configuration_is_valid():
    config = load_config(KIOSK / "data" / "kiosk.toml")
    assert config.camera.backend == "picamera2"
    assert config.input.provider == "mtdev" and config.ui.fullscreen
    assert config.agent.socket == Path("/run/portier/agent.sock")
