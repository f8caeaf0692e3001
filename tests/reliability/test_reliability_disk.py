"""A door stopped on a full disk starts again (issue #18, item 1).

A real ``edge-agent run`` on a real, small tmpfs: the tmpfs lives in a private mount
namespace held by a ``sleep`` process (``unshare -m``), the agent runs inside it
(``nsenter -m``) and the test reaches the same files through ``/proc/<pid>/root``.
Needs root (CI runs as root); skipped otherwise. Nothing outlives the test: the
namespace, and the tmpfs with it, goes when its last process exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.client import ApiError
from tests.edge_agent.test_agent import STAFF_UID
from tests.edge_agent.test_local_api import EDGE_AGENT, Served, run_agent, write_config

MIB = 1024 * 1024
#: Big enough for the store's default 32 MiB reserve file above its 256 MiB warning
#: threshold: the agent runs with its built-in store settings, as on a door.
DISK_MIB = 320


def _can_unshare() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter")) or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


pytestmark = [
    pytest.mark.skipif(
        not _can_unshare(), reason="needs root, unshare and nsenter to mount a small tmpfs"
    ),
    pytest.mark.processes,
]


class SmallDisk:
    """A tmpfs of ``size_mib`` mounted at ``mount`` in a private mount namespace."""

    def __init__(self, mount: Path, size_mib: int) -> None:
        mount.mkdir(parents=True, exist_ok=True)
        self.mount = mount
        self.holder = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'mount -t tmpfs -o size={size_mib}m tmpfs "$0" && echo ready && exec sleep 3600',
                str(mount),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline().strip() == "ready"
        self.filler = self.outside(mount / "filler")

    def outside(self, path: Path) -> Path:
        """``path`` (inside the namespace) as the test process reaches it."""
        return Path(f"/proc/{self.holder.pid}/root") / path.relative_to("/")

    def inside(self, *cmd: str) -> list[str]:
        """``cmd`` run in the namespace (the agent sees the tmpfs at ``mount``)."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *cmd]

    def free(self) -> int:
        st = os.statvfs(self.outside(self.mount))
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Take every free byte (another program filling the disk); return the free bytes left."""
        with self.filler.open("ab", buffering=0) as out:
            for chunk in (MIB, 4096, 512, 1):
                block = b"\0" * chunk
                while True:
                    try:
                        if not out.write(block):
                            break
                    except OSError:
                        break
        return self.free()

    def release(self) -> None:
        """Give the filler's space back."""
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "disk", DISK_MIB)
    yield small
    small.close()


def _config(tmp_path: Path, disk: SmallDisk) -> Path:
    config = write_config(
        tmp_path / "agent",
        paths={"state_dir": str(disk.mount / "state")},
        door={"accept_uid": True},
    )
    # The cache is filled inside the namespace, where the state directory is.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from tests.edge_agent.test_local_api import fill_cache; from pathlib import Path; "
        "fill_cache(Path(sys.argv[2]))"
    )
    repo = str(Path(__file__).resolve().parents[2])
    subprocess.run(
        disk.inside(sys.executable, "-c", code, repo, str(config)), check=True, timeout=60
    )
    return config


def _start(config: Path, disk: SmallDisk, log_name: str) -> Served:
    return run_agent(config, config.parent / log_name, wrap=lambda argv: disk.inside(*argv))


def _present(served: Served) -> dict:
    return served.client.present_badge(STAFF_UID)


def _relay(served: Served) -> bool:
    return bool(served.client.status()["door"]["unlocked"])


