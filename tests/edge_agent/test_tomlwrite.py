"""The one TOML writer (``edge_agent.tomlwrite``, on ``tomli-w``) and every file written with it.

Each file must load back (``tomllib``) to the values written, whatever the text: quotes,
backslashes, unicode, newlines, control characters, keys that need quoting. The
hand-written writers it replaced wrote a DEL character raw (TOML forbids it: the file
did not load) and keys unquoted (``"door name"`` broke the file, ``"a.b"`` became a
nested table).
"""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import load_config
from edge_agent.tomlwrite import dumps
from images import firstboot
from images.cli import main
from images.provision import BOOT_FILE_NAME, Provisioning, WifiSettings, parse_provisioning
from kiosk.config import parse_config as parse_kiosk_config

#: Text the old writers got wrong, or that a writer must escape.
NASTY = [
    'say "hi"',
    "C:\\path\\to",
    "''' and \"\"\"",
    "Entrée nord, rue de la Loi 16 ☃ 😀",
    "Café ☃ 😀",
    "two\nlines\n",
    "tab\there",
    "del\x7fchar",
    "bell\x07 and escape\x1b",
    "crlf\r\n",
    "",
]

texts = st.text(st.characters(exclude_categories=("Cs",)))  # any text a file can hold
scalars = texts | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.booleans()
#: A header is Portier's own words: printable lines (a comment cannot hold control characters).
headers = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")) | st.just("\n"))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(texts, values, max_size=6), header=headers)
def test_any_document_loads_back_to_its_values(document: dict[str, Any], header: str) -> None:
    assert tomllib.loads(dumps(document, header=header)) == document


@pytest.mark.parametrize("text", NASTY)
def test_nasty_text_as_key_and_value(text: str) -> None:
    document = {text: text, "table": {text: [text, {text: text}]}, "a.b": {"c d": text}}
    assert tomllib.loads(dumps(document)) == document


def test_header_paths_and_what_toml_cannot_hold() -> None:
    text = dumps({"path": Path("/etc/portier"), "pair": (1, 2)}, header="one\n\ntwo")
    assert text.startswith("# one\n#\n# two\n\n")
    assert tomllib.loads(text) == {"path": "/etc/portier", "pair": [1, 2]}
    with pytest.raises(TypeError):
        dumps({"nothing": None})


# -- every writer with its real inputs ------------------------------------------------

TOKEN = "tK3n_Abcdefghijklmnopqrstuvwxyz0123456789-"


@pytest.mark.parametrize(
    "ssid", [t for t in NASTY if t.isprintable() and 0 < len(t.encode()) <= 32]
)
def test_provisioning_file_round_trips(ssid: str) -> None:
    settings_ = Provisioning(
        "hq", "d1", "https://c.example", TOKEN, wifi=WifiSettings(ssid, 'p"s\\k 12345678')
    )
    assert parse_provisioning(settings_.to_toml()) == settings_


def test_firstboot_files_round_trip_an_installers_kiosk_toml(tmp_path: Path) -> None:
    settings_ = Provisioning(
        site="hq", door="gate-k", central_url="https://c.example", enroll_token="t" * 32,
        role="kiosk",
    )  # fmt: skip
    directions = {lang: f"{lang}: " + " | ".join(NASTY[:-1]) for lang in ("en", "fr")}
    (tmp_path / "kiosk.toml").write_text(
        dumps({"ui": {"directions": directions, "door_name": 'Gate "K" \\ é\x7f'}}),
        encoding="utf-8",
    )
    agent = firstboot.agent_tables(settings_, tmp_path)
    kiosk = firstboot.kiosk_tables(tmp_path, agent)
    text = firstboot._kiosk_toml(tmp_path, kiosk, simulator=False)
    loaded = tomllib.loads(text)
    assert loaded["ui"]["directions"] == directions
    assert loaded == {name: dict(table) for name, table in kiosk.items()}
    config = parse_kiosk_config(loaded, tmp_path)
    assert config.ui.directions is not None and config.ui.directions.fr == directions["fr"]

    agent_text = firstboot._toml("agent", agent)
    hardware = tomllib.loads(agent_text)["hardware"]
    assert hardware == {
        "gpio": {"backend": "rpigpio"},
        "nfc": {"backend": "nfcpy", "device": "usb"},
    }


def test_kiosk_toml_with_a_key_needing_quotes_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The old writer wrote the key bare: a file tomllib refused, and a traceback.
    settings_ = Provisioning(
        site="hq", door="gate-k", central_url="https://c.example", enroll_token="t" * 32,
        role="kiosk",
    )  # fmt: skip
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / BOOT_FILE_NAME).write_text(settings_.to_toml(), encoding="utf-8")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "kiosk.toml").write_text('[ui]\n"door name" = "K"\n', encoding="utf-8")
    argv = ["firstboot", "--boot", str(boot), "--etc", str(etc), "--state", str(tmp_path / "s")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--simulator", "--timeout", "1"])
    assert exit_.value.code == 2
    assert "ui.door name: unknown key" in capsys.readouterr().err
    assert sorted(p.name for p in etc.iterdir()) == ["kiosk.toml"]


def test_demo_agent_toml_round_trips_an_awkward_directory(tmp_path: Path) -> None:
    from portier_demo.demo import write_agent_config

    demo_dir = tmp_path / 'demo "one" \\ été'
    demo_dir.mkdir()
    path = write_agent_config(demo_dir, "http://127.0.0.1:1", "hq", door_settings={"unlock_s": 3})
    config = load_config(path)
    assert config.paths.state_dir == demo_dir / "state"
    assert config.paths.socket == demo_dir / "agent.sock"
    assert config.door.unlock_s == 3 and config.central.url == "http://127.0.0.1:1"
    assert config.hardware.camera is not None and config.hardware.camera.replay_path is not None
    assert stat.S_ISREG(path.stat().st_mode)


def test_bench_configuration_loads(tmp_path: Path) -> None:
    from bench.decision import write_config

    config = load_config(write_config(tmp_path))
    assert config.door.accept_uid and config.hardware.camera is None
    assert config.paths.state_dir == tmp_path / "state"
