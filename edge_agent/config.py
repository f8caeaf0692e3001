"""The agent's configuration: one TOML file, typed and validated at start-up.

``/etc/portier/agent.toml`` on a device; every command takes ``--config``.
A bad file stops the agent with a message that names the key and what is wrong
(``edge-agent check-config FILE``). Relative paths in the file are relative to
the file's own folder. See ``docs/configuration.md`` for every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.door import DoorMode, DoorTimings
from hardware.camera import CameraSettings
from hardware.gpio import GpioSettings
from hardware.nfc import NfcSettings
from hardware.printer import PrinterSettings
from hardware.qr import QRSettings
from hardware.reader import ReaderSettings
from portier_common import settings
from portier_common.ntag424 import Ntag424Section
from portier_common.settings import NOT_A_KEY, ConfigError, build, keys_of, resolve_path

DEFAULT_PATH = Path("/etc/portier/agent.toml")
#: ``[door] max_offline_staleness_s`` of a door with a central when the file sets none:
#: a door cut off from its central stops trusting its cache after a day.
DEFAULT_MAX_OFFLINE_STALENESS_S = 86_400.0
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_IDENT_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def _ident(key: str, value: str) -> None:
    settings.matches(key, value, _IDENT, _IDENT_RULE)


@dataclass(frozen=True)
class DeviceSection:
    """Who this appliance is."""

    id: str
    site: str
    name: str = ""

    def __post_init__(self) -> None:
        _ident("id", self.id)
        _ident("site", self.site)


@dataclass(frozen=True)
class DoorSection:
    """The door this agent controls and what it accepts."""

    id: str
    zones: tuple[str, ...] = ()
    #: The mode of a new device (nothing persisted yet). Once a guard or the central
    #: set a mode, that mode is kept durably and wins over this one at every start.
    mode: str = "normal"
    unlock_s: float = 5.0
    held_open_s: float = 30.0
    rex_unlocks: bool = True
    relock_on_close: bool = True
    accept_qr: bool = True
    accept_ntag424: bool = True
    #: UID-only badges can be cloned: off unless this door really needs them.
    accept_uid: bool = False
    #: Refuse offline decisions when the cache is older than this many seconds. Unset:
    #: DEFAULT_MAX_OFFLINE_STALENESS_S with a central (``[central] url``), no bound
    #: without one (a standalone door has nothing to sync from).
    max_offline_staleness_s: float | None = None
    #: "Never refuse on age", said explicitly (a door with a central is bounded otherwise).
    allow_unbounded_offline: bool = False
    #: The ``stale_cache`` alarm is raised at this fraction of the maximum staleness.
    stale_alarm_fraction: float = 0.5
    #: A visitor's Help call (``help_requested``) clears by itself after this many
    #: seconds if no guard acknowledged it; presses meanwhile raise nothing more.
    help_alarm_s: float = 300.0
    visitor_schedule: str | None = None
    #: Tolerance on every validity window, and how far the clock may be below the
    #: time floor and still be trusted: NTP keeps clocks within a second, 60 s is
    #: ample (docs/tokens.md, "Clock skew").
    max_clock_skew_s: float = 60.0
    #: How long the door stays unlocked when a visitor's grant is opened on request
    #: (the kiosk's welcome step): long enough to read the screen and walk through.
    visitor_unlock_s: float = 10.0
    #: How long a grant decided at the scan may still open the door (``POST
    #: /v1/grants/{id}/open``); one never opened in that time is journaled
    #: ``access.grant_unused``.
    grant_hold_s: float = 120.0

    def __post_init__(self) -> None:
        _ident("id", self.id)
        settings.each("zones", self.zones, _ident)
        settings.choice(
            "mode", self.mode, (DoorMode.NORMAL, DoorMode.LOCKDOWN, DoorMode.FREE_ACCESS)
        )
        if self.max_offline_staleness_s is not None and self.max_offline_staleness_s <= 0:
            raise ConfigError(
                "max_offline_staleness_s",
                "must be a positive number of seconds "
                "(for no bound at all, set allow_unbounded_offline = true instead)",
            )
        if self.allow_unbounded_offline and self.max_offline_staleness_s is not None:
            raise ConfigError(
                "allow_unbounded_offline", "cannot be true while max_offline_staleness_s is set"
            )
        settings.number("stale_alarm_fraction", self.stale_alarm_fraction, above=0, high=1)
        settings.seconds("help_alarm_s", self.help_alarm_s, 10, 86400)
        settings.seconds("max_clock_skew_s", self.max_clock_skew_s, 0, 3600)
        settings.seconds("visitor_unlock_s", self.visitor_unlock_s, 0.5, 300)
        settings.seconds("grant_hold_s", self.grant_hold_s, 1, 3600)
        self.timings()  # validates unlock_s and held_open_s, naming them

    def timings(self) -> DoorTimings:
        """The door state machine's timings."""
        return DoorTimings(
            unlock_s=self.unlock_s,
            held_open_s=self.held_open_s,
            rex_unlocks=self.rex_unlocks,
            relock_on_close=self.relock_on_close,
        )


