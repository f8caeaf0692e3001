"""Portier's reference central: the server side of docs/central-api.yaml, for the demo and tests.

This package is **never installed on a door appliance**: it stands in for a
real identity-and-access central so that the agent's enrollment, event upload,
deltas and heartbeat can be exercised end to end, on loopback, with faults
injected on demand (docs/central.md).

* :class:`CentralServer` / :func:`serve`: the aiohttp server (``portier-central serve``);
* :class:`CentralStore`: the SQLite state and every rule of the contract (usable
  without HTTP);
* :class:`CentralAdmin`: a client for the admin API (CLI, tests, the demo);
* :class:`FaultSpec` / :class:`FaultInjector`: fault injection.

Importing this package starts nothing; aiohttp is imported by :mod:`central.server` only.
"""

from __future__ import annotations

from .admin import CentralAdmin, CentralUnreachable
from .errors import CentralError
from .faults import FaultInjector, FaultSpec
from .settings import CentralSettings
from .store import CentralStore

__all__ = [
    "CentralAdmin",
    "CentralError",
    "CentralServer",
    "CentralSettings",
    "CentralStore",
    "CentralUnreachable",
    "FaultInjector",
    "FaultSpec",
    "serve",
]


def __getattr__(name: str) -> object:
    # The server pulls in aiohttp; load it only when asked for.
    if name in ("CentralServer", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'central' has no attribute {name!r}")
