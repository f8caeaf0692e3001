"""Retention and the auditor's export (issue #13).

Visitors' personal data is pseudonymised after the retention period (the store's clock is
moved past it), the devices' hash chains still verify, each purge is in the audit chain;
an auditor exports one device's events of a period with the chain proof and re-checks the
file offline, and a tampered file fails. On both backends (``central_db``: SQLite and a
real PostgreSQL); the HTTP route and the commands on a real central process of each.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from central.admin import CentralAdmin
from central.auth import bootstrap_token
from central.cli import main as cli_main
from central.errors import CentralError
from central.settings import CentralSettings
from central.store import CentralStore
from central.store.eventchain import GENESIS_HEX, verify_export
from central.store.retention import PSEUDONYM_PREFIX, pseudonym, pseudonymise
from central.testing import CentralProcess, ChainBuilder, ContractChecker, enroll_device
from portier_common.encoding import event_hash
from portier_common.settings import ConfigError

pytestmark = pytest.mark.processes  # the PostgreSQL half starts a server

DAY_MS = 86_400_000
T0 = 1_795_331_200_000  # 2026-11-22 07:06:40 UTC
PERSONAL = ("Ada Lovelace", "Grace Hopper", "grace@example.com", "Bob Badge", "Carol Guard")


class Clock:
    """The store's clock, moved by the tests."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms

    def advance_days(self, days: float) -> None:
        self.ms += int(days * DAY_MS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(central_db: Callable[[], str | None], tmp_path: Path, clock: Clock) -> Iterator[Any]:
    settings = CentralSettings(data_dir=tmp_path / "data", db=central_db())
    with CentralStore(settings, clock=clock) as opened:
        token = opened.create_enroll_token(door="lobby")["enroll_token"]
        opened.enroll({"enroll_token": token, "device_id": "dev-a"})
        yield opened


def visit(store: CentralStore, chain: ChainBuilder, wall_ms: int) -> list[dict[str, Any]]:
    """An invitation for Ada (host Grace) and four events, three of them personal."""
    made = store.create_invitation(
        {
            "visitor": "Ada Lovelace",
            "host": "Grace Hopper",
            "host_email": "grace@example.com",
            "doors": ["lobby"],
            "not_before": wall_ms // 1000,
            "expires": wall_ms // 1000 + 3600,
        }
    )
    inv = made["invitation"]["id"]
    batch = [
        chain.event("access.decision", {"granted": True, "n": 1}, wall_ms=wall_ms),
        chain.event(
            "visitor.checked_in",
            {"invitation_id": inv, "visitor": "Ada Lovelace", "by": "visitor", "photo": "AAAA"},
            wall_ms=wall_ms + 1,
        ),
        chain.event(
            "access.decision", {"granted": True, "holder": "Bob Badge"}, wall_ms=wall_ms + 2
        ),
        chain.event("guard.login", {"guard_id": "g1", "name": "Carol Guard"}, wall_ms=wall_ms + 3),
    ]
    acks = store.upload_events("dev-a", batch)["acks"]
    assert [a["status"] for a in acks] == ["accepted"] * 4
    return batch


def dump(store: CentralStore, *tables: str) -> str:
    """Every row of *tables*, as text (what someone reading the database would see)."""
    with store._db.transaction() as conn:
        return "\n".join(
            str(dict(row)) for table in tables for row in conn.execute(f"SELECT * FROM {table}")
        )


PERSONAL_TABLES = ("events", "invitations", "changes", "notifications")


def test_settings_name_a_bad_retention() -> None:
    assert CentralSettings(data_dir=Path("/tmp/x")).retention_days == 90
    for bad in (0, -1, 36_501, "90", 1.5, True):
        with pytest.raises(ConfigError, match="retention_days") as caught:
            CentralSettings(data_dir=Path("/tmp/x"), retention_days=bad)  # type: ignore[arg-type]
        assert caught.value.key == "retention_days"
    with pytest.raises(ConfigError, match="purge_interval_s"):
        CentralSettings(data_dir=Path("/tmp/x"), purge_interval_s=0)


def test_pseudonyms_are_keyed_stable_and_idempotent() -> None:
    key, other = b"k" * 32, b"o" * 32
    assert pseudonym(key, "Ada  Lovelace") == pseudonym(key, "ada lovelace")
    assert pseudonym(key, "Ada") != pseudonym(other, "Ada")
    data = {"visitor": "Ada", "override": {"name": "Carol", "reason": "x"}, "photo": "AA", "n": 1}
    once, changed = pseudonymise(data, key)
    assert changed and once["visitor"].startswith(PSEUDONYM_PREFIX)
    assert once["override"]["name"] == pseudonym(key, "Carol") and once["photo"] is None
    assert once["n"] == 1 and once["override"]["reason"] == "x"
    assert pseudonymise(once, key) == (once, False)
    assert pseudonymise({"granted": True}, key) == ({"granted": True}, False)


def test_purge_pseudonymises_after_the_period_and_chains_still_verify(
    store: CentralStore, clock: Clock
) -> None:
    chain = ChainBuilder()
    visit(store, chain, T0)
    assert len(store.notifications()) == 2
    # Within the period: nothing to do, nothing recorded.
    assert store.purge()["events"] == 0
    assert all(e["action"] != "retention.purge" for e in store.operator_journal())

    clock.advance_days(91)
    dry = store.purge(dry_run=True)
    assert (dry["events"], dry["invitations"], dry["notifications"]) == (3, 1, 2)
    assert dry["devices"] == {"dev-a": [[2, 4]]}
    assert "Ada Lovelace" in dump(store, *PERSONAL_TABLES)  # a dry run changes nothing
    assert all(e["action"] != "retention.purge" for e in store.operator_journal())

    done = store.purge()
    assert {k: done[k] for k in ("events", "invitations", "notifications", "devices")} == {
        "events": 3,
        "invitations": 1,
        "notifications": 2,
        "devices": {"dev-a": [[2, 4]]},
    }
    rows = dump(store, *PERSONAL_TABLES)
    for text in PERSONAL:
        assert text not in rows, text
    assert "AAAA" not in rows  # the photo

    events = store.device_events("dev-a")["events"]
    assert [e["purged_at_ms"] is not None for e in events] == [False, True, True, True]
    checked_in = events[1]["payload"]
    assert checked_in["visitor"].startswith(PSEUDONYM_PREFIX) and checked_in["photo"] is None
    assert checked_in["by"] == "visitor"  # not personal: kept for statistics
    # The same visitor, the same pseudonym: in the invitation the doors are sent, too.
    deltas = store.deltas("hq", None)
    assert deltas["invitations"][0]["visitor"] == checked_in["visitor"]
    assert deltas["invitations"][0]["host"].startswith(PSEUDONYM_PREFIX)
    outbox = store.notifications()
    assert {row["status"] for row in outbox} == {"failed"}  # never sent (no sender ran)
    # The device's chain still verifies, from the database.
    assert store.verify_chain("dev-a") == (True, None)
    assert store.received(verify=True)["devices"][0]["chain_verified"] is True

    record = store.operator_journal()[-1]
    assert record["action"] == "retention.purge" and record["operator"] is None
    detail = json.loads(record["detail"])
    assert detail["by"] == "system" and detail["events"] == 3 and detail["retention_days"] == 90
    assert detail["devices"] == {"dev-a": [[2, 4]]}
    assert store.verify_audit()["ok"]

    # Again: nothing left, nothing recorded. Newer data stays until its own time comes.
    heads = len(store.operator_journal())
    assert store.purge()["events"] == 0 and len(store.operator_journal()) == heads
    visit(store, chain, clock.ms)
    clock.advance_days(30)
    assert store.purge()["events"] == 0
    assert store.device_events("dev-a", after_seq=4)["events"][1]["payload"]["visitor"] == (
        "Ada Lovelace"
    )
    clock.advance_days(61)
    assert store.purge()["devices"] == {"dev-a": [[6, 8]]}
    assert store.verify_chain("dev-a") == (True, None)


def test_a_shorter_period_and_a_tampered_purged_event(store: CentralStore, clock: Clock) -> None:
    visit(store, ChainBuilder(), T0)
    clock.advance_days(8)
    assert store.purge(retention_days=30)["events"] == 0
    assert store.purge(retention_days=7)["events"] == 3
    with pytest.raises(ValueError, match="retention_days"):
        store.purge(retention_days=0)
    # A purged event is checked by its links: a changed hash breaks the next link.
    with store._db.transaction() as conn:
        conn.execute(
            "UPDATE events SET hash = ? WHERE device_id = 'dev-a' AND seq = 3", ("ab" * 32,)
        )
    assert store.verify_chain("dev-a") == (False, 4)


# -- the auditor's export ---------------------------------------------------------------


@pytest.fixture
def history(store: CentralStore, clock: Clock) -> CentralStore:
    """dev-a: seq 1-4 (a visit, at T0), seq 5-12 (one event a minute from T0 + 1 h)."""
    chain = ChainBuilder()
    visit(store, chain, T0)
    later = [
        chain.event(
            "access.decision", {"granted": True, "n": n}, wall_ms=T0 + 3_600_000 + n * 60_000
        )
        for n in range(8)
    ]
    store.upload_events("dev-a", later)
    return store


def test_export_of_a_period_verifies_offline(history: CentralStore) -> None:
    whole = history.export_device_events("dev-a")
    result = verify_export(whole)
    assert result["ok"], result["problems"]
    assert [e["seq"] for e in whole["events"]] == list(range(1, 13))
    assert whole["anchor"] == {"seq": 0, "hash": GENESIS_HEX}
    assert whole["end"] == {"seq": 12, "hash": whole["device_head"]["last_hash"]}

    # seq 6..9: wall_ms T0 + 1 h + 1 min to T0 + 1 h + 4 min (until excluded).
    start = T0 + 3_600_000 + 60_000
    period = history.export_device_events("dev-a", since_ms=start, until_ms=start + 4 * 60_000)
    assert [e["seq"] for e in period["events"]] == [6, 7, 8, 9]
    assert period["anchor"] == {"seq": 5, "hash": whole["events"][4]["hash"]}
    assert verify_export(period)["ok"]
    empty = history.export_device_events("dev-a", since_ms=T0 + 10 * DAY_MS)
    assert empty["events"] == [] and verify_export(empty)["ok"]
    with pytest.raises(CentralError):
        history.export_device_events("dev-a", since_ms=2, until_ms=1)
    with pytest.raises(CentralError):
        history.export_device_events("nobody")


def _problems(document: dict[str, Any]) -> set[str]:
    result = verify_export(document)
    assert not result["ok"]
    return {p["problem"] for p in result["problems"]}


def test_a_tampered_export_fails(history: CentralStore) -> None:
    good = history.export_device_events("dev-a", since_ms=T0 + 1)  # seq 2..12

    modified = copy.deepcopy(good)
    modified["events"][3]["payload_json"] = modified["events"][3]["payload_json"].replace(
        "true", "false"
    )
    assert _problems(modified) == {"changed"}

    dropped = copy.deepcopy(good)
    del dropped["events"][4]
    assert "seq" in _problems(dropped) and "link" in _problems(dropped)

    dropped_last = copy.deepcopy(good)
    del dropped_last["events"][-1]
    assert _problems(dropped_last) == {"end"}

    reordered = copy.deepcopy(good)
    reordered["events"][2], reordered["events"][3] = reordered["events"][3], reordered["events"][2]
    assert {"seq", "link"} <= _problems(reordered)

    wrong_anchor = copy.deepcopy(good)
    wrong_anchor["anchor"]["hash"] = "00" * 32
    assert _problems(wrong_anchor) == {"link"}

    shifted_anchor = copy.deepcopy(good)
    shifted_anchor["anchor"]["seq"] = 0
    assert "seq" in _problems(shifted_anchor)

    rehashed = copy.deepcopy(good)  # a new payload and its own new hash: the next link breaks
    event = rehashed["events"][3]
    event["payload_json"] = '{"granted":false}'
    event["hash"] = event_hash(
        bytes.fromhex(event["prev_hash"]), event["seq"], uuid.UUID(event["id"]).bytes,
        event["wall_ms"], event["mono_ns"], event["type"], event["payload_json"],
    ).hex()  # fmt: skip
    assert _problems(rehashed) == {"link"}

    assert _problems({"format": "something else"}) == {"format"}
    assert verify_export(good)["ok"]


def test_purged_events_still_verify_in_an_export(history: CentralStore, clock: Clock) -> None:
    clock.advance_days(91)
    assert history.purge()["events"] == 3
    exported = history.export_device_events("dev-a")
    result = verify_export(exported)
    assert result["ok"], result["problems"]
    assert (result["rehashed"], result["links_only"]) == (9, 3)
    text = json.dumps(exported)
    for name in PERSONAL:
        assert name not in text
    assert [p["seq"] for p in exported["purges"]] == [history.operator_journal()[-1]["seq"]]
    # Passing a modified event off as purged: no purge in the audit log names it...
    forged = copy.deepcopy(exported)
    forged["events"][0]["purged_at_ms"] = clock.ms
    forged["events"][0]["payload_json"] = '{"granted":false,"n":1}'
    assert _problems(forged) == {"unrecorded_purge"}
    # ...nor may the export's copy of the purge row be widened to cover it...
    widened = copy.deepcopy(forged)
    detail = json.loads(widened["purges"][0]["detail"])
    detail["devices"]["dev-a"] = [[1, 4]]
    widened["purges"][0]["detail"] = json.dumps(detail)
    assert _problems(widened) == {"purge_record"}
    # ...and a purged event given another hash breaks the link after it.
    moved = copy.deepcopy(exported)
    moved["events"][2]["hash"] = "ef" * 32
    assert _problems(moved) == {"link"}


def test_an_export_across_a_declared_journal_gap(store: CentralStore) -> None:
    chain = ChainBuilder()
    first = [chain.event(wall_ms=T0 + n) for n in range(3)]  # seq 1-3 arrive
    for n in range(2):
        chain.event(wall_ms=T0 + 3 + n)  # seq 4-5: the device lost them before uploading
    # The gap event at seq 6 chains to seq 3's hash (what the device still had).
    gap = ChainBuilder(next_seq=6, prev_hash=bytes.fromhex(first[-1]["hash"])).event(
        "journal.gap", {"from_seq": 4, "to_seq": 5}, wall_ms=T0 + 10
    )
    store.upload_events("dev-a", first)
    acks = store.upload_events("dev-a", [gap])["acks"]
    assert acks[0]["status"] == "accepted"
    assert store.verify_chain("dev-a") == (True, None)
    exported = store.export_device_events("dev-a", since_ms=gap["wall_ms"])
    assert [e["seq"] for e in exported["events"]] == [6]
    assert exported["gap_anchors"] == {"3": first[-1]["hash"]}
    assert verify_export(exported)["ok"]
    assert verify_export(store.export_device_events("dev-a"))["ok"]


# -- over HTTP and on the command line, on a real central of each backend ---------------


@pytest.fixture(scope="module")
def central(central_on_each_backend: CentralProcess) -> CentralProcess:
    return central_on_each_backend


def _settings(central: CentralProcess) -> CentralSettings:
    db = None
    if "--db" in central.extra_args:
        db = central.extra_args[central.extra_args.index("--db") + 1]
    return CentralSettings(data_dir=central.data_dir, db=db)


def test_auditor_exports_over_http_and_the_commands(
    central: CentralProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(central)
    auditor = bootstrap_token(settings, operator="aud", role="auditor")
    pass_office = bootstrap_token(settings, operator="desk", role="pass_office")
    _, device = enroll_device(central.url, device_id="exp-dev", door="lobby")
    chain = ChainBuilder()
    events = [chain.event(wall_ms=T0 + n * 1000) for n in range(5)]
    response = device.post(f"{central.url}/v1/events", json={"events": events}, timeout=10)
    assert response.status_code == 200

    with CentralAdmin(central.url, token=auditor) as admin:
        exported = admin.export_device_events("exp-dev", since_ms=events[1]["wall_ms"])
    ContractChecker().check_response("GET", "/admin/devices/{device_id}/export", 200, exported)
    assert [e["seq"] for e in exported["events"]] == [2, 3, 4, 5]
    assert verify_export(exported)["ok"]
    with CentralAdmin(central.url, token=pass_office) as admin, pytest.raises(CentralError) as no:
        admin.export_device_events("exp-dev")
    assert no.value.status == 403
    with CentralStore(settings) as store:
        last = store.operator_journal()[-1]
    assert last["operator"] == "aud" and last["action"] == "GET /admin/devices/{device_id}/export"

    out = tmp_path / "export.json"
    args = ["events-export", "--url", central.url, "--token", auditor, "--device", "exp-dev"]
    assert cli_main([*args, "--out", str(out)]) == 0
    assert "5 events of exp-dev" in capsys.readouterr().out
    assert cli_main(["verify-export", str(out)]) == 0
    assert "chain verified: device exp-dev, 5 events (5 re-hashed" in capsys.readouterr().out
    tampered = json.loads(out.read_text())
    tampered["events"][1]["wall_ms"] += 1
    out.write_text(json.dumps(tampered))
    assert cli_main(["verify-export", str(out)]) == 1
    assert "seq 2: changed" in capsys.readouterr().out
    out.write_text("not json")
    with pytest.raises(SystemExit) as unreadable:
        cli_main(["verify-export", str(out)])
    assert unreadable.value.code == 2

    local = ["--data", str(central.data_dir)]
    if settings.db is not None:
        local += ["--db", settings.db]
    assert cli_main(["purge", *local, "--dry-run"]) == 0
    assert "would pseudonymise: 0 events" in capsys.readouterr().out
    assert cli_main(["purge", *local, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["retention_days"] == 90
    with CentralStore(settings) as store:
        record = store.operator_journal()[-1]
    assert record["action"] == "retention.purge" and json.loads(record["detail"])["by"] == "cli"
    with pytest.raises(SystemExit) as bad:
        cli_main(["purge", *local, "--retention-days", "0"])
    assert bad.value.code == 2
    assert "retention_days" in capsys.readouterr().err


def test_serve_purges_on_its_own(
    central_db: Callable[[], str | None], tmp_path: Path, clock: Clock
) -> None:
    """The periodic purge inside ``serve`` (CentralServer, the store's clock moved)."""
    import asyncio

    from central.server import CentralServer

    settings = CentralSettings(
        data_dir=tmp_path / "data", db=central_db(), port=0, purge_interval_s=0.1
    )

    async def run() -> dict[str, Any]:
        server = CentralServer(settings, clock=clock)
        await server.start()
        db, store = server._db, server.store  # the store is called on the server's thread

        async def purged() -> list[bool]:
            events = (await db(store.device_events, "dev-a"))["events"]
            return [e["purged_at_ms"] is not None for e in events]

        try:
            token = (await db(store.create_enroll_token, door="lobby"))["enroll_token"]
            await db(store.enroll, {"enroll_token": token, "device_id": "dev-a"})
            await db(visit, store, ChainBuilder(), T0)
            clock.advance_days(89.5)
            await asyncio.sleep(0.3)
            assert not any(await purged())
            clock.advance_days(1)
            for _ in range(100):
                await asyncio.sleep(0.05)
                if any(await purged()):
                    break
            journal = await db(store.operator_journal)
            return {
                "purged": await purged(),
                "journal": [e for e in journal if e["action"] == "retention.purge"],
            }
        finally:
            await server.stop()

    result = asyncio.run(run())
    assert result["purged"] == [False, True, True, True]
    assert len(result["journal"]) == 1  # the empty runs before are not recorded
    assert json.loads(result["journal"][0]["detail"])["by"] == "system"


def test_the_technical_log_is_kept_longer_then_deleted(store: CentralStore, clock: Clock) -> None:
    from portier_common import eventpack
    from portier_common.signing import b64url

    token = store.create_enroll_token(door="hall")["enroll_token"]
    key = b64url(eventpack.public_key_bytes(eventpack.generate_key()))
    store.enroll({"enroll_token": token, "device_id": "kiosk-p", "event_pack_key": key})
    now = clock.ms
    store.heartbeat(
        "dev-a", {"sent_at_ms": now, "alarms": [{"code": "tamper", "since_ms": now}]}, now
    )
    # kiosk-p's forced door is still raised when the log is old: its ack must stay.
    store.heartbeat(
        "kiosk-p", {"sent_at_ms": now, "alarms": [{"code": "forced_open", "since_ms": now}]}, now
    )
    store.put_selftest("dev-a", {"ok": True, "results": []}, now)
    store.acknowledge_alarm("dev-a", "tamper", now, "sam", "let Ada Lovelace out by the side")
    store.acknowledge_alarm("kiosk-p", "forced_open", now, "sam", "Grace Hopper's cart")
    event = {"name": "Expo", "starts": now // 1000, "ends": now // 1000 + 3600}
    first = store.create_event_pack({"device_id": "kiosk-p", "event": event}, by="paul")
    newest = store.create_event_pack({"device_id": "kiosk-p", "event": event}, by="paul")
    clock.advance_days(1)
    store.heartbeat("dev-a", {"sent_at_ms": clock.ms, "alarms": []}, clock.ms)  # tamper over

    # After the visitors' period: the notes (free text, may name a visitor) are emptied;
    # the technical log stays.
    clock.advance_days(90)
    result = store.purge()
    assert result["technical"] == {
        "selftest_log": 0,
        "alarm_acks": 0,
        "alarm_notes": 2,
        "device_contact": 0,
        "event_packs": 0,
    }
    tech = dump(store, "alarm_acks", "selftest_log", "event_packs")
    assert "Ada Lovelace" not in tech and "Grace Hopper" not in tech and "sam" in tech

    # After technical_log_days (400): a dry run counts, then the purge deletes, in one
    # transaction with its audit row.
    clock.advance_days(400 - 91)
    store.put_selftest("dev-a", {"ok": False, "results": []}, clock.ms)  # a recent report stays
    clock.advance_days(2)  # day 402: day 1's heartbeat is older than 400 days too
    counted = store.purge(dry_run=True)["technical"]
    assert dump(store, "selftest_log").count("received_at_ms") == 2
    result = store.purge()
    assert result["technical"] == counted
    assert result["technical_log_days"] == 400
    assert counted["selftest_log"] == 1 and counted["alarm_acks"] == 1
    assert counted["event_packs"] == 1 and counted["device_contact"] >= 2
    with store._db.transaction() as conn:
        logs = conn.execute("SELECT ok FROM selftest_log").fetchall()
        acks = conn.execute("SELECT device_id FROM alarm_acks").fetchall()
        packs = conn.execute("SELECT pack_id FROM event_packs").fetchall()
        contact = conn.execute("SELECT count(*) AS n FROM device_contact").fetchone()["n"]
    assert [row["ok"] for row in logs] == [0]
    assert [row["device_id"] for row in acks] == ["kiosk-p"]  # still raised: still acked
    assert [row["pack_id"] for row in packs] == [newest["pack_id"]] != [first["pack_id"]]
    assert contact == 0
    assert store.active_alarms()[0]["ack"] is not None
    # The next pack's serial is still above every serial a device may hold.
    assert (
        store.create_event_pack(
            {
                "device_id": "kiosk-p",
                "event": {
                    "name": "Expo 2",
                    "starts": clock.ms // 1000,
                    "ends": clock.ms // 1000 + 60,
                },
            },
            by="paul",
        )["serial"]
        == newest["serial"] + 1
    )
    row = [e for e in store.operator_journal() if e["action"] == "retention.purge"][-1]
    assert json.loads(row["detail"])["technical"]["alarm_acks"] == 1


def test_settings_name_a_bad_technical_log_period() -> None:
    assert CentralSettings(data_dir=Path("/tmp/x")).technical_log_days == 400
    for bad in (0, 36_501, "400", 2.5, False):
        with pytest.raises(ConfigError, match="technical_log_days") as caught:
            CentralSettings(data_dir=Path("/tmp/x"), technical_log_days=bad)  # type: ignore[arg-type]
        assert caught.value.key == "technical_log_days"
