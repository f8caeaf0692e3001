"""The kiosk's configuration: one TOML file, typed and validated at start-up.

``/etc/portier/kiosk.toml`` on a device (``kiosk --config FILE``). Sections map
onto frozen dataclasses; camera and QR settings are the hardware packages' own
:class:`~hardware.camera.CameraSettings` and :class:`~hardware.qr.QRSettings`.
Unknown keys are refused, types are checked, and every error names the
dotted key (``ui.idle_timeout_s: ...``). Relative paths are relative to the
file's folder. ``docs/kiosk.md`` lists every key.

``kiosk --demo DIR`` builds its configuration from the demo directory's
``agent.toml`` instead (:func:`demo_config`): the agent's socket, and its
simulated camera and QR settings.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardware.camera import CameraSettings
from hardware.qr import QRSettings
from portier_common import settings
from portier_common.settings import NOT_A_KEY, ConfigError, build, read_toml, resolve_path

DEFAULT_PATH = Path("/etc/portier/kiosk.toml")
#: Languages with a catalogue; the first is the fallback.
LANGUAGES: tuple[str, ...] = ("en", "fr")
#: Kivy input set-ups :class:`InputSection` knows (see :func:`kiosk.app.configure_kivy`).
INPUT_PROVIDERS: tuple[str, ...] = ("mouse", "mtdev", "hidinput")
#: The demo site's fire assembly point (``ui.assembly_point``).
DEMO_ASSEMBLY_POINT = {"en": "Car park B, by the flagpole", "fr": "Parking B, près du mât"}
#: The demo site's other entrances, named for a visitor refused at the wrong one.
DEMO_ENTRANCES = (
    {
        "id": "back-door",
        "en": "Back door, Rue de la Loi 16",
        "fr": "Porte arrière, rue de la Loi 16",
    },
    {"id": "gate-b", "en": "North gate, Rue Belliard", "fr": "Entrée nord, rue Belliard"},
)


@dataclass(frozen=True)
class AgentSection:
    """How to reach the edge agent's local API."""

    socket: Path = Path("/run/portier/agent.sock")
    #: Timeout of one call, in seconds.
    timeout_s: float = 5.0
    #: Status poll period while the agent answers (seconds).
    status_interval_s: float = 5.0
    #: Status poll period while it does not: how fast "out of service" clears.
    retry_interval_s: float = 1.0

    def __post_init__(self) -> None:
        settings.number("timeout_s", self.timeout_s, 0.2, 60)
        settings.number("status_interval_s", self.status_interval_s, 0.2, 300)
        settings.number("retry_interval_s", self.retry_interval_s, 0.1, 60)


@dataclass(frozen=True)
class ScanSection:
    """The camera scan loop."""

    #: A code seen again within this many seconds of its last sighting is not presented
    #: again: holding an invitation up for a while counts once.
    debounce_s: float = 4.0
    #: Viewfinder refresh rate (frames per second drawn on screen).
    viewfinder_fps: float = 15.0

    def __post_init__(self) -> None:
        settings.number("debounce_s", self.debounce_s, 0.5, 600)
        settings.number("viewfinder_fps", self.viewfinder_fps, 1, 60)


@dataclass(frozen=True)
class Directions:
    """Site-specific directions after the gate, in every language (optional)."""

    en: str
    fr: str

    def __post_init__(self) -> None:
        for lang in LANGUAGES:
            settings.text(lang, getattr(self, lang), what="directions")


@dataclass(frozen=True)
class Entrance:
    """A door's or a zone's name for visitors, in every language (``[[ui.entrances]]``).

    A visitor refused at the wrong door is told which entrance to use: the agent
    answers the door ids and zones the credential opens; this names them.
    """

    id: str
    en: str
    fr: str

    def __post_init__(self) -> None:
        settings.text("id", self.id)
        for lang in LANGUAGES:
            settings.text(lang, getattr(self, lang), what=f"the name of entrance {self.id!r}")


@dataclass(frozen=True)
class AssemblyPoint:
    """Where people gather after leaving the building, in every language (fire evacuation).

    Both are shown together on the evacuation screen, whatever the language chosen.
    """

    en: str
    fr: str

    def __post_init__(self) -> None:
        for lang in LANGUAGES:
            # At most 80 characters: it is shown in large type.
            settings.text(lang, getattr(self, lang), max_chars=80, what="the assembly point")


