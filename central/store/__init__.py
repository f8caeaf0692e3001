"""The reference central's state: its database and every rule of the contract.

``from central.store import CentralStore`` is the one way in; the package's modules are
described in docs/central-store.md.
"""

from .store import SCHEMA_VERSION, CentralStore, normalize_uid

__all__ = ["SCHEMA_VERSION", "CentralStore", "normalize_uid"]
