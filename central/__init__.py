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

Importing this package starts nothing and loads its modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

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

# Loaded on first use, so `python -m central events ...` does not pay for
# aiohttp, SQLite and the token code it does not need.
_WHERE = {
    "CentralAdmin": "admin",
    "CentralUnreachable": "admin",
    "CentralError": "errors",
    "FaultInjector": "faults",
    "FaultSpec": "faults",
    "CentralSettings": "settings",
    "CentralStore": "store",
    "CentralServer": "server",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'central' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