@dataclass(frozen=True)
class PathsSection:
    """Where state and the local API socket live."""

    state_dir: Path = Path("/var/lib/portier")
    socket: Path = Path("/run/portier/agent.sock")
    #: File mode of the socket: decides who may call the local API (group = kiosk user).
    socket_mode: int = 0o660

    def __post_init__(self) -> None:
        if not 0 <= self.socket_mode <= 0o777:
            raise ConfigError("socket_mode", f"{self.socket_mode!r} is not a file mode")

    @property
    def database(self) -> Path:
        """The SQLite journal and cache."""
        return self.state_dir / "portier.db"


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_central_url(url: str) -> str:
    """Return *url* if the agent may talk to it, else raise ValueError saying why.

    ``https://`` anywhere; plain ``http://`` only on loopback (the reference central
    of the demo and the tests): elsewhere anybody on the path could read the device
    credential and rewrite what the central says.
    """
    parts = settings.url("", url, schemes=("http", "https"))  # callers name the key
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{url!r}: plain http:// is allowed on loopback only "
            "(127.0.0.0/8, ::1, localhost); use https://"
        )
    return url


@dataclass(frozen=True)
class ApiSection:
    """Limits of the local API's Unix socket (docs/local-api.md, "Limits").

    Only the kiosk and the CLI call it, so the bounds are small: a client that holds
    connections open, or sends a request byte by byte, must not starve the door's
    other work (the store, the uplink) of file descriptors nor lock the kiosk out.
    """

    #: Connections open at once; when full, the oldest idle one is closed first.
    max_connections: int = 64
    #: A request head must be complete this long after its first byte.
    header_timeout_s: float = 5.0
    #: A request body must be complete this long after its head.
    body_timeout_s: float = 30.0
    #: A connection with no request is closed after this long (after connecting or
    #: after its last answer): idle keep-alive, and a client that never sends.
    idle_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        settings.integer("max_connections", self.max_connections, 4, 4096)
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
            settings.seconds(name, getattr(self, name), 0.1, 3600)


@dataclass(frozen=True)
class CentralSection:
    """The central identity-and-access API (optional: a door works offline without it).

    How the agent uses each key is in ``docs/sync.md``.
    """

    url: str | None = None
    #: CA bundle that verifies the central's TLS certificate (None: the system's CAs).
    ca_file: Path | None = None
    timeout_s: float = 10.0
    batch_size: int = 500
    sync_interval_s: float = 5.0
    heartbeat_interval_s: float = 60.0
    clock_drift_alarm_s: float = 120.0
    #: Where enrollment stores the device credential (default: state_dir/central-credential.json).
    credential_file: Path | None = None
    #: Retry delays: full jitter, uniform(0, min(cap, base * 2**attempt)).
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    #: Changes asked for per deltas page.
    deltas_page: int = 500
    #: The backlog alarm: events waiting, age of the oldest one, or the share of the
    #: free disk space the backlog would take (whichever comes first).
    backlog_alarm_events: int = 100_000
    backlog_alarm_age_s: float = 86_400.0
    backlog_alarm_disk_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.url is not None:
            try:
                check_central_url(self.url)
            except ValueError as exc:
                raise ConfigError("url", str(exc)) from None
        settings.seconds("timeout_s", self.timeout_s, 0.1, 300)
        settings.integer("batch_size", self.batch_size, 1, 10_000)
        for name, low, high in (
            ("sync_interval_s", 0.05, 86_400),
            ("heartbeat_interval_s", 0.1, 86_400),
            ("clock_drift_alarm_s", 0.001, 86_400),
            ("backoff_base_s", 0.001, 3600),
            ("backoff_cap_s", 0.001, 86_400),
            ("backlog_alarm_age_s", 1, 365 * 86_400),
        ):
            settings.seconds(name, getattr(self, name), low, high)
        if self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError("backoff_cap_s", "must not be below backoff_base_s")
        settings.integer("deltas_page", self.deltas_page, 1, 1000)
        settings.integer("backlog_alarm_events", self.backlog_alarm_events, 1)
        settings.number(
            "backlog_alarm_disk_fraction", self.backlog_alarm_disk_fraction, above=0, high=1
        )


