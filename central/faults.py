"""Fault injection for the reference central: what a test switches on to play a bad network.

A :class:`FaultSpec` names the fault, the device endpoint it applies to (or
``"*"``) and when it fires (each matching request, every Nth, at random with
a seed, at most ``count`` times). :class:`FaultInjector` holds the faults that
are on; the server asks it, for every device request, which fault to act out.
Faults never apply to ``/admin``.

The injector is used from the server's event loop only, so it needs no lock.
docs/central-api.yaml (``FaultSpec``) documents each fault's effect.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from portier_common.settings import integer, number

__all__ = [
    "ENDPOINTS",
    "ENDPOINT_PATHS",
    "FAULT_NAMES",
    "ActiveFault",
    "FaultInjector",
    "FaultSpec",
]

#: In the order they are tried: latency combines with any other; of the
#: others, the first that fires wins.
FAULT_NAMES = (
    "latency",
    "timeout",
    "error",
    "throttle",
    "drop_mid_body",
    "drop_before_response",
    "lost_after_commit",
)
#: The device endpoints a fault can target, by request path: the server asks the
#: injector only about these, so a path missing here can never be faulted.
ENDPOINT_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "/v1/enroll": "enroll",
        "/v1/events": "events",
        "/v1/deltas": "deltas",
        "/v1/heartbeat": "heartbeat",
        "/v1/selftest": "selftest",
    }
)
#: What ``FaultSpec.endpoint`` accepts: one of those, or ``"*"`` for all of them.
ENDPOINTS = ("*", *ENDPOINT_PATHS.values())
ERROR_STATUSES = (500, 502, 503, 504)

_DEFAULT_DELAY_S = {"latency": 0.5, "timeout": 30.0}


@dataclass(frozen=True)
class FaultSpec:
    """One fault to switch on.

    Fields left None take the fault's default: ``delay_s`` 0.5 s for latency
    and 30 s for timeout, ``status`` 500, ``retry_after_s`` 2.

    Raises:
        ValueError: an unknown fault or endpoint, or a value out of range; the
            message names the field.
    """

    name: str
    endpoint: str = "*"
    delay_s: float | None = None
    status: int | None = None
    retry_after_s: int | None = None
    #: Fire on every Nth matching request (1: each one).
    every: int | None = None
    #: Fire at random with this probability (0 < p <= 1) instead.
    probability: float | None = None
    #: Seed of the random choice, for a repeatable run.
    seed: int | None = None
    #: Switch off by itself after firing this many times.
    count: int | None = None

    def __post_init__(self) -> None:
        if self.name not in FAULT_NAMES:
            raise ValueError(f"name: {self.name!r} is not one of {list(FAULT_NAMES)}")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint: {self.endpoint!r} is not one of {list(ENDPOINTS)}")
        if self.delay_s is not None:
            number("delay_s", self.delay_s, 0, 600)
        if self.status is not None and self.status not in ERROR_STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {list(ERROR_STATUSES)}")
        if self.retry_after_s is not None:
            integer("retry_after_s", self.retry_after_s, 0, 3600)
        if self.every is not None:
            integer("every", self.every, 1)
        if self.probability is not None:
            number("probability", self.probability, 0, 1)
            if self.probability == 0:
                raise ValueError("probability: must be above 0 (switch the fault off instead)")
        if self.every is not None and self.probability is not None:
            raise ValueError("every: give either every or probability, not both")
        if self.seed is not None:
            integer("seed", self.seed, -(2**63))
        if self.count is not None:
            integer("count", self.count, 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultSpec:
        """Return the spec in a ``FaultSpec`` JSON object.

        Raises:
            ValueError: not an object, an unknown field, or as the constructor.
        """
        if not isinstance(data, Mapping):
            raise ValueError("fault: must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"fault: unknown fields {sorted(unknown)}")
        if "name" not in data:
            raise ValueError("name: is required")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object, without the fields left None."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @property
    def effective_delay_s(self) -> float:
        """The delay for latency and timeout faults."""
        if self.delay_s is not None:
            return float(self.delay_s)
        return _DEFAULT_DELAY_S.get(self.name, 0.0)

    @property
    def effective_status(self) -> int:
        """The status of an error fault."""
        return self.status if self.status is not None else 500

    @property
    def effective_retry_after_s(self) -> int:
        """The Retry-After of a throttle fault."""
        return self.retry_after_s if self.retry_after_s is not None else 2


@dataclass
class ActiveFault:
    """A fault that is on, with its counters."""

    spec: FaultSpec
    matched: int = 0
    fired: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.spec.seed)

    def offer(self) -> bool:
        """Count one matching request; return True if the fault acts on it."""
        self.matched += 1
        if self.spec.probability is not None:
            fires = self._rng.random() < self.spec.probability
        else:
            fires = self.matched % (self.spec.every or 1) == 0
        if fires:
            self.fired += 1
        return fires

    @property
    def exhausted(self) -> bool:
        """True once the fault fired ``count`` times."""
        return self.spec.count is not None and self.fired >= self.spec.count

    def to_dict(self) -> dict[str, Any]:
        """Return the ``Fault`` JSON object: the spec with ``matched`` and ``fired``."""
        return {**self.spec.to_dict(), "matched": self.matched, "fired": self.fired}


class FaultInjector:
    """The faults that are on, by (name, endpoint)."""

    def __init__(self) -> None:
        self._faults: dict[tuple[str, str], ActiveFault] = {}
        #: Faults that switched themselves off (``count``), kept for the listing.
        self._spent: list[ActiveFault] = []

    def set(self, spec: FaultSpec) -> ActiveFault:
        """Switch *spec* on, replacing the same fault on the same endpoint; return it."""
        if not isinstance(spec, FaultSpec):
            raise TypeError(f"spec must be a FaultSpec, not {type(spec).__name__}")
        active = ActiveFault(spec)
        self._faults[(spec.name, spec.endpoint)] = active
        return active

    def clear(self, name: str | None = None, endpoint: str | None = None) -> int:
        """Switch off the faults matching *name* and *endpoint* (None: any); return how many."""
        doomed = [
            key
            for key in self._faults
            if (name is None or key[0] == name) and (endpoint is None or key[1] == endpoint)
        ]
        for key in doomed:
            del self._faults[key]
        if name is None and endpoint is None:
            self._spent.clear()
        return len(doomed)

    def list(self) -> list[dict[str, Any]]:
        """Return the ``Fault`` objects that are on, then those spent, in name order."""
        order = {name: i for i, name in enumerate(FAULT_NAMES)}
        on = sorted(self._faults.values(), key=lambda f: (order[f.spec.name], f.spec.endpoint))
        return [fault.to_dict() for fault in on] + [fault.to_dict() for fault in self._spent]

    def pick(self, endpoint: str) -> tuple[FaultSpec | None, FaultSpec | None]:
        """Return (latency, action) to act out on a request to *endpoint*.

        Latency applies with any other fault; the others are consulted in
        :data:`FAULT_NAMES` order (the endpoint's own before ``"*"``) until one
        fires: that one is the action. A fault counts a request in ``matched``
        only when it is consulted. Either result may be None.
        """
        latency: FaultSpec | None = None
        action: FaultSpec | None = None
        for name in FAULT_NAMES:
            for key in ((name, endpoint), (name, "*")):
                active = self._faults.get(key)
                if active is None or (action is not None and name != "latency"):
                    continue
                if not active.offer():
                    continue
                if active.exhausted:
                    del self._faults[key]
                    self._spent.append(active)
                if name == "latency":
                    latency = latency or active.spec
                elif action is None:
                    action = active.spec
        return latency, action
