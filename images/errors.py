"""Typed errors of the ``images`` package.

Like :mod:`hardware.errors`, each error also subclasses the builtin that a caller
without Portier-specific handling would naturally catch. Every message is meant to
be shown to a field installer as it is: it names the option, file or device at
fault and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

from portier_common.settings import ConfigError


class ApplianceError(Exception):
    """Base class of every error raised by :mod:`images`."""


class InvalidSetting(ApplianceError, ConfigError):
    """A provisioning value is malformed.

    The images package's :class:`portier_common.settings.ConfigError` (the one settings
    error of Portier), so ``key``, ``problem`` and ``file`` mean what they mean there.
    ``key`` names the value as the installer gave it: the command-line option
    (``--central-url``) for a value from the command line, the TOML key (``central_url``,
    ``wifi.ssid``) with ``file`` for a value from a file; ``str(error)`` reads
    ``key: problem`` (then `` (in FILE)``). ``option`` is ``key`` by its older name.
    """

    def __init__(self, key: str, problem: str, file: Path | str | None = None) -> None:
        super().__init__(key, problem, file)

    @property
    def option(self) -> str:
        """The command-line option or TOML key at fault (``key``)."""
        return self.key


class ImageError(ApplianceError, ValueError):
    """An image or card does not have the layout the command needs.

    For example: no partition table, no FAT boot partition, no provisioning file.
    """


class ToolMissing(ApplianceError, FileNotFoundError):
    """An external program (mtools, sfdisk, bmaptool...) is not installed.

    The message names the Debian package that provides it.
    """


class ToolFailed(ApplianceError, OSError):
    """An external program exited with an error; the message carries its stderr."""


class TargetRefused(ApplianceError, PermissionError):
    """The flash or provisioning target is unsafe to write (mounted, system disk...)."""


class FlashError(ApplianceError, OSError):
    """Writing an image failed or did not verify; the card must not be used."""
