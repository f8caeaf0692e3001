"""Journal damage is detected, journaled and never rewrites history (issue #18, item 3).

A stopped agent's files are copied (database, WAL, high-water mark: what a ``kill -9``
leaves), the copy's WAL is damaged as a failing SD card or an unclean power cut can
leave it (truncated, deleted, a flipped bit), and the copy is opened again: the events
lost with the WAL are reported by a ``journal.gap`` event, never renumbered, and
``edge-agent journal verify`` says so.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.store import Store, StoreSettings, SyncStatus

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))
EVENTS = 120
#: Events checkpointed into the database before the rest stayed in the WAL.
CHECKPOINTED = 40


def settings(path: Path) -> StoreSettings:
    return StoreSettings(path=path, reserve_bytes=0, warn_free_bytes=0, critical_free_bytes=0)


def stopped_agent_files(where: Path) -> Path:
    """A store with EVENTS events, CHECKPOINTED of them in the database file and the
    rest only in the WAL, copied while open (as ``kill -9`` leaves them); the first
    10 acknowledged by the central."""
    live = where / "live"
    live.mkdir()
    store = Store.open(settings(live / "agent.sqlite"))
    for n in range(CHECKPOINTED):
        store.journal.append("access.decision", {"n": n, "granted": True})
    store._db.checkpoint("TRUNCATE")
    for n in range(CHECKPOINTED, EVENTS):
        store.journal.append("access.decision", {"n": n, "granted": True})
    batch = store.journal.next_batch(10)
    store.journal.mark_acked([e.id for e in batch])
    copy = where / "copy"
    copy.mkdir()
    for path in live.iterdir():
        if path.is_file() and not path.name.endswith(".lock"):
            shutil.copy2(path, copy / path.name)
    store.close()
    wal = copy / "agent.sqlite-wal"
    assert wal.stat().st_size > 100_000  # the events after the checkpoint are only here
    return copy / "agent.sqlite"


def damage(db: Path, how: str) -> None:
    wal = db.with_name(db.name + "-wal")
    size = wal.stat().st_size
    if how == "wal-truncated":
        with wal.open("r+b") as f:
            f.truncate(size // 2)
    elif how == "wal-deleted":
        wal.unlink()
        db.with_name(db.name + "-shm").unlink(missing_ok=True)
    elif how == "wal-bit-flip":
        with wal.open("r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0x10]))
    else:
        raise AssertionError(how)


def verify_cli(db: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / f"verify-{db.parent.name}.toml"
    config.write_text(
        '[device]\nid = "door-1"\nsite = "hq"\n[door]\nid = "gate-a"\n'
        f'[paths]\nstate_dir = "{db.parent}"\n'
    )
    # The agent's database is state_dir/portier.db: point it at the copy.
    target = db.parent / "portier.db"
    if not target.exists():
        for path in db.parent.iterdir():
            if path.name.startswith(db.name):
                path.rename(db.parent / path.name.replace(db.name, "portier.db", 1))
    return subprocess.run(
        [EDGE_AGENT, "journal", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.processes
@pytest.mark.parametrize("how", ["wal-truncated", "wal-deleted", "wal-bit-flip"])
def test_lost_wal_events_are_a_journaled_gap_never_reused(tmp_path: Path, how: str) -> None:
    db = stopped_agent_files(tmp_path)
    damage(db, how)
    with Store.open(settings(db), read_only=True) as ro:
        kept = ro.journal.head().seq
    assert CHECKPOINTED <= kept < EVENTS  # the damage did lose committed events

    # verify, before the agent starts again: the loss is reported, in one line.
    before = verify_cli(db, tmp_path)
    assert before.returncode == 1, before.stdout + before.stderr
    assert f"{kept + 1}..{EVENTS}" in before.stdout and "lost" in before.stdout
    assert "Traceback" not in before.stderr
    db = db.with_name("portier.db")

    with Store.open(settings(db)) as store:
        assert store.journal.damage  # what the agent's status and alarm show
        gap = store.journal.head()
        assert gap.seq == EVENTS + 1  # numbered above everything ever committed
        event = store.journal.get(gap.seq)
        assert event is not None and event.type == "journal.gap"
        payload = event.payload
        assert (payload["from_seq"], payload["to_seq"], payload["lost"]) == (
            kept + 1,
            EVENTS,
            EVENTS - kept,
        )
        assert payload["detected_by"] == "high_water_mark"
        # The chain goes on from the last event kept: the gap event links to it.
        assert event.prev_hash == store.journal.get(kept).hash
        after = store.journal.append("access.decision", {"n": "after"})
        assert after.seq == EVENTS + 2  # no sequence number is ever used twice
        result = store.journal.verify_chain()
        assert result.ok and result.last_seq == EVENTS + 2
        assert result.gaps == ((kept + 1, EVENTS),)
        counts = store.journal.counts()
        assert counts.ready + counts.acked == kept + 2  # the lost seqs are not a backlog
        # Trimming through the lost range stops at the last event kept before it.
        store.journal.mark_acked([e.id for e in store.journal.events(limit=EVENTS + 2)])
        assert store.journal.trim(keep_acked=EVENTS + 1 - kept) == kept
        assert store.journal.counts() == type(counts)(0, 0, 2, 0, kept)
        assert store.journal.verify_chain().gaps == ((kept + 1, EVENTS),)
    # Reopening does not report the same gap twice.
    with Store.open(settings(db)) as store:
        assert store.journal.damage == []
        assert store.journal.head().seq == EVENTS + 2

    after_cli = verify_cli(db, tmp_path)
    assert after_cli.returncode == 1, after_cli.stdout + after_cli.stderr
    assert f"seq {kept + 1}..{EVENTS} lost" in after_cli.stdout
    assert "chain intact" in after_cli.stdout


@pytest.mark.processes
def test_verify_reports_a_structurally_damaged_file_in_one_line(tmp_path: Path) -> None:
    db = stopped_agent_files(tmp_path)
    with db.open("r+b") as f:  # the database header and first pages
        f.write(b"\xde\xad" * 8192)
    db.with_name(db.name + "-wal").unlink()
    out = verify_cli(db, tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "journal" in lines[0], lines


def test_start_up_finds_a_bit_flip_in_an_uploaded_event(tmp_path: Path) -> None:
    db = stopped_agent_files(tmp_path)
    with Store.open(settings(db)) as store:
        assert store.journal.damage == []
        acked = [e for e in store.journal.events(limit=EVENTS) if e.status is SyncStatus.ACKED]
        assert len(acked) == 10
    # One bit of an uploaded event's payload flips on the card (the event is valid
    # JSON still: nothing but its hash can tell).
    conn = sqlite3.connect(db)
    payload = conn.execute("SELECT payload FROM events WHERE seq = 5").fetchone()[0]
    flipped = payload.replace('"n":4', '"n":6')
    assert flipped != payload
    conn.execute("UPDATE events SET payload = ? WHERE seq = 5", (flipped,))
    conn.commit()
    conn.close()
    with Store.open(settings(db)) as store:
        assert any("seq 5" in line for line in store.journal.damage), store.journal.damage
        head = store.journal.get(store.journal.head().seq)
        assert head is not None and head.type == "journal.damaged"
        assert head.payload["seq"] == 5 and "hash" in head.payload["reason"]


# -- the central ------------------------------------------------------------------------------


@pytest.mark.parametrize("uploaded", ["none", "some", "all"])
def test_central_accepts_the_gap_event_and_the_chain_goes_on(tmp_path: Path, uploaded: str) -> None:
    """The central got none, some or all of the lost events before the WAL was damaged:
    in every case the gap event and what follows are accepted and the chain verifies
    (its ``prev_hash`` is checked against the central's hash of the last event kept)."""
    from central.settings import CentralSettings
    from central.store import CentralStore

    db = stopped_agent_files(tmp_path)
    with Store.open(settings(tmp_path / "live" / "agent.sqlite"), read_only=True) as live:
        original = [e.to_wire() for e in live.journal.events(limit=EVENTS)]
    damage(db, "wal-deleted")
    with Store.open(settings(db)) as store:
        store.journal.append("access.decision", {"n": "after"})
        kept = store.journal.events(limit=EVENTS)[CHECKPOINTED - 1].seq
        assert kept == CHECKPOINTED
        after_damage = [e.to_wire() for e in store.journal.events(from_seq=EVENTS + 1)]
    assert [e["type"] for e in after_damage] == ["journal.gap", "access.decision"]
    sent = {"none": kept, "some": kept + 7, "all": EVENTS}[uploaded]

    with CentralStore(CentralSettings(data_dir=tmp_path / "central")) as central:
        token = central.create_enroll_token(door="gate-a")["enroll_token"]
        central.enroll({"enroll_token": token, "device_id": "dev-a"})
        first = central.upload_events("dev-a", original[:sent])
        assert {a["status"] for a in first["acks"]} == {"accepted"}
        result = central.upload_events("dev-a", after_damage)
        assert [a["status"] for a in result["acks"]] == ["accepted", "accepted"], result
        assert result["chain_ok"] is True and result["next_seq"] == EVENTS + 3
        assert central.verify_chain("dev-a") == (True, None)  # walked again from its database


# -- end to end: a real agent, a real central ---------------------------------------------------


@pytest.mark.processes
def test_damaged_agent_journals_the_gap_alarms_and_the_central_chain_goes_on(
    tmp_path: Path,
) -> None:
    """``edge-agent run`` with the reference central: events uploaded, the agent killed,
    its WAL deleted (it held the newest events), the agent started again: the gap event
    reaches the central, whose chain still verifies, and the alarm is up."""
    from central.testing import CentralProcess
    from tests.support.sync_rig import (
        AgentProcess,
        device_summary,
        enroll_with,
        make_config,
        synced_up,
        wait_until,
    )

    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        config = make_config(tmp_path / "a", central.url, device="damaged-door")
        enroll_with(admin, config)
        agent = AgentProcess(config, tmp_path / "a" / "agent.log").start()
        try:
            wait_until(lambda: synced_up(admin, config), what="first upload")
            # Everything so far into the database file; what follows stays in the WAL.
            conn = sqlite3.connect(config.paths.database)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            conn.close()
            for n in range(5):
                agent.client.present_badge(f"04AB{n:010X}")  # unknown badges: journaled denies
            wait_until(lambda: synced_up(admin, config), what="upload of the decisions")
            with Store.open(StoreSettings(path=config.paths.database), read_only=True) as ro:
                lost_head = ro.journal.head().seq
        finally:
            agent.kill()
        db = config.paths.database
        db.with_name(db.name + "-wal").unlink()
        db.with_name(db.name + "-shm").unlink(missing_ok=True)

        agent = AgentProcess(config, tmp_path / "a" / "agent2.log").start()
        try:
            status = agent.status()
            assert status["journal"]["damage"] and "lost" in status["journal"]["damage"][0]
            wait_until(
                lambda: "journal_damaged" in [a["code"] for a in agent.status()["sync"]["alarms"]],
                what="journal_damaged alarm",
            )
            wait_until(lambda: synced_up(admin, config), what="upload after the damage")
            summary = device_summary(admin, "damaged-door", verify=True)
            assert summary["chain_ok"] is True and summary["chain_verified"] is True, summary
            gap = [e for e in admin.all_device_events("damaged-door") if e["type"] == "journal.gap"]
        finally:
            agent.stop()
    assert len(gap) == 1 and gap[0]["seq"] == lost_head + 1
