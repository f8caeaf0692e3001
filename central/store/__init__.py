"""The reference central's state: its database and every rule of the contract.

``from central.store import CentralStore`` is the way in. The package is one module per
domain (``devices``, ``events``, ``claims``, ``credentials``, ``keys``, ``deltas``,
``audit``, ``operators``, ``notify``, ``retention``), composed in ``store``; the database
engine is behind the seam in ``db`` (SQLite: ``sqlite``; PostgreSQL, a first cut:
``postgres``; the schema steps: ``schema``). docs/central-store.md describes them.
"""

from .schema import SCHEMA_VERSION
from .store import CentralStore
from .validate import normalize_uid

__all__ = ["SCHEMA_VERSION", "CentralStore", "normalize_uid"]
