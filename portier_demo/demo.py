"""``edge-agent demo``: a reference central and an agent on simulated hardware, wired up.

``edge-agent demo --headless --dir DIR``:

1. registers its operator (``demo``, a security officer) in ``DIR/central`` and writes
   that operator's API token to ``DIR/central.token`` (0600; ``$PORTIER_CENTRAL_TOKEN``
   when set, so ``portier-central`` commands work as they are), starts the reference
   central (``python -m central serve --port 0 --data DIR/central``) and reads its
   ready line; it also registers the console's operator (``officer``, a security officer)
   with a new password kept in ``DIR/console.password`` (0600), and prints on stderr the
   console's address and that login in plain words;
2. seeds it: the active signing key, a staff badge, a guard badge (role guard, PIN
   hash), a revoked badge, and invitations (valid, single-use, expired, not yet valid,
   for another door, revoked, a single-use one to be replayed; plus a forged one
   signed with a key the central never had);
3. writes ``DIR/agent.toml`` -- the packaged simulator configuration with absolute
   paths, state and socket under ``DIR``, ``[central] url`` and a one-second sync
   interval -- and enrolls the agent with a one-time token;
4. starts the agent (``edge-agent run --config DIR/agent.toml``), waits until it has
   synced, uses the single-use "replayed" invitation once (so the demo panel's
   "already used" answers ``replayed``), writes the kiosk's demo material
   (``DIR/demo/demo.json``, the format of :mod:`kiosk.demo_material`), and prints ONE
   JSON line on stdout::

       {"central_url": ..., "central_token_file": ..., "console_url": ...,
        "console_password_file": ..., "door": ..., "config": ...,
        "agent_pid": ..., "central_pid": ...}

5. runs until SIGTERM or SIGINT, then stops its children (SIGTERM, then SIGKILL after
   15 s) and exits 0. The children get ``PR_SET_PDEATHSIG`` (Linux ``prctl``), so
   they receive SIGTERM even when the demo itself is killed with SIGKILL.

Without ``--headless`` the kiosk (``kiosk --demo DIR``) is started as a third child
once the agent is ready (:func:`kiosk_command`); it needs a display (``tools/dev demo``
uses Xvfb when there is none). Closing the kiosk ends the demo. When the kiosk's
display is a virtual one (Xvfb: nothing shows on any monitor), the demo prints on
stderr how to look at it (:func:`viewing_hints`: a VNC server on that display, a
screenshot, the screenshot script); ``--headless`` prints how to start the kiosk.

Everything the demo prints besides the JSON line goes to stderr; the children's logs
go to ``DIR/central.log`` and ``DIR/agent.log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.config import load_config, simulator_config_path
from edge_agent.tomlwrite import dumps

log = logging.getLogger(__name__)

__all__ = [
    "CONSOLE_OPERATOR",
    "DEMO_DEVICE",
    "DEMO_DOOR",
    "DemoError",
    "DemoSeed",
    "demo_console_login",
    "kiosk_command",
    "run_demo",
    "viewing_hints",
    "write_agent_config",
]

DEMO_DEVICE = "demo-gate-a"
DEMO_DOOR = "gate-a"
DEMO_ZONE = "perimeter"
STAFF_UID = "04A1B2C3D4E5F6"
GUARD_UID = "04C0FFEE000001"
GUARD_PIN = "246813"
REVOKED_UID = "04BADBAD000001"
UNKNOWN_UID = "04DEADBEEF0001"

#: How long the demo waits for each child to be ready, and for the first sync.
READY_TIMEOUT_S = 60.0
#: How long a child gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0

_PR_SET_PDEATHSIG = 1


class DemoError(Exception):
    """The demo could not start (a child failed, timed out, or the seeding was refused)."""


@dataclass
class DemoSeed:
    """What the demo put into the central (for the demo material and the tests)."""

    site: str
    door: str
    invitations: dict[str, dict[str, Any]] = field(default_factory=dict)
    badges: dict[str, str] = field(default_factory=dict)
    guard_uid: str = GUARD_UID
    guard_pin: str = GUARD_PIN


# -- children ----------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when the demo dies
    (``prctl(PR_SET_PDEATHSIG)``); None where there is no such call (not Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died before prctl: then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def _python_command(module_main: str, *args: str) -> list[str]:
    """Run ``module_main`` (``package.module:function``) with this interpreter."""
    module, _, function = module_main.partition(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    return [sys.executable, "-c", code, *args]


def _script(name: str, module_main: str, *args: str) -> list[str]:
    """The installed console script next to this interpreter, or the module's entry point."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script), *args]
    return _python_command(module_main, *args)


