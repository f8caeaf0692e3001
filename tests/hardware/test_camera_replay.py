"""Replay of image folders and video files, paced on an injected clock."""

from __future__ import annotations

import errno
import itertools
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardware.camera import (
    CameraSettings,
    EndOfStream,
    Frame,
    SourceClosed,
    open_camera,
)
from hardware.camera.replay import ReplaySource
from hardware.errors import DeviceError, NotAnImage


class FakeClock:
    """A monotonic clock that only moves when slept on (or advanced by the test)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def pattern(index: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A textured grey image that differs for every index (lossless formats round-trip)."""
    width, height = size
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (height // 8, width // 8), dtype=np.uint8)
    return np.kron(image, np.ones((8, 8), np.uint8))


def write_folder(folder: Path, names: list[str], size: tuple[int, int] = (640, 480)) -> dict:
    """Write one pattern image per name; return name -> the grey image as decoded."""
    folder.mkdir(parents=True, exist_ok=True)
    decoded = {}
    for index, name in enumerate(names):
        path = folder / name
        assert cv2.imwrite(str(path), pattern(index, size))
        decoded[name] = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return decoded


def write_video(path: Path, levels: list[int], size: tuple[int, int] = (640, 480)) -> None:
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    assert writer.isOpened()
    for level in levels:
        writer.write(np.full((height, width, 3), level, np.uint8))
    writer.release()


def replay(path: Path, clock: FakeClock | None = None, **kwargs) -> ReplaySource:
    settings = CameraSettings(backend="replay", replay_path=path, **kwargs)
    if clock is None:
        return open_camera(settings, clock=FakeClock(), sleep=lambda s: None)
    return open_camera(settings, clock=clock, sleep=clock.sleep)


def check_frame(frame: Frame, size: tuple[int, int] = (640, 480)) -> None:
    assert frame.image.dtype == np.uint8
    assert frame.image.shape == (size[1], size[0])
    assert frame.image.flags.c_contiguous


# -- folders ------------------------------------------------------------------------


def test_folder_in_sorted_order_then_end(tmp_path: Path) -> None:
    names = ["frame-003.png", "frame-001.png", "frame-002.png", "frame-000.png"]
    decoded = write_folder(tmp_path, names)
    with replay(tmp_path) as source:
        frames = list(source)
        with pytest.raises(EndOfStream):
            source.read(1.0)
    assert [f.source for f in frames] == [f"replay:{n}" for n in sorted(names)]
    assert [f.seq for f in frames] == [0, 1, 2, 3]
    for frame in frames:
        check_frame(frame)
        assert np.array_equal(frame.image, decoded[frame.source.split(":", 1)[1]])


def test_png_jpeg_webp(tmp_path: Path) -> None:
    decoded = write_folder(tmp_path, ["a.png", "b.jpg", "c.JPEG", "d.webp"])
    with replay(tmp_path) as source:
        frames = list(source)
    assert len(frames) == 4
    for frame, expected in zip(frames, decoded.values(), strict=True):
        check_frame(frame)
        assert np.array_equal(frame.image, expected)


def test_non_images_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    write_folder(tmp_path, ["1.png", "2.png"])
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    with caplog.at_level(logging.WARNING, "hardware.camera.replay"), replay(tmp_path) as source:
        frames = list(source)
    assert [f.source for f in frames] == ["replay:1.png", "replay:2.png"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "notes.txt" in warned and "sub" in warned


def test_corrupt_images_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    decoded = write_folder(tmp_path, ["1.png", "3.png"])
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    (tmp_path / "4.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, "hardware.camera.replay"), replay(tmp_path) as source:
        frames = list(source)
    assert [f.source for f in frames] == ["replay:1.png", "replay:3.png"]
    assert np.array_equal(frames[1].image, decoded["3.png"])
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "2.png" in warned and "4.jpg" in warned


def test_corrupt_images_skipped_on_every_loop(tmp_path: Path, caplog) -> None:
    write_folder(tmp_path, ["1.png", "3.png"])
    (tmp_path / "2.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, "hardware.camera.replay"):
        with replay(tmp_path, loop=True) as source:
            frames = [source.read(1.0) for _ in range(6)]
        warnings = [r for r in caplog.records if "2.png" in r.getMessage()]
    assert [f.source for f in frames] == ["replay:1.png", "replay:3.png"] * 3
    assert [f.seq for f in frames] == list(range(6))
    assert len(warnings) == 1


def test_only_corrupt_images(tmp_path: Path) -> None:
    (tmp_path / "1.png").write_bytes(b"garbage")
    (tmp_path / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(NotAnImage, match="none of its 2 images"):
        replay(tmp_path)
    with pytest.raises(NotAnImage):
        replay(tmp_path / "1.png")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DeviceError) as caught:
        replay(tmp_path / "nope")
    assert caught.value.errno == errno.ENOENT
    assert isinstance(caught.value, OSError)
    assert str(tmp_path / "nope") in str(caught.value)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="no PNG, JPEG or WEBP"):
        replay(tmp_path)
    (tmp_path / "readme.md").write_text("# nothing")
    with pytest.raises(DeviceError, match="no PNG, JPEG or WEBP"):
        replay(tmp_path)


def test_single_image_loops(tmp_path: Path) -> None:
    decoded = write_folder(tmp_path, ["code.png"])
    with replay(tmp_path / "code.png", loop=True) as source:
        frames = [source.read(1.0) for _ in range(3)]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert all(np.array_equal(f.image, decoded["code.png"]) for f in frames)


def test_resized_to_the_configured_resolution(tmp_path: Path) -> None:
    write_folder(tmp_path / "small", ["a.png"], size=(320, 240))
    write_folder(tmp_path / "wide", ["a.png"], size=(1280, 720))
    with replay(tmp_path / "small") as source:
        frame = source.read(1.0)
    check_frame(frame)
    expected = cv2.resize(pattern(0, (320, 240)), (640, 480), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(frame.image, expected)

    with replay(tmp_path / "wide", resolution=(320, 240)) as source:
        frame = source.read(1.0)
    check_frame(frame, (320, 240))
    # 16:9 scaled into 4:3: the picture fills the width, uniform bands above and below.
    assert len(np.unique(frame.image[:30])) == 1
    assert len(np.unique(frame.image[-30:])) == 1
    assert frame.image[30:210].std() > 20


def test_rotation(tmp_path: Path) -> None:
    # A camera turned on its side: portrait files, landscape frames.
    decoded = write_folder(tmp_path, ["a.png"], size=(480, 640))
    with replay(tmp_path, rotation=90) as source:
        frame = source.read(1.0)
    check_frame(frame)
    assert np.array_equal(frame.image, np.rot90(decoded["a.png"], -1))


# -- videos -------------------------------------------------------------------------

LEVELS = [20, 60, 100, 140, 180, 220]


def test_video(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.avi", LEVELS)
    with replay(tmp_path / "clip.avi") as source:
        frames = list(source)
        with pytest.raises(EndOfStream):
            source.read(0)
    assert [f.seq for f in frames] == list(range(len(LEVELS)))
    assert [f.source for f in frames] == [f"replay:clip.avi#{i}" for i in range(len(LEVELS))]
    for frame, level in zip(frames, LEVELS, strict=True):
        check_frame(frame)
        assert abs(float(frame.image.mean()) - level) < 4


def test_video_loops_and_resizes(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.avi", LEVELS[:3], size=(320, 240))
    with replay(tmp_path / "clip.avi", loop=True, resolution=(800, 600)) as source:
        frames = [source.read(1.0) for _ in range(7)]
    expected = [20, 60, 100, 20, 60, 100, 20]
    for frame, level in zip(frames, expected, strict=True):
        check_frame(frame, (800, 600))
        assert abs(float(frame.image.mean()) - level) < 4
    assert [f.source for f in frames][2:5] == [
        "replay:clip.avi#2",
        "replay:clip.avi#0",
        "replay:clip.avi#1",
    ]


def test_missing_video(tmp_path: Path) -> None:
    with pytest.raises(DeviceError) as caught:
        replay(tmp_path / "clip.mp4")
    assert caught.value.errno == errno.ENOENT


def test_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "clip.avi").write_bytes(b"this is no video" * 100)
    with pytest.raises(NotAnImage, match=r"clip\.avi"):
        replay(tmp_path / "clip.avi")


# -- pacing -------------------------------------------------------------------------


def test_paced_at_the_replay_rate(tmp_path: Path) -> None:
    write_folder(tmp_path, [f"{i}.png" for i in range(5)])
    clock = FakeClock(1000.0)
    with replay(tmp_path, clock=clock, replay_rate=10) as source:
        frames = list(source)
    assert [f.timestamp for f in frames] == pytest.approx([1000.0, 1000.1, 1000.2, 1000.3, 1000.4])
    assert clock.sleeps == pytest.approx([0.1] * 4)


def test_rate_defaults_to_fps(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png", "1.png"])
    clock = FakeClock(0.0)
    with replay(tmp_path, clock=clock, fps=4) as source:
        frames = list(source)
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.25])


def test_rate_zero_is_unpaced(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png", "1.png", "2.png"])
    clock = FakeClock(0.0)
    with replay(tmp_path, clock=clock, replay_rate=0) as source:
        assert len(list(source)) == 3
    assert clock.sleeps == []


def test_read_timeout_returns_none_and_keeps_the_frame(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png", "1.png"])
    clock = FakeClock(50.0)
    with replay(tmp_path, clock=clock, replay_rate=10) as source:
        first = source.read(1.0)
        assert source.read(0.03) is None
        assert clock.now == pytest.approx(50.03)
        assert source.read(0) is None
        second = source.read(1.0)
    assert first.source == "replay:0.png" and second.source == "replay:1.png"
    assert second.timestamp == pytest.approx(50.1)
    assert clock.sleeps == pytest.approx([0.03, 0.07])


def test_late_reader_gets_the_next_frame_at_once_without_a_burst(tmp_path: Path) -> None:
    write_folder(tmp_path, [f"{i}.png" for i in range(4)])
    clock = FakeClock(0.0)
    with replay(tmp_path, clock=clock, replay_rate=10) as source:
        source.read(1.0)
        clock.now += 1.0  # the reader was busy for ten frame periods
        late = source.read(0)
        after = source.read(1.0)
        last = source.read(1.0)
    assert late.timestamp == pytest.approx(1.0)
    assert [late.seq, after.seq, last.seq] == [1, 2, 3]
    assert after.timestamp == pytest.approx(1.1)
    assert last.timestamp == pytest.approx(1.2)


def test_real_clock_timestamps_increase(tmp_path: Path) -> None:
    write_folder(tmp_path, [f"{i}.png" for i in range(4)])
    settings = CameraSettings(backend="replay", replay_path=tmp_path, replay_rate=200)
    before = time.monotonic()
    with open_camera(settings) as source:
        frames = list(source)
    stamps = [f.timestamp for f in frames]
    assert len(frames) == 4
    assert before <= stamps[0] and all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[-1] <= time.monotonic()


# -- life cycle ---------------------------------------------------------------------


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png"])
    source = replay(tmp_path, loop=True)
    assert source.read(1.0) is not None
    source.close()
    source.close()
    assert source.closed
    with pytest.raises(SourceClosed):
        source.read(1.0)
    with pytest.raises(SourceClosed):
        source.open()
    assert list(source) == []


def test_read_before_open(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png"])
    source = ReplaySource(CameraSettings(backend="replay", replay_path=tmp_path))
    with pytest.raises(SourceClosed):
        source.read(1.0)
    with source:
        assert source.open() is source  # opening twice is harmless
        assert source.read(1.0) is not None
    assert source.closed


def test_negative_timeout(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png"])
    with replay(tmp_path) as source, pytest.raises(ValueError, match="timeout"):
        source.read(-1)


def test_close_from_another_thread_ends_iteration(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png", "1.png"])
    settings = CameraSettings(backend="replay", replay_path=tmp_path, loop=True, replay_rate=100)
    source = open_camera(settings)
    seen: list[int] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for frame in source:
                seen.append(frame.seq)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    while len(seen) < 5:
        assert reader.is_alive(), errors
        time.sleep(0.005)
    source.close()
    reader.join(10)
    assert not reader.is_alive()
    assert errors == []
    assert seen == list(range(len(seen)))
    assert [t for t in threading.enumerate() if t.name.startswith("camera")] == []


def test_close_cuts_a_slow_replay_wait_short(tmp_path: Path) -> None:
    write_folder(tmp_path, ["0.png", "1.png"])
    # One frame every 60 s: without the wake-up, the reader would sleep a minute.
    settings = CameraSettings(backend="replay", replay_path=tmp_path, replay_rate=1 / 60)
    source = open_camera(settings)
    seen: list[int] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            seen.extend(frame.seq for frame in source)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    while not seen and reader.is_alive():
        time.sleep(0.005)
    source.close()
    reader.join(20)
    assert not reader.is_alive() and errors == []
    assert seen == [0]
