"""How every hardware family chooses its backend from the configuration: one pattern.

Each family (``gpio``, ``nfc``, ``camera``, ``qr``) has one :class:`BackendRegistry`,
its ``BACKENDS``: the names the configuration may give (``backend = "nfcpy"``), each
mapped to ``"module:attribute"``, the class or factory that implements it::

    BACKENDS = BackendRegistry(
        "nfc",
        {
            "nfcpy": "hardware.nfc.nfcpy:NfcpyReader",
            "wedge": "hardware.nfc.wedge:WedgeReader",
            "sim": "hardware.nfc.sim:SimReader",
        },
        key="nfc.backend",
    )

The rules it keeps:

* the module is imported only when that backend is loaded (:meth:`BackendRegistry.load`):
  Pi-only libraries (picamera2, RPi.GPIO, lgpio) are never imported on a machine that
  does not choose them, and ``import hardware`` loads no driver;
* an unknown name raises :class:`~hardware.errors.UnknownBackend` (a ``ValueError``)
  that names the configuration key and lists the valid names, in the settings classes'
  ``"field: problem"`` form (the loaders put the table in front);
* the configured backend is the one loaded, or an error says why not
  (:class:`~hardware.errors.BackendUnavailable` from the backend itself): nothing here
  falls back to another backend or to a simulator.

A new backend is a module in its family's package and one line in its ``BACKENDS``
(docs/architecture.md, "Where a new thing goes").
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from hardware.errors import UnknownBackend

__all__ = ["BackendRegistry"]


class BackendRegistry(Mapping[str, str]):
    """A family's backends: configuration name -> ``"module:attribute"``, in the
    documented order (iterating gives the names; ``name in BACKENDS`` checks one).

    Args:
        kind: the family, as the messages say it (``"camera"``).
        entries: name -> ``"module:attribute"`` (checked for that form here, imported
            only by :meth:`load`).
        key: the settings field that holds the name (``"backend"``, ``"nfc.backend"``).
    """

    def __init__(self, kind: str, entries: Mapping[str, str], *, key: str = "backend") -> None:
        for name, target in entries.items():
            module, sep, attribute = target.partition(":")
            if not (sep and module and attribute):
                raise ValueError(f"{kind} backend {name!r}: {target!r} is not 'module:attribute'")
        self.kind = kind
        self.key = key
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> str:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BackendRegistry({self.kind!r}, {self._entries!r}, key={self.key!r})"

    def check(self, name: object, *, key: str | None = None) -> str:
        """Return ``name`` if it is one of the backends, else raise :class:`UnknownBackend`
        naming ``key`` (default: the registry's) and the valid names."""
        if isinstance(name, str) and name in self._entries:
            return name
        raise UnknownBackend(
            f"{key or self.key}: unknown {self.kind} backend {name!r}; "
            f"use one of {', '.join(self._entries)}"
        )

    def load(self, name: object, *, key: str | None = None) -> Any:
        """Import and return backend ``name``'s class or factory.

        Raises:
            UnknownBackend: ``name`` is not one of the backends.
            BackendUnavailable: raised by a backend module that cannot load here (most
                import their library only when opened, and raise it then).
        """
        module, _, attribute = self._entries[self.check(name, key=key)].partition(":")
        return getattr(importlib.import_module(module), attribute)
