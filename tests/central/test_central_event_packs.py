"""Event packs for off-site kiosks (issue #14), end to end: a real central process makes a
pack for an enrolled agent (simulated hardware), the central goes away, ``edge-agent
event-pack load`` installs the pack, ``edge-agent run`` decides for the event's guests with
no network; back online, the journal reaches the central once, in order, chain verified;
a journal carried back instead is merged once by ``portier-central event-pack merge``.
Each attack on a pack (another device's, a changed byte, a forgery, expired, replayed) is
refused with its reason code and journaled."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.auth import bootstrap_token
from central.errors import BadRequest, CentralError, Forbidden
from central.settings import CentralSettings
from central.testing import CentralProcess, enroll_device
from edge_agent.config import AgentConfig
from edge_agent.eventpack import PackRefused, install_pack, pack_key_path
from edge_agent.store import Store, StoreSettings
from edge_agent.timefloor import record_floor
from portier_common import eventpack
from portier_common.tokens import SigningKey
from tests.support.sync_rig import (
    EDGE_AGENT,
    assert_exactly_once,
    enroll_with,
    journal_events,
    make_config,
    running_agent,
    synced_up,
    wait_until,
)

pytestmark = pytest.mark.processes

DOOR = "gate-a"
CENTRAL = [sys.executable, "-m", "central"]


def _edge(config: AgentConfig, *args: str) -> subprocess.CompletedProcess[str]:
    assert config.source is not None
    return subprocess.run(
        [EDGE_AGENT, *args[:2], "--config", str(config.source), *args[2:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _guest(admin: Any, name: str, hours: int = 4) -> dict[str, Any]:
    now = int(time.time())
    return admin.create_invitation(
        visitor=name,
        doors=[DOOR],
        not_before=now - 60,
        expires=now + hours * 3600,
        single_use=True,
    )


def _pack(admin: Any, device: str, where: Path, invitations: list[str] | None, **kw: Any) -> Path:
    now = int(time.time())
    made = admin.create_event_pack(
        device,
        name=kw.get("name", "Trade fair"),
        starts=kw.get("starts", now),
        ends=kw.get("ends", now + 3 * 3600),
        invitations=invitations,
        kiosk={"language": "fr", "welcome": "Bienvenue au salon"},
    )
    where.write_text(made["file"])
    return where


def _refusals(config: AgentConfig) -> list[str]:
    return [e.payload["reason"] for e in journal_events(config) if e.type == "event_pack.refused"]


def test_the_kiosk_decides_offline_from_the_pack_and_its_journal_comes_back_once(
    central_per_test: CentralProcess, tmp_path: Path
) -> None:
    central = central_per_test
    config = make_config(tmp_path / "kiosk", central.url, device="kiosk-ev")
    with central.admin() as admin:
        enroll_with(admin, config)
        guest = _guest(admin, "Eve Guest")
        other = _guest(admin, "Oscar Other")
        pack = _pack(admin, "kiosk-ev", tmp_path / "fair.pack", [guest["invitation"]["id"]])
        # Audited, without the pack itself.
        row = [e for e in admin.operator_journal() if e["action"] == "POST /admin/event-packs"]
        detail = json.loads(row[-1]["detail"])
        assert detail["device_id"] == "kiosk-ev" and detail["guests"] == 1
        assert "file" not in detail and row[-1]["status"] == 201
        packs = admin.event_packs()["packs"]
        assert packs[0]["name"] == "Trade fair" and packs[0]["guests"] == 1

    central.stop()  # the kiosk leaves the network
    loaded = _edge(config, "event-pack", "load", str(pack), "--json")
    assert loaded.returncode == 0, loaded.stderr
    summary = json.loads(loaded.stdout)
    assert (summary["name"], summary["guests"]) == ("Trade fair", 1)
    assert summary["kiosk"]["language"] == "fr"
    with running_agent(config) as agent:
        # One writer: loading while the agent runs is refused in plain words.
        busy = _edge(config, "event-pack", "load", str(pack))
        assert busy.returncode == 1 and "stop it first" in busy.stderr
        status = agent.status()
        assert status["online"] is False and status["event_pack"]["name"] == "Trade fair"
        assert status["event_pack"]["in_force"] is True  # the kiosk shows the event now
        # The pack's bound (until the event's end + 1 h), not the door's 24 h.
        assert 3 * 3600 < status["cache"]["max_staleness_s"] <= 4 * 3600 + 5
        assert not status["cache"]["stale"]
        decision = agent.client.present_qr(guest["token"])
        assert decision["granted"], decision
        again = agent.client.present_qr(guest["token"])  # single use, offline too
        assert not again["granted"] and again["reason"] == "replayed"
        # The guest list is the event's: the kiosk looks up its guests only.
        names = [e.payload for e in journal_events(config) if e.type == "event_pack.loaded"]
        assert names[0]["guests"] == 1
        offline = [e.seq for e in journal_events(config) if e.type == "access.decision"]
        assert len(offline) >= 2

        central.start()  # back on the network, same address
        with central.admin() as admin:
            wait_until(lambda: synced_up(admin, config), what="the offline journal uploaded")
            summary_at_central = assert_exactly_once(admin, config)
            assert summary_at_central["duplicates_seen"] == 0
            stored = admin.all_device_events("kiosk-ev")
            assert [e["seq"] for e in stored if e["type"] == "access.decision"] == offline
            assert "event_pack.loaded" in {e["type"] for e in stored}
            # The full resync replaced the event's cache; the pack's bound is gone.
            wait_until(
                lambda: agent.status()["cache"]["max_staleness_s"] == 86400,
                what="the door's own offline bound back",
            )
            assert other["invitation"]["id"]  # (the site's other guests come back with it)


def test_a_journal_carried_back_is_merged_once(
    central_per_test: CentralProcess, tmp_path: Path
) -> None:
    central = central_per_test
    config = make_config(tmp_path / "kiosk", central.url, device="kiosk-far")
    with central.admin() as admin:
        enroll_with(admin, config)
        guest = _guest(admin, "Mia Merge")
        pack = _pack(admin, "kiosk-far", tmp_path / "far.pack", None)
    central.stop()
    assert _edge(config, "event-pack", "load", str(pack)).returncode == 0
    with running_agent(config) as agent:
        assert agent.client.present_qr(guest["token"])["granted"]
    export = tmp_path / "journal.json"
    done = _edge(config, "journal", "export", "--out", str(export))
    assert done.returncode == 0, done.stderr
    assert export.stat().st_mode & 0o777 == 0o600
    count = len(json.loads(export.read_text())["events"])
    assert count == len(journal_events(config))  # nothing was ever acknowledged

    central.start()
    merge = [*CENTRAL, "event-pack", "merge", "--data", str(central.data_dir), str(export)]
    first = subprocess.run([*merge, "--json"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["accepted"], result["duplicate"], result["rejected"]) == (count, 0, 0)
    assert result["chain_ok"] is True and result["next_seq"] == count + 1
    with central.admin() as admin:
        assert_exactly_once(admin, config)
        # Twice adds nothing (and over the admin API the same).
        second = subprocess.run([*merge, "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(second.stdout)["duplicate"] == count
        again = admin.merge_journal(json.loads(export.read_text()))
        assert (again["accepted"], again["duplicate"]) == (0, count)
        assert len(admin.all_device_events("kiosk-far")) == count
        # A changed event (or a made-up journal): refused by the MAC, nothing stored.
        forged = json.loads(export.read_text())
        granted = next(e for e in forged["events"] if '"granted":true' in e["payload_json"])
        granted["payload_json"] = granted["payload_json"].replace('"granted":true', '"granted":0')
        with pytest.raises(CentralError) as refused:
            admin.merge_journal(forged)
        assert refused.value.status == 403 and refused.value.extra["reason"] == "bad_mac"
        audit = [e for e in admin.operator_journal() if "merge" in e["action"]]
        assert [e["operator"] for e in audit][:1] == ["cli"] and audit[-1]["status"] == 403
    # The device comes back after all: its events are answered `duplicate`, none twice.
    with running_agent(config), central.admin() as admin:
        wait_until(lambda: synced_up(admin, config), what="the late upload acked")
        summary = assert_exactly_once(admin, config)
        assert summary["duplicates_seen"] >= count


def test_every_attack_on_a_pack_is_refused_with_its_reason(
    central_per_test: CentralProcess, tmp_path: Path
) -> None:
    central = central_per_test
    config = make_config(tmp_path / "a", central.url, device="kiosk-a")
    other = make_config(tmp_path / "b", central.url, device="kiosk-b")
    with central.admin() as admin:
        enroll_with(admin, config)
        enroll_with(admin, other)
        ids = [_guest(admin, "Gus Guest")["invitation"]["id"]]
        older = _pack(admin, "kiosk-a", tmp_path / "1.pack", ids).read_bytes()
        newer = _pack(admin, "kiosk-a", tmp_path / "2.pack", ids).read_bytes()
        theirs = _pack(admin, "kiosk-b", tmp_path / "b.pack", ids).read_bytes()
        newest = _pack(admin, "kiosk-a", tmp_path / "3.pack", ids).read_bytes()
        # The central refuses what it cannot make: an unknown guest, a device without key.
        with pytest.raises(BadRequest) as unknown:
            _pack(admin, "kiosk-a", tmp_path / "x.pack", ["nobody-here"])
        assert unknown.value.extra["reason"] == "unknown_invitation"
        enroll_device(central.url, door=DOOR, device_id="old-agent")  # sends no key
        with pytest.raises(CentralError) as keyless:
            _pack(admin, "old-agent", tmp_path / "y.pack", ids)
        assert keyless.value.status == 409 and keyless.value.extra["reason"] == "no_pack_key"

    # Only the Pass Office and security officers make packs or merge journals.
    ada = bootstrap_token(
        CentralSettings(data_dir=central.data_dir), operator="ada", role="auditor"
    )
    with CentralAdmin(central.url, token=ada) as auditor:
        with pytest.raises(Forbidden):
            _pack(auditor, "kiosk-a", tmp_path / "z.pack", ids)
        with pytest.raises(Forbidden):
            auditor.merge_journal({"format": eventpack.EXPORT_FORMAT})

    def refused(data: bytes, **kw: Any) -> str:
        with pytest.raises(PackRefused) as exc:
            install_pack(config, data, **kw)
        return exc.value.code

    assert refused(theirs) == "wrong_device"
    # Their pack relabelled for this device: it does not decrypt with this device's key.
    relabelled = json.loads(theirs)
    relabelled["device_id"] = "kiosk-a"
    assert refused(json.dumps(relabelled).encode()) == "tampered"
    # One changed byte of the ciphertext, or of the header (bound as associated data).
    outer = json.loads(newer)
    text = outer["ciphertext"]
    outer["ciphertext"] = text[:40] + ("A" if text[40] != "A" else "B") + text[41:]
    assert refused(json.dumps(outer).encode()) == "tampered"
    later = json.loads(newer)
    later["not_after_ms"] += 86_400_000
    assert refused(json.dumps(later).encode()) == "tampered"
    # A pack made by someone else for this device's public key (it is not secret).
    forged = _forge(config, json.loads(newer))
    assert refused(forged) == "bad_signature"
    assert refused(b"{not json") == "malformed"
    # Expired: after the event's end (the device's clock, never below its time floor).
    ends_ms = json.loads(newer)["not_after_ms"]
    assert refused(newer, now_ms=ends_ms + 1) == "expired"
    # The newer pack installs; the older one (or the same again) is a replay.
    result = _edge(config, "event-pack", "load", str(tmp_path / "2.pack"))
    assert result.returncode == 0, result.stderr
    replay = _edge(config, "event-pack", "load", str(tmp_path / "1.pack"))
    assert replay.returncode == 1 and "refused (replayed)" in replay.stderr
    assert older != newer and refused(newer) == "replayed"
    # A clock set back (hours before the event's end) does not revive a pack once the
    # device has trusted a later time (its time floor).
    with Store.open(StoreSettings(path=config.paths.database)) as store:
        record_floor(store, ends_ms / 1000 + 60, "central")
    assert refused(newest, now_ms=ends_ms - 3600_000) == "expired"
    assert _refusals(config) == [
        "wrong_device",
        "tampered",
        "tampered",
        "tampered",
        "bad_signature",
        "malformed",
        "expired",
        "replayed",
        "replayed",
        "expired",
    ]


def _forge(config: AgentConfig, genuine: dict[str, Any]) -> bytes:
    """A pack sealed to this device's public key, signed by a key the central never had,
    under the kid the device pinned."""
    raw = json.loads(pack_key_path(config).read_text())["private_key"]
    device_key = eventpack.private_key_from_bytes(base64.urlsafe_b64decode(raw + "=="))
    mallory = SigningKey.generate(genuine["kid"])
    body = {
        "format": eventpack.FORMAT,
        "pack_id": "ep-mallory",
        "serial": 99,
        "device_id": "kiosk-a",
        "not_after_ms": genuine["not_after_ms"],
    }
    return eventpack.seal(
        body,
        device_public_key=eventpack.public_key_bytes(device_key),
        kid=genuine["kid"],
        sign=mallory.sign,
    )
