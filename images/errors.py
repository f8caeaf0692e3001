"""Typed errors of the ``images`` package.

Like :mod:`hardware.errors`, each error also subclasses the builtin that a caller
without Portier-specific handling would naturally catch. Every message is meant to
be shown to a field installer as it is: it names the option, file or device at
fault and what to do about it.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class of every error raised by :mod:`images`."""


class InvalidSetting(ApplianceError, ValueError):
    """A provisioning value is malformed.

    ``option`` is the command-line option (``--central-url``) or, when the value
    came from a file, the TOML key; ``str(error)`` reads ``option: what is wrong``.
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(f"{option}: {problem}")


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
