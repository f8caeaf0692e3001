"""portier_common.settings: the one TOML loader and the validators every configuration uses.

Every validator: a good value, a bad value whose error names the key, and (through
``build``) a missing required key; errors keep the full dotted key path and the file.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from portier_common import settings
from portier_common.settings import NOT_A_KEY, ConfigError, build, load, read_toml


# -- the validators ---------------------------------------------------------------------------
def _check(validator, good, bad, *args, **kwargs):
    assert validator("door.x", good, *args, **kwargs) is not None
    with pytest.raises(ConfigError) as info:
        validator("door.x", bad, *args, **kwargs)
    assert info.value.key == "door.x"
    assert str(info.value).startswith("door.x: ")
    return info.value


def test_number() -> None:
    assert settings.number("k", 3, 0, 5) == 3.0 and isinstance(settings.number("k", 3), float)
    error = _check(settings.number, 2.5, 9, 0.5, 5)
    assert error.problem == "9 must be between 0.5 and 5"
    _check(settings.number, 1, True)  # a bool is not a number
    _check(settings.number, 1, "1")
    assert (
        _check(settings.number, 1, 0, above=0, high=1).problem == "0 must be above 0 and at most 1"
    )
    assert _check(settings.number, 1, -1, 0).problem == "-1 must be at least 0"
    assert _check(settings.number, 1, 7, high=5).problem == "7 must be at most 5"


def test_seconds_is_a_duration() -> None:
    error = _check(settings.seconds, 10, 0.1, 1, 3600)
    assert error.problem == "0.1 must be between 1 and 3600 seconds"


def test_integer() -> None:
    assert settings.integer("k", 7, 0, 10) == 7
    assert _check(settings.integer, 0, -1, 0).problem == "-1 must be an integer >= 0"
    assert _check(settings.integer, 0, 11, 0, 10).problem == "11 must be an integer from 0 to 10"
    assert _check(settings.integer, 0, 11, None, 10).problem == "11 must be an integer <= 10"
    _check(settings.integer, 1, 1.5)
    _check(settings.integer, 1, False)


def test_flag() -> None:
    assert settings.flag("k", False) is False
    assert "true or false" in _check(settings.flag, True, "yes").problem
    _check(settings.flag, True, 1)


def test_choice_is_an_enumeration() -> None:
    assert settings.choice("k", "fr", ("en", "fr")) == "fr"
    assert _check(settings.choice, "en", "de", ("en", "fr")).problem == "'de' must be one of en, fr"


def test_text() -> None:
    assert settings.text("k", "Car park B") == "Car park B"
    _check(settings.text, "x", " ")
    _check(settings.text, "x", 5)
    assert _check(settings.text, "x", "", what="the name").problem == "the name must not be empty"
    assert "at most 3 characters" in _check(settings.text, "abc", "abcd", max_chars=3).problem


def test_matches() -> None:
    ident = re.compile(r"[a-z]+")
    assert settings.matches("k", "gate", ident, "lower-case letters") == "gate"
    error = _check(settings.matches, "gate", "Gate A", ident, "lower-case letters")
    assert error.problem == "'Gate A' must be lower-case letters"
    _check(settings.matches, "gate", None, ident, "lower-case letters")


def test_path() -> None:
    assert settings.path("k", "/var/lib/portier") == Path("/var/lib/portier")
    assert settings.path("k", Path("x")) == Path("x")
    _check(settings.path, "/x", "")
    _check(settings.path, "/x", 5)


def test_url() -> None:
    assert settings.url("k", "https://central.example.org/api").hostname == "central.example.org"
    assert "https://" in _check(settings.url, "https://a.example", "http://a.example").problem
    _check(settings.url, "https://a.example", "not a url")
    assert settings.url("k", "http://127.0.0.1:8080", schemes=("http", "https")).port == 8080


def test_each_names_the_item() -> None:
    ident = re.compile(r"[a-z]+")

    def check(key: str, value: Any) -> str:
        return settings.matches(key, value, ident, "letters")

    assert settings.each("zones", ["a", "b"], check) == ["a", "b"]
    with pytest.raises(ConfigError) as info:
        settings.each("zones", ["a", "B"], check)
    assert info.value.key == "zones[1]"


# -- the loader: tables onto dataclasses --------------------------------------------------------
class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True)
class Inner:
    pin: int
    level: Literal["high", "low"] = "high"

    def __post_init__(self) -> None:
        settings.integer("pin", self.pin, 2, 27)


@dataclass(frozen=True)
class Door:
    id: str
    unlock_s: float = 5.0
    accept_uid: bool = False
    state_dir: Path = Path("/var/lib/portier")
    colour: Colour = Colour.RED
    size: tuple[int, int] = (800, 480)
    zones: tuple[str, ...] = ()
    rex: Inner | None = None
    inputs: list[Inner] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)
    device: int | str = 0
    source: Path | None = field(default=None, metadata=NOT_A_KEY)

    def __post_init__(self) -> None:
        settings.seconds("unlock_s", self.unlock_s, 0.5, 300)
        settings.each("zones", self.zones, settings.text)


@dataclass(frozen=True)
class Hardware:
    gpio: str = "mock"

    def __post_init__(self) -> None:
        # A settings class outside portier_common: a plain ValueError naming the field.
        if self.gpio not in ("mock", "lgpio"):
            raise ValueError(f"gpio: {self.gpio!r} is not a backend")


@dataclass(frozen=True)
class Whole:
    door: Door
    hardware: Hardware = field(default_factory=Hardware)


def test_build_converts_types() -> None:
    cfg = build(
        Whole,
        {
            "door": {
                "id": "gate-a",
                "unlock_s": 3,
                "colour": "green",
                "size": [640, 480],
                "zones": ["lobby"],
                "rex": {"pin": 3, "level": "low"},
                "inputs": [{"pin": 4}],
                "extra": {"a": 1},
                "device": "/dev/video0",
                "state_dir": "state",
            }
        },
    )
    door = cfg.door
    assert door.unlock_s == 3.0 and isinstance(door.unlock_s, float)
    assert door.colour is Colour.GREEN and door.size == (640, 480) and door.zones == ("lobby",)
    assert door.rex == Inner(3, "low") and door.inputs == [Inner(4)] and door.extra == {"a": 1}
    assert door.device == "/dev/video0" and door.state_dir == Path("state")
    assert cfg.hardware == Hardware()


@pytest.mark.parametrize(
    ("door", "key"),
    [
        ({"id": "a", "unlock_s": 0}, "door.unlock_s"),  # the class's own validator
        ({"id": "a", "unlock_s": "5"}, "door.unlock_s"),
        ({"id": "a", "accept_uid": "yes"}, "door.accept_uid"),
        ({"id": 5}, "door.id"),
        ({"id": "a", "state_dir": ""}, "door.state_dir"),
        ({"id": "a", "colour": "blue"}, "door.colour"),
        ({"id": "a", "size": [1, 2, 3]}, "door.size"),
        ({"id": "a", "zones": ["ok", " "]}, "door.zones[1]"),
        ({"id": "a", "rex": {"pin": 99}}, "door.rex.pin"),
        ({"id": "a", "rex": {"pin": 3, "level": "sideways"}}, "door.rex.level"),
        ({"id": "a", "rex": 3}, "door.rex"),
        ({"id": "a", "inputs": [{"pin": 3}, {}]}, "door.inputs[1].pin"),
        ({"id": "a", "extra": {"a": "x"}}, "door.extra.a"),
        ({"id": "a", "device": 1.5}, "door.device"),
        ({"id": "a", "colur": "red"}, "door.colur"),
        ({"id": "a", "source": "/x"}, "door.source"),  # set by the program, not the file
        ({}, "door.id"),
    ],
)
def test_build_errors_name_the_full_key(door: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(Whole, {"door": door})
    assert info.value.key == key, str(info.value)
    assert str(info.value).startswith(f"{key}: ")


def test_missing_required_key_and_unknown_key_messages() -> None:
    with pytest.raises(ConfigError, match=r"^door: required key is missing$"):
        build(Whole, {})
    with pytest.raises(ConfigError, match=r"^door\.colur: unknown key \(expected one of: .*colour"):
        build(Whole, {"door": {"id": "a", "colur": 1}})
    with pytest.raises(ConfigError, match=r"^door: expected a table, got str"):
        build(Whole, {"door": "gate"})


def test_plain_value_errors_of_other_settings_classes_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        build(Whole, {"door": {"id": "a"}, "hardware": {"gpio": "pigpio"}})
    assert info.value.key == "hardware.gpio"
    assert info.value.problem == "'pigpio' is not a backend"


def test_refuse_unknown_sections() -> None:
    settings.refuse_unknown({"door": 1}, ["door", "device"], what="section")
    with pytest.raises(ConfigError, match=r"^nonsense: unknown section \(expected one of: "):
        settings.refuse_unknown({"nonsense": 1}, ["door", "device"], what="section")


# -- files ----------------------------------------------------------------------------------------
def test_read_toml_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "agent.toml"
    good.write_text('[door]\nid = "a"\n')
    assert read_toml(good) == {"door": {"id": "a"}}
    for content, problem in (
        (b"[door\n", "is not valid TOML"),
        (b"\xff\xfe garbage", "is not UTF-8 text"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_bytes(content)
        with pytest.raises(ConfigError) as info:
            read_toml(bad)
        assert problem in str(info.value) and str(bad) in str(info.value)
        assert info.value.file == bad
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.toml"):
        read_toml(tmp_path / "missing.toml")


def test_load_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[door]\nid = "a"\nunlock_s = 0\n')
    with pytest.raises(ConfigError) as info:
        load(path, lambda data: build(Whole, data))
    assert info.value.key == "door.unlock_s" and info.value.file == path
    assert str(info.value) == (
        f"door.unlock_s: 0.0 must be between 0.5 and 300 seconds (in {path})"
    )
    path.write_text('[door]\nid = "a"\n')
    assert load(path, lambda data: build(Whole, data)).door.id == "a"


def test_config_error_is_a_value_error() -> None:
    error = ConfigError("ui.size", "too small")
    assert isinstance(error, ValueError) and str(error) == "ui.size: too small"
    assert str(ConfigError("", "whole file")) == "whole file"
    assert error.within("kiosk").key == "kiosk.ui.size"
    assert ConfigError("[0]", "x").within("zones").key == "zones[0]"


def test_a_private_file_is_read_only_when_others_may_not_read_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret\n")
    secret.chmod(0o600)
    assert settings.read_private_file("webhook_secret_file", secret) == b"s3cret\n"
    for mode in (0o640, 0o604):
        secret.chmod(mode)
        with pytest.raises(
            settings.ConfigError, match=r"^--tls-key: .*others may read.*chmod 0600"
        ):
            settings.read_private_file("--tls-key", secret)
    with pytest.raises(settings.ConfigError, match=r"^--token-file: .*missing"):
        settings.read_private_file("--token-file", tmp_path / "missing")