def kiosk_command(demo_dir: Path) -> list[str]:
    """The command that starts the kiosk against the demo (``kiosk --demo DIR``).

    This is the hook the non-headless demo uses; the kiosk finds the agent's
    socket, the demo camera and the demo material through ``DIR``.
    """
    return _script("kiosk", "kiosk.cli:main", "--demo", str(demo_dir))


class _Child:
    def __init__(self, name: str, process: subprocess.Popen[Any]) -> None:
        self.name = name
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int | None:
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning(
                    "demo: %s did not stop within %.0f s: killing it", self.name, STOP_TIMEOUT_S
                )
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        return process.returncode


def _spawn(name: str, command: list[str], log_path: Path, *, stdout_pipe: bool = False) -> _Child:
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log_file,
            stderr=log_file,
            # Only a C call runs between fork and exec; the demo starts its
            # children from its main thread.
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return _Child(name, process)


def _read_line(child: _Child, timeout_s: float) -> str:
    stream = child.process.stdout
    assert stream is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise DemoError(f"{child.name} printed nothing within {timeout_s:.0f} s")
    line = stream.readline()
    if not line:
        raise DemoError(f"{child.name} exited with status {child.process.wait()}")
    return line.decode() if isinstance(line, bytes) else line


# -- configuration -----------------------------------------------------------------------


