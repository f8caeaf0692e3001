"""Sync with the central API: events up exactly once, credentials down atomically.

One public entry point for the daemon, :class:`CentralLink` (started by
``edge-agent run`` when ``[central] url`` is set), built from parts that tests
and tools use on their own:

* :class:`CentralClient` -- the HTTP calls of ``docs/central-api.yaml`` with
  timeouts, the device credential and TLS verification, and typed failures
  (:class:`CentralRefused`, :class:`CentralUnreachable`);
* :class:`Backoff` -- exponential backoff with full jitter, ``Retry-After`` as a floor;
* :class:`Uplink` -- journal batches to ``/v1/events`` with per-event acks;
* :class:`Downlink` -- ``/v1/deltas`` pages, verified against the central's pinned
  delta signing key (:class:`DeltaTrust`, :mod:`portier_common.signing`), applied
  atomically to the cache;
* :class:`Alarms` -- sync alarms journaled as ``sync.alarm`` events.

Enrollment is :mod:`edge_agent.enroll`. The protocol as the device uses it,
the error table and the alarms are in ``docs/sync.md``. Importing this package
starts nothing.
"""

from __future__ import annotations

from edge_agent.sync.alarms import ALARM_CODES, ALARM_EVENT, ActiveAlarm, Alarms
from edge_agent.sync.client import Backoff, CentralClient, CentralRefused, CentralUnreachable
from edge_agent.sync.downlink import (
    DeltaError,
    DeltaPage,
    DeltaTrust,
    DoorSettingsFile,
    Downlink,
    DownlinkResult,
    convert_page,
)
from edge_agent.sync.link import CentralLink, clock_offset_ms
from edge_agent.sync.uplink import Paused, Stopped, Uplink, UplinkStats

__all__ = [
    "ALARM_CODES",
    "ALARM_EVENT",
    "ActiveAlarm",
    "Alarms",
    "Backoff",
    "CentralClient",
    "CentralLink",
    "CentralRefused",
    "CentralUnreachable",
    "DeltaError",
    "DeltaPage",
    "DeltaTrust",
    "DoorSettingsFile",
    "Downlink",
    "DownlinkResult",
    "Paused",
    "Stopped",
    "Uplink",
    "UplinkStats",
    "clock_offset_ms",
    "convert_page",
]