def _journal_types(disk: SmallDisk, config: Path) -> list[str]:
    """The journal's event types, read inside the namespace by a read-only store."""
    code = (
        "import json, sys; from edge_agent.config import load_config; "
        "from edge_agent.store import Store, StoreSettings; "
        "cfg = load_config(sys.argv[1]); "
        "store = Store.open(StoreSettings(path=cfg.paths.database), read_only=True); "
        "print(json.dumps([e.type for e in store.journal.events(limit=10**6)]))"
    )
    out = subprocess.run(
        disk.inside(sys.executable, "-c", code, str(config)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("stop", "room_at_stop"),
    [(signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGTERM, True)],
    ids=["clean-stop", "kill-9", "clean-stop-then-full"],
)
def test_agent_stopped_on_a_full_disk_starts_degraded_and_recovers(
    tmp_path: Path, disk: SmallDisk, stop: int, room_at_stop: bool
) -> None:
    """``room_at_stop``: the disk had room again at the clean stop (so SQLite removed
    its WAL and wal-index) and filled up while the door was stopped, with its reserve
    already spent: the issue's ``SQLITE_IOERR_SHMSIZE``, where only heap mode opens."""
    config = _config(tmp_path, disk)
    served = _start(config, disk, "first.log")
    try:
        first = _present(served)
        assert first["granted"] is True, first
        reserve = disk.outside(disk.mount / "state" / (served.database.name + ".reserve"))
        assert reserve.stat().st_size == 32 * MIB
        # Something else fills the disk while the door runs; the door keeps
        # journaling on its reserve, then refuses (what a running door already does).
        refused = None
        for _ in range(200):
            disk.fill()
            try:
                _present(served)
            except ApiError as exc:
                refused = exc
                break
        assert refused is not None and refused.status == 503, refused
        assert refused.code == "journal_unavailable"
        assert not reserve.exists(), (refused, served.output()[-3000:])
    finally:
        if room_at_stop:
            disk.release()
        served.stop(stop)
    assert disk.fill() < 4096  # whatever the stop gave back is taken too

    # -- start on the full disk: up, degraded, refusing with the reason, alarmed --
    served = _start(config, disk, "second.log")
    try:
        status = served.client.status()
        assert status["journal"]["writable"] is False
        assert status["journal"]["heap_mode"] is room_at_stop
        assert "full" in status["journal"]["reason"]
        assert status["disk"]["alarm"] is True
        with pytest.raises(ApiError) as info:
            _present(served)
        assert info.value.status == 503 and info.value.code == "journal_unavailable"
        assert _relay(served) is False
        assert served.process.poll() is None

        # -- space returns: grants again within a few seconds, without a restart --
        disk.release()
        deadline = time.monotonic() + 10
        while True:
            try:
                decision = _present(served)
                break
            except ApiError as exc:
                assert exc.code == "journal_unavailable"
                assert time.monotonic() < deadline, "no grant 10 s after space returned"
                time.sleep(0.2)
        assert decision["granted"] is True
        deadline = time.monotonic() + 10
        while served.client.status()["journal"] != {
            "writable": True,
            "reason": None,
            "heap_mode": False,
            "deferred_events": 0,
            "damage": [],
        }:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        assert served.stop() == 0
    verify = subprocess.run(
        disk.inside(EDGE_AGENT, "journal", "verify", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    types = _journal_types(disk, config)
    # The degraded start was journaled late, once there was room.
    assert types.count("agent.started") == 2, types[-12:]
    assert types[-1] == "agent.stopped"


def test_with_a_central_the_full_disk_start_alarms_and_keeps_heartbeats(
    tmp_path: Path, disk: SmallDisk
) -> None:
    """The same start on a full disk, enrolled with the reference central: the central
    hears heartbeats from the degraded door, with its ``disk_low`` alarm."""
    from central.testing import CentralProcess
    from tests.support.sync_rig import FAST_CENTRAL, device_summary, wait_until

    with CentralProcess(tmp_path / "central") as central, central.admin() as admin:
        admin.put_badge(uid=STAFF_UID, holder="Sam Staff", doors=["gate-a"], kind="uid")
        config = write_config(
            tmp_path / "agent",
            paths={"state_dir": str(disk.mount / "state")},
            door={"accept_uid": True},
            device={"id": "full-door"},
            central={"url": central.url, **FAST_CENTRAL},
        )
        token = admin.create_enroll_token("gate-a")["enroll_token"]
        enrolled = subprocess.run(
            disk.inside(EDGE_AGENT, "enroll", "--config", str(config), "--token", token),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert enrolled.returncode == 0, enrolled.stderr
        served = _start(config, disk, "first.log")
        try:
            wait_until(lambda: _present(served)["granted"], what="a grant after the first sync")
            for _ in range(200):
                disk.fill()
                try:
                    _present(served)
                except ApiError:
                    break
        finally:
            served.stop(signal.SIGKILL)
        disk.fill()
        restarted_ms = time.time_ns() // 1_000_000
        served = _start(config, disk, "second.log")
        try:
            assert served.client.status()["journal"]["writable"] is False

            def beat_with_alarm() -> dict | None:
                beat = device_summary(admin, "full-door").get("last_heartbeat") or {}
                codes = [a["code"] for a in beat.get("alarms", [])]
                return (
                    beat
                    if beat.get("sent_at_ms", 0) > restarted_ms and "disk_low" in codes
                    else None
                )

            beat = wait_until(beat_with_alarm, what="a heartbeat with disk_low after the restart")
            assert beat["disk"]["free_bytes"] < 64 * 1024
            with pytest.raises(ApiError) as info:
                _present(served)
            assert info.value.code == "journal_unavailable"
            disk.release()
            wait_until(
                lambda: _granted_or_none(served), what="a grant once space returned", timeout_s=15
            )
        finally:
            assert served.stop() == 0


def _granted_or_none(served: Served) -> bool:
    try:
        return bool(_present(served)["granted"])
    except ApiError as exc:
        assert exc.code == "journal_unavailable"
        return False


# -- the store alone: what SQLite needs to open on a full disk ------------------------------

STORE_CHILD = r"""
import dataclasses, json, os, sys
from pathlib import Path
from edge_agent.store import Store, StoreError, StoreFull, StoreSettings

root = Path(sys.argv[1])
KIB = 1024
filler = root / "filler"


def fill():
    with filler.open("ab", buffering=0) as out:
        for chunk in (1 << 20, 4096, 512, 1):
            while True:
                try:
                    if not out.write(b"\0" * chunk):
                        break
                except OSError:
                    break


def free():
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


report = {}
conf = StoreSettings(
    path=root / "agent.sqlite", warn_free_bytes=0, critical_free_bytes=0,
    reserve_bytes=int(sys.argv[2]) * KIB,
)
with Store.open(conf) as store:
    for n in range(50):
        store.journal.append("door.opened", {"n": n})
    report["reserve_before"] = store.disk_pressure().reserve_bytes
# A clean close checkpointed and deleted the WAL and the -shm file.
report["files_after_close"] = sorted(p.name for p in root.iterdir())
fill()
report["free_when_full"] = free()
store = Store.open(conf)
report["heap_mode"] = store.heap_mode
report["reserve_after_open"] = store.disk_pressure().reserve_bytes
report["head"] = store.journal.head().seq
report["unavailable_at_start"] = store.journal_unavailable()
try:
    store.journal.append("door.opened", {"n": "full"})
    report["append_when_full"] = "written"
except StoreFull as exc:
    report["append_when_full"] = str(exc)
report["unavailable"] = store.journal_unavailable()
try:
    Store.open(dataclasses.replace(conf, busy_timeout_s=0.2), read_only=True).close()
    report["reader_elsewhere"] = "ok"
except StoreError as exc:
    report["reader_elsewhere"] = type(exc).__name__
report["recover_while_full"] = store.recover()
filler.unlink()
report["recover"] = store.recover()
report["heap_mode_after"] = store.heap_mode
report["appended"] = store.journal.append("door.opened", {"n": "back"}).seq
report["unavailable_after"] = store.journal_unavailable()
with Store.open(conf, read_only=True) as reader:
    report["verify"] = reader.journal.verify_chain().ok
    report["reader_head"] = reader.journal.head().seq
store.close()
print(json.dumps(report))
"""


@pytest.mark.parametrize("reserve_kib", [0, 1024], ids=["no-reserve", "reserve"])
def test_store_opens_on_a_full_disk_and_recovers(
    tmp_path: Path, disk: SmallDisk, reserve_kib: int
) -> None:
    """The issue's ``SQLITE_IOERR_SHMSIZE``: a clean stop deleted the WAL and the
    wal-index; opening needs room to re-create them. With a reserve, it is released;
    without, the writer opens in heap mode and goes back to normal once there is room."""
    script = tmp_path / "child.py"
    script.write_text(STORE_CHILD)
    out = subprocess.run(
        disk.inside(sys.executable, str(script), str(disk.mount), str(reserve_kib)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["files_after_close"] == [
        "agent.sqlite",
        "agent.sqlite.hwm",
        "agent.sqlite.lock",
        "agent.sqlite.media",
        *(["agent.sqlite.reserve"] if reserve_kib else []),
    ]
    assert report["free_when_full"] < 4096
    assert report["head"] == 50
    if reserve_kib:
        # Released before opening: the normal mode, and room for a few events.
        assert report["reserve_before"] == reserve_kib * 1024
        assert report["heap_mode"] is False and report["reserve_after_open"] == 0
        assert report["append_when_full"] == "written"
    else:
        assert report["heap_mode"] is True
        assert "full" in report["append_when_full"]
        assert "full" in report["unavailable"]
        # Nobody else can read the file meanwhile (a one-line error, not a traceback).
        assert report["reader_elsewhere"] == "StoreError"
        assert report["recover_while_full"] is False
    assert report["recover"] is True and report["heap_mode_after"] is False
    assert report["unavailable_after"] is None
    assert report["verify"] is True
    assert report["reader_head"] == report["appended"]
