"""A real edge agent on simulated hardware for the kiosk's tests and screenshots.

:class:`AgentRig` writes an agent configuration (from the packaged
``simulator.toml``), fills the credential cache (a signing key, invitations, a
staff badge, guard badges with PINs) BEFORE the agent starts (the store has
one writer), mints QR tokens (valid, expired, forged) and writes the kiosk's
demo material file, then runs ``edge-agent run`` as a subprocess.

Run it by hand to get a demo directory for ``kiosk --demo DIR`` or
``python -m kiosk.screenshots OUT --demo DIR`` until ``edge-agent demo``
exists::

    .venv/bin/python tests/support/kiosk_rig.py DIR     # Ctrl-C stops the agent

tests/kiosk/test_kiosk_rig.py checks the rig itself.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.client import AgentClient, AgentUnavailable
from kiosk import demo_material
from kiosk.demo_material import DemoBadge, DemoGuard, DemoInvitation, DemoMaterial

REPO = Path(__file__).resolve().parents[2]
SIMULATOR_TOML = REPO / "edge_agent" / "data" / "simulator.toml"
SIM_CAMERA = REPO / "edge_agent" / "data" / "sim-camera"
EDGE_AGENT = Path(sys.executable).with_name("edge-agent")

SITE, DOOR = "hq", "gate-a"
KID = "demo-2026"
#: Fixed seeds: the same tokens and keys in every run (reproducible screenshots).
SIGNING_SEED = bytes(range(32))
FORGER_SEED = bytes(range(32, 64))

STAFF_UID = "04A1B2C3D4E5F6"
UNKNOWN_UID = "04DEADBEEF0001"
REVOKED_UID = "04BADBAD000001"
#: The door a "wrong door" invitation is for.
OTHER_DOOR = "gate-b"
GUARD_UID = "04C0FFEE000001"
#: A second guard, for the lockout test (a locked-out badge stays locked for lockout_s).
LOCKOUT_GUARD_UID = "04C0FFEE000002"
GUARD_PIN = "246813"
#: Cached invitations a guard's manual check-in must refuse (issue #11), by reason.
REFUSED_CHECKINS = {
    "expired": "inv-bob",
    "not_yet_valid": "inv-nina",
    "revoked": "inv-rita",
    "wrong_door": "inv-walt",
    "wrong_site": "inv-sofia",
}


@dataclass(frozen=True)
class Visitor:
    """An invitation in the cache (for look-up) and its token."""

    invitation_id: str
    visitor: str
    host: str
    token: str


def _edit_config(text: str, state_dir: Path, socket: Path) -> str:
    """The simulator config with our paths, UID badges accepted and short guard timings."""
    text = re.sub(r'(?m)^state_dir = ".*"$', f'state_dir = "{state_dir}"', text)
    text = re.sub(r'(?m)^socket = ".*"$', f'socket = "{socket}"', text)
    text = re.sub(r'(?m)^replay_path = ".*"$', f'replay_path = "{SIM_CAMERA}"', text)
    text = text.replace("[door]\n", "[door]\naccept_uid = true\n", 1)
    # The kiosk's agent: a guard console; the rig's guards have bare-UID badges.
    text += (
        "\n[guard]\nconsole = true\naccept_uid_login = true\n"
        "max_pin_failures = 3\nlockout_s = 60\nsession_timeout_s = 600\n"
        "login_attempts_per_minute = 6000\nlogin_burst = 1000\n"
    )
    # A pass printer whose state the tests set (POST /v1/sim/printer): docs/passes.md.
    text += '\n[hardware.printer]\nbackend = "mock"\nqueue = "labels"\n'
    return text


def _guard_journey_cache(now: int) -> tuple[list, list]:
    """Cached invitations for the guard console (issue #11): a second Ada Lovelace
    today (another host and time: duplicates must be told apart), and invitations
    a manual check-in refuses (not yet valid, revoked, another door, another site)."""
    from edge_agent.store import Invitation, Revocation

    hour, day = 3600, 86_400
    invitations = [
        Invitation(
            id="inv-ada2",
            visitor="Ada Lovelace",
            host="Alan Turing",
            doors=(DOOR,),
            not_before=now - 2 * hour,
            not_after=now + 2 * hour,
            single_use=True,
        ),
        Invitation(
            id="inv-nina",
            visitor="Nina Early",
            host="Grace Hopper",
            doors=(DOOR,),
            not_before=now + 2 * day,
            not_after=now + 3 * day,
        ),
        Invitation(
            id="inv-rita",
            visitor="Rita Revoked",
            host="Grace Hopper",
            doors=(DOOR,),
            not_before=now - hour,
            not_after=now + day,
        ),
        Invitation(
            id="inv-walt",
            visitor="Walt Wrongdoor",
            host="Grace Hopper",
            doors=("gate-b",),
            not_before=now - hour,
            not_after=now + day,
        ),
        Invitation(
            id="inv-sofia",
            visitor="Sofia Elsewhere",
            host="Grace Hopper",
            doors=(DOOR,),
            not_before=now - hour,
            not_after=now + day,
            data={"site": "branch", "zones": []},
        ),
    ]
    return invitations, [Revocation("invitation", "inv-rita", revoked_at=now - 60)]


class AgentRig:
    """One agent process with its own state, socket and demo material under ``root``.

    ``root`` must be short: the socket path has to fit AF_UNIX's 108 bytes.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.state_dir = self.root / "state"
        self.socket = self.root / "agent.sock"
        self.config_path = self.root / "agent.toml"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "agent.log"
        self.material: DemoMaterial | None = None
        self.visitors: list[Visitor] = []

    # -- setup --------------------------------------------------------------------
    def prepare(self) -> DemoMaterial:
        """Write config, cache and demo material (agent not running). Returns the material."""
        from edge_agent.store import (
            Badge,
            CachedSigningKey,
            Delta,
            Invitation,
            Revocation,
            RevocationKind,
            Store,
            StoreSettings,
        )
        from portier_common.pins import hash_pin
        from portier_common.tokens import InvitationClaims, mint
        from portier_common.tokens import SigningKey as TokenKey

        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            _edit_config(SIMULATOR_TOML.read_text(), self.state_dir, self.socket)
        )
        key = TokenKey.from_private_bytes(KID, SIGNING_SEED)
        forger = TokenKey.from_private_bytes(KID, FORGER_SEED)  # same kid, wrong key
        now = int(time.time())

        def claims(
            inv_id: str,
            visitor: str,
            host: str,
            nbf: int,
            exp: int,
            single: bool,
            doors: tuple[str, ...] = (DOOR,),
        ):
            return InvitationClaims(
                invitation_id=inv_id,
                visitor=visitor,
                site=SITE,
                not_before=nbf,
                expires=exp,
                single_use=single,
                doors=doors,
                host=host,
            )

        day = 86_400
        valid = claims("inv-ada", "Ada Lovelace", "Grace Hopper", now - 3600, now + day, False)
        expired = claims("inv-bob", "Bob Martin", "Grace Hopper", now - 3 * day, now - day, False)
        forged = claims("inv-eve", "Eve Mallory", "Grace Hopper", now - 3600, now + day, False)
        single = claims("inv-chloe", "Chloé Dubois", "Jean Tremblay", now - 3600, now + day, True)
        # The rest of the demo panel's invitations, each refused for its own reason.
        early = claims("inv-noor", "Noor Haddad", "Grace Hopper", now + day, now + 2 * day, False)
        elsewhere = claims(
            "inv-ines", "Inès Lambert", "Grace Hopper", now - 3600, now + day, False, (OTHER_DOOR,)
        )
        cancelled = claims("inv-rex", "Rex Carter", "Grace Hopper", now - 3600, now + day, False)
        used = claims("inv-uma", "Uma Peeters", "Grace Hopper", now - 3600, now + day, True)
        tokens = {
            "valid": mint(valid, key),
            "expired": mint(expired, key),
            "forged": mint(forged, forger),
            "single": mint(single, key),
            "not_yet_valid": mint(early, key),
            "wrong_door": mint(elsewhere, key),
            "revoked": mint(cancelled, key),
            "replayed": mint(used, key),
        }
        self.visitors = [
            Visitor("inv-ada", "Ada Lovelace", "Grace Hopper", tokens["valid"]),
            Visitor("inv-chloe", "Chloé Dubois", "Jean Tremblay", tokens["single"]),
            Visitor("inv-bob", "Bob Martin", "Grace Hopper", tokens["expired"]),
        ]
        extra_invitations, revocations = _guard_journey_cache(now)
        guard_data = {"role": "guard", "guard_id": "g1", "pin_hash": hash_pin(GUARD_PIN)}
        guard2 = {"role": "guard", "guard_id": "g2", "pin_hash": hash_pin(GUARD_PIN)}
        delta = Delta(
            cursor="1",
            signing_keys=[CachedSigningKey(KID, "EdDSA", key.public_bytes())],
            badges=[
                Badge(uid=bytes.fromhex(STAFF_UID), kind="uid", holder="Sam Okafor"),
                Badge(
                    uid=bytes.fromhex(GUARD_UID),
                    kind="uid",
                    holder="Gabrielle Roy",
                    data=guard_data,
                ),
                Badge(uid=bytes.fromhex(REVOKED_UID), kind="uid", holder="Rex Carter"),
                Badge(
                    uid=bytes.fromhex(LOCKOUT_GUARD_UID),
                    kind="uid",
                    holder="Marc Lebrun",
                    data=guard2,
                ),
            ],
            invitations=[
                Invitation(
                    id=c.invitation_id,
                    visitor=c.visitor,
                    host=c.host,
                    doors=(DOOR,),
                    not_before=c.not_before,
                    not_after=c.expires,
                    single_use=c.single_use,
                )
                for c in (valid, expired, single)
            ]
            + extra_invitations,
            revocations=[
                Revocation(RevocationKind.INVITATION, "inv-rex"),
                Revocation(RevocationKind.BADGE, REVOKED_UID.lower()),
                *revocations,
            ],
            # Used once already (at this door or another): presenting it is a replay.
            used_invitations=[("inv-uma", used.expires)],
        )
        with Store.open(StoreSettings(path=self.state_dir / "portier.db")) as store:
            store.cache.apply_delta(delta, synced_at_ms=now * 1000)
        self.material = DemoMaterial(
            invitations=(
                DemoInvitation("valid", tokens["valid"], "Ada Lovelace", "Grace Hopper", "granted"),
                DemoInvitation(
                    "expired", tokens["expired"], "Bob Martin", "Grace Hopper", "expired"
                ),
                DemoInvitation(
                    "forged", tokens["forged"], "Eve Mallory", "Grace Hopper", "bad_signature"
                ),
                DemoInvitation(
                    "not_yet_valid",
                    tokens["not_yet_valid"],
                    early.visitor,
                    early.host,
                    "not_yet_valid",
                ),
                DemoInvitation(
                    "wrong_door",
                    tokens["wrong_door"],
                    elsewhere.visitor,
                    elsewhere.host,
                    "wrong_door",
                ),
                DemoInvitation(
                    "revoked", tokens["revoked"], cancelled.visitor, cancelled.host, "revoked"
                ),
                DemoInvitation("replayed", tokens["replayed"], used.visitor, used.host, "replayed"),
            ),
            badges=(
                DemoBadge("staff", STAFF_UID, "Sam Okafor", "granted"),
                DemoBadge("unknown", UNKNOWN_UID, "", "unknown_badge"),
                DemoBadge("revoked", REVOKED_UID, "Rex Carter", "revoked"),
            ),
            guard=DemoGuard(GUARD_UID, GUARD_PIN, "Gabrielle Roy"),
            note="written by tests/support/kiosk_rig.py",
        )
        demo_material.write(self.material, demo_material.material_path(self.root))
        return self.material

    # -- process ------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        """Start ``edge-agent run`` and wait until its socket answers."""
        if self.material is None:
            self.prepare()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(EDGE_AGENT), "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        log.close()
        client = AgentClient(self.socket, timeout=2.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log_path.read_text()[-2000:]}")
            try:
                client.status()
                return
            except AgentUnavailable:
                time.sleep(0.05)
        raise TimeoutError(f"agent did not answer within {timeout} s")

    def stop(self) -> None:
        """Stop the agent (SIGTERM, then SIGKILL). Idempotent."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def reset(self) -> None:
        """A fresh agent: stopped, state deleted, cache and material rewritten, started."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.material = None
        self.prepare()
        self.start()

    def install_event_pack(
        self,
        central_dir: Path,
        *,
        name: str = "Salon de l'innovation",
        welcome: str = "Bienvenue au Salon de l'innovation, stand B12",
        language: str = "fr",
        starts: int | None = None,
        ends: int | None = None,
    ) -> dict:
        """Install a real event pack (docs/sync.md, "Event packs"): enroll this agent with a
        central of its own (in *central_dir*), have it make a pack for the agent, and install
        it with the agent stopped, as ``edge-agent event-pack load`` does; the central is
        stopped before the agent starts again (the kiosk has left the network). Default: on
        from a minute ago for three hours. Returns the installed pack's summary."""
        from central.testing import CentralProcess
        from edge_agent.config import load_config
        from edge_agent.enroll import enroll
        from edge_agent.eventpack import install_pack

        now = int(time.time())
        self.stop()
        with CentralProcess(Path(central_dir) / "data") as central:
            text = self.config_path.read_text()
            self.config_path.write_text(text + f'\n[central]\nurl = "{central.url}"\n')
            config = load_config(self.config_path)
            with central.admin() as admin:
                enroll(config, admin.create_enroll_token(config.door.id)["enroll_token"])
                made = admin.create_event_pack(
                    config.device.id,
                    name=name,
                    starts=now - 60 if starts is None else starts,
                    ends=now + 3 * 3600 if ends is None else ends,
                    kiosk={"language": language, "welcome": welcome},
                )
        summary = install_pack(config, made["file"].encode())
        self.start()
        return summary

    def journal(self) -> list[dict]:
        """Every journaled event as ``{"type": ..., **payload}`` (read-only, from the database)."""
        from edge_agent.store import Store, StoreSettings

        with Store.open(StoreSettings(path=self.state_dir / "portier.db"), read_only=True) as store:
            head = store.journal.head().seq
            events = store.journal.events(from_seq=1, limit=max(1, head))
        return [{"type": e.type, "seq": e.seq, **e.payload} for e in events]

    def photo(self, media_id: str) -> bytes:
        """The bytes of a stored photo (read-only)."""
        from edge_agent.store import Store, StoreSettings

        with Store.open(StoreSettings(path=self.state_dir / "portier.db"), read_only=True) as store:
            return store.media.get(media_id)

    def client(self) -> AgentClient:
        """A fresh client of this agent."""
        return AgentClient(self.socket, timeout=5.0)

    def __enter__(self) -> AgentRig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def xvfb_display(size: str = "1920x1080x24"):
    """An Xvfb server on a free display (:func:`kiosk.virtual_display.virtual_display`);
    yield ":N". Skips the test where Xvfb is not installed."""
    from kiosk.virtual_display import virtual_display

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    with virtual_display(size) as name:
        yield name


def short_tmpdir(prefix: str = "pk-") -> Path:
    """A new short directory under /tmp (AF_UNIX socket paths are limited to 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextlib.contextmanager
def running_rig() -> Iterator[AgentRig]:
    """A started :class:`AgentRig` in a new short directory; stopped and removed after."""
    root = short_tmpdir()
    agent = AgentRig(root)
    try:
        agent.start()
        yield agent
    finally:
        agent.stop()
        shutil.rmtree(root, ignore_errors=True)


def _main() -> None:
    args = [a for a in sys.argv[1:] if a != "--event-pack"]
    target = Path(args[0]) if args else short_tmpdir("portier-demo-")
    # Stop the agent on Ctrl-C and on SIGTERM (a shell's background job ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with AgentRig(target) as running:
        if "--event-pack" in sys.argv[1:]:  # the kiosk's event screenshots (docs/kiosk.md)
            summary = running.install_event_pack(target / "central")
            print(f"event pack installed: {summary['name']}")
        print(f"agent running: {running.config_path} (demo material in {target / 'demo'})")
        print(f"  kiosk --demo {target}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    _main()
