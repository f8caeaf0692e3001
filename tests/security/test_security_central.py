"""Issue 10, the central's side: enrollment, shared claims, signed deltas, key retirement,
guard material (properties 7, 8, 9, 13a and the central half of 4).

Every test attacks a property against real parts: the reference central (a server
process, or its store on a real SQLite file), the agent's enrollment and downlink with
their real HTTP client, and a man-in-the-middle proxy (aiohttp on loopback) that
rewrites what the central sends.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from aiohttp import ClientSession, web

from central.settings import CentralSettings, load_ntag424_keys
from central.store import CentralStore
from central.testing import CentralProcess, ChainBuilder, enroll_device
from edge_agent.agent import Agent
from edge_agent.cacheview import StoreCacheView
from edge_agent.config import ConfigError, GuardSection, load_config
from edge_agent.enroll import EnrollError, credential_path, enroll, load_credential
from edge_agent.policy import Credential, Decision
from edge_agent.store import Badge, Delta, Store, StoreSettings
from edge_agent.sync import Alarms, CentralClient, DeltaError, Downlink
from edge_agent.sync.downlink import DeltaTrust, DoorSettingsFile
from portier_common.ntag424 import Ntag424Section, emulate_sun_url
from portier_common.reasons import Reason
from portier_common.signing import DeltaKey
from portier_common.tokens import SigningKey, Verified, verify
from tests.support.sync_rig import make_config, running_agent, wait_until

DOOR = "gate-a"
META_KEY = bytes(range(16, 32))
FILE_KEY = bytes(range(16))
NTAG_UID = "04DE5F1EACC040"


_ids = iter(range(1, 100_000))


def _device_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{int(time.time() * 1000) % 100_000}"


def _enroll_raw(url: str, body: dict[str, Any], bearer: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.post(f"{url}/v1/enroll", json=body, headers=headers, timeout=10)


def _heartbeat_status(url: str, token: str) -> int:
    response = requests.post(
        f"{url}/v1/heartbeat",
        json={"sent_at_ms": 0},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


# -- property 7: an enrollment token cannot take over a device --------------------------


@pytest.mark.processes
def test_a_token_for_another_door_cannot_take_over_an_enrolled_device(central, admin, tmp_path):
    victim = make_config(tmp_path / "victim", central.url, device=_device_id("victim"))
    credential = enroll(victim, admin.create_enroll_token(DOOR)["enroll_token"])
    # The attacker holds a token for another door and knows the victim's public id.
    token = admin.create_enroll_token("back-door")["enroll_token"]
    taken = _enroll_raw(central.url, {"enroll_token": token, "device_id": victim.device.id})
    assert taken.status_code == 409 and taken.json()["error"] == "device_enrolled"
    # The victim is not cut off, and the attacker's token is not spent on it.
    assert _heartbeat_status(central.url, credential.device_token) == 200
    new = _enroll_raw(central.url, {"enroll_token": token, "device_id": _device_id("new")})
    assert new.status_code == 201
    summary = next(d for d in admin.received()["devices"] if d["device_id"] == victim.device.id)
    assert summary["door"] == DOOR


@pytest.mark.processes
def test_the_retry_window_serves_the_first_device_only(central, admin, tmp_path) -> None:
    device = _device_id("retry")
    token = admin.create_enroll_token(DOOR)["enroll_token"]
    secret = "s" * 40
    first = _enroll_raw(
        central.url, {"enroll_token": token, "device_id": device, "retry_secret": secret}
    )
    assert first.status_code == 201  # ...and say its answer was lost on the way
    # Someone who saw the token (and knows the public device id) asks for the retry.
    for forged in ({}, {"retry_secret": "x" * 40}):
        stolen = _enroll_raw(central.url, {"enroll_token": token, "device_id": device, **forged})
        assert stolen.status_code == 409 and stolen.json()["error"] == "token_used"
    assert _heartbeat_status(central.url, first.json()["device_token"]) == 200
    # The device itself, with its secret, gets a fresh credential.
    again = _enroll_raw(
        central.url, {"enroll_token": token, "device_id": device, "retry_secret": secret}
    )
    assert again.status_code == 201
    assert _heartbeat_status(central.url, again.json()["device_token"]) == 200
    assert _heartbeat_status(central.url, first.json()["device_token"]) == 401


@pytest.mark.processes
def test_a_lost_answer_is_retried_with_the_kept_secret(central, admin, tmp_path) -> None:
    """The agent keeps its retry secret next to the credential until it saved the answer."""
    config = make_config(tmp_path / "a", central.url, device=_device_id("lost"))
    token = admin.create_enroll_token(DOOR)["enroll_token"]
    first = enroll(config, token)
    path = credential_path(config)
    # Simulate the lost answer: the credential never reached the disk, the secret did.
    retry = path.with_name(path.name + ".enroll-retry")
    assert not retry.exists()  # removed once the credential was saved
    path.unlink()
    with pytest.raises(EnrollError) as refused:
        enroll(config, token)  # a new secret: not the device that used the token
    assert refused.value.code == "token_used"
    assert retry.exists() and retry.stat().st_mode & 0o777 == 0o600
    assert _heartbeat_status(central.url, first.device_token) == 200


@pytest.mark.processes
def test_reinstall_needs_an_admin_reset_which_allows_one_enrollment(central, admin, tmp_path):
    device = _device_id("reinstall")
    old = make_config(tmp_path / "old", central.url, device=device)
    before = enroll(old, admin.create_enroll_token(DOOR)["enroll_token"])
    fresh = make_config(tmp_path / "fresh", central.url, device=device)  # a re-flashed card
    with pytest.raises(EnrollError) as refused:
        enroll(fresh, admin.create_enroll_token(DOOR)["enroll_token"])
    assert refused.value.code == "device_enrolled"
    done = subprocess.run(
        [sys.executable, "-m", "central", "device", "reset", device, "--url", central.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reset_pending"] is True
    assert _heartbeat_status(central.url, before.device_token) == 401  # reset cuts it off
    after = enroll(fresh, admin.create_enroll_token(DOOR)["enroll_token"])
    assert _heartbeat_status(central.url, after.device_token) == 200
    # One enrollment only: a third party cannot ride on the same reset.
    third = make_config(tmp_path / "third", central.url, device=device)
    with pytest.raises(EnrollError) as again:
        enroll(third, admin.create_enroll_token(DOOR)["enroll_token"])
    assert again.value.code == "device_enrolled"
    # The enrolled device itself re-enrolls with its credential (another door, say).
    moved = make_config(tmp_path / "fresh", central.url, device=device, door="gate-b")
    assert enroll(moved, admin.create_enroll_token("gate-b")["enroll_token"]).door == "gate-b"


@pytest.mark.processes
def test_a_disabled_device_cannot_re_enable_itself_with_its_credential(central, admin, tmp_path):
    config = make_config(tmp_path / "d", central.url, device=_device_id("disabled"))
    enroll(config, admin.create_enroll_token(DOOR)["enroll_token"])
    admin.disable_device(config.device.id)
    with pytest.raises(EnrollError) as refused:
        enroll(config, admin.create_enroll_token(DOOR)["enroll_token"])
    assert refused.value.code == "device_enrolled"


# -- property 8: one device cannot poison the site's ledgers ------------------------------


def _store(tmp_path: Path, **settings: Any) -> CentralStore:
    return CentralStore(CentralSettings(data_dir=tmp_path / "central", **settings))


def _enroll_store(store: CentralStore, device: str, door: str, zones: Any = None) -> dict:
    extra = {} if zones is None else {"zones": zones}
    token = store.create_enroll_token(door=door, **extra)["enroll_token"]
    return store.enroll({"enroll_token": token, "device_id": device})


def _upload(store: CentralStore, device: str, chain: ChainBuilder, kind: str, payload: dict):
    return store.upload_events(device, [chain.event(kind, payload)])["acks"][0]


def _reason(store: CentralStore, device: str) -> str | None:
    return store.device_events(device)["events"][-1]["reason"]


def test_a_rogue_device_cannot_burn_invitations_of_other_doors(tmp_path) -> None:
    with _store(tmp_path) as store:
        _enroll_store(store, "front", DOOR)
        _enroll_store(store, "rogue", "back-door")
        start = store.deltas("hq", None)["cursor"]
        invitation = store.create_invitation(
            {"visitor": "Ada", "doors": [DOOR], "single_use": True}
        )["invitation"]
        chain = ChainBuilder()
        for claim_door in ("back-door", DOOR):  # its own door, then lying about the door
            ack = _upload(
                store,
                "rogue",
                chain,
                "invitation.used",
                {"invitation_id": invitation["id"], "door": claim_door, "expires": 1},
            )
            assert ack["status"] == "accepted"  # its journal is kept...
            assert _reason(store, "rogue").startswith("not_shared")  # ...with the reason
        ack = _upload(
            store,
            "rogue",
            chain,
            "invitation.used",
            {"invitation_id": "i-never-issued", "door": "back-door", "expires": 1},
        )
        assert "unknown invitation" in _reason(store, "rogue")
        assert store.deltas("hq", start)["used_invitations"] == []  # nobody hears of it
        assert store.received(verify=True)["totals"]["chain_ok"]
        # The door the invitation is for is believed, with the central's own expiry.
        ack = _upload(
            store,
            "front",
            ChainBuilder(),
            "invitation.used",
            {"invitation_id": invitation["id"], "door": DOOR, "expires": 1},
        )
        assert ack["status"] == "accepted"
        shared = store.deltas("hq", start)["used_invitations"]
        assert [(u["id"], u["expires_at"]) for u in shared] == [
            (invitation["id"], invitation["expires"])
        ]


def test_zone_invitations_are_believed_from_doors_the_admin_put_in_the_zone(tmp_path) -> None:
    with _store(tmp_path) as store:
        _enroll_store(store, "in-zone", "lab-1", zones=["labs"])
        _enroll_store(store, "outside", "lobby")
        start = store.deltas("hq", None)["cursor"]
        inv = store.create_invitation({"visitor": "Ada", "zones": ["labs"], "single_use": True})
        inv_id = inv["invitation"]["id"]
        _upload(
            store,
            "outside",
            ChainBuilder(),
            "invitation.used",
            {"invitation_id": inv_id, "door": "lobby", "expires": 1},
        )
        assert store.deltas("hq", start)["used_invitations"] == []
        _upload(
            store,
            "in-zone",
            ChainBuilder(),
            "invitation.used",
            {"invitation_id": inv_id, "door": "lab-1", "expires": 1},
        )
        assert [u["id"] for u in store.deltas("hq", start)["used_invitations"]] == [inv_id]


def _counter(uid: str, counter: int, door: str = DOOR, sun_url: str = "") -> dict[str, Any]:
    return {"uid": uid.lower(), "counter": counter, "door": door, "sun_url": sun_url}


def _shared_counters(store: CentralStore, start: str) -> list[tuple[str, int]]:
    return [(c["uid"], c["counter"]) for c in store.deltas("hq", start)["badge_counters"]]


def test_without_keys_a_counter_may_advance_only_a_bounded_step(tmp_path) -> None:
    with _store(tmp_path) as store:  # counter_max_advance: 1000 by default
        _enroll_store(store, "front", DOOR)
        _enroll_store(store, "rogue", "back-door")
        store.put_badge({"uid": NTAG_UID, "holder": "Sam", "doors": [DOOR]})
        start = store.deltas("hq", None)["cursor"]
        chain, rogue = ChainBuilder(), ChainBuilder()
        # The rogue door: not a door of this badge, whatever door it names.
        _upload(store, "rogue", rogue, "badge.counter", _counter(NTAG_UID, 7, "back-door"))
        _upload(store, "rogue", rogue, "badge.counter", _counter(NTAG_UID, 7, DOOR))
        assert _shared_counters(store, start) == []
        # The right door, but a counter far ahead: the badge would be locked out for good.
        _upload(store, "front", chain, "badge.counter", _counter(NTAG_UID, 2**24 - 1))
        assert "no SUN keys" in _reason(store, "front")
        assert _shared_counters(store, start) == []
        _upload(store, "front", chain, "badge.counter", _counter(NTAG_UID, 40))
        _upload(store, "front", chain, "badge.counter", _counter(NTAG_UID, 1041))  # 40 + 1001
        assert _shared_counters(store, start) == [(NTAG_UID.lower(), 40)]
        _upload(store, "front", chain, "badge.counter", _counter(NTAG_UID, 1040))
        assert _shared_counters(store, start) == [(NTAG_UID.lower(), 1040)]


def _sun(counter: int, uid: str = NTAG_UID, key: bytes = FILE_KEY) -> str:
    return emulate_sun_url(
        "https://badge.example/s",
        uid=bytes.fromhex(uid),
        counter=counter,
        file_read_key=key,
        meta_read_key=META_KEY,
    )


def test_with_keys_a_counter_is_shared_only_with_a_sun_message_that_verifies(tmp_path) -> None:
    keys_file = tmp_path / "ntag424.toml"
    keys_file.write_text(
        f'[ntag424]\nmeta_read_key = "{META_KEY.hex()}"\nfile_read_key = "{FILE_KEY.hex()}"\n'
    )
    keys = load_ntag424_keys(keys_file)
    with _store(tmp_path, ntag424=keys) as store:
        _enroll_store(store, "front", DOOR)
        store.put_badge({"uid": NTAG_UID, "holder": "Sam", "doors": [DOOR]})
        start = store.deltas("hq", None)["cursor"]
        chain = ChainBuilder()
        forged = [
            _counter(NTAG_UID, 12),  # no evidence
            _counter(NTAG_UID, 12, sun_url=_sun(12, key=bytes(16))),  # another key's MAC
            _counter(NTAG_UID, 5000, sun_url=_sun(12)),  # a genuine message, another counter
            _counter(NTAG_UID, 12, sun_url=_sun(12)[:-2] + "00"),  # altered MAC
        ]
        for claim in forged:
            assert _upload(store, "front", chain, "badge.counter", claim)["status"] == "accepted"
            assert _reason(store, "front").startswith("not_shared")
        assert _shared_counters(store, start) == []
        # Keys verify: a genuine tap may jump far (no plausibility bound needed).
        _upload(
            store, "front", chain, "badge.counter", _counter(NTAG_UID, 5000, sun_url=_sun(5000))
        )
        assert _shared_counters(store, start) == [(NTAG_UID.lower(), 5000)]


def test_the_agent_sends_door_and_sun_message_with_a_counter_claim(tmp_path) -> None:
    config = make_config(tmp_path / "a", "http://127.0.0.1:9", device="claims")
    url = _sun(77)
    decision = Decision(True, Reason.GRANTED, "badge", claim=("counter", NTAG_UID, 77))
    agent = SimpleNamespace(config=config)
    agent._share_counter = functools.partial(Agent._share_counter, agent)  # type: ignore[arg-type]
    shared = Agent._shared_claim(
        agent,  # type: ignore[arg-type]
        decision,
        Credential.badge(bytes.fromhex(NTAG_UID), url),
    )
    assert shared == (
        "badge.counter",
        {"uid": NTAG_UID.lower(), "counter": 77, "door": config.door.id, "sun_url": url},
    )


# -- property 9: what comes down is authentic ---------------------------------------------


def test_plain_http_is_refused_off_loopback_naming_the_key(tmp_path) -> None:
    for url in ("http://10.0.0.5:8080", "http://central.example.org", "http://127.0.0.1.nip.io"):
        with pytest.raises(ConfigError, match=r"central\.url.*loopback"):
            make_config(tmp_path / "bad", url, device="d1")
    for url in (
        "http://127.0.0.1:8080",
        "http://127.3.2.1",
        "http://localhost:1",
        "http://[::1]:80",
    ):
        assert make_config(tmp_path / "ok", url, device="d1").central.url == url
    assert make_config(tmp_path / "tls", "https://central.example.org", device="d1")
    # Enrollment refuses it too (whatever built the configuration).
    config = make_config(tmp_path / "e", "http://127.0.0.1:9", device="d1")
    central = config.central
    object.__setattr__(central, "url", "http://192.0.2.7:8080")
    with pytest.raises(EnrollError) as refused:
        enroll(config, "pe1_" + "x" * 30)
    assert refused.value.code == "insecure_url"
    with pytest.raises(ValueError, match="loopback"):
        CentralClient("http://192.0.2.7:8080")


class Proxy:
    """A man in the middle on loopback: forwards to the central, rewrites deltas pages."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.keep_signature = True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=body or None,
                headers=headers,
            ) as answer,
        ):
            data = await answer.read()
            out = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
            }
        if request.path == "/v1/deltas" and answer.status == 200:
            if self.rewrite is not None:
                data = json.dumps(self.rewrite(json.loads(data))).encode()
            if not self.keep_signature:
                out = {k: v for k, v in out.items() if not k.lower().startswith("portier-delta")}
        return web.Response(body=data, status=answer.status, headers=out)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __enter__(self) -> Proxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _attacker_key() -> dict[str, Any]:
    key = SigningKey.generate("k-attacker")
    return key.trusted_key().to_dict()


