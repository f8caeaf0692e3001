"""The agent's refusals: :class:`ActionError`, a reason code and no HTTP status.

Raised by :class:`edge_agent.agent.Agent` and the classes it composes (the guard
desk, the visitor desk, the simulated devices); the local API chooses the status of
each code in one table (:data:`edge_agent.api.ACTION_STATUS`).
"""

from __future__ import annotations

from typing import Any


class ActionError(Exception):
    """A request the agent refuses; ``code`` says why (a stable reason code).

    A domain error: it carries no HTTP status. The local API chooses the status of
    each code, in one table (:data:`edge_agent.api.ACTION_STATUS`).
    """

    def __init__(self, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        #: More fields of the error answer (a refused check-in's ``reason``...).
        self.extra = extra or {}