def write_agent_config(
    demo_dir: Path,
    central_url: str | None,
    site: str,
    *,
    device: str = DEMO_DEVICE,
    door: str = DEMO_DOOR,
    door_settings: Mapping[str, Any] | None = None,
    central: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``demo_dir/agent.toml``: the simulator configuration with absolute paths,
    state and socket under ``demo_dir``, and the central at ``central_url`` (None: no
    ``[central]`` url); return it.

    ``door_settings`` and ``central`` override keys of the ``[door]`` and ``[central]``
    tables (the tests use them for short intervals and staleness limits).
    """
    simulator = simulator_config_path()
    base = tomllib.loads(simulator.read_text(encoding="utf-8"))
    hardware = base.get("hardware", {})
    camera = dict(hardware.get("camera", {}))
    if "replay_path" in camera:
        camera["replay_path"] = str((simulator.parent / camera["replay_path"]).resolve())
    tables: dict[str, Any] = {
        "device": {"id": device, "site": site, "name": f"Demo {door}"},
        "door": {
            "id": door,
            "zones": [DEMO_ZONE],
            "unlock_s": 5,
            "held_open_s": 30,
            # The simulated reader sends bare UIDs (no NTAG 424 keys in the demo).
            "accept_uid": True,
            **(door_settings or {}),
        },
        # The demo's agent is the kiosk's: a guard console, and the demo guard's badge is a
        # bare UID (the simulated reader sends no SUN message without NTAG 424 keys).
        "guard": {"console": True, "accept_uid_login": True},
        "paths": {
            "state_dir": str(demo_dir / "state"),
            "socket": str(demo_dir / "agent.sock"),
        },
        "central": {
            "timeout_s": 5.0,
            "sync_interval_s": 1.0,
            "heartbeat_interval_s": 5.0,
            "backoff_base_s": 0.2,
            "backoff_cap_s": 5.0,
            **(central or {}),
        },
    }
    if central_url is not None:
        tables["central"]["url"] = central_url
    devices: dict[str, Any] = {k: dict(hardware[k]) for k in ("gpio", "nfc") if k in hardware}
    if camera:
        devices["camera"] = camera
    if "qr" in hardware:
        devices["qr"] = dict(hardware["qr"])
    # A pass printer that keeps the passes in memory: the kiosk prints after check-in and
    # the demo can show the printer alarm (POST /v1/sim/printer); docs/passes.md.
    devices["printer"] = {"backend": "mock", "queue": "demo-labels"}
    if devices:
        tables["hardware"] = devices
    path = demo_dir / "agent.toml"
    header = "Written by `edge-agent demo`: the simulator appliance wired to the demo central."
    path.write_text(dumps(tables, header=header), encoding="utf-8")
    load_config(path)  # fail here, naming the key, rather than in the child
    return path


# -- seeding -----------------------------------------------------------------------------


def seed_central(admin: Any, door: str = DEMO_DOOR) -> DemoSeed:
    """Put the demo's credentials into the central through its admin API; return them."""
    from portier_common.pins import hash_pin
    from portier_common.tokens import InvitationClaims, SigningKey, mint

    info = admin.info()
    site = info["site"]
    if not info.get("active_kid"):
        admin.rotate_key()
        info = admin.info()
    seed = DemoSeed(site=site, door=door)
    now = int(time.time())
    admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=[door], kind="uid")
    admin.put_badge(
        uid=GUARD_UID,
        holder="Gail Guard",
        doors=[door],
        kind="uid",
        role="guard",
        pin_hash=hash_pin(GUARD_PIN),
        guard_id="gail",
    )
    admin.put_badge(uid=REVOKED_UID, holder="Rex Revoked", doors=[door], kind="uid")
    admin.revoke_badge(REVOKED_UID)
    seed.badges = {"staff": STAFF_UID, "revoked": REVOKED_UID, "unknown": UNKNOWN_UID}

    def invite(label: str, expect: str, **fields: Any) -> None:
        fields.setdefault("visitor", "Ada Lovelace")
        fields.setdefault("host", "Charles Babbage")
        fields.setdefault("doors", [door])
        created = admin.create_invitation(**fields)
        seed.invitations[label] = {
            "token": created["token"],
            "id": created["invitation"]["id"],
            "visitor": fields["visitor"],
            "host": fields["host"],
            "expect": expect,
        }

    invite("valid", "granted")
    invite("single_use", "granted", visitor="Grace Hopper", single_use=True)
    invite("expired", "expired", not_before=now - 2 * 86_400, expires=now - 86_400)
    invite("not_yet_valid", "not_yet_valid", not_before=now + 86_400, expires=now + 2 * 86_400)
    invite("wrong_door", "wrong_door", doors=["back-door"])
    invite("revoked", "revoked", visitor="Mallory Revoked")
    admin.revoke_invitation(seed.invitations["revoked"]["id"])
    # Used once by the demo as it starts (use_replayed): presenting it again is a replay.
    invite("replayed", "replayed", visitor="Rita Replay", single_use=True)
    # Signed with a key the central never had, under the central's own key id.
    forger = SigningKey.from_private_bytes(info["active_kid"], secrets.token_bytes(32))
    claims = InvitationClaims(
        invitation_id="i-forged-" + secrets.token_hex(4),
        visitor="Mallory Forger",
        site=site,
        not_before=now - 60,
        expires=now + 8 * 3600,
        single_use=False,
        doors=(door,),
    )
    seed.invitations["forged"] = {
        "token": mint(claims, forger),
        "id": claims.invitation_id,
        "visitor": claims.visitor,
        "host": "",
        "expect": "bad_signature",
    }
    return seed


