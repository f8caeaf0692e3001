"""nfcpy readers (backend ``"nfcpy"``): USB and serial frontends, and nfcpy's udp driver.

``NfcSettings.device`` is an nfcpy device path (see docs/nfc.md):

* ``usb``, ``usb:072f:2200`` (ACS ACR122U), ``usb:054c:06c3`` (Sony RC-S380),
  ``usb:001:004`` (bus and device number);
* ``tty:USB0:pn532``, ``tty:AMA0:pn532`` (PN532 boards on a serial port);
* ``udp:127.0.0.1:54321`` -- nfcpy's UDP simulation, talking to an emulated
  card such as :class:`hardware.nfc.emulator.UdpCardEmulator`.

Each poll senses the configured targets once; a card that answers is activated
(nfcpy's ``nfc.tag.activate``), its UID, tag type, product and (optionally)
NDEF records are read, and the handler gets a :class:`~hardware.nfc.base.Card`
whose :meth:`~hardware.nfc.base.Card.exchange_apdu` goes through nfcpy's
ISO-DEP initiator (``Type4Tag.transceive``) for Type 4 cards. The RF field is
switched off after each card.

USB readers need libusb-1.0 (Debian package ``libusb-1.0-0``) and must not be
held by the kernel's own NFC drivers (``pn533_usb``, ``port100``): blacklist
them on the appliance. ``python -m nfc`` diagnoses a reader's access rights.

nfcpy's udp driver binds its listening socket to 0.0.0.0 and lets the
initiator's socket bind implicitly to 0.0.0.0 as well. The device built by
:func:`udp_device` binds both to the configured host instead (for a loopback
host the simulation is never reachable from the network).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from hardware.errors import BackendUnavailable, DeviceError
from hardware.nfc.base import (
    FELICA,
    ISO14443A,
    ISO14443B,
    BadgeRead,
    Card,
    CardGone,
    NfcSettings,
    Reader,
    parse_udp_path,
)

log = logging.getLogger(__name__)

_TECHNOLOGY = {"A": ISO14443A, "B": ISO14443B, "F": FELICA}

_NOT_FOUND_HINT = (
    "check that the reader is plugged in and supported by nfcpy (lsusb; e.g. ACR122U "
    "usb:072f:2200, Sony RC-S380 usb:054c:06c3, PN532 boards tty:USB0:pn532), that "
    "the kernel modules pn533_usb/port100 are blacklisted, and that the service user "
    "may access it (udev rule; `python -m nfc` prints advice)"
)


def _import_nfc():
    try:
        import nfc
        import nfc.clf
        import nfc.clf.udp
        import nfc.tag
        import nfc.tag.tt4
    except ImportError as error:
        raise BackendUnavailable(
            "nfc backend 'nfcpy' needs nfcpy: pip install nfcpy==1.0.4"
        ) from error
    return nfc


@functools.cache
def _udp_device_class() -> type:
    nfc = _import_nfc()

    device: Any = nfc.clf.udp.Device  # nfcpy has no type information

    class HostBoundUdpDevice(device):
        """nfcpy's udp driver with its sockets bound to the configured host.

        As a listener (card emulation) it also keeps its bound socket between
        activations: nfcpy closes and re-binds it on every listen, dropping the
        datagrams a reader sent meanwhile, which costs that reader a 1 s sense
        timeout (measured: first Type 2 read 1.1 s, 2.1 s with an 04 UID whose
        NXP probing re-selects the tag twice; 1.5 to 4 ms with the kept socket).
        """

        _listening = False
        socket: Any  # nfcpy's: None until created

        def _create_socket(self) -> None:
            if self.socket is None:
                super()._create_socket()
                # As initiator nfcpy never binds; the kernel would pick 0.0.0.0.
                if ipaddress.ip_address(self.addr[0]).is_loopback:
                    # super() set it; mypy still sees the None tested above.
                    self.socket.bind((self.addr[0], 0))  # type: ignore[attr-defined]

        def _bind_socket(self, time_to_return: float | None = None) -> bool:
            if self._listening:
                return True
            # nfcpy binds the listen port on 0.0.0.0 (every interface).
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(self.addr)
            except OSError as error:
                sock.close()
                if error.errno == errno.EADDRINUSE:
                    log.debug("udp port %s:%d is in use", *self.addr)
                    return False
                raise
            if self.socket is not None:
                self.socket.close()
            self.socket = sock
            self.sent_data = self.rcvd_data = 0
            self._listening = True
            return True

        def bind_listener(self) -> None:
            """Bind the listen port now. Raises OSError (EADDRINUSE) if taken."""
            if not self._bind_socket():
                raise OSError(errno.EADDRINUSE, f"udp port {self.addr[0]}:{self.addr[1]} in use")

        def mute(self) -> None:
            if not self._listening:
                super().mute()

        def close(self) -> None:
            self._listening = False
            super().mute()

    return HostBoundUdpDevice


def udp_device(host: str, port: int):
    """Return an nfcpy udp driver device for *host*:*port*, bound to *host*.

    The object is an ``nfc.clf.udp.Device`` subclass to assign to a fresh
    ``nfc.ContactlessFrontend().device``. Raises
    :class:`~hardware.errors.BackendUnavailable` if nfcpy is missing or
    *host* does not resolve.
    """
    try:
        device = _udp_device_class()(host, port)
    except OSError as error:  # socket.gaierror
        raise BackendUnavailable(f"nfc device udp:{host}:{port}: {error}") from error
    device._vendor_name = "Portier"
    device._device_name = "IP-Stack"
    device._chipset_name = "UDP"
    device._path = f"udp:{device.addr[0]}:{device.addr[1]}"
    return device


def open_frontend(path: str):
    """Open an ``nfc.ContactlessFrontend`` on nfcpy device *path*.

    Returns the open frontend. Raises
    :class:`~hardware.errors.BackendUnavailable` with a hint when nfcpy or
    libusb is missing, no reader is found, or it is busy or not accessible.
    """
    nfc = _import_nfc()
    clf = nfc.ContactlessFrontend()
    if path.startswith("udp"):
        device = udp_device(*parse_udp_path(path))
        with clf.lock:
            clf.device = device
        return clf
    try:
        found = clf.open(path)
    except OSError as error:
        if "libusb" in str(error):
            raise BackendUnavailable(
                f"nfc device {path!r}: libusb-1.0 is missing; apt-get install libusb-1.0-0"
            ) from error
        if error.errno == errno.EACCES:
            raise BackendUnavailable(
                f"nfc device {path!r}: permission denied; install a udev rule giving the "
                "service user access to the reader (`python -m nfc` prints one)"
            ) from error
        if error.errno == errno.EBUSY:
            raise BackendUnavailable(
                f"nfc device {path!r} is busy: another process or a kernel driver "
                "(pn533_usb, port100) holds it"
            ) from error
        raise BackendUnavailable(f"nfc device {path!r}: {error}; {_NOT_FOUND_HINT}") from error
    if not found:
        raise BackendUnavailable(f"nfc device {path!r}: no reader found; {_NOT_FOUND_HINT}")
    return clf


class NfcpyReader(Reader):
    """A reader driven by nfcpy's ContactlessFrontend."""

    backend = "nfcpy"

    def __init__(self, settings: NfcSettings) -> None:
        super().__init__(settings)
        self._clf = None

    @property
    def frontend(self):
        """The open ``nfc.ContactlessFrontend`` (None while closed)."""
        return self._clf

    def _open(self) -> None:
        self._clf = open_frontend(self.settings.device)
        log.info("nfcpy reader: %s", self._clf)

    def _close(self) -> None:
        clf, self._clf = self._clf, None
        if clf is not None:
            clf.close()

    def _sense(self, timeout: float, handle: Callable[[Card], bool]) -> bool:
        nfc = _import_nfc()
        deadline = time.monotonic() + timeout
        while not self._closing.is_set():
            clf = self._clf
            if clf is None:
                return False
            targets = [nfc.clf.RemoteTarget(brty) for brty in self.settings.targets]
            try:
                target = clf.sense(*targets, iterations=1)
            except nfc.clf.UnsupportedTargetError as error:
                raise DeviceError(f"nfc reader {clf}: {error}; adjust nfc.targets") from error
            except nfc.clf.CommunicationError as error:
                log.debug("sense: %s", error)
                target = None
            except OSError as error:
                if self._closing.is_set():
                    return False
                raise DeviceError(f"nfc reader failed: {error}") from error
            if target is not None and self._wanted(target):
                tag = nfc.tag.activate(clf, target)
                if tag is not None:
                    try:
                        self._handle_tag(nfc, tag, target, handle)
                    finally:
                        self._mute(clf)
                    return True
                log.debug("could not activate %s", target)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._closing.wait(min(self.settings.poll_interval, remaining))
        return False

    @staticmethod
    def _wanted(target) -> bool:
        # Skip peer-to-peer-only devices (phones in Android Beam mode), as nfcpy's
        # connect() does, but keep phones that also emulate an ISO-DEP card.
        if target.sel_res and target.sel_res[0] & 0x40 and not target.sel_res[0] & 0x20:
            return False
        return not (target.sensf_res and target.sensf_res[1:3] == b"\x01\xfe")

    def _handle_tag(self, nfc, tag, target, handle: Callable[[Card], bool]) -> None:
        iso_dep = isinstance(tag, nfc.tag.tt4.Type4Tag)
        product = tag.product if tag.product != tag.type else None
        badge = BadgeRead(
            uid=bytes(tag.identifier),
            technology=_TECHNOLOGY[target.brty[-1]],
            tag_type=tag.type,
            product=product,
            ndef=self._read_ndef(nfc, tag) if self.settings.read_ndef else (),
            iso_dep=iso_dep,
            reader=self.backend,
        )
        log.debug("read %s %s %s", badge.technology, badge.uid_hex, tag)
        transceive = None
        if iso_dep:
            default_timeout = self.settings.apdu_timeout

            def transceive(apdu: bytes, timeout: float | None) -> bytes:
                try:
                    response = tag.transceive(
                        bytearray(apdu), timeout if timeout is not None else default_timeout
                    )
                except (nfc.tag.TagCommandError, nfc.clf.CommunicationError, OSError) as error:
                    raise CardGone(f"card {badge.uid_hex}: {error}") from error
                if response is None:
                    raise CardGone(f"card {badge.uid_hex} did not answer")
                return bytes(response)

        card = Card(badge, transceive)
        try:
            handle(card)
        finally:
            card.release()

    @staticmethod
    def _read_ndef(nfc, tag) -> tuple:
        import ndef

        try:
            if tag.ndef is not None:
                return tuple(tag.ndef.records)
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError, ndef.DecodeError) as error:
            log.warning("could not read NDEF from %s: %s", tag, error)
        return ()

    @staticmethod
    def _mute(clf) -> None:
        # Switch the field off now rather than at the next poll, so that a
        # card is not left powered (and, on udp, the emulator hears RFOFF).
        with clf.lock:
            if clf.device is not None:
                try:
                    clf.device.mute()
                except OSError as error:
                    log.debug("mute: %s", error)
