"""Issue #11, "small things a visitor trips on": wording, legibility, the demo panel.

* The agent's answer says what a refused visitor needs to hear (``valid_until``,
  ``valid_from``, ``doors``, ``zones``), and the denied screen says it: which entrance
  to use, since when an invitation expired (in the visitor's language); a QR refusal
  speaks of the invitation, a badge refusal of the badge; a refusal during a fire alarm
  never sends anyone to the guard; in free access an unknown badge is not sent to a
  guard either (the door is unlocked anyway).
* Legibility, on every screen the screenshot catalogue shows (``kiosk.screenshots``,
  both languages) plus every other screen of the app and every denial wording:

  - **Text size.** The official 7" panel is 154 mm wide for 800 px: 0.1925 mm per
    pixel (one unit ``app.u`` is one pixel there). Roboto's capital letters are
    0.711 em high, so a ``font_size`` of 22 units draws capitals
    22 x 0.711 x 0.1925 mm = 3.01 mm high: the "cap height of about 3 mm" visitors need
    at arm's length. Visitor text: ``font_size >= app.u * 22``; guard screens (trained
    staff, closer to the screen) and the demo panel: ``>= app.u * 18`` (2.46 mm).
  - **Contrast** >= 4.5:1 (WCAG 2.x relative luminance) between the colour a label is
    drawn in (``disabled_color`` for a disabled button: Kivy draws that one) and the
    colour behind it (the nearest rectangle painted by the label or one of its parents,
    blended down to the window's background).
  - **No word split across lines.** Kivy breaks a word in the middle when it is wider
    than the label's ``text_size``: every word is measured with the label's own font
    against that width.

  The app runs in its own process (Kivy has one window per process) on its own Xvfb
  display, against the kiosk rig's real agent: ``python -m tests.journey.test_journey_words
  DEMO_DIR REPORT.json`` (from the checkout) walks the screens with a
  :class:`~kiosk.screenshots.Shooter` that checks instead of saving, and writes what it
  found; the tests read the report.
* The demo panel shows every demo invitation (valid, expired, forged, not yet valid,
  for another door, revoked, already used), each answered with its own reason code by
  the real agent (the rig's and ``edge-agent demo``'s); the demo tells a person how to
  see a kiosk that runs on a virtual screen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.kiosk_rig import OTHER_DOOR, AgentRig, running_rig, short_tmpdir, xvfb_display

pytestmark = pytest.mark.processes

MIN_VISITOR_UNITS = 22
MIN_GUARD_UNITS = 18
MIN_CONTRAST = 4.5
#: Reason codes only a badge can get (their QR wording may say "badge").
BADGE_ONLY = {
    "unknown_badge",
    "uid_not_allowed",
    # card + PIN at a wall reader
    "pin_required",
    "wrong_pin",
    "pin_timeout",
    "pin_locked_out",
    "pin_interrupted",
}
#: The reason code the agent answers for each demo panel invitation.
PANEL_REASONS = {
    "valid": "granted",
    "expired": "expired",
    "forged": "bad_signature",
    "not_yet_valid": "not_yet_valid",
    "wrong_door": "wrong_door",
    "revoked": "revoked",
    "replayed": "replayed",
}


# -- colour arithmetic (WCAG 2.x) -----------------------------------------------------------
def _channel(c: float) -> float:
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(rgb: Any) -> float:
    """WCAG relative luminance of an sRGB colour with channels in 0..1."""
    r, g, b = (_channel(float(c)) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Any, b: Any) -> float:
    """WCAG contrast ratio of two opaque colours."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def blend(top: Any, bottom: Any) -> tuple[float, float, float]:
    """``top`` (rgba) drawn over the opaque ``bottom``."""
    alpha = float(top[3]) if len(top) > 3 else 1.0
    r, g, b = (
        alpha * float(t) + (1 - alpha) * float(u) for t, u in zip(top[:3], bottom[:3], strict=True)
    )
    return r, g, b