def write_material(demo_dir: Path, seed: DemoSeed) -> Path:
    """Write the kiosk's demo material into ``demo_dir/demo/``; return the file.

    The format is the kiosk's (:mod:`kiosk.demo_material`, ``demo.json``); where the
    kiosk package is not installed the same fields go to ``demo/material.json``.
    """
    labels = ("valid", "expired", "forged", "not_yet_valid", "wrong_door", "revoked", "replayed")
    try:
        from kiosk import demo_material as dm
    except ImportError:
        data = {
            "invitations": [{"label": k, **v} for k, v in seed.invitations.items()],
            "badges": [{"label": k, "uid": v} for k, v in seed.badges.items()],
            "guard": {"uid": seed.guard_uid, "pin": seed.guard_pin, "name": "Gail Guard"},
        }
        path = demo_dir / "demo" / "material.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path
    invitations = tuple(
        dm.DemoInvitation(
            label,
            seed.invitations[label]["token"],
            visitor=seed.invitations[label]["visitor"],
            host=seed.invitations[label]["host"],
            expect=seed.invitations[label]["expect"],
        )
        for label in labels
        if label in dm.INVITATION_LABELS
    )
    holders = {"staff": "Sam Staff", "revoked": "Rex Revoked", "unknown": ""}
    expects = {"staff": "granted", "revoked": "revoked", "unknown": "unknown_badge"}
    badges = tuple(
        dm.DemoBadge(label, uid, holder=holders[label], expect=expects[label])
        for label, uid in seed.badges.items()
        if label in dm.BADGE_LABELS
    )
    material = dm.DemoMaterial(
        invitations=invitations,
        badges=badges,
        guard=dm.DemoGuard(seed.guard_uid, seed.guard_pin, name="Gail Guard"),
        note="written by edge-agent demo; a single-use invitation: "
        + seed.invitations["single_use"]["token"],
    )
    return dm.write(material, dm.material_path(demo_dir))


def use_replayed(socket: Path, seed: DemoSeed) -> None:
    """Present the single-use "replayed" invitation once, through the agent, so that it
    is used up (journaled like any entry; the simulated door opens once at start-up)."""
    from edge_agent.client import AgentClient

    replayed = seed.invitations.get("replayed")
    if replayed is None:
        return
    answer = AgentClient(socket, timeout=5.0).present_qr(replayed["token"], source="api")
    if not answer.get("granted"):
        log.warning("demo: the single-use invitation was not used up: %s", answer.get("reason"))


# -- seeing a kiosk on a virtual screen --------------------------------------------------


def _x_server(display: str) -> str:
    """The program name of the X server of ``display`` (``:99`` -> ``Xvfb``), or ""."""
    number = display.partition(":")[2].split(".")[0]
    if not display.startswith(":") or not number.isdigit():
        return ""  # a remote display (host:N): nothing to read here
    try:
        pid = int(Path(f"/tmp/.X{number}-lock").read_text(encoding="ascii").strip())
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        pass
    # No lock file (``Xvfb -displayfd`` writes none): the process listening on the
    # display's socket, found through /proc (Linux; our own processes at least).
    socket = f"/tmp/.X11-unix/X{number}"
    try:
        lines = Path("/proc/net/unix").read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return ""
    inodes = {f"socket:[{p[6]}]" for p in (line.split() for line in lines)
              if len(p) >= 8 and p[7].lstrip("@") == socket}  # fmt: skip
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return (proc / "comm").read_text(encoding="utf-8").strip()
    return ""


def viewing_hints(
    demo_dir: Path,
    *,
    headless: bool,
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] | None = None,
) -> list[str]:
    """Lines telling a person how to see the kiosk; empty when it is on a real screen.

    ``--headless``: how to start the kiosk or save its screens. Otherwise, when
    ``DISPLAY`` is an Xvfb server (``tools/dev demo`` without a display, or
    ``xvfb-run``): how to watch it with a VNC viewer (x11vnc on that display, when
    installed), take a screenshot, or save every screen with the screenshot script.
    """
    import shutil

    env = os.environ if environ is None else environ
    which = which or shutil.which
    shots = (
        f'xvfb-run -a -s "-screen 0 800x480x24" {sys.executable} -m kiosk.screenshots '
        f"OUT --demo {demo_dir}"
    )
    if headless:
        return [
            "demo: headless, no kiosk window. To see the kiosk:",
            f"  on a machine with a screen:  kiosk --demo {demo_dir}",
            f"  every screen as PNG files:   {shots}",
        ]
    display = env.get("DISPLAY", "")
    if not display or env.get("WAYLAND_DISPLAY") or _x_server(display) != "Xvfb":
        return []
    auth = env.get("XAUTHORITY", "")
    auth_arg = f" -auth {auth}" if auth else ""
    lines = [
        f"demo: the kiosk runs on a virtual screen (Xvfb, DISPLAY={display}): no window "
        "appears on your monitor. To see it:",
    ]
    if which("x11vnc"):
        lines.append(
            f"  watch and touch it:  x11vnc -display {display}{auth_arg} -localhost -nopw "
            "-forever &   then a VNC viewer on localhost:5900 (from another machine: "
            "ssh -L 5900:localhost:5900 THIS-HOST)"
        )
    else:
        lines.append(
            "  watch and touch it:  install x11vnc (apt-get install x11vnc), run it on "
            f"DISPLAY={display}, then a VNC viewer on localhost:5900"
        )
    if which("import"):
        lines.append(
            f"  a screenshot now:    DISPLAY={display} XAUTHORITY={auth or '~/.Xauthority'} "
            "import -window root kiosk.png"
        )
    elif which("xwd"):
        lines.append(f"  a screenshot now:    xwd -root -display {display} -out kiosk.xwd")
    lines.append(f"  every screen as PNG files (with --headless instead):  {shots}")
    return lines


