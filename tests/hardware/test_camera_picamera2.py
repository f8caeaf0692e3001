"""The picamera2 backend, fed a Picamera2-like object through its ``camera_factory`` seam.

picamera2 needs libcamera's Python bindings, which exist only on a Raspberry Pi. The
fake below reproduces what this backend relies on: configuration dictionaries,
``stream_configuration()`` with the stride the ISP chose, ``capture_array(...,
wait=False)`` returning a job and ``wait(job, timeout)`` returning the whole YUV420
buffer, ``(height * 3 // 2, stride)`` bytes, with padding at the end of each row.
"""

from __future__ import annotations

import errno
import itertools
import sys
import time

import cv2
import numpy as np
import pytest

from hardware.camera import CameraSettings, SourceClosed, open_camera
from hardware.camera.picamera2 import Picamera2Source, load_picamera2, y_plane
from hardware.errors import BackendUnavailable, DeviceError

PADDING = 0xEE  # bytes past the row width: must never reach a frame
CHROMA = 0x80  # U and V planes: must never reach a frame


def luma(seq: int, width: int, height: int) -> np.ndarray:
    """The Y plane the fake sensor delivers for frame ``seq``: distinct per frame."""
    rows = np.arange(height, dtype=np.uint32)[:, None]
    cols = np.arange(width, dtype=np.uint32)[None, :]
    return ((rows * 7 + cols * 3 + seq * 11) % 200 + 20).astype(np.uint8)


class FakeJob:
    def __init__(self, name: str) -> None:
        self.name = name


