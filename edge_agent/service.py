"""``edge-agent run``: the daemon's life cycle under systemd.

Start-up order: config (already validated) -> store (journal, cache) ->
devices (relay de-energised as the GPIO lines open) -> agent (the door's
durable mode restored: a lockdown set before a crash or power cut is in force
again) -> local API socket -> NFC reader -> ``READY=1``. Nothing can present a
credential before the agent exists, so nothing is decided in the wrong mode.
The watchdog is pinged only while the agent is healthy (event loop turning,
reader thread alive, journal writable), so a wedged agent is killed and
restarted by systemd, whose ``ExecStopPost=edge-agent safe-state`` then
de-energises the relay. SIGTERM stops cleanly: reader stopped, relay
de-energised, stop journaled, socket removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.agent import Agent, Link
from edge_agent.api import start_server
from edge_agent.config import AgentConfig
from edge_agent.devices import Devices, open_devices
from edge_agent.store import Store, StoreSettings

if TYPE_CHECKING:  # imported when a central is configured (run)
    from edge_agent.sync import CentralLink

log = logging.getLogger(__name__)

#: File descriptors kept for the store (database, WAL, lock, photos), the uplink's and
#: downlink's HTTP sessions and the hardware, beyond the local API's connections.
FD_RESERVE = 256
#: How often the serve loop checks the wall clock against the time floor (seconds),
#: so the clock_untrusted alarm is raised or cleared even when nobody presents.
CLOCK_CHECK_S = 30.0
#: How often a door that started on a full disk (or whose journal cannot be written)
#: checks whether there is room again, to finish its start-up without a restart.
RECOVERY_POLL_S = 1.0


def raise_fd_limit(api_connections: int) -> int:
    """Raise ``RLIMIT_NOFILE``'s soft limit to the hard one; return the soft limit.

    systemd's default soft limit is 1024. The local API holds at most
    ``api_connections`` descriptors (``[api] max_connections``); a warning names the
    shortfall if the limit leaves less than :data:`FD_RESERVE` for everything else.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < api_connections + FD_RESERVE:
        log.warning(
            "open-files limit %d leaves fewer than %d descriptors beside the local API's %d "
            "connections: raise LimitNOFILE or lower [api] max_connections",
            soft,
            FD_RESERVE,
            api_connections,
        )
    return soft


class Notifier:
    """sd_notify through the sdnotify library; silent when not under systemd."""

    def __init__(self) -> None:
        import sdnotify

        self._notifier = sdnotify.SystemdNotifier()
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))

    def notify(self, state: str) -> None:
        """Send ``state`` (e.g. ``READY=1``) to systemd if it listens."""
        if self.enabled:
            self._notifier.notify(state)


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec for this process, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2_000_000)
    except ValueError:
        return None


def open_agent(
    config: AgentConfig,
    devices: Devices | None = None,
    *,
    link: Callable[[Agent], Link] | None = None,
) -> tuple[Agent, Store, Devices]:
    """Open store and devices and build the agent (the caller closes all three).

    ``link`` builds the agent's link to the central (see :class:`Agent`). The agent
    restores the door's persisted mode in its constructor: keep building it before
    :func:`serve` starts the local API and the reader.
    """
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(StoreSettings(path=config.paths.database))
    try:
        devices = devices or open_devices(config.hardware, camera=False)
        agent = Agent(config, store, devices, link=link)
    except BaseException:
        store.close()
        raise
    return agent, store, devices


def needs_recovery(agent: Agent) -> bool:
    """True while a start on a full disk left something to finish (or appends fail)."""
    store = agent.store
    return bool(
        not store.closed
        and (store.heap_mode or store.journal_unavailable() is not None or agent.deferred_events)
    )


def recover_store(agent: Agent) -> None:
    """Once there is room again: finish the store's start-up, journal the held-back
    start-up events. Cheap (one ``statvfs``) while the disk is still full."""
    if agent.store.recover():
        written = agent.flush_deferred()
        if written:
            log.warning("disk space is back: %d start-up events journaled late", written)


async def serve(
    agent: Agent,
    config: AgentConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    extra_tasks: list[Callable[[], Any]] | None = None,
) -> None:
    """Serve the local API until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    notifier = Notifier()
    runner = await start_server(
        agent, config.paths.socket, config.paths.socket_mode, limits=config.api
    )
    agent.start_reader()
    for start in extra_tasks or ():
        start()
    notifier.notify("READY=1")
    notifier.notify(f"STATUS=door {config.door.id} ready")
    if on_ready is not None:
        on_ready()
    interval = watchdog_interval_s()
    next_clock_check = loop.time() + CLOCK_CHECK_S
    try:
        while not stop.is_set():
            wait_s = min(interval or CLOCK_CHECK_S, max(0.0, next_clock_check - loop.time()))
            if needs_recovery(agent):
                wait_s = min(wait_s, RECOVERY_POLL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait_s)
            if interval and agent.healthy():
                notifier.notify("WATCHDOG=1")
            if needs_recovery(agent) and not stop.is_set():
                try:
                    await loop.run_in_executor(None, recover_store, agent)
                except Exception:
                    log.exception("recovery from a full disk failed")
            if loop.time() >= next_clock_check and not stop.is_set():
                next_clock_check = loop.time() + CLOCK_CHECK_S
                try:
                    await loop.run_in_executor(None, agent.check_clock)
                except Exception:
                    log.exception("clock check failed")
    finally:
        notifier.notify("STOPPING=1")
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            config.paths.socket.unlink()


def run(config: AgentConfig) -> int:
    """Run the agent until SIGTERM; return the process exit code.

    With ``[central] url`` set, the central link (:mod:`edge_agent.sync`) runs
    beside the local API: started once the socket is up, stopped after the
    agent closed (it gets a moment to upload the agent's stop event).
    """
    raise_fd_limit(config.api.max_connections)
    links: list[CentralLink] = []

    def central_link(agent: Agent) -> CentralLink:
        from edge_agent.sync import CentralLink

        links.append(CentralLink(agent, config))
        return links[-1]

    agent, store, devices = open_agent(config, link=central_link if config.central.url else None)
    link = links[0] if links else None
    try:
        asyncio.run(serve(agent, config, extra_tasks=[link.start] if link else None))
    finally:
        # The agent first (door safe, its stop journaled), then the link, which
        # gets a moment to upload that last event.
        agent.close()
        if link is not None:
            link.stop()
        devices.close()
        store.close()
    return 0


def safe_state(config: AgentConfig) -> int:
    """De-energise the relays (systemd ``ExecStopPost=``); works after any crash."""
    if config.hardware.gpio is None:
        return 0
    from hardware.gpio import open_door_io

    # Opening the lines de-energises both relays; closing keeps them so.
    with open_door_io(config.hardware.gpio) as io:
        io.safe_state()
    log.warning("relays de-energised (safe state)")
    return 0
