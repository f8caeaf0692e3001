"""The QR command line, run as acceptance checks run it: ``python -m hardware.qr IMAGE...``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hardware.qr import synth

pytestmark = pytest.mark.processes

REPO = Path(__file__).parents[2]


def run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hardware.qr", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    """Good images: a code as PNG, JPEG and WEBP, two codes, and no code."""
    d = tmp_path_factory.mktemp("qr-cli")
    out = {}
    one = synth.render("paper", 1)
    for suffix in ("png", "jpg", "webp"):
        path = d / f"one.{suffix}"
        Image.fromarray(one.image).save(path, quality=90)
        out[suffix] = (path, list(one.payloads))
    two = synth.render("two", 2)
    Image.fromarray(two.image).save(d / "two.png")
    out["two"] = (d / "two.png", list(two.payloads))
    Image.fromarray(synth.render("none", 1).image).save(d / "none.webp")
    out["none"] = (d / "none.webp", [])
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("qr-cli-bad")
    (d / "random.png").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.webp").write_text("this is a text file, not a picture\n")
    return {
        "random": d / "random.png",
        "empty": d / "empty.jpg",
        "text": d / "notes.webp",
        "missing": d / "missing.png",
        "directory": d,
    }


@pytest.mark.parametrize("key", ["png", "jpg", "webp", "two", "none"])
def test_one_json_line_per_image(images, key):
    path, payloads = images[key]
    result = run(path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [{"file": str(path), "payloads": payloads}]


def test_several_images_in_the_order_given(images):
    order = ["none", "webp", "two", "png"]
    result = run(*(images[k][0] for k in order))
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        {"file": str(images[k][0]), "payloads": images[k][1]} for k in order
    ]


def test_file_is_echoed_as_given(images):
    path = images["png"][0]
    result = run(path.name, cwd=path.parent)
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[0]["file"] == path.name


@pytest.mark.parametrize("key", ["random", "empty", "text", "missing", "directory"])
def test_bad_file_exits_2_with_a_message(bad_files, key):
    path = bad_files[key]
    result = run(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_files_do_not_stop_the_good_ones(images, bad_files):
    good_png, good_none = images["png"], images["none"]
    args = [bad_files["random"], good_png[0], bad_files["missing"], good_none[0]]
    result = run(*args)
    assert result.returncode == 2
    assert lines(result.stdout) == [
        {"file": str(good_png[0]), "payloads": good_png[1]},
        {"file": str(good_none[0]), "payloads": []},
    ]
    err = result.stderr.splitlines()
    assert len(err) == 2
    assert str(bad_files["random"]) in err[0]
    assert str(bad_files["missing"]) in err[1]


def test_non_ascii_payload_round_trips(tmp_path):
    import segno

    text = "Entrée — 東京 ✓"
    path = tmp_path / "unicode.png"
    segno.make(text, error="m").save(path, scale=5)
    result = run(path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[0]["payloads"] == [text]
    assert result.stdout.isascii()


@pytest.mark.parametrize(
    "flags", [["--backend", "zbar"], ["--raw"], ["--backend", "zbar", "--raw"]]
)
def test_backend_options(images, flags):
    path, payloads = images["png"]
    result = run(*flags, path)
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [{"file": str(path), "payloads": payloads}]


def test_no_argument_is_a_usage_error():
    result = run()
    assert result.returncode == 2
    assert "usage" in result.stderr
