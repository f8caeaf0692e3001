"""CameraSettings validation, Frame, the rotate/fit helpers and backend selection."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware.camera import (
    BACKENDS,
    CameraSettings,
    Frame,
    FrameSource,
    backend_class,
    open_camera,
)
from hardware.camera.base import fit, rotate
from hardware.errors import UnknownBackend


def test_defaults() -> None:
    settings = CameraSettings(backend="opencv")
    assert settings.resolution == (640, 480)
    assert settings.capture_size == (640, 480)
    assert settings.fps == 30.0
    assert settings.rotation == 0
    assert settings.loop is False
    assert dataclasses.is_dataclass(settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.fps = 10.0  # type: ignore[misc]


def test_conversions() -> None:
    settings = CameraSettings(
        backend="replay", replay_path="frames", resolution=[320, 240], rotation=90
    )
    assert settings.resolution == (320, 240)
    assert isinstance(settings.replay_path, Path)
    assert settings.capture_size == (240, 320)
    assert CameraSettings(backend="opencv", device="/dev/video2").device == "/dev/video2"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"backend": "webcam"}, "backend"),
        ({"backend": None}, "backend"),
        ({"backend": "opencv", "device": -1}, "device"),
        ({"backend": "opencv", "device": ""}, "device"),
        ({"backend": "opencv", "device": 1.5}, "device"),
        ({"backend": "picamera2", "device": "/dev/video0"}, "device"),
        ({"backend": "opencv", "resolution": (641, 480)}, "resolution"),
        ({"backend": "opencv", "resolution": (0, 0)}, "resolution"),
        ({"backend": "opencv", "resolution": (640,)}, "resolution"),
        ({"backend": "opencv", "resolution": "640x480"}, "resolution"),
        ({"backend": "opencv", "resolution": (640.0, 480)}, "resolution"),
        ({"backend": "opencv", "resolution": (10000, 480)}, "resolution"),
        ({"backend": "opencv", "fps": 0}, "fps"),
        ({"backend": "opencv", "fps": -5}, "fps"),
        ({"backend": "opencv", "fps": math.nan}, "fps"),
        ({"backend": "opencv", "fps": True}, "fps"),
        ({"backend": "replay"}, "replay_path"),
        ({"backend": "replay", "replay_path": ""}, "replay_path"),
        ({"backend": "replay", "replay_path": "x", "replay_rate": -1}, "replay_rate"),
        ({"backend": "replay", "replay_path": "x", "replay_rate": math.inf}, "replay_rate"),
        ({"backend": "replay", "replay_path": "x", "loop": "yes"}, "loop"),
        ({"backend": "opencv", "rotation": 45}, "rotation"),
        ({"backend": "opencv", "rotation": 90.0}, "rotation"),
        ({"backend": "opencv", "stall_timeout": 0}, "stall_timeout"),
    ],
)
def test_invalid_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        CameraSettings(**kwargs)


def test_unknown_backend() -> None:
    with pytest.raises(UnknownBackend, match="webcam"):
        CameraSettings(backend="webcam")
    with pytest.raises(UnknownBackend, match="webcam"):
        backend_class("webcam")
    settings = CameraSettings(backend="opencv")
    object.__setattr__(settings, "backend", "webcam")  # as if built around validation
    with pytest.raises(UnknownBackend):
        open_camera(settings)


def test_every_backend_has_a_class() -> None:
    for name in BACKENDS:
        cls = backend_class(name)
        assert issubclass(cls, FrameSource)
        assert cls.name == name


@pytest.mark.processes
def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, threading\n"
        "import hardware.camera, hardware.camera.picamera2, hardware.camera.opencv\n"
        "import hardware.camera.replay, hardware.camera.exposure\n"
        "loaded = [m for m in ('cv2', 'picamera2', 'libcamera') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert threading.active_count() == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_frame_checks_its_image() -> None:
    frame = Frame(image=np.zeros((480, 640), np.uint8), timestamp=1.0, seq=0, source="x")
    assert (frame.width, frame.height) == (640, 480)
    with pytest.raises(ValueError, match="image"):
        Frame(image=np.zeros((480, 640, 3), np.uint8), timestamp=1.0, seq=0)
    with pytest.raises(ValueError, match="image"):
        Frame(image=np.zeros((480, 640), np.float32), timestamp=1.0, seq=0)
    with pytest.raises(ValueError, match="image"):
        Frame(image=[[0]], timestamp=1.0, seq=0)  # type: ignore[arg-type]


def test_rotate_is_clockwise() -> None:
    image = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    assert rotate(image, 0) is image
    assert rotate(image, 90).tolist() == [[4, 1], [5, 2], [6, 3]]
    assert rotate(image, 180).tolist() == [[6, 5, 4], [3, 2, 1]]
    assert rotate(image, 270).tolist() == [[3, 6], [2, 5], [1, 4]]
    assert rotate(image, 90).flags.c_contiguous


def test_fit_keeps_aspect_ratio() -> None:
    same = np.zeros((480, 640), np.uint8)
    assert fit(same, (640, 480)) is same

    # 16:9 into 4:3: scaled to 640x360, bands of the mean level above and below.
    wide = np.zeros((720, 1280), np.uint8)
    wide[:, 640:] = 200
    out = fit(wide, (640, 480))
    assert out.shape == (480, 640) and out.dtype == np.uint8
    assert np.all(out[:60] == 100) and np.all(out[-60:] == 100)
    assert np.all(out[60:420, :300] == 0) and np.all(out[60:420, 340:] == 200)

    small = np.full((240, 320), 77, np.uint8)
    assert np.all(fit(small, (640, 480)) == 77)
    assert fit(small, (640, 480)).shape == (480, 640)
