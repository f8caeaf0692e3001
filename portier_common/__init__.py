"""What the door device and the central both need, in one place both import.

- :mod:`portier_common.encoding`: canonical JSON, event hashes and the hash chain, UUIDv7 ids;
- :mod:`portier_common.errors`: :class:`~portier_common.errors.InvalidEvent` (and its base);
- :mod:`portier_common.tokens`: the invitation token format (COSE_Sign1, Base45, claims, keys);
- :mod:`portier_common.ntag424`: NTAG 424 DNA SUN messages, their verifier and keys section;
- :mod:`portier_common.reasons`: the stable reason codes of every access decision;
- :mod:`portier_common.signing`: the signature of a sync delta (headers, message, keys);
- :mod:`portier_common.pins`: the guard PIN hash format.

It imports nothing of Portier's but itself (an import-linter contract, see
docs/architecture.md): the agent, the kiosk's wording and the central build on it.
"""
