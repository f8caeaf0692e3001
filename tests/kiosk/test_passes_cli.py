"""``kiosk pass --demo DIR --token TOKEN --out FILE.pdf [--lang fr]``: the acceptance contract.

The demo directory is the one the kiosk's own tests build (tests/support/kiosk_rig.py: the
agent's ``agent.toml`` and ``demo/demo.json`` with signed invitations); no agent runs.
The PDF is turned into an image with poppler's ``pdftoppm`` and its QR code read back
with the kiosk's own decoder (hardware.qr).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.cli import main
from portier_common.passes import parse_pass_qr
from tests.support.kiosk_rig import AgentRig
from tests.support.pdf_kit import pdf_to_image, qr_texts

pytestmark = pytest.mark.processes  # pdftoppm


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("demo")
    material = AgentRig(root).prepare()
    return root, {i.label: i.token for i in material.invitations}


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_writes_the_pass_of_a_valid_invitation(
    demo: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lang: str,
) -> None:
    root, tokens = demo
    out = tmp_path / "pass.pdf"
    assert (
        main(
            [
                "pass",
                "--demo",
                str(root),
                "--token",
                tokens["valid"],
                "--out",
                str(out),
                "--lang",
                lang,
            ]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert "Ada Lovelace" in said
    image = pdf_to_image(out)
    # 62 mm wide at 300 dpi: the label layout by default.
    assert abs(image.width - 732) <= 2
    texts = qr_texts(image)
    assert len(texts) == 1
    assert parse_pass_qr(texts[0])
    assert texts[0] in said


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("not a token", "not an invitation"),
        ("PT1:0000", "not an invitation"),
    ],
)
def test_a_bad_token_is_an_error(
    demo: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    token: str,
    words: str,
) -> None:
    root, _ = demo
    out = tmp_path / "pass.pdf"
    assert main(["pass", "--demo", str(root), "--token", token, "--out", str(out)]) == 1
    assert words in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("label", ["expired", "forged", "not_yet_valid", "wrong_door", "revoked"])
def test_no_pass_for_an_invitation_the_agent_refuses(
    demo: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    label: str,
) -> None:
    root, tokens = demo
    out = tmp_path / "pass.pdf"
    assert main(["pass", "--demo", str(root), "--token", tokens[label], "--out", str(out)]) == 1
    assert "prints no pass" in capsys.readouterr().err
    assert not out.exists()


def test_the_console_script_and_the_card_layout(
    demo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The installed ``kiosk`` entry point, as the acceptance checks run it."""
    root, tokens = demo
    out = tmp_path / "card.pdf"
    command = [
        sys.executable,
        "-c",
        "import sys; from kiosk.cli import main; sys.exit(main())",
        "pass",
        "--demo",
        str(root),
        "--token",
        tokens["valid"],
        "--out",
        str(out),
        "--layout",
        "cr80",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    image = pdf_to_image(out)
    assert abs(image.width - 1011) <= 2 and abs(image.height - 638) <= 2
    assert len(qr_texts(image)) == 1
    bad = subprocess.run(
        [*command[:5], str(root), "--token", "nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "kiosk pass:" in bad.stderr