@dataclass(frozen=True)
class UISection:
    """The screen."""

    #: Language shown on the attract screen (and after every idle timeout).
    language: str = "en"
    #: Seconds without a touch before a visitor screen goes back to the attract screen.
    idle_timeout_s: float = 45.0
    #: Seconds an outcome (welcome, denied) stays on screen.
    outcome_timeout_s: float = 15.0
    #: Seconds the welcome screen waits for the visitor's answer to the photo offer
    #: before it asks the agent to open the door by itself.
    open_after_s: float = 8.0
    #: Seconds without a touch before a guard is logged out.
    guard_idle_timeout_s: float = 90.0
    fullscreen: bool = True
    #: Window size when not fullscreen (width, height).
    size: tuple[int, int] = (800, 480)
    #: Door name shown in the header (the agent's door id when empty).
    door_name: str = ""
    directions: Directions | None = None
    #: Names of the site's doors and zones, for "Entrance to use: ..." (ids shown otherwise).
    entrances: tuple[Entrance, ...] = ()
    #: The fire assembly point on the evacuation screen (unset: "follow the signs").
    assembly_point: AssemblyPoint | None = None
    #: Seconds a screen ignores touches after it is shown: the second tap of a
    #: double tap on one screen's button never lands on the next screen's.
    touch_guard_s: float = 0.5
    #: Show the on-screen demo panel (also set by ``kiosk --demo``).
    demo: bool = False

    def __post_init__(self) -> None:
        settings.choice("language", self.language, LANGUAGES)
        settings.number("idle_timeout_s", self.idle_timeout_s, 5, 3600)
        settings.number("outcome_timeout_s", self.outcome_timeout_s, 3, 600)
        settings.number("guard_idle_timeout_s", self.guard_idle_timeout_s, 10, 3600)
        settings.number("open_after_s", self.open_after_s, 1, 120)
        ids = [e.id for e in self.entrances]
        if len(ids) != len(set(ids)):
            raise ConfigError("entrances", f"an id appears twice ({', '.join(ids)})")
        settings.number("touch_guard_s", self.touch_guard_s, 0, 2)
        width, height = self.size
        if not (320 <= width <= 7680 and 240 <= height <= 4320):
            raise ConfigError(
                "size", f"{self.size!r} must be at least 320x240 and at most 7680x4320"
            )


@dataclass(frozen=True)
class InputSection:
    """Touch input: exactly one Kivy input provider, so a touch counts once.

    ``mouse`` for a desktop, the demo and the tests (SDL's mouse events, which
    include touches SDL turns into mouse clicks); ``mtdev`` for a multitouch
    panel read straight from the kernel (the official 7" display), ``hidinput``
    for single-touch panels. With ``mtdev``/``hidinput`` the mouse provider is
    removed, because SDL also turns the panel's touches into mouse events.
    """

    provider: str = "mouse"
    #: ``/dev/input/eventN`` (or a by-path link); empty: probe sysfs for the panel.
    device: str = ""

    def __post_init__(self) -> None:
        settings.choice("provider", self.provider, INPUT_PROVIDERS)
        if self.device and not self.device.startswith("/dev/input/"):
            raise ConfigError("device", f"{self.device!r} must be a path under /dev/input/")
        if self.device and self.provider == "mouse":
            raise ConfigError("device", "only for the mtdev and hidinput providers")


#: Visitor pass layouts (``[passes] layout``): a 62 mm continuous label roll (Brother QL)
#: or a CR80 card (85.6 x 54 mm, ID-1, the card printers' size). docs/passes.md.
PASS_LAYOUTS: tuple[str, ...] = ("label62", "cr80")
_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


@dataclass(frozen=True)
class PassCategory:
    """A visitor category and its "VISITOR / VISITEUR" band colour (``[[passes.categories]]``).

    An invitation names its category in its ``category`` extra value (``visitor`` when
    it has none); the pass shows the category's name under the band in the pass's language.
    """

    id: str
    #: The band's colour, ``#RRGGBB`` (white text is printed on it: choose a dark colour).
    colour: str
    en: str
    fr: str

    def __post_init__(self) -> None:
        settings.text("id", self.id)
        settings.matches("colour", self.colour, _COLOUR, "a colour #RRGGBB")
        for lang in LANGUAGES:
            settings.text(lang, getattr(self, lang), max_chars=40, what="the category's name")


DEFAULT_PASS_CATEGORIES = (
    PassCategory("visitor", "#B71C1C", "Visitor", "Visiteur"),
    PassCategory("contractor", "#E65100", "Contractor", "Sous-traitant"),
    PassCategory("vip", "#1A237E", "Guest", "Invité"),
)