class FakePicamera2:
    """Just enough of Picamera2 for the backend; ``script`` says what each wait() does."""

    def __init__(
        self, camera_num: int, *, align: int = 64, round_width: int = 2, script=None, fail=None
    ) -> None:
        self.camera_num = camera_num
        self.align = align
        self.round_width = round_width
        self.script = list(script or [])
        self.fail = fail or {}
        self.calls: list[str] = []
        self.created: dict | None = None
        self.configured: dict | None = None
        self.jobs: list[FakeJob] = []
        self.delivered = 0
        self.started = False
        self.closed = 0

    def _maybe_fail(self, what: str) -> None:
        self.calls.append(what)
        if what in self.fail:
            raise self.fail[what]

    def create_video_configuration(self, **kwargs) -> dict:
        self._maybe_fail("create_video_configuration")
        self.created = kwargs
        return {"use_case": "video", **kwargs}

    def configure(self, config: dict) -> None:
        self._maybe_fail("configure")
        # libcamera may round the lores width up (ISP constraints), then pads rows.
        width, height = config["lores"]["size"]
        width = -(-width // self.round_width) * self.round_width
        stride = -(-width // self.align) * self.align
        self.configured = config
        self.lores = {"size": (width, height), "stride": stride, "format": "YUV420"}

    def stream_configuration(self, name: str) -> dict:
        assert name == "lores"
        return dict(self.lores)

    def start(self) -> None:
        self._maybe_fail("start")
        self.started = True

    def capture_array(self, name: str = "main", wait=None) -> FakeJob:
        self._maybe_fail("capture_array")
        assert wait is False, "the backend must not block inside capture_array"
        assert self.started
        job = FakeJob(name)
        self.jobs.append(job)
        return job

    def wait(self, job: FakeJob, timeout=None) -> np.ndarray:
        assert job is self.jobs[-1]
        assert timeout is not None
        step = self.script.pop(0) if self.script else "frame"
        if isinstance(step, BaseException):
            raise step
        width, height = self.lores["size"]
        stride = self.lores["stride"]
        buffer = np.full((height * 3 // 2, stride), CHROMA, np.uint8)
        buffer[:height, width:] = PADDING
        buffer[:height, :width] = luma(self.delivered, width, height)
        self.delivered += 1
        return buffer

    def stop(self) -> None:
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        self.calls.append("close")
        self.closed += 1


class Factory:
    """A stand-in for the Picamera2 class: callable, with global_camera_info()."""

    def __init__(self, cameras: int = 1, error: Exception | None = None, **fake_options) -> None:
        self.cameras = cameras
        self.error = error
        self.fake_options = fake_options
        self.made: list[FakePicamera2] = []

    def global_camera_info(self) -> list[dict]:
        return [{"Model": "imx708", "Num": i} for i in range(self.cameras)]

    def __call__(self, camera_num: int) -> FakePicamera2:
        if self.error is not None:
            raise self.error
        camera = FakePicamera2(camera_num, **self.fake_options)
        self.made.append(camera)
        return camera


def open_fake(factory: Factory | None = None, **settings_kwargs) -> Picamera2Source:
    settings = CameraSettings(backend="picamera2", **settings_kwargs)
    return open_camera(settings, camera_factory=factory or Factory())


def test_configuration() -> None:
    factory = Factory()
    with open_fake(factory, fps=25, device=0) as source:
        camera = factory.made[0]
        assert source.camera is camera
        assert camera.camera_num == 0
        assert camera.created == {
            "main": {"size": (640, 480), "format": "YUV420"},
            "lores": {"size": (640, 480), "format": "YUV420"},
            "controls": {"FrameDurationLimits": (40000, 40000)},
            "buffer_count": 4,
        }
        assert camera.configured["lores"] == camera.created["lores"]
        assert camera.calls == ["create_video_configuration", "configure", "start"]
        assert source.lores_stride == 640
    assert camera.calls[-2:] == ["stop", "close"]


def test_main_size_option() -> None:
    factory = Factory()
    settings = CameraSettings(backend="picamera2")
    with open_camera(settings, camera_factory=factory, main_size=(1280, 960)):
        assert factory.made[0].created["main"]["size"] == (1280, 960)
    with pytest.raises(ValueError, match="main_size"):
        Picamera2Source(settings, camera_factory=factory, main_size=(320, 240))


@pytest.mark.parametrize("resolution", [(640, 480), (600, 450), (336, 256)])
def test_frames_are_the_y_plane_without_padding(resolution: tuple[int, int]) -> None:
    width, height = resolution
    factory = Factory()
    with open_fake(factory, resolution=resolution) as source:
        stride = source.lores_stride
        frames = [source.read(1.0) for _ in range(3)]
    assert stride >= width and stride % 64 == 0
    for seq, frame in enumerate(frames):
        assert frame.seq == seq
        assert frame.image.shape == (height, width) and frame.image.dtype == np.uint8
        assert frame.image.flags.c_contiguous
        assert np.array_equal(frame.image, luma(seq, width, height))
        assert frame.source == "picamera2:0"
    if stride > width:
        assert PADDING not in np.unique(frames[0].image)


def test_timestamps_are_monotonic_and_increase() -> None:
    before = time.monotonic()
    with open_fake() as source:
        stamps = [source.read(1.0).timestamp for _ in range(5)]
    assert before < stamps[0] <= time.monotonic()
    assert all(a < b for a, b in itertools.pairwise(stamps))


def test_rotation_asks_the_camera_for_the_unrotated_size() -> None:
    factory = Factory()
    with open_fake(factory, resolution=(640, 480), rotation=270) as source:
        frame = source.read(1.0)
    assert factory.made[0].created["lores"]["size"] == (480, 640)
    assert frame.image.shape == (480, 640)
    assert np.array_equal(frame.image, np.rot90(luma(0, 480, 640), 1))


def test_lores_size_changed_by_libcamera_is_scaled_back() -> None:
    # This fake ISP rounds widths up to a multiple of 32: asked 630, it gives 640.
    factory = Factory(round_width=32, align=128)
    with open_fake(factory, resolution=(630, 472)) as source:
        frame = source.read(1.0)
        assert source.lores_stride == 640
    assert factory.made[0].lores["size"] == (640, 472)
    assert frame.image.shape == (472, 630)
    # Scaled by 630/640 with its aspect ratio kept: 630x465, centred, 3 + 4 blank rows.
    expected = cv2.resize(luma(0, 640, 472), (630, 465), interpolation=cv2.INTER_AREA)
    assert np.array_equal(frame.image[3:468], expected)
    assert len(np.unique(frame.image[:3])) == 1 and len(np.unique(frame.image[468:])) == 1


def test_timeout_returns_none_and_keeps_the_capture_queued() -> None:
    factory = Factory(script=[TimeoutError(), TimeoutError(), "frame"])
    with open_fake(factory) as source:
        assert source.read(0.01) is None
        assert source.read(0.01) is None
        frame = source.read(0.01)
        camera = factory.made[0]
        assert len(camera.jobs) == 1  # one capture request, waited on three times
        assert frame is not None and frame.seq == 0
        assert source.read(1.0).seq == 1
        assert len(camera.jobs) == 2


def test_capture_error_is_a_device_error() -> None:
    factory = Factory(script=[RuntimeError("Camera frontend has timed out!")])
    with open_fake(factory) as source:
        with pytest.raises(DeviceError, match="timed out"):
            source.read(1.0)
        # A fresh capture is queued after a failure.
        assert source.read(1.0) is not None
        assert len(factory.made[0].jobs) == 2


def test_stalled_camera_ends_iteration_with_device_error() -> None:
    factory = Factory(script=["frame", "frame"] + [TimeoutError()] * 3)
    seen = []
    stalled = pytest.raises(DeviceError, match=r"no frame for 0\.5 s")
    with open_fake(factory, stall_timeout=0.5) as source, stalled:
        for frame in source:
            seen.append(frame.seq)
    assert seen == [0, 1]


def test_no_camera_connected() -> None:
    with pytest.raises(DeviceError) as caught:
        open_fake(Factory(cameras=0))
    assert caught.value.errno == errno.ENODEV
    assert "rpicam-hello --list-cameras" in str(caught.value)
    with pytest.raises(DeviceError, match="1 found"):
        open_fake(Factory(cameras=1), device=1)


def test_camera_busy() -> None:
    busy = RuntimeError("Failed to acquire camera: Device or resource busy")
    with pytest.raises(DeviceError, match="another process"):
        open_fake(Factory(error=busy))


@pytest.mark.parametrize("step", ["create_video_configuration", "configure", "start"])
def test_configuration_refused_releases_the_camera(step: str) -> None:
    factory = Factory(fail={step: RuntimeError("Invalid configuration")})
    with pytest.raises(DeviceError, match="Invalid configuration"):
        open_fake(factory)
    camera = factory.made[0]
    assert camera.closed == 1
    assert "stop" not in camera.calls  # never started


def test_close_is_idempotent() -> None:
    factory = Factory()
    source = open_fake(factory)
    source.read(1.0)
    source.close()
    source.close()
    camera = factory.made[0]
    assert camera.calls.count("stop") == 1 and camera.closed == 1
    assert source.camera is None
    with pytest.raises(SourceClosed):
        source.read(1.0)
    assert list(source) == []


def test_y_plane_from_flat_and_padded_buffers() -> None:
    width, height, stride = 6, 4, 8
    planes = np.full((height * 3 // 2, stride), CHROMA, np.uint8)
    planes[:height, :width] = np.arange(width * height, dtype=np.uint8).reshape(height, width)
    planes[:height, width:] = PADDING
    expected = planes[:height, :width]
    assert np.array_equal(y_plane(planes, (width, height)), expected)
    assert np.array_equal(y_plane(planes.ravel(), (width, height), stride), expected)
    assert y_plane(planes, (width, height)).flags.c_contiguous
    with pytest.raises(DeviceError):
        y_plane(planes.ravel(), (width, height))  # flat buffer without a stride
    with pytest.raises(DeviceError):
        y_plane(planes[:3], (width, height))  # too few rows
    with pytest.raises(DeviceError):
        y_plane(planes[:, :5], (width, height))  # rows narrower than the width
    with pytest.raises(DeviceError):
        y_plane(planes.astype(np.uint16), (width, height))
    with pytest.raises(DeviceError):
        y_plane(np.zeros((6, 8, 3), np.uint8), (width, height))


def test_without_picamera2_the_backend_is_unavailable(monkeypatch) -> None:
    # A None entry makes `import picamera2` raise ImportError, as off a Pi.
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(BackendUnavailable) as caught:
        load_picamera2()
    message = str(caught.value)
    assert "pip install .[pi]" in message and "python3-picamera2" in message
    assert isinstance(caught.value, ImportError)
    with pytest.raises(BackendUnavailable):
        open_camera(CameraSettings(backend="picamera2"))


def test_picamera2_is_not_importable_here() -> None:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only on a Raspberry Pi
        pytest.skip("picamera2 is installed: this is a Pi")
    with pytest.raises(BackendUnavailable, match="picamera2"):
        open_camera(CameraSettings(backend="picamera2"))