def _inject_key(page: dict[str, Any]) -> dict[str, Any]:
    page["signing_keys"].append(_attacker_key())
    return page


def _inject_wildcard_badge(page: dict[str, Any]) -> dict[str, Any]:
    page["badges"].append(
        {"uid": "04BADBADBADBAD", "site": "hq", "kind": "uid", "holder": "Mallory",
         "doors": [DOOR], "zones": [], "enabled": True, "not_before": None, "not_after": None}
    )  # fmt: skip
    return page


def _inject_free_access(page: dict[str, Any]) -> dict[str, Any]:
    page["door_settings"].append(
        {"door": DOOR, "site": "hq", "version": 999, "settings": {"mode": "free_access"}}
    )
    return page


class ProxiedDoor:
    """A device enrolled through the proxy; its downlink pulls through it."""

    def __init__(self, proxy: Proxy, central: CentralProcess, where: Path) -> None:
        config = make_config(where, proxy.url, device=_device_id("mitm"))
        with central.admin() as admin:
            self.credential = enroll(config, admin.create_enroll_token(DOOR)["enroll_token"])
        self.store = Store.open(StoreSettings(path=where / "door.db"))
        self.alarms = Alarms(self.store.journal.append)
        self.settings: list[Any] = []
        self.settings_file = DoorSettingsFile(where / "door-settings.json")
        self.client = CentralClient(proxy.url, credential=self.credential.device_token)
        self.downlink = Downlink(
            self.store,
            self.client,
            self.alarms,
            door=DOOR,
            trust=DeltaTrust(self.credential.device_id, self.credential.delta_key),
            settings_file=self.settings_file,
            on_door_settings=self.settings.append,
        )

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.mark.processes
def test_a_man_in_the_middle_cannot_inject_keys_badges_or_free_access(central, admin, tmp_path):
    with Proxy(central.url) as proxy:
        door = ProxiedDoor(proxy, central, tmp_path / "door")
        try:
            # The pinned key came with the enrollment answer and is in the credential file.
            stored = load_credential(credential_path(load_config(tmp_path / "door/agent.toml")))
            assert stored is not None and stored.delta_key == door.credential.delta_key
            assert door.downlink.sync().complete  # untouched pages verify
            cursor = door.store.cache.downlink().cursor
            admin.put_badge(uid="04A1B2C3D4E5F6", holder="Sam Staff", doors=[DOOR], kind="uid")
            for attack in (_inject_key, _inject_wildcard_badge, _inject_free_access):
                proxy.rewrite = attack
                with pytest.raises(DeltaError, match="signature"):
                    door.downlink.sync()
                assert door.alarms.is_active("bad_delta")
            # Nothing of any page reached the cache, the keyring or the door settings.
            view = StoreCacheView(door.store)
            assert door.store.cache.downlink().cursor == cursor
            assert view.badge("04BADBADBADBAD") is None
            assert view.badge("04A1B2C3D4E5F6") is None
            assert "k-attacker" not in {k.kid for k in door.store.cache.signing_keys()}
            assert door.settings == [] and door.settings_file.load() is None
            # Stripping the signature does not help either.
            proxy.rewrite, proxy.keep_signature = _inject_free_access, False
            with pytest.raises(DeltaError, match="not signed"):
                door.downlink.sync()
            # A page signed for another device (replayed to this one) is refused too.
            proxy.rewrite, proxy.keep_signature = None, True
            other = dataclasses.replace(door.downlink.trust, device_id="another-device")
            door.downlink.trust = other
            with pytest.raises(DeltaError, match="signature"):
                door.downlink.sync()
            # The honest path recovers.
            door.downlink.trust = DeltaTrust(door.credential.device_id, door.credential.delta_key)
            door.downlink.sync()
            assert view.badge("04A1B2C3D4E5F6") is not None
            assert not door.alarms.is_active("bad_delta")
        finally:
            door.close()


