"""``hardware.registry``: the one way every hardware family chooses its backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hardware import camera, gpio, nfc, qr, reader
from hardware.errors import UnknownBackend
from hardware.registry import BackendRegistry

FAMILIES = {
    "gpio": gpio.BACKENDS,
    "nfc": nfc.BACKENDS,
    "camera": camera.BACKENDS,
    "qr": qr.BACKENDS,
    "reader": reader.BACKENDS,
}


def test_the_configuration_names_are_unchanged() -> None:
    assert list(gpio.BACKENDS) == ["rpigpio", "lgpio", "mock"]
    assert list(nfc.BACKENDS) == ["nfcpy", "wedge", "sim"]
    assert list(camera.BACKENDS) == ["picamera2", "opencv", "replay"]
    assert list(qr.BACKENDS) == ["zxing", "zbar"]
    assert list(reader.BACKENDS) == ["osdp", "wiegand"]  # no simulator among them


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_uses_the_registry_and_every_entry_loads(family: str) -> None:
    registry = FAMILIES[family]
    assert isinstance(registry, BackendRegistry)
    for name in registry:
        loaded = registry.load(name)
        assert callable(loaded)
        # The configured backend is the one loaded: never another, never a simulator.
        if family == "gpio":
            assert loaded.__module__ == f"hardware.gpio.{name}"
        elif family in ("nfc", "reader"):
            assert loaded.backend == name
        else:
            assert loaded.name == name


def test_unknown_names_name_the_key_and_list_the_valid_ones() -> None:
    registry = BackendRegistry("widget", {"a": "json:dumps", "b": "json:loads"}, key="w.backend")
    with pytest.raises(UnknownBackend) as exc:
        registry.load("c")
    assert str(exc.value) == "w.backend: unknown widget backend 'c'; use one of a, b"
    with pytest.raises(UnknownBackend, match=r"^fallback: unknown widget backend \['a'\]"):
        registry.check(["a"], key="fallback")
    assert registry.check("a") == "a" and registry.load("b").__name__ == "loads"
    with pytest.raises(ValueError, match="not 'module:attribute'"):
        BackendRegistry("widget", {"a": "json.dumps"})


def test_each_familys_settings_refuse_an_unknown_name_with_the_same_words() -> None:
    cases = [
        (lambda: gpio.GpioSettings(backend="pigpio"), "backend: unknown gpio backend 'pigpio'"),
        (lambda: nfc.NfcSettings(backend="pcsc"), "nfc.backend: unknown nfc backend 'pcsc'"),
        (lambda: camera.CameraSettings(backend="webcam"), "backend: unknown camera backend"),
        (lambda: qr.QRSettings(backend="quirc"), "backend: unknown QR backend 'quirc'"),
        (lambda: qr.QRSettings(fallback="quirc"), "fallback: unknown QR backend 'quirc'"),
        (lambda: reader.ReaderSettings(backend="rs232"), "backend: unknown reader backend"),
    ]
    for build, start in cases:
        with pytest.raises(UnknownBackend) as exc:
            build()
        assert str(exc.value).startswith(start) and "; use one of " in str(exc.value)


@pytest.mark.processes
def test_choosing_a_backend_imports_only_that_backend() -> None:
    # Pi-only libraries (and the other backends' modules) load only when chosen.
    code = (
        "import sys\n"
        "from hardware import camera, gpio, nfc, qr, reader\n"
        "camera.backend_class('replay'); nfc.reader_class('sim')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('picamera2', 'RPi', 'lgpio', 'nfc', 'evdev', 'pyzbar', 'zxingcpp', 'cv2', "
        "'osdp', 'osdp_sys', 'serial') "
        "or m in ('hardware.camera.picamera2', 'hardware.camera.opencv', "
        "'hardware.nfc.nfcpy', 'hardware.nfc.wedge', 'hardware.gpio.rpigpio', "
        "'hardware.gpio.lgpio', 'hardware.qr.zbar', 'hardware.qr.zxing', "
        "'hardware.reader.osdp', 'hardware.reader.wiegand')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