# -- what is drawn behind a label ------------------------------------------------------------
def _fills(widget: Any) -> list[tuple[float, ...]]:
    """Colours of the rectangles ``widget`` paints over most of its area, in drawing
    order (canvas.before, then canvas -- but not a label's text, drawn in its canvas)."""
    from kivy.graphics import Canvas, Color, Rectangle, RoundedRectangle
    from kivy.uix.label import Label

    found: list[tuple[float, ...]] = []

    def visit(group: Any, colour: list[tuple[float, ...]]) -> None:
        for instruction in getattr(group, "children", []):
            if isinstance(instruction, Color):
                colour[0] = tuple(instruction.rgba)
            elif isinstance(instruction, Rectangle | RoundedRectangle):
                w, h = instruction.size
                if colour[0][3] > 0 and w >= 0.8 * widget.width and h >= 0.8 * widget.height:
                    found.append(colour[0])
            elif not isinstance(instruction, Canvas):  # a child widget's canvas: not ours
                visit(instruction, colour)

    current: list[tuple[float, ...]] = [(1.0, 1.0, 1.0, 1.0)]
    visit(widget.canvas.before, current)
    if not isinstance(widget, Label):
        visit(widget.canvas, current)
    return found


def background_of(widget: Any) -> tuple[tuple[float, float, float], str]:
    """The colour behind ``widget``'s text -- the top fill of the nearest painter among
    the widget and its parents, blended down to the window's clear colour -- and the
    painter's class name (for the message)."""
    from kivy.core.window import Window
    from kivy.uix.screenmanager import ScreenManager

    layers: list[tuple[float, ...]] = []
    node, painter = widget, "Window"
    # Up to the screen: the screen manager draws screens on the window's clear colour
    # (its transition rectangles are the screens themselves).
    while node is not None and not isinstance(node, ScreenManager) and node is not Window:
        fills = _fills(node)
        layers.extend(reversed(fills))  # top-most first
        if fills and painter == "Window":
            painter = type(node).__name__
        if any(f[3] >= 0.999 for f in fills):
            break
        node = node.parent
    colour = tuple(Window.clearcolor[:3])
    for layer in reversed(layers):
        colour = blend(layer, colour)
    return colour, painter  # type: ignore[return-value]


def check_widgets(driver: Any, root: Any, where: str, min_units: float) -> list[str]:
    """Legibility problems of the visible labels under ``root`` (module docstring)."""
    app = driver.app
    problems = []
    for label in driver.labels(root):
        text = label.text
        what = f"{where}: {type(label).__name__} {text!r}"
        if label.font_size < app.u * min_units - 0.01:
            problems.append(f"{what} is {label.font_size / app.u:.0f} units (min {min_units})")
        ink = label.disabled_color if label.disabled else label.color
        behind, painter = background_of(label)
        ratio = contrast(blend(ink, behind), behind)
        if ratio < MIN_CONTRAST:
            state = " (disabled)" if label.disabled else ""
            problems.append(f"{what}{state} has a contrast of {ratio:.2f}:1 on {painter}'s fill")
        width = label.text_size[0]
        if label.shorten or width is None:
            continue
        padding = label.padding[0] + label.padding[2] if len(label.padding) == 4 else 0
        room = width - padding
        for word in text.split():
            if label._label.get_extents(word)[0] > room + 0.5:
                problems.append(f"{what}: {word!r} does not fit on one line ({room:.0f} px)")
    return problems


# -- the walk, in its own process --------------------------------------------------------------
def _sample_decisions() -> list[tuple[str, dict[str, Any]]]:
    """Every denial wording, for both kinds, with the details an agent may add."""
    from kiosk import wording

    now = int(time.time())
    extra = {
        "valid_from": now + 86_400,
        "valid_until": now - 86_400,
        "doors": [OTHER_DOOR, "loading-bay-north"],
        "zones": ["perimeter"],
        "door": "gate-a",
    }
    out = [("error", {"granted": False, "error": True})]
    for reason in sorted({*wording.DENIAL, *wording.BADGE_DENIAL, "a_future_code"}):
        for kind in ("qr", "badge"):
            if kind == "qr" and reason in BADGE_ONLY:
                continue
            decision = {"granted": False, "reason": reason, "kind": kind, **extra}
            out.append((f"{kind}-{reason}", decision))
    return out