def _alarm_codes(agent: Any) -> set[str]:
    return {a["code"] for a in (agent.status()["sync"] or {}).get("alarms", [])}


@pytest.mark.processes
def test_a_running_agent_behind_a_rewriting_proxy_keeps_its_door(central, admin, tmp_path):
    """End to end: ``edge-agent run`` pulls through the man in the middle."""
    with Proxy(central.url) as proxy:
        config = make_config(tmp_path / "agent", proxy.url, device=_device_id("e2e"))
        enroll(config, admin.create_enroll_token(DOOR)["enroll_token"])
        with running_agent(config) as agent:
            wait_until(
                lambda: (
                    (agent.status()["sync"] or {}).get("cursor") == admin.info()["deltas_cursor"]
                ),
                what="first sync",
            )
            proxy.rewrite = lambda page: _inject_free_access(
                _inject_wildcard_badge(_inject_key(page))
            )
            admin.put_badge(uid="04A1B2C3D4E5F7", holder="Sam Staff", doors=[DOOR], kind="uid")
            wait_until(lambda: "bad_delta" in _alarm_codes(agent), what="bad_delta alarm")
            assert agent.status()["door"]["mode"] == "normal"
            assert agent.client.present_badge("04BADBADBADBAD")["reason"] == "unknown_badge"
            assert agent.client.present_badge("04A1B2C3D4E5F7")["granted"] is False
            proxy.rewrite = None  # the path is honest again: the sync resumes
            wait_until(lambda: "bad_delta" not in _alarm_codes(agent), what="alarm cleared")
            assert agent.client.present_badge("04A1B2C3D4E5F7")["granted"] is True
            assert agent.status()["door"]["mode"] == "normal"