@dataclass(frozen=True)
class PassSection:
    """The visitor pass the kiosk prints after a check-in (``[passes]``, docs/passes.md)."""

    #: ``label62`` (62 mm roll, portrait) or ``cr80`` (card, landscape).
    layout: str = "label62"
    #: Length of a label cut from the 62 mm roll, in millimetres (``label62`` only).
    label_length_mm: float = 100.0
    #: Print resolution in dots per inch (Brother QL: 300; most card printers: 300).
    dpi: int = 300
    #: The site's name printed on the pass (the invitation's site id when empty).
    site_name: str = ""
    #: Visitor categories and their band colours; an unknown category prints as ``visitor``.
    categories: tuple[PassCategory, ...] = DEFAULT_PASS_CATEGORIES

    def __post_init__(self) -> None:
        settings.choice("layout", self.layout, PASS_LAYOUTS)
        settings.number("label_length_mm", self.label_length_mm, 60, 200)
        settings.integer("dpi", self.dpi, 150, 600)
        ids = [c.id for c in self.categories]
        if len(ids) != len(set(ids)):
            raise ConfigError("categories", f"an id appears twice ({', '.join(ids)})")
        if "visitor" not in ids:
            raise ConfigError("categories", "the category 'visitor' (the default) is missing")

    def category(self, category_id: str) -> PassCategory:
        """The category ``category_id``, or ``visitor`` when it is not configured."""
        by_id = {c.id: c for c in self.categories}
        return by_id.get(category_id) or by_id["visitor"]


@dataclass(frozen=True)
class KioskConfig:
    """The whole kiosk configuration."""

    camera: CameraSettings
    agent: AgentSection = field(default_factory=AgentSection)
    qr: QRSettings = field(default_factory=QRSettings)
    scan: ScanSection = field(default_factory=ScanSection)
    ui: UISection = field(default_factory=UISection)
    input: InputSection = field(default_factory=InputSection)
    passes: PassSection = field(default_factory=PassSection)
    #: The demo directory (``kiosk --demo DIR``); None on a real kiosk.
    demo_dir: Path | None = field(default=None, metadata=NOT_A_KEY)
    #: The file it was read from (not a key in the file).
    source: Path | None = field(default=None, compare=False, metadata=NOT_A_KEY)


def parse_config(data: dict[str, Any], base_dir: Path, source: Path | None = None) -> KioskConfig:
    """Build a :class:`KioskConfig` from parsed TOML. Raises :class:`ConfigError`."""
    cfg = build(KioskConfig, data)
    agent = dataclasses.replace(cfg.agent, socket=resolve_path(base_dir, cfg.agent.socket))
    camera = cfg.camera
    if camera.replay_path is not None:
        camera = dataclasses.replace(camera, replay_path=resolve_path(base_dir, camera.replay_path))
    return dataclasses.replace(cfg, agent=agent, camera=camera, source=source)


def load_config(path: str | Path) -> KioskConfig:
    """Read and validate the kiosk TOML file at ``path``.

    Raises :class:`ConfigError` naming the key (or the file, for a syntax error
    or an unreadable file).
    """
    path = Path(path)
    return settings.load(path, lambda data: parse_config(data, path.parent.resolve(), path))


def demo_config(demo_dir: str | Path) -> KioskConfig:
    """The configuration of ``kiosk --demo DIR``.

    ``DIR/kiosk.toml`` when the orchestrator wrote one; otherwise built from
    ``DIR/agent.toml``: its ``[paths] socket``, its simulated camera's size and
    frame rate and its ``[hardware.qr]`` settings, windowed at 800x480 with the
    demo panel. The demo camera (:mod:`kiosk.demo_camera`) replaces the camera
    either way. Raises :class:`ConfigError` naming the file and key.
    """
    demo_dir = Path(demo_dir).resolve()
    own = demo_dir / "kiosk.toml"
    if own.exists():
        cfg = load_config(own)
        return dataclasses.replace(
            cfg, ui=dataclasses.replace(cfg.ui, demo=True), demo_dir=demo_dir
        )
    agent_toml = demo_dir / "agent.toml"
    data = read_toml(agent_toml)
    paths = data.get("paths", {})
    socket = paths.get("socket", str(AgentSection.socket)) if isinstance(paths, dict) else None
    if not isinstance(socket, str) or not socket:
        raise ConfigError("paths.socket", f"missing or not a path in {agent_toml}")
    hardware = data.get("hardware", {}) if isinstance(data.get("hardware"), dict) else {}
    camera_raw = hardware.get("camera") or {}
    camera = {
        "backend": "replay",
        "replay_path": str(camera_raw.get("replay_path", "sim-camera")),
        "resolution": camera_raw.get("resolution", [640, 480]),
        "fps": camera_raw.get("fps", 15.0),
        "loop": True,
    }
    kiosk: dict[str, Any] = {
        "agent": {"socket": socket},
        "camera": camera,
        "ui": {
            "fullscreen": False,
            "demo": True,
            "assembly_point": dict(DEMO_ASSEMBLY_POINT),
            "entrances": [dict(e) for e in DEMO_ENTRANCES],
        },
    }
    if isinstance(hardware.get("qr"), dict):
        kiosk["qr"] = hardware["qr"]
    try:
        cfg = parse_config(kiosk, demo_dir, source=agent_toml)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"{exc.problem} (derived from {agent_toml})") from exc
    return dataclasses.replace(cfg, demo_dir=demo_dir)
