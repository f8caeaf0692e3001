"""Media, disk pressure and disk-full behaviour: photos go first, events never."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.store import (
    MediaRefused,
    MediaState,
    Pressure,
    Store,
    StoreFull,
    StoreSettings,
)

KIB = 1024
MIB = 1024 * 1024


class FakeDisk:
    """A file system whose free space the test sets; photo files count too."""

    def __init__(self, media_dir: Path, free: int, total: int = 8 * 1024 * MIB) -> None:
        self.media_dir = media_dir
        self.base_free = free
        self.total = total

    def __call__(self, path: Path) -> tuple[int, int]:
        used = (
            sum(p.stat().st_size for p in self.media_dir.glob("*"))
            if self.media_dir.exists()
            else 0
        )
        return self.base_free - used, self.total


def settings(path: Path, **kw: object) -> StoreSettings:
    kw.setdefault("reserve_bytes", 0)
    kw.setdefault("warn_free_bytes", 0)
    kw.setdefault("critical_free_bytes", 0)
    return StoreSettings(path=path, **kw)


# -- media basics ---------------------------------------------------------------------------


def test_photo_round_trip_and_upload_state(tmp_path: Path) -> None:
    with Store.open(settings(tmp_path / "m.sqlite")) as store:
        event = store.journal.append("visitor.checked_in", {"invitation": "inv-1"})
        item = store.media.put(b"\xff\xd8jpeg", event_id=event.id)
        assert item.state is MediaState.PENDING and item.size == 6 and item.event_id == event.id
        assert store.media.get(item.id) == b"\xff\xd8jpeg"
        assert [m.id for m in store.media.pending()] == [item.id]
        assert store.media.mark_uploaded(item.id) is True
        assert store.media.mark_uploaded(item.id) is False
        assert store.media.pending() == []
        assert store.media.usage().bytes == 6
        assert oct(store.media.path(item.id).stat().st_mode & 0o777) == "0o600"
        with pytest.raises(ValueError):
            store.media.put(b"")
        with pytest.raises(KeyError):
            store.media.get("01900000-0000-7000-8000-000000000000")
    with Store.open(settings(tmp_path / "m.sqlite")) as store:
        assert store.media.get(item.id) == b"\xff\xd8jpeg"


def test_start_up_reconciles_files_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with Store.open(settings(path)) as store:
        kept = store.media.put(b"keep")
        lost = store.media.put(b"lost")
        media_dir = store.media.directory
    store.media.path(lost.id).unlink()  # vanished behind our back
    (media_dir / ".half-written.tmp").write_bytes(b"x")  # crash mid-write
    (media_dir / "01900000-0000-7000-8000-000000000001").write_bytes(b"orphan")
    with Store.open(settings(path)) as store:
        assert sorted(p.name for p in media_dir.iterdir()) == [kept.id]
        item = store.media.item(lost.id)
        assert item.state is MediaState.EVICTED and "missing" in item.evicted_reason
        assert store.media.get(kept.id) == b"keep"


def test_media_quota_evicts_uploaded_photos_first_then_refuses(tmp_path: Path) -> None:
    with Store.open(settings(tmp_path / "m.sqlite", media_max_bytes=3 * KIB)) as store:
        a = store.media.put(b"a" * KIB)
        b = store.media.put(b"b" * KIB)
        c = store.media.put(b"c" * KIB)
        store.media.mark_uploaded(b.id)
        d = store.media.put(b"d" * KIB)  # evicts b (uploaded), not a (older, pending)
        assert store.media.item(b.id).state is MediaState.EVICTED
        assert store.media.item(a.id).state is MediaState.PENDING
        with pytest.raises(MediaRefused, match="quota"):
            store.media.put(b"e" * KIB)  # only pending photos left: refused
        assert {m.id for m in store.media.pending()} == {a.id, c.id, d.id}
        # Events are unaffected by a full media quota.
        assert store.journal.append("visitor.photo_refused", {}).seq == 1


# -- disk pressure ----------------------------------------------------------------------------


def test_pressure_levels_and_relief_order(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    disk = FakeDisk(path.with_name("p.sqlite.media"), free=100 * MIB)
    conf = settings(
        path, warn_free_bytes=20 * MIB, critical_free_bytes=10 * MIB, reserve_bytes=64 * KIB
    )
    with Store.open(conf, disk_usage=disk) as store:
        assert store.disk_pressure().level is Pressure.OK
        assert store.disk_pressure().reserve_bytes == 64 * KIB
        old_uploaded = store.media.put(b"u" * (2 * MIB))
        store.media.mark_uploaded(old_uploaded.id)
        pending = store.media.put(b"p" * (2 * MIB))
        # Something else eats the disk: 19 MiB free -> LOW, alarm.
        disk.base_free = 23 * MIB
        pressure = store.disk_pressure()
        assert pressure.level is Pressure.LOW and pressure.alarm
        assert pressure.media_bytes == 4 * MIB and pressure.media_count == 2
        with pytest.raises(MediaRefused, match="free"):
            store.media.put(b"n" * (2 * MIB))
        # The refusal already evicted the uploaded photo to try to make room.
        assert store.media.item(old_uploaded.id).state is MediaState.EVICTED
        assert store.relieve_pressure().count == 0  # LOW never evicts pending photos
        assert store.media.item(pending.id).state is MediaState.PENDING
        # CRITICAL: pending photos go too.
        disk.base_free = 11 * MIB
        assert store.disk_pressure().level is Pressure.CRITICAL
        result = store.relieve_pressure()
        assert result.ids == (pending.id,)
        assert "CRITICAL" in store.media.item(pending.id).evicted_reason
        # Events were never refused along the way.
        assert store.journal.append("door.opened", {}).seq == 1
        # Back to OK: the reserve is re-created if it was released.
        store._reserve.release()
        disk.base_free = 100 * MIB
        store.relieve_pressure()
        assert store.disk_pressure().reserve_bytes == 64 * KIB


def test_full_database_raises_typed_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite"
    conf = settings(path, max_db_bytes=256 * KIB, keep_acked=0)
    payload = {"pad": "x" * 400}
    with Store.open(conf) as store:
        written = []
        with pytest.raises(StoreFull) as info:
            for _ in range(10_000):
                written.append(store.journal.append("door.opened", payload))
        assert isinstance(info.value, OSError) and "journal append" in str(info.value)
        assert store.journal.head().seq == len(written)  # the failed event does not exist
        assert len(written) > 50
        # Once the central acknowledged events, they make room for new ones.
        batch = store.journal.next_batch(100)
        assert store.journal.mark_acked([e.id for e in batch]) == 100
        more = store.journal.append("door.opened", payload)
        assert more.seq == len(written) + 1 and more.prev_hash == written[-1].hash
        result = store.journal.verify_chain()
        assert result.ok and result.last_seq == more.seq
        assert store.journal.backlog_count() == len(written) + 1 - 100


# -- a real full disk ------------------------------------------------------------------------

FULL_DISK_CHILD = r"""
import json, sys
from pathlib import Path
from edge_agent.store import MediaRefused, MediaState, Store, StoreFull, StoreSettings