@dataclass(frozen=True)
class GuardSection:
    """Guard console sessions (docs/configuration.md, ``[guard]``)."""

    #: This device has a guard console (a kiosk): only then does the central send it
    #: guards' PIN hashes, and only then does the local API open guard sessions.
    console: bool = False
    #: Guards with a bare-UID badge (kind ``uid``: cloneable) may log in. NTAG 424
    #: guards always need a verified tap; like ``[door] accept_uid``, off by default.
    accept_uid_login: bool = False
    max_pin_failures: int = 5
    lockout_s: float = 300.0
    session_timeout_s: float = 120.0
    #: Per-device rate limit on guard logins (a token bucket): this many attempts
    #: a minute on average, ``login_burst`` at once.
    login_attempts_per_minute: int = 10
    login_burst: int = 5

    def __post_init__(self) -> None:
        settings.integer("max_pin_failures", self.max_pin_failures, 1, 20)
        settings.seconds("lockout_s", self.lockout_s, 1, 86_400)
        settings.integer("login_attempts_per_minute", self.login_attempts_per_minute, 1, 100_000)
        settings.integer("login_burst", self.login_burst, 1, 1000)


@dataclass(frozen=True)
class HardwareSection:
    """The devices this appliance has; a missing table means none of that kind."""

    gpio: GpioSettings | None = None
    nfc: NfcSettings | None = None
    camera: CameraSettings | None = None
    qr: QRSettings | None = None
    #: The visitor pass printer (docs/passes.md); none: the kiosk prints no passes.
    printer: PrinterSettings | None = None
    #: The door's wall readers: OSDP with Secure Channel, or legacy Wiegand
    #: (docs/readers.md).
    reader: ReaderSettings | None = None

    def __post_init__(self) -> None:
        reader = self.reader
        if reader is None:
            return
        # Card + PIN (``require_pin``) is checked by the agent against the badge's PIN
        # hash from the central (docs/readers.md, "Card + PIN").
        if reader.backend == "wiegand" and self.gpio is not None:
            taken = {self.gpio.lock_relay_pin, *(i.pin for i in self.gpio.inputs().values())}
            if self.gpio.aux_relay_pin is not None:
                taken.add(self.gpio.aux_relay_pin)
            for key in ("d0_pin", "d1_pin", "led_pin", "beeper_pin"):
                pin = getattr(reader, key)
                if pin is not None and pin in taken:
                    raise ConfigError(f"reader.{key}", "is already used by [hardware.gpio]")


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration file."""

    device: DeviceSection
    door: DoorSection
    paths: PathsSection = field(default_factory=PathsSection)
    api: ApiSection = field(default_factory=ApiSection)
    central: CentralSection = field(default_factory=CentralSection)
    guard: GuardSection = field(default_factory=GuardSection)
    ntag424: Ntag424Section = field(default_factory=Ntag424Section)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    #: The file it was read from (not a key in the file).
    source: Path | None = field(default=None, compare=False, metadata=NOT_A_KEY)

    def __post_init__(self) -> None:
        # Offline is bounded by default where there is a central to sync from: the
        # door's effective bound is resolved here, once, for everything that reads it.
        door = self.door
        if (
            self.central.url
            and door.max_offline_staleness_s is None
            and not door.allow_unbounded_offline
        ):
            bounded = dataclasses.replace(
                door, max_offline_staleness_s=DEFAULT_MAX_OFFLINE_STALENESS_S
            )
            object.__setattr__(self, "door", bounded)


def parse_config(data: dict[str, Any], base_dir: Path, source: Path | None = None) -> AgentConfig:
    """Build an :class:`AgentConfig` from parsed TOML. Raises :class:`ConfigError`."""
    settings.refuse_unknown(data, keys_of(AgentConfig), what="section")
    cfg = build(AgentConfig, data)
    paths = dataclasses.replace(
        cfg.paths,
        state_dir=resolve_path(base_dir, cfg.paths.state_dir),
        socket=resolve_path(base_dir, cfg.paths.socket),
    )
    central = dataclasses.replace(
        cfg.central,
        ca_file=resolve_path(base_dir, cfg.central.ca_file),
        credential_file=resolve_path(base_dir, cfg.central.credential_file),
    )
    hardware = cfg.hardware
    if hardware.reader is not None and hardware.reader.peripherals:
        peripherals = tuple(
            dataclasses.replace(pd, key_file=resolve_path(base_dir, pd.key_file))
            for pd in hardware.reader.peripherals
        )
        reader = dataclasses.replace(hardware.reader, peripherals=peripherals)
        hardware = dataclasses.replace(hardware, reader=reader)
    if hardware.camera is not None and hardware.camera.replay_path is not None:
        camera = dataclasses.replace(
            hardware.camera, replay_path=resolve_path(base_dir, hardware.camera.replay_path)
        )
        hardware = dataclasses.replace(hardware, camera=camera)
    return dataclasses.replace(cfg, paths=paths, central=central, hardware=hardware, source=source)


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate the TOML file at ``path``.

    Raises :class:`ConfigError` naming the key (or the file, for a syntax
    error or an unreadable file).
    """
    path = Path(path)
    return settings.load(path, lambda data: parse_config(data, path.parent.resolve(), path))


def simulator_config_path() -> Path:
    """The packaged configuration of an appliance on simulated hardware."""
    return Path(__file__).parent / "data" / "simulator.toml"
