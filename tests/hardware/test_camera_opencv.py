"""The OpenCV backend, run for real on video files (no /dev/video* here).

``cv2.VideoCapture`` reads a file through the same calls as a V4L2 device, so the
grabber thread, grey conversion, resizing, dead-device detection and clean-up are
exercised by opening a video generated here with ``api_preference=cv2.CAP_ANY``.
When a file runs out, ``read()`` fails the way it does for an unplugged camera.
"""

from __future__ import annotations

import errno
import itertools
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardware.camera import CameraSettings, SourceClosed, open_camera
from hardware.camera.opencv import OpenCVSource
from hardware.errors import DeviceError

LEVELS = [10 + 8 * i for i in range(30)]


def write_video(path: Path, frames: list[np.ndarray], size: tuple[int, int] = (640, 480)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def grey_levels(path: Path, levels: list[int], size: tuple[int, int] = (640, 480)) -> Path:
    width, height = size
    return write_video(path, [np.full((height, width, 3), v, np.uint8) for v in levels], size)


def from_file(path: Path, **options) -> OpenCVSource:
    resolution = options.pop("resolution", (640, 480))
    rotation = options.pop("rotation", 0)
    settings = CameraSettings(
        backend="opencv", device=str(path), resolution=resolution, rotation=rotation
    )
    return open_camera(settings, api_preference=cv2.CAP_ANY, **options)


def drain(source: OpenCVSource) -> tuple[list, DeviceError]:
    """Read until the (file) device dies; return the frames and the error."""
    frames = []
    with pytest.raises(DeviceError) as caught:
        while True:
            frame = source.read(5.0)
            assert frame is not None, "no frame and no error within 5 s"
            frames.append(frame)
    return frames, caught.value


def camera_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("camera-opencv")]


def test_every_frame_grey_in_order_then_device_error(tmp_path: Path) -> None:
    video = grey_levels(tmp_path / "cam.avi", LEVELS)
    with from_file(video, queue_size=len(LEVELS) + 5) as source:
        frames, error = drain(source)
        assert source.capture_size == (640, 480)
        # The error stays: the device is gone until reopened.
        with pytest.raises(DeviceError):
            source.read(0)
    assert [f.seq for f in frames] == list(range(len(LEVELS)))
    for frame, level in zip(frames, LEVELS, strict=True):
        assert frame.image.dtype == np.uint8 and frame.image.shape == (480, 640)
        assert frame.image.flags.c_contiguous
        assert abs(float(frame.image.mean()) - level) < 4
        assert frame.source == f"opencv:{video}"
    stamps = [f.timestamp for f in frames]
    assert all(a <= b for a, b in itertools.pairwise(stamps)) and stamps[0] < stamps[-1]
    assert isinstance(error, OSError) and error.errno == errno.EIO
    assert "stopped delivering" in str(error)
    assert camera_threads() == []


def test_bgr_is_converted_to_grey(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (40, 120, 200)]  # BGR
    frames = [np.full((480, 640, 3), c, np.uint8) for c in colours]
    video = write_video(tmp_path / "colour.avi", frames)
    with from_file(video, queue_size=10) as source:
        got, _ = drain(source)
    assert len(got) == len(colours)
    for frame, (b, g, r) in zip(got, colours, strict=True):
        expected = 0.114 * b + 0.587 * g + 0.299 * r
        assert frame.image.ndim == 2
        assert abs(float(frame.image.mean()) - expected) < 5


def test_other_sizes_are_scaled_and_rotated(tmp_path: Path) -> None:
    width, height = 320, 240
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = 200  # bright left half
    video = write_video(tmp_path / "small.avi", [image] * 3, (width, height))
    with from_file(video, queue_size=5, resolution=(480, 640), rotation=90) as source:
        assert source.capture_size == (320, 240)  # a file cannot change size on request
        frames, _ = drain(source)
    assert len(frames) == 3
    for frame in frames:
        assert frame.image.shape == (640, 480)
        # Turned clockwise, the bright left half ends up on top.
        assert frame.image[:200].mean() > 150 and frame.image[-200:].mean() < 50


def test_live_view_keeps_only_the_newest_frame(tmp_path: Path) -> None:
    video = grey_levels(tmp_path / "cam.avi", LEVELS)
    with from_file(video) as source:
        frames, _ = drain(source)
    assert 1 <= len(frames) <= len(LEVELS)
    seqs = [f.seq for f in frames]
    assert all(a < b for a, b in itertools.pairwise(seqs))
    for frame in frames:
        assert abs(float(frame.image.mean()) - LEVELS[frame.seq]) < 4


def test_iteration_raises_when_the_device_dies(tmp_path: Path) -> None:
    video = grey_levels(tmp_path / "cam.avi", LEVELS[:5])
    seen = []
    with from_file(video, queue_size=10) as source, pytest.raises(DeviceError):
        for frame in source:
            seen.append(frame.seq)
    assert seen == [0, 1, 2, 3, 4]


def test_missing_v4l2_device() -> None:
    for device in ("/dev/video-portier-test", 63):
        settings = CameraSettings(backend="opencv", device=device)
        with pytest.raises(DeviceError) as caught:
            open_camera(settings)
        assert caught.value.errno == errno.ENODEV
        assert str(device) in str(caught.value)
    assert camera_threads() == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DeviceError):
        from_file(tmp_path / "nothing.avi")


def test_close_stops_the_thread_and_is_idempotent(tmp_path: Path) -> None:
    # Long enough that the grabber is still running when we close.
    video = grey_levels(tmp_path / "long.avi", [128] * 600, (320, 240))
    source = from_file(video)
    assert source.read(5.0) is not None
    thread = source.thread
    assert thread is not None and thread.daemon
    source.close()
    source.close()
    assert not thread.is_alive()
    assert camera_threads() == []
    with pytest.raises(SourceClosed):
        source.read(0)
    assert list(source) == []


def test_close_from_another_thread_ends_a_reader(tmp_path: Path) -> None:
    # 2000 frames: the grabber is still reading when close() comes.
    video = grey_levels(tmp_path / "long.avi", [128] * 2000, (160, 120))
    source = from_file(video)
    outcome: list[BaseException] = []
    barrier = threading.Event()

    def reader() -> None:
        barrier.set()
        try:
            while True:
                source.read(30.0)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    barrier.wait(5)
    source.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], SourceClosed)


def test_bad_options() -> None:
    settings = CameraSettings(backend="opencv")
    with pytest.raises(ValueError, match="queue_size"):
        OpenCVSource(settings, queue_size=0)
    with pytest.raises(ValueError, match="max_failures"):
        OpenCVSource(settings, max_failures=0)