@pytest.mark.processes
def test_a_device_without_a_pinned_key_refuses_every_page(central, tmp_path) -> None:
    """Credentials from before signed deltas: the device must enroll again."""
    enrolled, session = enroll_device(central.url, door=DOOR, device_id=_device_id("old"))
    session.close()
    with (
        Store.open(StoreSettings(path=tmp_path / "old.db")) as store,
        CentralClient(central.url, credential=enrolled["device_token"]) as client,
    ):
        alarms = Alarms(store.journal.append)
        downlink = Downlink(
            store, client, alarms, door=DOOR, trust=DeltaTrust(enrolled["device_id"], None)
        )
        with pytest.raises(DeltaError, match="enroll again"):
            downlink.sync()
        assert alarms.is_active("bad_delta") and store.cache.downlink().cursor is None


@pytest.mark.processes
def test_the_signature_covers_the_exact_bytes(central) -> None:
    enrolled, session = enroll_device(central.url, door=DOOR, device_id=_device_id("bytes"))
    answer = session.get(f"{central.url}/v1/deltas", timeout=10)
    session.close()
    key = DeltaKey.from_dict(enrolled["delta_key"])
    kid, sig = answer.headers["Portier-Delta-Kid"], answer.headers["Portier-Delta-Signature"]
    key.verify(enrolled["device_id"], answer.content, kid, sig)
    reformatted = json.dumps(json.loads(answer.content), indent=1).encode()
    with pytest.raises(ValueError, match="altered"):
        key.verify(enrolled["device_id"], reformatted, kid, sig)
    assert base64.b64decode(enrolled["delta_key"]["public_key"]) == key.public_key


