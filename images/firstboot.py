"""``appliance firstboot``: commission a provisioned device on its first boot.

Run by ``portier-firstboot.service`` while the boot partition holds the
provisioning file that ``appliance provision`` wrote. In order:

1. read ``BOOT/portier-provision.toml`` with :func:`images.provision.parse_provisioning`
   (a bad file: exit 2, nothing changed, the file left in place) and copy it to
   ``ETC/provision.toml`` (0600, atomic write);
2. write ``ETC/wifi/wpa_supplicant-wlan0.conf`` (0600) when Wi-Fi was provisioned and
   ``ETC/hostname`` when a host name was;
3. write ``ETC/central-ca.pem`` (0644: certificates, no secret) when the central's CA
   was provisioned, and remove a stale one otherwise; then ``ETC/agent.toml`` (0640):
   device, door, ``[central] url``, ``ca_file = ETC/central-ca.pem`` with a provisioned
   CA (without one, no ``ca_file``: the system's CAs) and
   ``credential_file = ETC/central-credential.json``; the agent's state directory
   keeps its default. The hardware tables come from an existing ``ETC/agent.toml``
   (the image's or the installer's), else the documented Raspberry Pi defaults
   (gpiozero ``rpigpio``, nfcpy on ``usb``); with ``--simulator``, from the packaged
   simulator configuration, as ``edge-agent demo`` does;
   for the role ``kiosk``, ``ETC/kiosk.toml`` (0644: no secret, and the kiosk runs as
   ``portier-kiosk``) from :func:`kiosk_tables`, checked with the kiosk's own loader
   first; for the role ``door``, a stale ``ETC/kiosk.toml`` is removed (the kiosk unit
   runs only where that file exists);
4. enroll with the central using the one-time token (:func:`edge_agent.enroll.enroll`),
   retrying while it cannot be reached (a certificate the CA does not verify counts as
   unreachable: TLS failures are retried, and named); the credential is made 0640 so that the agent
   (group ``portier`` through the setgid ``/etc/portier``) can read it;
5. run the hardware self-test without prompts, keep the JSON report in
   ``STATE/selftest-report.json`` and upload it (``POST /v1/selftest``);
6. rewrite ``ETC/provision.toml`` without ``enroll_token`` and delete the boot file.

The boot file goes last on purpose: the unit runs only while it exists
(``ConditionPathExists=``), so a device that lost power or could not reach the
central before the end tries again on the next boot. A run that finds a stored
credential for the same site, door and central does not enroll again (the token
is spent by then). After success a new run says so and does nothing.

Exit status: 0 done (or nothing to do), 2 bad provisioning file, 1 the central
refused or could not be reached within ``--timeout``, or a file could not be written.
A failing self-test does not fail commissioning: its report says what to fix.

What cannot be checked here: applying the host name and Wi-Fi needs the image's
units (they read the files under ``/etc/portier``); on an SD card, deleting or
rewriting a file does not erase its old blocks, so the token is destroyed at
the central (it is single-use) rather than physically on the card.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import os
import sys
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.fsutil import atomic_write, fsync_dir
from edge_agent.tomlwrite import dumps
from images.errors import ApplianceError, InvalidSetting
from images.provision import (
    BOOT_FILE_NAME,
    DEVICE_BOOT_DIR,
    Provisioning,
    parse_provisioning,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ETC",
    "DEFAULT_STATE",
    "FirstBootError",
    "add_arguments",
    "agent_tables",
    "commission",
    "kiosk_tables",
    "run",
    "wpa_supplicant_conf",
]

DEFAULT_ETC = Path("/etc/portier")
DEFAULT_STATE = Path("/var/lib/portier-firstboot")
PROVISION_NAME = "provision.toml"
AGENT_NAME = "agent.toml"
KIOSK_NAME = "kiosk.toml"
CREDENTIAL_NAME = "central-credential.json"
CA_NAME = "central-ca.pem"
WIFI_PATH = Path("wifi") / "wpa_supplicant-wlan0.conf"
REPORT_NAME = "selftest-report.json"

#: The documented Raspberry Pi hardware (docs/configuration.md) when nothing else is given.
PI_HARDWARE: dict[str, dict[str, Any]] = {
    "hardware.gpio": {"backend": "rpigpio"},
    "hardware.nfc": {"backend": "nfcpy", "device": "usb"},
}


class FirstBootError(ApplianceError):
    """Commissioning could not finish (the central refused, was unreachable, or the
    report could not be uploaded). The provisioning file is kept for the next try."""


def _say(line: str, *, err: bool = False) -> None:
    """Tell the installer (the unit's journal): stdout, or stderr for trouble."""
    stream = sys.stderr if err else sys.stdout
    stream.write(line + "\n")
    stream.flush()


# -- files ----------------------------------------------------------------------------


def _toml(header: str, tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Return the text of a file with ``tables``: the table named ``""`` holds the
    top-level keys, ``hardware.<kind>`` is the table ``[hardware.<kind>]``."""
    document: dict[str, Any] = dict(tables.get("", {}))
    for name, table in tables.items():
        if name.startswith("hardware."):
            document.setdefault("hardware", {})[name.removeprefix("hardware.")] = table
        elif name:
            document[name] = table
    return dumps(document, header=header)


def wpa_supplicant_conf(ssid: str, psk: str) -> str:
    """Return a wpa_supplicant configuration for one WPA2/WPA3-Personal network.

    The SSID is written in hex (any bytes, no quoting rules); a 64-hex-digit PSK raw,
    a passphrase quoted (it is printable ASCII; wpa_supplicant takes the text up to
    the last quote).
    """
    key = (
        psk.lower()
        if len(psk) == 64 and all(c in "0123456789abcdefABCDEF" for c in psk)
        else (f'"{psk}"')
    )
    return (
        "# Written by `appliance firstboot` from the provisioning file.\n"
        "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\n"
        "update_config=0\n"
        "network={\n"
        f"    ssid={ssid.encode('utf-8').hex()}\n"
        f"    psk={key}\n"
        # WPA2 and WPA3 (SAE) with protected management frames where the AP offers them.
        "    key_mgmt=WPA-PSK WPA-PSK-SHA256 SAE\n"
        "    ieee80211w=1\n"
        "}\n"
    )


def device_id_for(settings: Provisioning) -> str:
    """Return the device id: the provisioned host name, else ``SITE-DOOR``.

    Raises:
        InvalidSetting: ``SITE-DOOR`` is longer than 64 characters and no host name was
            provisioned.
    """
    if settings.hostname:
        return settings.hostname
    device = f"{settings.site}-{settings.door}"
    if len(device) > 64:
        raise InvalidSetting(
            "hostname", f"{device!r} is too long for a device id: provision a --hostname"
        )
    return device


def _read_tables(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidSetting(str(path), f"not valid TOML: {exc}") from None


def agent_tables(
    settings: Provisioning, etc: Path, *, simulator: bool = False
) -> dict[str, dict[str, Any]]:
    """Return the tables of ``ETC/agent.toml`` for ``settings``.

    Hardware tables: the simulator's with ``simulator``; else those of an existing
    ``ETC/agent.toml``; else :data:`PI_HARDWARE`. ``central.ca_file`` is
    ``ETC/central-ca.pem`` when the central's CA was provisioned, else left out (the
    system's CAs).

    Raises:
        InvalidSetting: an existing ``agent.toml`` is not TOML.
    """
    tables: dict[str, dict[str, Any]] = {
        "device": {"id": device_id_for(settings), "site": settings.site},
        "door": {"id": settings.door},
        "central": {"url": settings.central_url, "credential_file": str(etc / CREDENTIAL_NAME)},
    }
    if settings.central_ca is not None:
        tables["central"]["ca_file"] = str(etc / CA_NAME)
    if settings.role == "kiosk":
        # The kiosk is the guard console: the central sends guards' PIN hashes to it only.
        tables["guard"] = {"console": True}
    hardware: dict[str, dict[str, Any]] = {}
    if simulator:
        from edge_agent.config import simulator_config_path

        source = simulator_config_path()
        base = tomllib.loads(source.read_text(encoding="utf-8")).get("hardware", {})
        for kind, values in base.items():
            table = dict(values)
            if "replay_path" in table:
                table["replay_path"] = str((source.parent / table["replay_path"]).resolve())
            hardware[f"hardware.{kind}"] = table
        # The simulated reader sends bare UIDs (no NTAG 424 keys in the simulator).
        tables["door"]["accept_uid"] = True
        if "guard" in tables:
            tables["guard"]["accept_uid_login"] = True
    else:
        existing = etc / AGENT_NAME
        if existing.exists():
            base = _read_tables(existing).get("hardware", {})
            hardware = {f"hardware.{kind}": dict(table) for kind, table in base.items()}
        if not hardware:
            hardware = {name: dict(table) for name, table in PI_HARDWARE.items()}
    tables.update(hardware)
    return tables


def kiosk_tables(
    etc: Path, agent: Mapping[str, Mapping[str, Any]], *, simulator: bool = False
) -> dict[str, dict[str, Any]]:
    """Return the tables of ``ETC/kiosk.toml`` for a kiosk whose agent has ``agent``'s tables.

    The base is the packaged example for a Raspberry Pi kiosk (``kiosk/data/kiosk.toml``:
    the official 7" display read with mtdev, the CSI camera through picamera2, the
    zxing decoder, English first). An existing ``ETC/kiosk.toml`` (the image's, the
    installer's or an earlier first boot's) replaces it table by table: nothing in it
    comes from the provisioning file, and an installer's camera, touch panel and
    directions must survive. ``agent.socket`` is always the socket of the agent that
    first boot configures. With ``simulator``, the camera and QR decoder are the
    simulated agent's (``agent["hardware.camera"]``, ``["hardware.qr"]``: a replayed
    photo of the test card, as ``kiosk --demo`` takes them), in a window (800x480
    unless ``ui.size`` says otherwise) with mouse input: a simulator has no touch panel.

    Raises:
        InvalidSetting: an existing ``kiosk.toml`` is not TOML.
    """
    from edge_agent.config import PathsSection

    example = tomllib.loads(
        importlib.resources.files("kiosk").joinpath("data", KIOSK_NAME).read_text("utf-8")
    )
    tables: dict[str, dict[str, Any]] = {name: dict(table) for name, table in example.items()}
    existing = etc / KIOSK_NAME
    if existing.exists():
        for name, table in _read_tables(existing).items():
            if isinstance(table, Mapping):
                tables[name] = dict(table)
            else:  # not a table: kept, for the kiosk's loader to name it
                tables.setdefault("", {})[name] = table
    agent_socket = agent.get("paths", {}).get("socket", str(PathsSection.socket))
    tables["agent"] = {**tables.get("agent", {}), "socket": str(agent_socket)}
    if simulator:
        tables["camera"] = dict(agent.get("hardware.camera", {}))
        tables["qr"] = dict(agent.get("hardware.qr", {}))
        tables["input"] = {"provider": "mouse"}
        tables["ui"] = {"size": [800, 480], **tables.get("ui", {}), "fullscreen": False}
    return tables


def _kiosk_toml(etc: Path, tables: Mapping[str, Mapping[str, Any]], simulator: bool) -> str:
    """Return ``kiosk.toml``'s text, accepted by the kiosk's own loader (else InvalidSetting)."""
    from kiosk.config import ConfigError, parse_config

    header = (
        "Written by `appliance firstboot` for a kiosk"
        + (" (simulator camera)." if simulator else ".")
        + "\nSee docs/kiosk.md for every key; `kiosk --config FILE --check` validates it."
    )
    text = _toml(header, tables)
    try:
        parse_config(tomllib.loads(text), etc.resolve(), source=etc / KIOSK_NAME)
    except ConfigError as exc:
        raise InvalidSetting(str(etc / KIOSK_NAME), str(exc)) from None
    return text


def _provision_without_token(settings: Provisioning, device_id: str) -> str:
    data = settings.to_dict()
    data.pop("enroll_token")
    data["role"] = settings.role  # explicit here: only this image's first boot reads it
    wifi = data.pop("wifi", None)
    data["commissioned_device"] = device_id
    tables: dict[str, dict[str, Any]] = {"": data}
    if wifi is not None:
        tables["wifi"] = wifi
    return _toml(
        "Portier provisioning, as commissioned by `appliance firstboot`.\n"
        "The one-time enrollment token was spent and removed.",
        tables,
    )


# -- the steps ------------------------------------------------------------------------


def _read_source(boot_file: Path, etc_file: Path) -> tuple[Provisioning | None, str]:
    """Return the settings to commission with and where they came from, or None when
    there is nothing to do (the reason in the second item)."""
    if boot_file.exists():
        return parse_provisioning(boot_file.read_bytes(), boot_file), str(boot_file)
    if etc_file.exists():
        data = tomllib.loads(etc_file.read_text(encoding="utf-8"))
        if "enroll_token" in data:  # a run stopped between copying and finishing
            return parse_provisioning(etc_file.read_bytes(), etc_file), str(etc_file)
        return None, (
            f"already commissioned as device {data.get('commissioned_device', '?')} "
            f"({etc_file} holds no token)"
        )
    return None, f"not provisioned: no {boot_file}"


def _enroll(config: Any, settings: Provisioning, deadline: float | None) -> Any:
    from edge_agent.enroll import EnrollError, credential_path, enroll, load_credential

    path = credential_path(config)
    try:
        stored = load_credential(path)
    except ValueError as exc:
        log.warning("ignoring the stored credential: %s", exc)
        stored = None
    if stored is not None and (stored.site, stored.door, stored.central_url) == (
        settings.site,
        settings.door,
        settings.central_url,
    ):
        _say(f"already enrolled as device {stored.device_id}: not enrolling again")
        return stored
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        credential = enroll(
            config,
            settings.enroll_token,
            wait_s=wait,
            stop=threading.Event(),
            progress=lambda line: _say(f"enrollment: {line}", err=True),
        )
    except EnrollError as exc:
        raise FirstBootError(f"enrollment failed ({exc.code}): {exc}") from None
    # save_credential writes 0600; the agent reads it through group portier.
    os.chmod(path, 0o640)
    _say(f"enrolled as device {credential.device_id} ({credential.site}/{credential.door})")
    return credential


def _selftest(config: Any) -> dict[str, Any]:
    from edge_agent.devices import open_devices
    from hardware.selftest import PromptOperator, SelfTest, SimulatedInstaller

    with open_devices(config.hardware) as devices:
        if devices.simulated:
            operator: Any = SimulatedInstaller(devices.door_sim, devices.reader)
        else:
            operator = PromptOperator(lambda line: _say(line, err=True))
        test = SelfTest(
            operator=operator,
            door_io=devices.door_io,
            reader=devices.reader,
            camera=devices.camera,
            decoder=devices.decoder,
            # Nobody is at the device during first boot: checks needing a person are skipped.
            interactive=False,
            unavailable=devices.errors,
        )
        report = test.run()
    _say(report.to_text())
    return report.to_dict()


def _upload(config: Any, credential: Any, report: dict[str, Any], deadline: float | None) -> None:
    from edge_agent.retry import Backoff, GaveUp, retry_until
    from edge_agent.sync.client import CentralClient, CentralRefused, central_transient

    central = config.central
    with CentralClient(
        central.url,
        credential=credential.device_token,
        ca_file=central.ca_file,
        timeout_s=central.timeout_s,
    ) as client:
        try:
            retry_until(
                lambda: client.request("POST", "/v1/selftest", json=report),
                transient=central_transient,
                backoff=Backoff(min(1.0, central.backoff_cap_s), 60.0),
                deadline=deadline,
                what="self-test report upload",
                progress=lambda line: _say(f"report upload: {line}", err=True),
            )
        except CentralRefused as exc:  # not transient
            raise FirstBootError(f"the central refused the self-test report: {exc}") from None
        except GaveUp as exc:
            raise FirstBootError(f"the self-test report was not uploaded: {exc.reason}") from None


def commission(
    boot: Path,
    etc: Path,
    state: Path,
    *,
    simulator: bool = False,
    timeout_s: float | None = None,
) -> bool:
    """Commission the device from ``boot/portier-provision.toml`` (see the module doc).

    ``timeout_s`` bounds the whole run's waiting for the central (None: wait forever,
    as on a device). Returns True when it commissioned the device, False when there
    was nothing to do.

    Raises:
        InvalidSetting: the provisioning file is invalid (nothing was changed).
        FirstBootError: enrollment or the report upload failed (the boot file is kept).
        OSError: a file could not be read or written.
    """
    from edge_agent.config import load_config

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    boot_file = boot / BOOT_FILE_NAME
    etc_file = etc / PROVISION_NAME
    settings, source = _read_source(boot_file, etc_file)
    if settings is None:
        _say(f"appliance firstboot: {source}: nothing to do")
        return False
    # Everything is validated before the first write.
    tables = agent_tables(settings, etc, simulator=simulator)
    kiosk_text = None
    if settings.role == "kiosk":
        kiosk_text = _kiosk_toml(etc, kiosk_tables(etc, tables, simulator=simulator), simulator)
    device_id = tables["device"]["id"]
    _say(
        f"commissioning {device_id} ({settings.role}) for {settings.site}/{settings.door} "
        f"from {source}"
    )

    etc.mkdir(parents=True, exist_ok=True)
    atomic_write(etc_file, settings.to_toml().encode("utf-8"), 0o600)
    if settings.wifi is not None:
        conf = wpa_supplicant_conf(settings.wifi.ssid, settings.wifi.psk)
        atomic_write(etc / WIFI_PATH, conf.encode("utf-8"), 0o600)
    if settings.hostname is not None:
        atomic_write(etc / "hostname", f"{settings.hostname}\n".encode(), 0o644)
    ca_file = etc / CA_NAME
    if settings.central_ca is not None:
        # 0644: certificates are public, and anything on the device may verify the central.
        atomic_write(ca_file, settings.central_ca.encode("ascii"), 0o644)
        _say(f"central CA: wrote {ca_file}")
    agent_file = etc / AGENT_NAME
    header = (
        "Written by `appliance firstboot` from the provisioning file"
        + (" (simulator hardware)." if simulator else ".")
        + "\nSee docs/configuration.md for every key."
    )
    atomic_write(agent_file, _toml(header, tables).encode("utf-8"), 0o640)
    if settings.central_ca is None and ca_file.exists():
        # Removed after agent.toml stopped naming it: a CA of an earlier commissioning
        # must not go on deciding whom the device trusts.
        ca_file.unlink()
        fsync_dir(etc)
        _say(f"no central CA provisioned: removed {ca_file}, the system's CAs verify the central")
    kiosk_file = etc / KIOSK_NAME
    if kiosk_text is not None:
        # 0644: no secret in it, and the kiosk (user portier-kiosk) must read it.
        atomic_write(kiosk_file, kiosk_text.encode("utf-8"), 0o644)
        _say(f"kiosk: wrote {kiosk_file}")
    elif kiosk_file.exists():
        # A kiosk re-provisioned as a door must not start the UI (the unit's condition).
        kiosk_file.unlink()
        fsync_dir(etc)
        _say(f"role door: removed {kiosk_file}, the kiosk will not start")
    config = load_config(agent_file)

    credential = _enroll(config, settings, deadline)
    report = _selftest(config)
    state.mkdir(parents=True, exist_ok=True)
    atomic_write(state / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode("utf-8"), 0o600)
    _upload(config, credential, report, deadline)
    _say(f"self-test report kept in {state / REPORT_NAME} and uploaded to the central")

    atomic_write(etc_file, _provision_without_token(settings, device_id).encode("utf-8"), 0o600)
    if boot_file.exists():
        boot_file.unlink()
        fsync_dir(boot)
    _say(f"done: {device_id} commissioned; the enrollment token is destroyed")
    if not report.get("ok", False):
        _say("the self-test FAILED: see the report above", err=True)
    return True


# -- command line ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``firstboot`` options to ``parser``."""
    parser.description = (
        "On the device: take the provisioning file from the boot partition, write the "
        "configuration, enroll with the central, run and upload the self-test, destroy "
        "the token. A no-op once done."
    )
    parser.add_argument(
        "--boot",
        "--boot-dir",
        dest="boot",
        type=Path,
        default=Path(DEVICE_BOOT_DIR),
        help=f"mounted boot partition ({DEVICE_BOOT_DIR})",
    )
    parser.add_argument(
        "--etc",
        "--config-dir",
        dest="etc",
        type=Path,
        default=DEFAULT_ETC,
        help=f"configuration directory ({DEFAULT_ETC})",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help=f"where the self-test report is kept ({DEFAULT_STATE})",
    )
    parser.add_argument(
        "--simulator",
        action="store_true",
        help="configure the simulated hardware (gpiozero MockFactory, simulated reader)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="give up after S seconds without the central (default: keep trying)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``appliance firstboot``; return the exit status (0 done or nothing to do,
    1 failed; a bad provisioning file raises :class:`InvalidSetting`, exit 2)."""
    if args.timeout is not None and args.timeout < 0:
        raise InvalidSetting("--timeout", "must be 0 or more seconds")
    try:
        commission(
            args.boot, args.etc, args.state, simulator=args.simulator, timeout_s=args.timeout
        )
    except FirstBootError as exc:
        _say(f"appliance firstboot: error: {exc}", err=True)
        _say("the provisioning file is kept: the next boot tries again", err=True)
        return 1
    return 0
