"""The errors the shared encoding raises, for the agent's store and the central's alike.

:class:`InvalidEvent` is raised by :mod:`portier_common.encoding` (an event type or payload
that breaks the journal's rules) and by both stores. It has always been a
:class:`StoreError` (the agent's store errors derive from it, see
:mod:`edge_agent.store.errors`), so ``except StoreError`` keeps catching a bad event
wherever it is raised: both classes live here, below both stores.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by the store."""


class InvalidEvent(StoreError, ValueError):
    """An event type or payload does not follow the journal's rules
    (see ``docs/journal.md``: type grammar, JSON value types, size)."""