# -- property 13a: keys rotate --retire-now ------------------------------------------------


@pytest.mark.processes
def test_retire_now_makes_devices_refuse_the_old_key_at_once(central, admin, tmp_path) -> None:
    enrolled, session = enroll_device(central.url, door=DOOR, device_id=_device_id("rot"))
    session.close()
    with (
        Store.open(StoreSettings(path=tmp_path / "rot.db")) as store,
        CentralClient(central.url, credential=enrolled["device_token"]) as client,
    ):
        trust = DeltaTrust(enrolled["device_id"], DeltaKey.from_dict(enrolled["delta_key"]))
        downlink = Downlink(store, client, Alarms(store.journal.append), door=DOOR, trust=trust)
        old = admin.create_invitation(visitor="Before", doors=[DOOR])
        downlink.sync()
        view = StoreCacheView(store)
        skew = 300.0  # the door's default max_clock_skew_s
        assert isinstance(
            verify(old["token"], view.keyring(), now=time.time(), site="hq", door=DOOR,
                   max_skew_s=skew),
            Verified,
        )  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "central", "keys", "rotate", "--retire-now", "--url",
             central.url],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        downlink.sync()
        refused = verify(
            old["token"], view.keyring(), now=time.time(), site="hq", door=DOOR, max_skew_s=skew
        )
        assert not isinstance(refused, Verified)
        assert refused.reason in (Reason.UNKNOWN_KEY, Reason.EXPIRED)
        assert old["invitation"]["kid"] not in {k.kid for k in store.cache.signing_keys()}
        # A new device syncing from scratch does not get the retired key either.
        assert old["invitation"]["kid"] not in [
            k["kid"] for k in client.request("GET", "/v1/deltas")["signing_keys"]
        ]


