"""The agent's link to the central: two threads beside the door, never in its way.

* **uplink thread**: drains the journal to ``/v1/events`` (:class:`Uplink`), woken by
  every new journal event and every ``sync_interval_s``;
* **control thread**: heartbeat every ``heartbeat_interval_s`` (health, clock offset),
  deltas every ``sync_interval_s`` (:class:`Downlink`, at once when a heartbeat says
  the central has newer changes), and local checks -- disk pressure, backlog,
  dead letters -- each round.

Each thread has its own HTTP session. Neither holds a lock the door needs: the
door journals and decides on the cache whatever the network does. The device
credential is re-read when its file changes, so ``edge-agent enroll`` while the
agent runs takes effect without a restart.

``edge-agent run`` starts a link when ``[central] url`` is set
(:func:`edge_agent.service.run`); the agent's status shows :meth:`CentralLink.status`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import edge_agent.enroll as enrollment
from edge_agent.config import AgentConfig
from edge_agent.door import DoorSettings
from edge_agent.store import StoreError, SyncStatus
from edge_agent.sync.alarms import Alarms
from edge_agent.sync.client import Backoff, CentralClient, CentralRefused, CentralUnreachable
from edge_agent.sync.downlink import DeltaError, DeltaTrust, DoorSettingsFile, Downlink
from edge_agent.sync.uplink import Paused, Stopped, Uplink

log = logging.getLogger(__name__)

__all__ = ["CentralLink", "clock_offset_ms"]

_NOT_READ = object()

#: The 403 answer (device disabled) is retried this rarely.
_DISABLED_RETRY_S = 3600.0


def clock_offset_ms(t0: int, t1: int, t2: int, t3: int) -> tuple[float, float]:
    """Return (offset, round trip) in ms by the NTP formula: the central's clock minus
    ours, from send ``t0`` / receive ``t3`` (ours) and receive ``t1`` / answer ``t2``
    (the central's)."""
    return ((t1 - t0) + (t2 - t3)) / 2, (t3 - t0) - (t2 - t1)


class CentralLink:
    """Uplink, downlink, heartbeat and sync alarms of one agent.

    Args:
        agent: the running :class:`~edge_agent.agent.Agent` (its store, journal,
            event bus, door and policy are used).
        config: the agent's configuration (``[central]`` must have a ``url``).
        wall_clock: Unix seconds (injectable: tests give the agent a wrong clock).

    :meth:`start` the threads, :meth:`stop` them (idempotent).
    """

    def __init__(
        self,
        agent: Any,
        config: AgentConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not config.central.url:
            raise ValueError("central.url: a central link needs the central's URL")
        self.agent = agent
        self.store = agent.store
        self.config = config
        self.central = config.central
        self._wall = wall_clock
        self.alarms = Alarms(agent.journal, self._wall_ms)
        self.settings_file = DoorSettingsFile(config.paths.state_dir / "central-door-settings.json")
        self._credential_path: Path = enrollment.credential_path(config)
        self._credential: enrollment.DeviceCredential | None = None
        # (mtime, size) of the file when last read; a fresh link has read nothing yet.
        self._credential_stamp: object = _NOT_READ
        self._credential_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_uplink = threading.Event()
        self._wake_control = threading.Event()
        self._threads: list[threading.Thread] = []
        self._exit = contextlib.ExitStack()
        self._started_mono = time.monotonic()
        self._uplink: Uplink | None = None
        self._downlink_state: dict[str, Any] = {}
        self.online = False
        self.last_contact_ms: int | None = None
        self.clock_offset_ms: int | None = None
        self.clock_rtt_ms: int | None = None
        self.last_heartbeat_ms: int | None = None
        self.central_next_seq: int | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Apply stored door settings and start the uplink and control threads."""
        if self._threads:
            return
        stored = self.settings_file.load()
        if stored is not None:
            self._apply_door_settings(stored["settings"], version=stored.get("version"))
        self._exit.enter_context(self.agent.bus.subscribe_callback(self._on_event))
        for name, target in (("uplink", self._uplink_loop), ("control", self._control_loop)):
            thread = threading.Thread(target=target, name=f"central-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = 10.0, flush_s: float = 2.0) -> None:
        """Stop both threads (a request in progress finishes or times out first) and put
        the batch being sent back to READY. Idempotent.

        While online, the uplink first gets up to ``flush_s`` to upload what is waiting
        (the agent's own stop event, journaled just before).
        """
        if self._threads and self.online and flush_s > 0:
            self._wake_uplink.set()
            deadline = time.monotonic() + flush_s
            with contextlib.suppress(StoreError):
                while self.store.journal.counts().backlog and time.monotonic() < deadline:
                    if self._stop.wait(0.02):
                        break
        self._stop.set()
        self._wake_uplink.set()
        self._wake_control.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("sync: %s did not stop in time", thread.name)
        self._threads.clear()
        self._exit.close()

    def wake(self) -> None:
        """Upload and pull now rather than at the next interval."""
        self._wake_uplink.set()
        self._wake_control.set()

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the link's state for the agent's status (JSON-ready)."""
        credential = self._credential
        uplink = self._uplink
        downlink = self.store.cache.downlink()
        return {
            "enrolled": credential is not None,
            "device_id": credential.device_id if credential else None,
            "central_url": self.central.url,
            "online": self.online,
            "last_contact_ms": self.last_contact_ms,
            "last_upload_ms": uplink.stats.last_upload_ms if uplink else None,
            "last_sync_ms": downlink.last_sync_ms,
            "cursor": downlink.cursor,
            "last_heartbeat_ms": self.last_heartbeat_ms,
            "clock_offset_ms": self.clock_offset_ms,
            "batch_size": uplink.batch_size if uplink else None,
            "alarms": [a.to_dict() for a in self.alarms.active()],
        }

    def health(self) -> dict[str, Any]:
        """Return the heartbeat body (``HeartbeatRequest``) as of now."""
        counts = self.store.journal.counts()
        pressure = self.store.disk_pressure()
        downlink = self.store.cache.downlink()
        uplink = self._uplink
        now_ms = self._wall_ms()
        alarms = [a.to_dict() for a in self.alarms.active()]
        doors = []
        door = getattr(self.agent, "door", None)
        if door is not None:
            snap = door.snapshot()
            state = "unlocked" if snap.get("unlocked") else "locked"
            if snap.get("door_open"):
                state += ",open"
            doors.append({"door": self.config.door.id, "mode": snap.get("mode"), "state": state})
            for alarm in snap.get("alarms", []):
                if alarm.get("active") or not alarm.get("acknowledged"):
                    alarms.append(
                        {
                            "code": f"door.{alarm['alarm']}",
                            "since_ms": now_ms - round(alarm.get("age_s", 0) * 1000),
                            "detail": "active" if alarm.get("active") else "unacknowledged",
                        }
                    )
        return {
            "sent_at_ms": now_ms,
            "backlog": {
                "pending": counts.backlog,
                "dead_letter": counts.dead,
                "oldest_wall_ms": self._oldest_pending_wall_ms(counts),
            },
            "last_sync_ms": downlink.last_sync_ms,
            "last_upload_ms": uplink.stats.last_upload_ms if uplink else None,
            "cache_cursor": downlink.cursor,
            "clock_offset_ms": self.clock_offset_ms,
            "disk": {
                "free_bytes": pressure.free_bytes,
                "total_bytes": pressure.total_bytes,
                "db_bytes": pressure.db_bytes + pressure.wal_bytes,
                "media_bytes": pressure.media_bytes,
            },
            "versions": enrollment.software_versions(),
            "alarms": alarms,
            "doors": doors,
            "uptime_s": int(time.monotonic() - self._started_mono),
        }

    # -- credential -------------------------------------------------------------------

    def credential(self) -> enrollment.DeviceCredential | None:
        """The device credential, re-read when its file changed (None: not enrolled)."""
        try:
            st = os.stat(self._credential_path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._credential_lock:
            if stamp == self._credential_stamp:
                return self._credential
            try:
                credential = enrollment.load_credential(self._credential_path)
            except (OSError, ValueError) as exc:
                log.error("sync: credential file %s unusable: %s", self._credential_path, exc)
                credential = None
            self._credential, self._credential_stamp = credential, stamp
        if credential is None:
            self.alarms.raise_("not_enrolled", f"no device credential in {self._credential_path}")
        else:
            self.alarms.clear("not_enrolled")
            log.info("sync: using the credential of device %s", credential.device_id)
        return credential

    # -- threads --------------------------------------------------------------------------

    def _wall_ms(self) -> int:
        return int(self._wall() * 1000)

    def _on_event(self, event: Mapping[str, Any]) -> None:
        self._wake_uplink.set()

    def _contact(self, ok: bool) -> None:
        self.online = ok
        if ok:
            self.last_contact_ms = self._wall_ms()

    def _client(self) -> CentralClient:
        assert self.central.url is not None
        return CentralClient(
            self.central.url,
            ca_file=self.central.ca_file,
            timeout_s=self.central.timeout_s,
            user_agent=f"portier-edge-agent/{enrollment.software_versions()['agent']}",
        )

    def _backoff(self) -> Backoff:
        return Backoff(self.central.backoff_base_s, self.central.backoff_cap_s)

    def _uplink_loop(self) -> None:
        client = self._client()
        used: enrollment.DeviceCredential | None = None
        try:
            while not self._stop.is_set():
                credential = self.credential()
                if credential is None:
                    self._sleep(self._wake_uplink, self.central.sync_interval_s)
                    continue
                if self._uplink is None or credential is not used:
                    if self._uplink is not None:
                        self._uplink.release()
                    client.set_credential(credential.device_token)
                    limit = credential.limits.get("max_batch_events") or self.central.batch_size
                    self._uplink = Uplink(
                        self.store.journal,
                        client,
                        self.alarms,
                        batch_size=max(1, min(self.central.batch_size, limit, 10_000)),
                        backoff=self._backoff(),
                        wait=self._stop.wait,
                        max_batch_bytes=credential.limits.get("max_batch_bytes"),
                        on_contact=self._contact,
                        wall_ms=self._wall_ms,
                    )
                    used = credential
                try:
                    self._uplink.drain()
                except Stopped:
                    break
                except Paused as exc:
                    self._paused(exc, used)
                    continue
                except StoreError as exc:
                    log.error("sync: journal error during upload: %s", exc)
                    if self._stop.wait(self.central.backoff_cap_s):
                        break
                    continue
                except Exception:
                    # A bug must not end the sync for good: log it, wait, go on
                    # (the batch stays in flight and is resent with its ids).
                    log.exception("sync: unexpected error in the uplink")
                    if self._stop.wait(self.central.backoff_cap_s):
                        break
                    continue
                self._sleep(self._wake_uplink, self.central.sync_interval_s)
        finally:
            with contextlib.suppress(StoreError):
                if self._uplink is not None:
                    self._uplink.release()
            client.close()

    def _paused(self, exc: Paused, credential: enrollment.DeviceCredential | None) -> None:
        """Wait until the credential changes, or ``exc.delay_s`` passed."""
        deadline = None if exc.delay_s is None else time.monotonic() + exc.delay_s
        log.warning("sync: uplink paused (%s)", exc.reason)
        while not self._stop.is_set():
            if self.credential() is not credential:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._stop.wait(min(self.central.sync_interval_s, 5.0))

    def _sleep(self, wake: threading.Event, seconds: float) -> None:
        wake.wait(seconds)
        wake.clear()

    def _control_loop(self) -> None:
        client = self._client()
        downlink = Downlink(
            self.store,
            client,
            self.alarms,
            door=self.config.door.id,
            # Replaced by the credential's pinned key below; until then nothing is trusted.
            trust=DeltaTrust("", None),
            page_size=self.central.deltas_page,
            settings_file=self.settings_file,
            on_door_settings=self._apply_door_settings,
            trust_file=self.config.paths.state_dir / "central-sync-trust.json",
        )
        backoff = self._backoff()
        next_heartbeat = next_pull = 0.0
        used: enrollment.DeviceCredential | None = None
        paused_until: float | None = 0.0  # None: until the credential changes
        try:
            while not self._stop.is_set():
                self._check_local()
                credential = self.credential()
                now = time.monotonic()
                if credential is not used:
                    used, paused_until = credential, 0.0
                    next_heartbeat = next_pull = now
                    if credential is not None:
                        client.set_credential(credential.device_token)
                        downlink.trust = DeltaTrust(
                            credential.device_id,
                            credential.delta_key,
                            enrollment=hashlib.sha256(
                                credential.device_token.encode("utf-8")
                            ).hexdigest()[:32],
                        )
                active = credential is not None and (
                    paused_until is not None and now >= paused_until
                )
                if active:
                    try:
                        if now >= next_heartbeat:
                            next_heartbeat = now + self.central.heartbeat_interval_s
                            if self._heartbeat(client):
                                next_pull = now
                        if now >= next_pull:
                            downlink.sync()
                            next_pull = time.monotonic() + self.central.sync_interval_s
                        backoff.reset()
                    except CentralRefused as exc:
                        self._contact(exc.status < 500)
                        paused_until, next_pull = self._control_refused(exc, backoff)
                    except CentralUnreachable as exc:
                        self._contact(False)
                        if exc.tls:
                            self.alarms.raise_("tls", str(exc))
                        next_pull = time.monotonic() + backoff.next_delay()
                        next_heartbeat = min(next_heartbeat, next_pull)
                    except DeltaError as exc:
                        log.error("sync: deltas page discarded: %s", exc)
                        next_pull = time.monotonic() + backoff.next_delay()
                    except StoreError as exc:
                        log.error("sync: store error while applying deltas: %s", exc)
                        next_pull = time.monotonic() + backoff.next_delay()
                    except Exception:
                        log.exception("sync: unexpected error in heartbeat or deltas")
                        next_pull = time.monotonic() + self.central.backoff_cap_s
                        next_heartbeat = max(next_heartbeat, next_pull)
                waits = [self.central.sync_interval_s]
                if active:
                    waits += [next_heartbeat - time.monotonic(), next_pull - time.monotonic()]
                self._sleep(self._wake_control, max(0.01, min(waits)))
        finally:
            client.close()

    def _control_refused(self, exc: CentralRefused, backoff: Backoff) -> tuple[float | None, float]:
        """React to an error answer of heartbeat/deltas; return (paused_until, next_pull)."""
        now = time.monotonic()
        if exc.status == 401:
            self.alarms.raise_("enrollment_needed", exc.detail)
            return None, now
        if exc.status == 403:
            self.alarms.raise_("device_disabled", exc.detail)
            return now + _DISABLED_RETRY_S, now + _DISABLED_RETRY_S
        if exc.transient:
            return 0.0, now + backoff.next_delay(exc.retry_after_s)
        self.alarms.raise_("api_mismatch", f"heartbeat/deltas: {exc}")
        backoff.attempt = max(backoff.attempt, 8)
        return 0.0, now + backoff.next_delay(exc.retry_after_s)

    def _heartbeat(self, client: CentralClient) -> bool:
        """Send one heartbeat; return True if the central has changes we lack."""
        body = self.health()
        answer = client.heartbeat(body)
        t3 = self._wall_ms()
        self._contact(True)
        self.alarms.clear("enrollment_needed")
        self.alarms.clear("device_disabled")
        self.alarms.clear("tls")
        self.last_heartbeat_ms = t3
        try:
            offset, rtt = clock_offset_ms(
                body["sent_at_ms"],
                int(answer["received_at_ms"]),
                int(answer["server_time_ms"]),
                t3,
            )
        except (KeyError, TypeError, ValueError):
            log.warning("sync: heartbeat answer without the central's clock")
        else:
            self.clock_offset_ms, self.clock_rtt_ms = round(offset), round(rtt)
            # The central's time is a trusted lower bound of the real time, and its
            # word on our clock can clear the clock_untrusted alarm (edge_agent.timefloor).
            note_central_time = getattr(self.agent, "note_central_time", None)
            if note_central_time is not None:
                note_central_time(int(answer["server_time_ms"]), offset)
            limit_ms = self.central.clock_drift_alarm_s * 1000
            if abs(offset) > limit_ms:
                self.alarms.raise_(
                    "clock_drift",
                    f"local clock is {-offset / 1000:+.1f} s off the central's "
                    f"(limit {self.central.clock_drift_alarm_s:g} s)",
                    offset_ms=round(offset),
                )
            elif abs(offset) <= limit_ms / 2:
                self.alarms.clear("clock_drift")
        if answer.get("chain_ok") is False:
            self.alarms.raise_("chain_broken", "the central reports this device's chain broken")
        elif answer.get("chain_ok") is True:
            self.alarms.clear("chain_broken")
        if isinstance(answer.get("next_seq"), int):
            self.central_next_seq = answer["next_seq"]
        return answer.get("deltas_cursor") != self.store.cache.downlink().cursor

    # -- local checks -------------------------------------------------------------------

    def _check_local(self) -> None:
        try:
            self._check_disk()
            self._check_journal()
            self._check_backlog()
            self._check_staleness()
        except StoreError as exc:
            log.error("sync: local checks failed: %s", exc)
        except Exception:
            log.exception("sync: local checks failed")

    def _check_staleness(self) -> None:
        """The ``stale_cache`` alarm: raised at ``[door] stale_alarm_fraction`` of the
        door's maximum staleness (well before the door starts refusing), cleared when a
        sync brings the cache back under it. A never-synced cache raises nothing here
        (``not_enrolled`` and the other alarms say why; status shows it stale)."""
        state = self.agent.cache_state()
        staleness, limit = state["staleness_s"], state["max_staleness_s"]
        if staleness is None or limit is None:
            self.alarms.clear("stale_cache")
            return
        if state["warning"]:
            refusing = "refusing access" if state["stale"] else "access still decided"
            self.alarms.raise_(
                "stale_cache",
                f"credential cache {staleness:.0f} s old (limit {limit:.0f} s, {refusing})",
                staleness_s=round(staleness),
                max_staleness_s=round(limit),
            )
        else:
            self.alarms.clear("stale_cache")

    def _check_disk(self) -> None:
        pressure = self.store.disk_pressure()
        if pressure.alarm:
            self.alarms.raise_(
                "disk_low",
                f"{pressure.free_bytes} bytes free, level {pressure.level.name.lower()}",
                free_bytes=pressure.free_bytes,
            )
            evicted = self.store.relieve_pressure()
            if evicted.count:
                log.warning("sync: disk pressure: %d photos evicted", evicted.count)
        elif self.alarms.clear("disk_low"):
            self.store.relieve_pressure()  # re-creates the reserve file

    def _check_journal(self) -> None:
        """The ``journal_damaged`` alarm: what the store's start-up checks found (a
        ``journal.gap`` or ``journal.damaged`` event says the details). It stays up
        until the agent restarts: the loss is for a person to look at."""
        damage = self.store.journal.damage
        if damage:
            self.alarms.raise_(
                "journal_damaged", "; ".join(damage[:3]) + (" ..." if len(damage) > 3 else "")
            )

    def _check_backlog(self) -> None:
        counts = self.store.journal.counts()
        central = self.central
        if counts.dead == 0:
            self.alarms.clear("dead_letter")
        backlog = counts.backlog
        if backlog == 0:
            self.alarms.clear("backlog")
            return
        oldest = self._oldest_pending_wall_ms(counts)
        age_s = 0.0 if oldest is None else max(0.0, self._wall() - oldest / 1000)
        pressure = self.store.disk_pressure()
        rows = max(1, counts.ready + counts.in_flight + counts.acked + counts.dead)
        backlog_bytes = backlog * (pressure.db_bytes + pressure.wal_bytes) / rows
        share = backlog_bytes / max(1, pressure.free_bytes + backlog_bytes)
        reasons = []
        if backlog >= central.backlog_alarm_events:
            reasons.append(f"{backlog} events waiting (limit {central.backlog_alarm_events})")
        if age_s >= central.backlog_alarm_age_s:
            reasons.append(
                f"oldest waiting {age_s:.0f} s (limit {central.backlog_alarm_age_s:g} s)"
            )
        if share >= central.backlog_alarm_disk_fraction:
            reasons.append(
                f"backlog about {backlog_bytes / 2**20:.0f} MiB, {share:.0%} of the space left "
                f"(limit {central.backlog_alarm_disk_fraction:.0%})"
            )
        if reasons:
            self.alarms.raise_("backlog", "; ".join(reasons), pending=backlog)
        elif (
            backlog < central.backlog_alarm_events / 2
            and age_s < central.backlog_alarm_age_s / 2
            and share < central.backlog_alarm_disk_fraction / 2
        ):
            self.alarms.clear("backlog")

    def _oldest_pending_wall_ms(self, counts: Any) -> int | None:
        if counts.backlog == 0:
            return None
        uplink = self._uplink
        if uplink is not None and uplink.oldest_pending_wall_ms is not None:
            return uplink.oldest_pending_wall_ms
        # Acks are a prefix of the chain but for dead letters: start the search there.
        seq = counts.trimmed_through + counts.acked + 1
        for _ in range(4):
            events = self.store.journal.events(from_seq=seq, limit=500)
            for event in events:
                if event.status in (SyncStatus.READY, SyncStatus.IN_FLIGHT):
                    return event.wall_ms
            if not events:
                return None
            seq = events[-1].seq + 1
        return None

    # -- door settings ----------------------------------------------------------------

    def _apply_door_settings(
        self, settings: Mapping[str, Any] | None, version: object = None
    ) -> None:
        """Apply the central's settings for this door (None: back to the configuration)
        through :meth:`Agent.apply_door_settings`."""
        if version is None:
            # The downlink saves the settings file before calling: its version is this one.
            stored = self.settings_file.load()
            version = None if stored is None else stored.get("version")
        door_settings = DoorSettings.configured(self.config.door).with_central(settings)
        if not self.agent.apply_door_settings(door_settings, version):
            return
        log.info(
            "sync: door settings applied: %s", dict(settings or {}) or "configuration defaults"
        )