# -- the orchestrator ------------------------------------------------------------------


def _wait_synced(socket: Path, agent: _Child, stop: threading.Event, timeout_s: float) -> None:
    from edge_agent.client import AgentClient, AgentUnavailable

    client = AgentClient(socket, timeout=5.0)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline and not stop.is_set():
        if agent.process.poll() is not None:
            raise DemoError(f"the agent exited with status {agent.process.returncode}")
        try:
            status = client.status()
        except AgentUnavailable as exc:
            last = str(exc)
        else:
            sync = status.get("sync") or {}
            if status.get("online") and sync.get("last_sync_ms"):
                return
            last = f"online={status.get('online')}, sync={sync}"
        stop.wait(0.1)
    if not stop.is_set():
        raise DemoError(f"the agent did not sync within {timeout_s:.0f} s ({last})")


def demo_operator_token(demo_dir: Path) -> Path:
    """Register the demo's operator in ``demo_dir/central`` (the central is not running
    yet) and write its API token to ``demo_dir/central.token`` (0600); return that path.

    The token is ``$PORTIER_CENTRAL_TOKEN`` when it is set (then ``portier-central``
    commands work without ``--token-file``), else the one a previous run wrote, else a
    new one.
    """
    from central.admin import TOKEN_ENV
    from central.auth import bootstrap_token
    from central.settings import CentralSettings

    path = demo_dir / "central.token"
    wanted = os.environ.get(TOKEN_ENV) or None
    if wanted is None and path.exists():
        wanted = path.read_text(encoding="utf-8").strip() or None
    if wanted is not None and len(wanted) < 32:
        wanted = None  # too short to register: the demo makes its own
    token = bootstrap_token(
        CentralSettings(data_dir=demo_dir / "central"), operator="demo", token=wanted
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    path.chmod(0o600)
    return path


#: The demo's console operator (a security officer with a password; the console's login).
CONSOLE_OPERATOR = "officer"
_PASSWORD_LETTERS = "abcdefghjkmnpqrstuvwxyz23456789"


def demo_console_login(demo_dir: Path) -> tuple[str, str, Path]:
    """Make sure the demo's console operator (:data:`CONSOLE_OPERATOR`, a security officer)
    exists in ``demo_dir/central`` with a password, kept in ``demo_dir/console.password``
    (0600); return ``(name, password, that file)``.

    A new password is made (and the operator added) on a fresh demo directory; a restart
    on the same directory reuses the file.
    """
    from central.settings import CentralSettings
    from central.store import CentralStore

    path = demo_dir / "console.password"
    with CentralStore(CentralSettings(data_dir=demo_dir / "central")) as store:
        known = {o["name"] for o in store.list_operators()}
        if CONSOLE_OPERATOR in known and path.exists():
            return CONSOLE_OPERATOR, path.read_text(encoding="utf-8").strip(), path
        password = "-".join(
            "".join(secrets.choice(_PASSWORD_LETTERS) for _ in range(4)) for _ in range(4)
        )
        if CONSOLE_OPERATOR in known:  # the file is gone: another name, a new password
            raise DemoError(f"{path} is missing: remove {demo_dir} to start afresh")
        store.add_operator(CONSOLE_OPERATOR, "security_officer", password)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    return CONSOLE_OPERATOR, password, path


def run_demo(
    demo_dir: Path,
    *,
    headless: bool = True,
    stop: threading.Event | None = None,
    out: Any = None,
) -> int:
    """Run the demo until ``stop`` is set (or SIGTERM/SIGINT when called from the main
    thread); return the exit status (0 after a clean stop, 1 if a child died).

    Raises :class:`DemoError` when it cannot start; children started so far are
    stopped first.
    """
    from central.admin import CentralAdmin
    from edge_agent.enroll import enroll

    out = out or sys.stdout
    stop = stop or threading.Event()
    demo_dir = Path(demo_dir).resolve()
    demo_dir.mkdir(parents=True, exist_ok=True)
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    children: list[_Child] = []
    try:
        token_file = demo_operator_token(demo_dir)
        console_name, console_password, console_file = demo_console_login(demo_dir)
        central = _spawn(
            "central",
            _python_command(
                "central.cli:main", "serve", "--port", "0", "--data", str(demo_dir / "central")
            ),
            demo_dir / "central.log",
            stdout_pipe=True,
        )
        children.append(central)
        try:
            ready = json.loads(_read_line(central, READY_TIMEOUT_S))
        except ValueError as exc:
            raise DemoError(f"central's ready line is not JSON: {exc}") from None
        url = ready["url"]
        token = token_file.read_text(encoding="utf-8").strip()
        with CentralAdmin(url, token=token) as admin:
            seed = seed_central(admin)
            enroll_token = admin.create_enroll_token(DEMO_DOOR)["enroll_token"]
        config_path = write_agent_config(demo_dir, url, seed.site)
        config = load_config(config_path)
        enroll(config, enroll_token, wait_s=READY_TIMEOUT_S)
        agent = _spawn(
            "agent",
            _script("edge-agent", "edge_agent.cli:main", "run", "--config", str(config_path)),
            demo_dir / "agent.log",
        )
        children.append(agent)
        _wait_synced(config.paths.socket, agent, stop, READY_TIMEOUT_S)
        if stop.is_set():
            return 0
        use_replayed(config.paths.socket, seed)
        material = write_material(demo_dir, seed)
        log.info("demo material in %s", material)
        if not headless:
            children.append(_spawn("kiosk", kiosk_command(demo_dir), demo_dir / "kiosk.log"))
        for hint in viewing_hints(demo_dir, headless=headless):
            print(hint, file=sys.stderr, flush=True)  # noqa: T201 (for the person, not a log)
        console_url = f"{url}/console/"
        print(  # noqa: T201 (for the person, not a log)
            f"demo: the web console is at {console_url}\n"
            f"  log in with the name {console_name} and the password {console_password}\n"
            f"  (the password is also in {console_file})",
            file=sys.stderr,
            flush=True,
        )
        line = {
            "central_url": url,
            "central_token_file": str(token_file),
            "console_url": console_url,
            "console_password_file": str(console_file),
            "door": DEMO_DOOR,
            "config": str(config_path),
            "agent_pid": agent.pid,
            "central_pid": central.pid,
        }
        print(json.dumps(line), file=out, flush=True)
        while not stop.wait(0.2):
            for child in children:
                if child.process.poll() is not None:
                    if child.name == "kiosk":
                        # Closing the kiosk's window ends the demo (its log says why
                        # if it failed).
                        status = child.process.returncode
                        if status:
                            log.error("demo: the kiosk exited with status %s; see %s",
                                      status, demo_dir / "kiosk.log")  # fmt: skip
                        return 0 if status == 0 else 1
                    log.error(
                        "demo: the %s exited with status %s", child.name, child.process.returncode
                    )
                    return 1
        return 0
    finally:
        # The agent first (it syncs to the central as it stops), the central last.
        for child in reversed(children):
            child.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