# -- property 4, the central's half: guard material only to guard consoles ----------------


@pytest.mark.processes
def test_pin_hashes_reach_only_devices_with_a_guard_console(central, admin, tmp_path) -> None:
    from portier_common.pins import hash_pin, verify_pin

    admin.put_badge(
        uid="04C0FFEE0000A1",
        holder="Gail Guard",
        doors=[DOOR],
        kind="uid",
        role="guard",
        pin_hash=hash_pin("246813", n=2**10),
        guard_id="gail",
    )
    # An ordinary badge's PIN is its card + PIN second factor: every door gets it.
    admin.put_badge(
        uid="04C0FFEE0000A2",
        holder="Pat Pin",
        doors=[DOOR],
        kind="uid",
        pin_hash=hash_pin("135790", n=2**10),
    )
    caches = {}
    for console in (False, True):
        config = make_config(tmp_path / f"c{console}", central.url, device=_device_id("g"))
        config = dataclasses.replace(config, guard=GuardSection(console=console))
        credential = enroll(config, admin.create_enroll_token(DOOR)["enroll_token"])
        summary = next(
            d for d in admin.received()["devices"] if d["device_id"] == credential.device_id
        )
        assert summary["guard_console"] is console  # the agent sent [guard] console
        store = Store.open(StoreSettings(path=tmp_path / f"{console}.db"))
        with CentralClient(central.url, credential=credential.device_token) as client:
            trust = DeltaTrust(credential.device_id, credential.delta_key)
            Downlink(store, client, Alarms(store.journal.append), door=DOOR, trust=trust).sync()
        badge = store.cache.badge("04C0FFEE0000A1")
        assert badge is not None
        caches[console] = (badge.data or {}, StoreCacheView(store).guard("04C0FFEE0000A1"))
        assert verify_pin("135790", StoreCacheView(store).pin_hash("04C0FFEE0000A2") or "")
        store.close()
    headless, kiosk = caches[False], caches[True]
    assert "pin_hash" not in headless[0] and headless[1] is not None
    assert headless[1].pin_hash is None  # a guard, but nothing to search offline
    assert kiosk[0]["pin_hash"].startswith("scrypt$") and kiosk[1].pin_hash