root = Path(sys.argv[1])
KIB = 1024
conf = StoreSettings(
    path=root / "agent.sqlite", warn_free_bytes=600 * KIB, critical_free_bytes=300 * KIB,
    reserve_bytes=256 * KIB,
)
report = {"photos": 0, "events": 0}
photo_ids = []
store = Store.open(conf)
report["reserve_at_start"] = store.disk_pressure().reserve_bytes
try:
    while True:
        photo_ids.append(store.media.put(b"\xff" * (64 * KIB)).id)
        report["photos"] += 1
except MediaRefused as exc:
    report["photo_refused"] = str(exc)
events = []
try:
    while True:
        events.append(store.journal.append("door.opened", {"pad": "x" * 300, "n": len(events)}))
except StoreFull as exc:
    report["journal_full"] = str(exc)
report["events"] = len(events)
report["media_left"] = store.media.usage().count
report["reserve_at_end"] = store.disk_pressure().reserve_bytes
report["evicted_reasons"] = sorted({str(store.media.item(i).evicted_reason) for i in photo_ids})
store.close()
with Store.open(conf, read_only=True) as ro:
    result = ro.journal.verify_chain()
    stored = {e.seq: e.id for e in ro.journal.events(limit=10**6)}
report["verify_ok"] = result.ok
report["verified"] = result.checked
report["all_returned_present"] = all(stored.get(e.seq) == e.id for e in events)
print(json.dumps(report))
"""


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.processes
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a small tmpfs")
def test_real_full_disk_evicts_photos_then_refuses_events_cleanly(tmp_path: Path) -> None:
    """A 4 MiB tmpfs in a private mount namespace (gone when the child exits)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    script = tmp_path / "child.py"
    script.write_text(FULL_DISK_CHILD)
    out = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=4m tmpfs "{mount}" && '
            f'exec "{sys.executable}" "{script}" "{mount}"',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["reserve_at_start"] == 256 * KIB
    assert report["photos"] > 5 and "free" in report["photo_refused"]
    # The journal kept going past the photos' floor: reserve released and
    # every photo evicted before the first (and only) refused event.
    assert report["events"] > 500
    assert report["media_left"] == 0
    assert report["reserve_at_end"] == 0
    assert report["evicted_reasons"] == ["disk full: journal needs the space"]
    assert "journal append" in report["journal_full"]
    assert report["verify_ok"] and report["verified"] == report["events"]
    assert report["all_returned_present"]