def _walk(demo_dir: Path, report_path: Path) -> None:
    """Run the app on the demo at ``demo_dir``, check every state, write the report."""
    import dataclasses

    from edge_agent.client import AgentClient
    from kiosk import screenshots
    from kiosk.config import Entrance, demo_config

    class Checker(screenshots.Shooter):
        """Checks each screen of the catalogue (``shot``) instead of saving it."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.problems: list[str] = []
            self.texts: dict[str, list[str]] = {}
            self.seen: set[str] = set()

        def check(self, name: str) -> None:
            d, app = self.driver, self.app
            d.frames(3)
            panel = app.demo_panel
            if panel is not None and panel.parent is not None:
                root, units = panel, MIN_GUARD_UNITS  # for whoever runs the demo
            else:
                root = app.sm.current_screen
                units = MIN_VISITOR_UNITS if root.visitor else MIN_GUARD_UNITS
                self.seen.add(app.sm.current)
            where = f"{name}-{app.tr.lang}"
            self.problems += check_widgets(d, root, where, units)
            self.texts[where] = d.texts(root)

        def shot(self, name: str) -> None:
            self.check(name)

        def both(self, name: str) -> None:
            for lang in screenshots.LANGUAGES:
                self.app.set_language(lang)
                self.check(name)

        def extra(self) -> None:
            d, app = self.driver, self.app
            for name, decision in _sample_decisions():
                app.go("denied", decision=decision)
                d.wait_screen("denied")
                self.both(f"denied-{name}")
            # The hex pad of the demo's guard login ("Eras/e", "Effa/cer").
            app.demo = True
            app.go("guard_login")
            d.wait_screen("guard_login")
            self.both("guard-login-hex-pad")
            app.demo = False
            # Free access: an unknown badge is not sent to a guard.
            guard = AgentClient(app.settings.agent.socket, timeout=5)
            guard.guard_login(app.material.guard.uid, app.material.guard.pin)
            guard.guard_action("free_access", "Drill or test")
            app.link.check_now()
            d.wait_for(
                lambda: (app.status.get("door") or {}).get("mode") == "free_access", 15, "mode"
            )
            for lang in screenshots.LANGUAGES:
                self.home(lang)
                d.pump(1.2)  # the reader does not repeat a badge within a second
                app.demo_badge("unknown")
                d.wait_screen("denied")
                self.check("free-access-unknown-badge")
            guard.guard_action("normal", "Drill or test")
            # Any screen the catalogue does not show yet (a new one): as it first appears.
            for name in app.sm.screen_names:
                if name in self.seen:
                    continue
                try:
                    app.go(name)
                    d.wait_screen(name, timeout=5)
                except (TypeError, TimeoutError) as exc:
                    self.problems.append(
                        f"screen {name}: not shown without arguments ({exc}): give it a "
                        "state in the screenshot catalogue (kiosk/screenshots.py)"
                    )
                    continue
                self.both(f"screen-{name}")

    config = demo_config(demo_dir)
    # A named entrance (the rig's other door, gate-b, stays unnamed: its id is shown).
    bay = Entrance(
        "loading-bay-north", "Loading bay, Rue Royale 12", "Quai de chargement, rue Royale 12"
    )
    ui = dataclasses.replace(config.ui, fullscreen=False, size=(800, 480), entrances=(bay,))
    config = dataclasses.replace(config, ui=ui)
    checkers: list[Checker] = []

    class Recorded(Checker):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            checkers.append(self)

    screenshots.shoot(config, report_path.parent, shooter_class=Recorded)
    checker = checkers[0]
    report = {
        "problems": checker.problems,
        "texts": checker.texts,
        "seen": sorted(checker.seen),
        "screens": list(checker.app.sm.screen_names),
    }
    report_path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, Any]:
    """The walk's report (one app run under Xvfb against a fresh rig agent)."""
    root = short_tmpdir()
    rig = AgentRig(root)
    rig.start()
    out = tmp_path_factory.mktemp("words") / "report.json"
    try:
        with xvfb_display("800x480x24") as display:
            env = {
                **os.environ,
                "DISPLAY": display,
                "KIVY_HOME": str(out.parent / "kivy"),
                "PYTHONPATH": os.pathsep.join(
                    [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
                ),
            }
            result = subprocess.run(
                [sys.executable, __file__, str(root), str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )
        assert result.returncode == 0, result.stderr[-4000:]
        return json.loads(out.read_text(encoding="utf-8"))
    finally:
        rig.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- the agent's answer -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rig():
    with running_rig() as agent:
        yield agent


def test_every_panel_invitation_gets_its_reason_from_the_real_agent(rig):
    from kiosk import demo_material
    from kiosk.ui.demo_panel import INVITATION_BUTTONS

    assert {label for _, label in INVITATION_BUTTONS} == set(demo_material.INVITATION_LABELS)
    assert set(PANEL_REASONS) == set(demo_material.INVITATION_LABELS)
    material = demo_material.load(rig.root)
    assert {i.label for i in material.invitations} == set(PANEL_REASONS)
    client = rig.client()
    for invitation in material.invitations:
        answer = client.present_qr(invitation.token)
        assert answer["reason"] == PANEL_REASONS[invitation.label], invitation.label
    # Presented again: still its own reason (the used one stays a replay, the valid one
    # multi-use).
    assert client.present_qr(material.invitation("replayed").token)["reason"] == "replayed"


def test_the_answer_says_where_and_until_when_the_credential_opens(rig):
    material = rig.material
    client = rig.client()
    expired = client.present_qr(material.invitation("expired").token)
    assert expired["reason"] == "expired"
    # The rig's expired invitation ran from three days ago until yesterday.
    assert expired["valid_from"] < expired["valid_until"] < time.time() - 86_000
    assert expired["doors"] == ["gate-a"]
    elsewhere = client.present_qr(material.invitation("wrong_door").token)
    assert elsewhere["reason"] == "wrong_door" and elsewhere["doors"] == [OTHER_DOOR]
    early = client.present_qr(material.invitation("not_yet_valid").token)
    assert early["valid_from"] > time.time()
    # Nothing is said about a forged invitation or an unknown badge.
    forged = client.present_qr(material.invitation("forged").token)
    assert not {"valid_until", "doors", "zones"} & set(forged)
    unknown = client.present_badge(material.badge("unknown").uid)
    assert not {"valid_until", "doors", "zones"} & set(unknown)
    assert all(isinstance(v, int) for v in (expired["valid_until"], early["valid_from"]))


# -- wording -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_qr_refusal_says_invitation_and_a_badge_refusal_says_badge(lang):
    from kiosk import i18n, wording
    from portier_common.reasons import Reason

    i18n.ensure_compiled()
    _ = i18n.translations(lang).gettext
    problems = []
    for reason in [*(r.value for r in Reason if r is not Reason.GRANTED), "a_future_code"]:
        for kind, forbidden in (("qr", "badge"), ("badge", "invitation")):
            if kind == "qr" and reason in BADGE_ONLY:
                continue
            words = wording.denial(reason, kind)
            said = f"{_(words.title)} {_(words.text)}".lower()
            if forbidden in said:
                problems.append(f"{lang} {kind} {reason}: {said!r}")
    assert not problems, "\n".join(problems)


def test_entrances_are_named_in_the_configuration_and_errors_name_the_key(tmp_path):
    from kiosk.config import ConfigError, parse_config

    camera = {"backend": "replay", "replay_path": "frames"}
    north = {"id": "gate-b", "en": "North gate", "fr": "Entrée nord"}
    config = parse_config({"camera": camera, "ui": {"entrances": [north]}}, tmp_path)
    assert config.ui.entrances[0].fr == "Entrée nord"
    for entrances, key in (
        ([north, north], "ui.entrances"),
        ([{**north, "fr": " "}], "ui.entrances[0].fr"),
        ([{"id": "gate-b", "en": "North gate"}], "ui.entrances[0].fr"),
    ):
        with pytest.raises(ConfigError) as error:
            parse_config({"camera": camera, "ui": {"entrances": entrances}}, tmp_path)
        assert error.value.key == key, str(error.value)


def test_dates_are_in_the_visitors_language():
    import datetime as dt

    from kiosk.ui.screens.denied import format_when

    when = dt.datetime(2026, 12, 3, 14, 30).astimezone().timestamp()
    assert format_when(when, "en") == ("3 December 2026", "14:30")
    assert format_when(when, "fr") == ("3 décembre 2026", "14:30")


# -- the screens, under Xvfb ---------------------------------------------------------------------
@pytest.mark.ui
def test_every_screen_is_legible_in_both_languages(report):
    """Text size, contrast (disabled buttons included) and whole words, on every state of
    the screenshot catalogue, every denial and every screen of the app."""
    assert not report["problems"], "\n".join(report["problems"])


@pytest.mark.ui
def test_the_walk_covers_every_screen_and_the_catalogue(report):
    assert set(report["seen"]) == set(report["screens"])
    for name in ("attract", "scan", "welcome", "photo", "denied-expired", "out-of-service"):
        assert f"{name}-en" in report["texts"] and f"{name}-fr" in report["texts"], name
    assert "guard-login-hex-pad-fr" in report["texts"]
    assert "demo-panel-en" in report["texts"]


@pytest.mark.ui
def test_wrong_door_says_which_entrance_to_use(report):
    texts = report["texts"]
    assert f"Entrance to use: {OTHER_DOOR}." in texts["denied-wrong-door-en"]
    assert f"Entrée à utiliser : {OTHER_DOOR}." in texts["denied-wrong-door-fr"]
    assert "Your invitation is for another entrance of this site." in texts["denied-wrong-door-en"]
    # Named by ui.entrances where the configuration names them (and then only those).
    assert "Entrance to use: Loading bay, Rue Royale 12." in texts["denied-qr-wrong_door-en"]
    assert (
        "Entrée à utiliser : Quai de chargement, rue Royale 12." in texts["denied-qr-wrong_door-fr"]
    )
    assert "Your badge is for another entrance of this site." in texts["denied-badge-wrong_door-en"]


@pytest.mark.ui
def test_expired_says_since_when_in_the_visitors_language(report):
    en = " ".join(report["texts"]["denied-expired-en"])
    fr = " ".join(report["texts"]["denied-expired-fr"])
    assert re.search(r"Valid until \d{1,2} [A-Z][a-z]+ \d{4} at \d\d:\d\d\.", en), en
    months = "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre"
    assert re.search(rf"Valable jusqu'au \d{{1,2}} ({months}) \d{{4}} à \d\d:\d\d\.", fr), fr


@pytest.mark.ui
def test_replayed_invitation_is_refused_as_already_used(report):
    assert "This invitation was already used" in report["texts"]["denied-replayed-en"]
    assert "Cette invitation a déjà été utilisée" in report["texts"]["denied-replayed-fr"]


@pytest.mark.ui
def test_a_fire_alarm_refusal_never_says_see_the_guard(report):
    for lang, leave in (
        ("en", "Leave the building by the nearest exit."),
        ("fr", "Quittez le bâtiment par la sortie la plus proche."),
    ):
        for key in (f"denied-emergency-{lang}", f"denied-qr-emergency-{lang}"):
            said = report["texts"][key]
            assert leave in said, key
            assert not [t for t in said if "guard" in t or "sécurité" in t], said
            assert not {"Scan again", "Scanner à nouveau"} & set(said), said


@pytest.mark.ui
def test_screens_say_invitation_for_a_qr_code_and_badge_for_a_badge(report):
    problems = []
    for key, said in report["texts"].items():
        if key.startswith("denied-qr-") and not any(r in key for r in BADGE_ONLY):
            problems += [f"{key}: {t!r}" for t in said if "badge" in t.lower()]
        if key.startswith("denied-badge-"):
            problems += [f"{key}: {t!r}" for t in said if "invitation" in t.lower()]
    assert not problems, "\n".join(problems)


@pytest.mark.ui
def test_in_free_access_an_unknown_badge_is_not_sent_to_a_guard(report):
    en = report["texts"]["free-access-unknown-badge-en"]
    fr = report["texts"]["free-access-unknown-badge-fr"]
    assert "This badge is not recognised" in en
    assert "The door is open: to check in as a visitor, show your QR invitation." in en
    assert "Please see the guard at the gate." not in en
    assert not [t for t in fr if "sécurité" in t], fr
    # Elsewhere the guard is still the way to go.
    assert "Please see the guard at the gate." in report["texts"]["denied-unknown-badge-en"]


@pytest.mark.ui
def test_the_demo_panel_shows_every_invitation(report):
    from kiosk.ui.demo_panel import BADGE_BUTTONS, INVITATION_BUTTONS

    shown = report["texts"]["demo-panel-en"]
    for msgid, _label in (*INVITATION_BUTTONS, *BADGE_BUTTONS):
        assert msgid in shown, msgid


# -- the demo ------------------------------------------------------------------------------------
def test_the_demo_tells_how_to_see_a_kiosk_on_a_virtual_screen(tmp_path):
    from portier_demo.demo import viewing_hints

    with xvfb_display("800x480x24") as display:
        env = {"DISPLAY": display, "XAUTHORITY": "/tmp/xauth-demo"}
        with_vnc = viewing_hints(
            tmp_path, headless=False, environ=env, which=lambda n: f"/usr/bin/{n}"
        )
        without = viewing_hints(tmp_path, headless=False, environ=env, which=lambda n: None)
    said = "\n".join(with_vnc)
    assert f"DISPLAY={display}" in said and "virtual screen" in said
    assert f"x11vnc -display {display} -auth /tmp/xauth-demo" in said
    assert "kiosk.screenshots" in said
    assert "install x11vnc" in "\n".join(without)
    # A real screen (no Xvfb behind DISPLAY), or none: nothing to say.
    assert viewing_hints(tmp_path, headless=False, environ={"DISPLAY": ":4242"}) == []
    assert viewing_hints(tmp_path, headless=False, environ={}) == []
    headless = "\n".join(viewing_hints(tmp_path, headless=True, environ={}))
    assert f"kiosk --demo {tmp_path}" in headless and "kiosk.screenshots" in headless


def test_edge_agent_demo_material_has_every_invitation_and_says_how_to_see_it(tmp_path):
    from edge_agent.client import AgentClient
    from edge_agent.config import load_config
    from kiosk import demo_material
    from tests.portier_demo.test_demo import Demo

    demo = Demo(tmp_path / "demo")
    try:
        config = load_config(demo.info["config"])
        material = demo_material.load(demo.dir)
        assert {i.label for i in material.invitations} == set(PANEL_REASONS)
        agent = AgentClient(config.paths.socket, timeout=10)
        for invitation in material.invitations:
            answer = agent.present_qr(invitation.token)
            assert answer["reason"] == PANEL_REASONS[invitation.label], invitation.label
        demo.process.send_signal(signal.SIGTERM)
        _, stderr = demo.process.communicate(timeout=60)
    finally:
        demo.stop(signal.SIGKILL)
    assert demo.process.returncode == 0
    assert f"kiosk --demo {demo.dir}" in stderr  # headless: how to see the kiosk


if __name__ == "__main__":
    _walk(Path(sys.argv[1]), Path(sys.argv[2]))