def test_ntag424_key_files_are_checked_naming_the_key(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[ntag424]\nfile_read_key = "nothex"\n')
    with pytest.raises(ValueError, match="file_read_key"):
        load_ntag424_keys(bad)
    with pytest.raises(ValueError, match="ntag424"):
        CentralSettings(data_dir=tmp_path, ntag424=Ntag424Section())
    with pytest.raises(ValueError, match="counter_max_advance"):
        CentralSettings(data_dir=tmp_path, counter_max_advance=0)


def _trust(credential: Any) -> DeltaTrust:
    token_hash = hashlib.sha256(credential.device_token.encode()).hexdigest()[:32]
    return DeltaTrust(credential.device_id, credential.delta_key, enrollment=token_hash)


@pytest.mark.processes
def test_a_new_enrollment_or_a_cache_from_before_pinning_resyncs_from_scratch(
    central, admin, tmp_path
) -> None:
    from portier_common.pins import hash_pin

    guard_uid = "04C0FFEE0000B2"
    admin.put_badge(
        uid=guard_uid, holder="Gail", doors=[DOOR], kind="uid", role="guard",
        pin_hash=hash_pin("246813", n=2**10), guard_id="gail-b",
    )  # fmt: skip
    base = make_config(tmp_path / "k", central.url, device=_device_id("resync"))
    kiosk = dataclasses.replace(base, guard=GuardSection(console=True))
    credential = enroll(kiosk, admin.create_enroll_token(DOOR)["enroll_token"])
    trust_file = tmp_path / "central-sync-trust.json"
    with (
        Store.open(StoreSettings(path=tmp_path / "resync.db")) as store,
        CentralClient(central.url, credential=credential.device_token) as client,
    ):
        # A cache filled before keys were pinned (unverified pages, say a MITM's badge),
        # already at the central's newest cursor: an incremental sync would keep it.
        junk = Badge(uid="04BADBADBADBAD", kind="uid", holder="Mallory", doors=(DOOR,))
        store.cache.apply_delta(Delta(cursor=admin.info()["deltas_cursor"], badges=[junk]))
        downlink = Downlink(
            store, client, Alarms(store.journal.append), door=DOOR, trust=_trust(credential),
            trust_file=trust_file,
        )  # fmt: skip
        downlink.sync()
        assert store.cache.badge("04BADBADBADBAD") is None
        assert (store.cache.badge(guard_uid).data or {}).get("pin_hash")
        assert trust_file.stat().st_mode & 0o777 == 0o600
        # Enrolled again as a headless door (its stored credential proves it): the cache is
        # rebuilt, so the PIN hash it held as a kiosk does not stay behind.
        headless = dataclasses.replace(base, guard=GuardSection(console=False))
        again = enroll(headless, admin.create_enroll_token(DOOR)["enroll_token"])
        client.set_credential(again.device_token)
        downlink.trust = _trust(again)
        downlink.sync()
        assert "pin_hash" not in (store.cache.badge(guard_uid).data or {})


@pytest.mark.processes
def test_serve_with_the_sites_ntag424_keys_checks_sun_messages_over_http(tmp_path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[ntag424]\nmeta_read_key = "{META_KEY.hex()}"\nfile_read_key = "{FILE_KEY.hex()}"\n'
    )
    keys.chmod(0o600)
    with CentralProcess(tmp_path / "c", extra_args=["--ntag424-keys", str(keys)]) as central:
        with central.admin() as admin:
            admin.put_badge(uid=NTAG_UID, holder="Sam", doors=[DOOR])
            start = admin.info()["deltas_cursor"]
        _, session = enroll_device(central.url, door=DOOR, device_id="keyed")
        chain = ChainBuilder()
        claims = [
            _counter(NTAG_UID, 900, sun_url=_sun(12)),  # a real message, a forged counter
            _counter(NTAG_UID, 12, sun_url=_sun(12)),
        ]
        events = [chain.event("badge.counter", claim) for claim in claims]
        answer = session.post(f"{central.url}/v1/events", json={"events": events}, timeout=10)
        assert [a["status"] for a in answer.json()["acks"]] == ["accepted", "accepted"]
        page = session.get(f"{central.url}/v1/deltas", params={"cursor": start}, timeout=10)
        session.close()
        assert [(c["uid"], c["counter"]) for c in page.json()["badge_counters"]] == [
            (NTAG_UID.lower(), 12)
        ]
    bad = tmp_path / "bad.toml"
    bad.write_text('[ntag424]\nfile_read_key = "00"\n')
    done = subprocess.run(
        [sys.executable, "-m", "central", "serve", "--port", "0", "--data", str(tmp_path / "d"),
         "--ntag424-keys", str(bad)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert done.returncode == 2 and "file_read_key" in done.stderr


@pytest.mark.processes
def test_a_reflashed_card_commissions_again_only_after_an_admin_reset(
    central, admin, tmp_path, capsys
) -> None:
    """First boot on a card flashed again with the same device id (its credential gone)."""
    from images.cli import main
    from images.provision import BOOT_FILE_NAME, Provisioning

    hostname = _device_id("reflash")

    def commission(where: Path) -> int:
        token = admin.create_enroll_token(DOOR)["enroll_token"]
        settings = Provisioning(
            site="hq", door=DOOR, central_url=central.url, enroll_token=token, hostname=hostname
        )
        (where / "boot").mkdir(parents=True)
        (where / "boot" / BOOT_FILE_NAME).write_text(settings.to_toml(), encoding="utf-8")
        return main(
            ["firstboot", "--boot", str(where / "boot"), "--etc", str(where / "etc"),
             "--state", str(where / "state"), "--simulator", "--timeout", "20"]
        )  # fmt: skip

    assert commission(tmp_path / "first") == 0
    capsys.readouterr()
    second = tmp_path / "second"
    assert commission(second) == 1
    assert "device_enrolled" in capsys.readouterr().err
    assert (second / "boot" / BOOT_FILE_NAME).exists()  # kept: the next boot tries again
    admin.reset_device(hostname)
    rerun = main(
        ["firstboot", "--boot", str(second / "boot"), "--etc", str(second / "etc"),
         "--state", str(second / "state"), "--simulator", "--timeout", "20"]
    )  # fmt: skip
    assert rerun == 0  # the same token: it was not spent by the refused attempt
    assert not (second / "etc" / "central-credential.json.enroll-retry").exists()
