"""``portier-central``: run the reference central and administer it (docs/central.md).

Exit status: 0 done; 1 the central answered with an error (printed on stderr);
2 bad usage; 3 the central could not be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from portier_common.settings import ConfigError, read_private_file

from .admin import TOKEN_ENV, CentralAdmin, CentralUnreachable
from .errors import CentralError
from .faults import ENDPOINTS, ERROR_STATUSES, FAULT_NAMES
from .store.operators import ROLES

log = logging.getLogger(__name__)

URL_ENV = "PORTIER_CENTRAL_URL"


class UsageError(Exception):
    """A command-line value is invalid (exit 2)."""


def parse_time(text: str) -> int:
    """Return Unix seconds for *text*: ISO 8601 (UTC when it has no offset), ``now``
    or an integer of Unix seconds.

    Raises:
        UsageError: anything else.
    """
    text = text.strip()
    if text == "now":
        return int(dt.datetime.now(dt.UTC).timestamp())
    if re.fullmatch(r"[0-9]{1,12}", text):
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 date-time (e.g. 2026-05-01T09:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _url_option(parser: argparse.ArgumentParser, *, leaf: bool) -> None:
    # On a command group and on its subcommands, so `faults --url U on x` and
    # `faults on x --url U` both work; the leaf's value wins when both are given.
    parser.add_argument(
        "--url",
        default=argparse.SUPPRESS if leaf else None,
        help=f"base URL of the central (default: ${URL_ENV})",
    )
    # The operator's API token (never a password on the command line).
    parser.add_argument(
        "--token",
        default=argparse.SUPPRESS if leaf else None,
        help=f"operator API token (default: ${TOKEN_ENV}; prefer --token-file)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=argparse.SUPPRESS if leaf else None,
        help="file holding the operator API token (mode 0600)",
    )


def read_token_file(path: Path) -> str:
    """Return the token in *path*, which only its owner may read (0600).

    Raises:
        UsageError: unreadable, readable by others, or empty.
    """
    try:
        text = read_private_file("--token-file", path).decode("utf-8").strip()
    except (ConfigError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from None
    if not text:
        raise UsageError(f"--token-file {path}: empty")
    return text


def operator_token(args: argparse.Namespace) -> str:
    """Return the operator token from ``--token``, ``--token-file`` or the environment.

    Raises:
        UsageError: none given, or a bad token file.
    """
    token = getattr(args, "token", None)
    token_file = getattr(args, "token_file", None)
    if token and token_file:
        raise UsageError("give --token or --token-file, not both")
    if token_file:
        return read_token_file(token_file)
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise UsageError(
            f"give the operator token: --token-file FILE, ${TOKEN_ENV} or --token "
            "(portier-central token create makes one)"
        )
    return token


def _group(sub: Any, name: str, help_text: str) -> tuple[argparse.ArgumentParser, Any]:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    _url_option(parser, leaf=False)
    return parser, parser.add_subparsers(dest="action", metavar="ACTION")


def _leaf(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    _url_option(parser, leaf=True)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``portier-central``."""
    parser = argparse.ArgumentParser(
        prog="portier-central",
        description="Portier reference central (demo and tests only; never on a device).",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the reference central until SIGTERM/SIGINT")
    serve.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    serve.add_argument(
        "--data", type=Path, required=True, help="data directory (the SQLite database by default)"
    )
    serve.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="the database: sqlite:///PATH or postgresql://[USER@]HOST[:PORT]/DBNAME "
        "(default: SQLite in --data, DATA/central.db)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (the chain after it); needs --tls-key",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="the certificate's private key (PEM, unencrypted, mode 0600)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="a reverse proxy (address or network) whose X-Forwarded-For/-Proto/-Host "
        "headers are believed (repeatable); nobody else's are",
    )
    serve.add_argument(
        "--insecure-http",
        action="store_true",
        help="serve plain HTTP on a non-loopback --host (only behind a TLS-terminating "
        "proxy on a network nobody else reaches)",
    )
    serve.add_argument("--site", default="hq", help="the site it serves by default (hq)")
    serve.add_argument(
        "--ntag424-keys",
        type=Path,
        default=None,
        help="TOML file with the site's [ntag424] keys: badge.counter claims are then "
        "shared only when their SUN message verifies; its [issuance] card_master_key lets "
        "the Pass Office issue badges (portier-badge)",
    )
    serve.add_argument(
        "--counter-max-advance",
        type=int,
        default=1000,
        help="without NTAG 424 keys: how far above the last shared counter a claim may be",
    )
    serve.add_argument("--smtp-host", default=None, help="SMTP server for host e-mails")
    serve.add_argument("--smtp-port", type=int, default=25, help="SMTP port (25)")
    serve.add_argument("--smtp-from", default=None, help="the From address of host e-mails")
    serve.add_argument(
        "--smtp-starttls", action="store_true", help="upgrade the SMTP connection with STARTTLS"
    )
    serve.add_argument(
        "--smtp-tls", action="store_true", help="SMTP over TLS from the start (port 465)"
    )
    serve.add_argument(
        "--smtp-username", default=None, help="log in to the SMTP server as this user"
    )
    serve.add_argument(
        "--smtp-password-file",
        type=Path,
        default=None,
        help="the SMTP password (a 0600 file; never on the command line)",
    )
    serve.add_argument(
        "--time-zone",
        default="UTC",
        metavar="ZONE",
        help="the site's time zone for host e-mails, an IANA name (UTC; e.g. Europe/Brussels)",
    )
    serve.add_argument(
        "--webhook", default=None, metavar="URL", help="POST each check-in as signed JSON here"
    )
    serve.add_argument(
        "--webhook-secret-file",
        type=Path,
        default=None,
        help="the webhook's HMAC-SHA256 secret (a 0600 file, 16 bytes or more)",
    )
    serve.add_argument(
        "--notify-retry",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="first retry delay of a failed notification, doubling (5)",
    )
    serve.add_argument(
        "--notify-give-up",
        type=int,
        default=24 * 3600,
        metavar="SECONDS",
        help="give a notification up this long after the check-in (86400)",
    )

    serve.add_argument(
        "--retention-days",
        type=int,
        default=90,
        metavar="DAYS",
        help="pseudonymise visitors' names, hosts, host e-mails and photos this many days "
        "after they arrived (90)",
    )
    serve.add_argument(
        "--technical-log-days",
        type=int,
        default=400,
        metavar="DAYS",
        help="delete the devices' technical log (self-tests, alarm acknowledgements, "
        "contact, event packs made) this many days after it was written (400)",
    )
    serve.add_argument(
        "--purge-interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how often the retention purge runs (3600)",
    )

    _, invite = _group(sub, "invite", "signed QR invitations")
    create = _leaf(invite, "create", "mint an invitation; print its token (and write a QR PNG)")
    create.add_argument("--visitor", required=True)
    create.add_argument("--door", action="append", default=[], help="repeatable")
    create.add_argument("--zone", action="append", default=[], help="repeatable")
    create.add_argument("--host", dest="host_name", default=None, help="the person visited")
    create.add_argument(
        "--host-email", default=None, help="told when the visitor checks in (central only)"
    )
    create.add_argument(
        "--visitor-email", default=None, help="e-mailed the invitation with its PDF (central only)"
    )
    create.add_argument(
        "--lang",
        choices=("en", "fr"),
        default=None,
        help="the language of the host notification and the visitor's invitation (en)",
    )
    create.add_argument("--site", default=None, help="default: the central's site")
    create.add_argument("--valid-from", default=None, help="ISO 8601, UTC if no offset (now)")
    create.add_argument("--valid-until", default=None, help="ISO 8601 (valid-from + 8 h)")
    create.add_argument("--single-use", action="store_true")
    create.add_argument("--png", type=Path, default=None, help="write the QR code here")
    create.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    revoke = _leaf(invite, "revoke", "revoke an invitation")
    revoke.add_argument("--id", required=True, dest="invitation_id")

    _, badge = _group(sub, "badge", "badges")
    add = _leaf(badge, "add", "add or replace a badge")
    add.add_argument("--uid", required=True, help="hex, e.g. 04A1B2C3D4E5F6")
    add.add_argument("--holder", required=True)
    add.add_argument("--door", action="append", default=[], help="repeatable")
    add.add_argument("--zone", action="append", default=[], help="repeatable")
    add.add_argument("--kind", choices=("uid", "ntag424"), default="ntag424")
    add.add_argument("--site", default=None)
    add.add_argument("--disabled", action="store_true")
    add.add_argument("--valid-from", default=None)
    add.add_argument("--valid-until", default=None)
    add.add_argument("--role", choices=("guard",), default=None, help="a guard's badge")
    add.add_argument(
        "--pin",
        default=None,
        help="a PIN, 6-12 digits: a guard's console login, or card + PIN at wall readers "
        "(only its salted hash is sent)",
    )
    add.add_argument("--guard-id", default=None, help="the guard's id (default: the UID)")
    add.add_argument("--json", action="store_true")
    for name, text in (("revoke", "revoke a badge"), ("delete", "forget a badge")):
        leaf = _leaf(badge, name, text)
        leaf.add_argument("--uid", required=True)

    events = sub.add_parser("events", help="what the central received, per device")
    _url_option(events, leaf=False)
    events.add_argument("--json", action="store_true")
    events.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="walk each stored chain again from the database (default; --no-verify skips it)",
    )
    events.add_argument("--device", default=None, help="also list this device's events")
    export = sub.add_parser(
        "events-export",
        help="write one device's events of a period with their chain proof (JSON, an auditor's)",
    )
    _url_option(export, leaf=False)
    export.add_argument("--device", required=True, dest="device_id")
    export.add_argument("--since", default=None, help="ISO 8601, now or Unix seconds")
    export.add_argument("--until", default=None, help="ISO 8601, now or Unix seconds")
    export.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    verify_export = sub.add_parser(
        "verify-export",
        help="re-check an events-export file's hash chain offline (exit 1 when it fails)",
    )
    verify_export.add_argument("file", type=Path, help="the file events-export wrote")
    verify_export.add_argument("--json", action="store_true")

    faults, fault_sub = _group(sub, "faults", "fault injection (default action: list)")
    faults.add_argument("--json", action="store_true")
    on = _leaf(fault_sub, "on", "switch a fault on")
    on.add_argument("name", choices=FAULT_NAMES)
    on.add_argument("--endpoint", choices=ENDPOINTS, default="*")
    on.add_argument("--delay", type=float, default=None, dest="delay_s", help="seconds")
    on.add_argument("--status", type=int, choices=ERROR_STATUSES, default=None)
    on.add_argument("--retry-after", type=int, default=None, dest="retry_after_s")
    on.add_argument("--every", type=int, default=None, help="fire on every Nth request")
    on.add_argument("--probability", type=float, default=None)
    on.add_argument("--seed", type=int, default=None)
    on.add_argument("--count", type=int, default=None, help="switch off after N times")
    off = _leaf(fault_sub, "off", "switch faults off (all, or by name and/or endpoint)")
    off.add_argument("name", nargs="?", choices=FAULT_NAMES, default=None)
    off.add_argument("--endpoint", choices=ENDPOINTS, default=None)
    listing = _leaf(fault_sub, "list", "list the faults with their counters")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS)

    _, keys = _group(sub, "keys", "invitation signing keys")
    rotate = _leaf(keys, "rotate", "make a new signing key active")
    rotate.add_argument("--retire-now", action="store_true", help="end the old key at once")
    _leaf(keys, "list", "list the signing keys")

    _, token = _group(sub, "enroll-token", "one-time enrollment tokens")
    make = _leaf(token, "create", "create a token; print it")
    make.add_argument("--door", required=True)
    make.add_argument("--site", default=None)
    make.add_argument(
        "--zone", action="append", default=[], help="a zone the door is in (repeatable)"
    )
    make.add_argument("--ttl", type=int, default=None, dest="ttl_s", help="seconds (7 days)")
    make.add_argument("--json", action="store_true")

    _, schedule = _group(sub, "schedule", "door and zone schedules (one per door or zone)")
    put = _leaf(schedule, "set", "set the schedule of a door or zone")
    target = put.add_mutually_exclusive_group(required=True)
    target.add_argument("--door", dest="schedule_id")
    target.add_argument("--zone", dest="schedule_id")
    put.add_argument("--site", default=None)
    put.add_argument("--timezone", default="UTC")
    put.add_argument(
        "--rule",
        action="append",
        default=[],
        help='"mon,tue,wed 08:00-18:00" or "mon-fri 08:00-18:00" (repeatable)',
    )
    drop = _leaf(schedule, "delete", "remove the schedule of a door or zone")
    target = drop.add_mutually_exclusive_group(required=True)
    target.add_argument("--door", dest="schedule_id")
    target.add_argument("--zone", dest="schedule_id")
    drop.add_argument("--site", default=None)

    _, door = _group(sub, "door-settings", "door settings")
    door_set = _leaf(door, "set", "replace a door's settings")
    door_set.add_argument("--door", required=True)
    door_set.add_argument("--site", default=None)
    door_set.add_argument("--settings", required=True, help='JSON, e.g. {"mode": "lockdown"}')

    # Local commands: they open the central's database in --data directly (no server).
    operator = sub.add_parser("operator", help="operator accounts (local, on the data directory)")
    operator_sub = operator.add_subparsers(dest="action", metavar="ACTION", required=True)
    op_add = operator_sub.add_parser("add", help="create an operator account")
    op_add.add_argument("--name", required=True)
    op_add.add_argument("--role", required=True, choices=ROLES)
    op_add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (12+ characters) from stdin; without it a terminal "
        "asks for it, and with neither the account uses API tokens only",
    )
    op_list = operator_sub.add_parser("list", help="list the operators")
    op_list.add_argument("--json", action="store_true")
    op_disable = operator_sub.add_parser("disable", help="disable an operator (tokens stop)")
    op_disable.add_argument("--name", required=True)
    api_token = sub.add_parser("token", help="operator API tokens (local, on the data directory)")
    token_sub = api_token.add_subparsers(dest="action", metavar="ACTION", required=True)
    tok_create = token_sub.add_parser("create", help="mint a token; print it (shown once)")
    tok_create.add_argument("--operator", required=True)
    tok_create.add_argument("--ttl-days", type=int, default=90, help="days it is valid (90)")
    tok_create.add_argument("--label", default="", help="where it is used, e.g. a laptop")
    tok_create.add_argument("--json", action="store_true")
    tok_list = token_sub.add_parser("list", help="list the tokens (never their secret)")
    tok_list.add_argument("--json", action="store_true")
    tok_revoke = token_sub.add_parser("revoke", help="revoke a token at once")
    tok_revoke.add_argument("--id", required=True, dest="token_id")
    audit = sub.add_parser("audit", help="the operators' audit log (local, on the data directory)")
    audit_sub = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    audit_verify = audit_sub.add_parser(
        "verify", help="walk the hash chain; name each changed or missing row (exit 1)"
    )
    audit_verify.add_argument("--json", action="store_true")
    audit_verify.add_argument(
        "--anchor",
        type=Path,
        default=None,
        help="a head kept earlier (audit head): the chain must still hold it",
    )
    audit_head = audit_sub.add_parser(
        "head",
        help="print the chain's head, signed (JSON): keep it where the database's "
        "administrators cannot write, check with verify --anchor",
    )
    audit_head.add_argument("--out", type=Path, default=None, help="write it here (0600)")
    audit_export = audit_sub.add_parser(
        "export", help="write the audit log between two times with its chain proof (JSON)"
    )
    audit_export.add_argument("--since", default=None, help="ISO 8601, now or Unix seconds")
    audit_export.add_argument("--until", default=None, help="ISO 8601, now or Unix seconds")
    audit_export.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    purge = sub.add_parser(
        "purge",
        help="pseudonymise visitors' personal data older than the retention period (local)",
    )
    purge.add_argument(
        "--retention-days", type=int, default=90, metavar="DAYS", help="the period (90)"
    )
    purge.add_argument(
        "--technical-log-days",
        type=int,
        default=400,
        metavar="DAYS",
        help="the technical log's period (400)",
    )
    purge.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    purge.add_argument("--json", action="store_true")
    for local in (
        purge,
        op_add,
        op_list,
        op_disable,
        tok_create,
        tok_list,
        tok_revoke,
        audit_verify,
        audit_export,
        audit_head,
    ):
        local.add_argument("--data", type=Path, required=True, help="the central's data directory")
        local.add_argument(
            "--db",
            default=None,
            metavar="URL",
            help="the database, as for serve (default: SQLite in --data)",
        )

    _, packs = _group(
        sub, "event-pack", "event packs for off-site kiosks, and their journals merged back"
    )
    pack_create = _leaf(
        packs,
        "create",
        "make an event pack for one enrolled device (signed, encrypted to that device) "
        "and write it to --out; the device installs it with `edge-agent event-pack load`",
    )
    pack_create.add_argument("--device", required=True, dest="device_id")
    pack_create.add_argument("--name", required=True, help="the event's name")
    pack_create.add_argument("--starts", required=True, help="ISO 8601, now or Unix seconds")
    pack_create.add_argument("--ends", required=True, help="ISO 8601 or Unix seconds")
    pack_create.add_argument(
        "--invitation",
        action="append",
        default=None,
        metavar="ID",
        help="a guest's invitation (repeat); default: every invitation of the device's "
        "door or zones valid during the event",
    )
    pack_create.add_argument("--language", choices=("en", "fr"), default="en")
    pack_create.add_argument("--welcome", default="", help="the kiosk's welcome line")
    pack_create.add_argument("--out", type=Path, required=True, help="the pack file to write")
    pack_merge = _leaf(
        packs,
        "merge",
        "merge a journal exported by `edge-agent journal export` (a device that never came "
        "back online): the checks of an upload, exactly once",
    )
    pack_merge.add_argument("file", type=Path, help="the journal export (JSON)")
    pack_merge.add_argument(
        "--data", type=Path, default=None, help="merge locally in this data directory"
    )
    pack_merge.add_argument("--db", default=None, metavar="URL", help="the database, as for serve")
    pack_merge.add_argument("--json", action="store_true")

    _, device = _group(sub, "device", "enrolled devices")
    disable = _leaf(device, "disable", "disable a device (its calls get 403)")
    disable.add_argument("--device", required=True, dest="device_id")
    reset = _leaf(
        device,
        "reset",
        "allow one re-enrollment without the device's credential (a re-installed device); "
        "its current credential stops working",
    )
    reset.add_argument("device_id", help="the device id")
    return parser


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_rule(text: str) -> dict[str, Any]:
    """Return a schedule rule from ``"mon-fri 08:00-18:00"`` or ``"sat,sun 10:00-12:00"``.

    Raises:
        UsageError: another shape.
    """
    match = re.fullmatch(r"\s*([a-z,-]+)\s+(\d\d:\d\d)-(\d\d:\d\d)\s*", text.lower())
    if not match:
        raise UsageError(f"rule {text!r}: expected e.g. 'mon-fri 08:00-18:00'")
    days: list[str] = []
    for part in match.group(1).split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise UsageError(f"rule {text!r}: days are {', '.join(_DAYS)}")
        if last:
            days.extend(_DAYS[_DAYS.index(first) : _DAYS.index(last) + 1])
        else:
            days.append(first)
    return {"days": list(dict.fromkeys(days)), "start": match.group(2), "end": match.group(3)}


def write_qr_png(token: str, path: Path) -> None:
    """Write *token* as a QR code PNG (error correction M, 8 px modules, 4-module border)."""
    import segno

    segno.make(token, error="m", micro=False, boost_error=False).save(
        str(path), kind="png", scale=8, border=4
    )


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def is_loopback_host(host: str) -> bool:
    """Whether *host* (``--host``) is a loopback address or ``localhost``."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _serve(args: argparse.Namespace) -> int:
    from portier_common.settings import ConfigError

    from .server import serve
    from .settings import (
        CentralSettings,
        load_card_master_key,
        load_ntag424_keys,
        load_smtp_password,
        load_webhook_secret,
    )
    from .tls import server_context

    try:
        keys = None if args.ntag424_keys is None else load_ntag424_keys(args.ntag424_keys)
        card_master = None if args.ntag424_keys is None else load_card_master_key(args.ntag424_keys)
        secret_file = args.webhook_secret_file
        secret = None if secret_file is None else load_webhook_secret(secret_file)
        password_file = args.smtp_password_file
        password = None if password_file is None else load_smtp_password(password_file)
        settings = CentralSettings(
            data_dir=args.data,
            host=args.host,
            port=args.port,
            site=args.site,
            ntag424=keys,
            card_master_key=card_master,
            counter_max_advance=args.counter_max_advance,
            db=args.db,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            trusted_proxies=tuple(args.trusted_proxy),
            smtp_host=args.smtp_host,
            smtp_port=args.smtp_port,
            smtp_from=args.smtp_from,
            smtp_starttls=args.smtp_starttls,
            smtp_tls=args.smtp_tls,
            smtp_username=args.smtp_username,
            smtp_password=password,
            time_zone=args.time_zone,
            webhook_url=args.webhook,
            webhook_secret=secret,
            notify_retry_s=args.notify_retry,
            notify_give_up_s=args.notify_give_up,
            retention_days=args.retention_days,
            technical_log_days=args.technical_log_days,
            purge_interval_s=args.purge_interval,
        )
        if settings.tls_cert is not None and settings.tls_key is not None:
            server_context(settings.tls_cert, settings.tls_key)
        elif not args.insecure_http and not is_loopback_host(settings.host):
            raise UsageError(
                f"--host {settings.host}: plain HTTP off loopback would carry device and "
                "operator credentials in clear; give --tls-cert and --tls-key (or "
                "--insecure-http behind a TLS-terminating proxy)"
            )
        if settings.database.dialect == "postgresql":
            import importlib.util

            if importlib.util.find_spec("psycopg") is None:
                raise ValueError("db: PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'")
    except ConfigError as exc:
        if exc.key in ("tls_cert", "tls_key"):
            raise UsageError("--tls-cert and --tls-key: give both, or neither") from None
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    def ready(info: dict[str, Any]) -> None:
        print(json.dumps(info), flush=True)

    serve(settings, ready=ready)
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        return None
    import getpass

    first = getpass.getpass(f"password for {args.name} (12+ characters): ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the passwords differ")
    return first


def _local(args: argparse.Namespace) -> int:
    """``operator``, ``token`` and ``audit``: straight on the database (``--db``, or SQLite
    in ``--data``)."""
    from .settings import CentralSettings
    from .store import CentralStore

    password = _read_password(args) if args.command == "operator" and args.action == "add" else None
    if args.command == "purge":
        try:
            settings = CentralSettings(
                data_dir=args.data,
                db=args.db,
                retention_days=args.retention_days,
                technical_log_days=args.technical_log_days,
            )
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        with CentralStore(settings) as store:
            return _purge(store, args)
    with CentralStore(CentralSettings(data_dir=args.data, db=args.db)) as store:
        if args.command == "audit":
            return _audit(store, args)
        if args.command == "operator" and args.action == "add":
            result = store.add_operator(args.name, args.role, password)
            print(f"operator {result['name']} ({result['role']}) added")
        elif args.command == "operator" and args.action == "list":
            operators = store.list_operators()
            if args.json:
                _print_json(operators)
            for entry in [] if args.json else operators:
                state = "enabled" if entry["enabled"] else "disabled"
                print(f"{entry['name']}: {entry['role']}, {state}")
        elif args.command == "operator" and args.action == "disable":
            store.disable_operator(args.name)
            print(f"operator {args.name} disabled")
        elif args.command == "token" and args.action == "create":
            minted = store.create_api_token(
                args.operator, ttl_s=args.ttl_days * 86400, label=args.label
            )
            if args.json:
                _print_json(minted)
            else:
                print(minted["token"])
                expires = dt.datetime.fromtimestamp(minted["expires_at_ms"] / 1000, dt.UTC)
                print(
                    f"token {minted['token_id']} for {args.operator}, valid until "
                    f"{expires:%Y-%m-%d %H:%M} UTC; shown this once: keep it in a 0600 file",
                    file=sys.stderr,
                )
        elif args.command == "token" and args.action == "list":
            tokens = store.list_api_tokens()
            if args.json:
                _print_json(tokens)
            for entry in [] if args.json else tokens:
                state = "revoked" if entry["revoked_at_ms"] is not None else "active"
                print(f"{entry['token_id']}: {entry['operator']} {entry['label']} ({state})")
        else:
            store.revoke_api_token(args.token_id)
            print(f"token {args.token_id} revoked")
    return 0


def _write_private(path: Path, data: bytes) -> None:
    """Write *data* to *path* with mode 0600 (an event pack: a site's guest list)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _read_export(path: Path) -> dict[str, Any]:
    try:
        export = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a journal export ({exc})") from None
    if not isinstance(export, dict):
        raise UsageError(f"{path}: not a journal export")
    return export


def _print_merge(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    print(
        f"journal of {result['device_id']}: {result['events']} events, "
        f"{result['accepted']} new, {result['duplicate']} already here, "
        f"{result['rejected']} rejected, {result['retry_later']} waiting for earlier events; "
        f"next seq {result['next_seq']}, chain {'ok' if result['chain_ok'] else 'BROKEN'}"
    )


def _merge_local(args: argparse.Namespace) -> int:
    """``event-pack merge --data DIR FILE``: straight on the database, audited as ``cli``."""
    from .settings import CentralSettings
    from .store import CentralStore

    export = _read_export(args.file)
    settings = CentralSettings(data_dir=args.data, db=args.db)
    with CentralStore(settings) as store, store.one_transaction():
        result = store.merge_journal(export)
        store.record_action(
            "cli",
            "POST /admin/event-packs/merge",
            {
                "path": "portier-central event-pack merge",
                **{
                    k: result[k]
                    for k in ("device_id", "events", "accepted", "duplicate", "rejected")
                },
            },
            status=200,
        )
    _print_merge(result, args.json)
    return 0 if result["rejected"] == 0 and result["retry_later"] == 0 else 1


def _purge(store: Any, args: argparse.Namespace) -> int:
    """``purge [--dry-run]``: the retention purge, recorded in the audit log (not a dry run)."""
    result = store.purge(dry_run=args.dry_run, by="cli", record_empty=True)
    if args.json:
        _print_json(result)
        return 0
    cutoff = dt.datetime.fromtimestamp(result["cutoff_ms"] / 1000, dt.UTC)
    verb = "would pseudonymise" if args.dry_run else "pseudonymised"
    print(
        f"{verb}: {result['events']} events ({len(result['devices'])} devices), "
        f"{result['invitations']} invitations, {result['notifications']} notifications "
        f"older than {result['retention_days']} days (before {cutoff:%Y-%m-%d %H:%M} UTC)"
    )
    return 0


def _verify_export(args: argparse.Namespace) -> int:
    """``verify-export FILE``: offline; exit 0 verified, 1 not, 2 unreadable."""
    from .store.eventchain import verify_export

    try:
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{args.file}: cannot read a JSON export ({exc})") from None
    result = verify_export(document)
    if args.json:
        _print_json(result)
    else:
        for problem in result["problems"]:
            where = "file" if problem["seq"] is None else f"seq {problem['seq']}"
            print(f"{where}: {problem['problem']}: {problem['detail']}")
        state = "verified" if result["ok"] else "FAILED"
        anchor, end = result.get("anchor") or {}, result.get("end") or {}
        print(
            f"chain {state}: device {result.get('device_id')}, {result['events']} events "
            f"({result['rehashed']} re-hashed, {result['links_only']} purged: links only); "
            f"anchor seq {anchor.get('seq')} {anchor.get('hash')}, "
            f"end seq {end.get('seq')} {end.get('hash')}"
        )
    return 0 if result["ok"] else 1


def _events_export(admin: CentralAdmin, args: argparse.Namespace) -> int:
    since = parse_time(args.since) * 1000 if args.since else None
    until = parse_time(args.until) * 1000 if args.until else None
    exported = admin.export_device_events(args.device_id, since_ms=since, until_ms=until)
    args.out.write_text(json.dumps(exported, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    end = exported["end"]
    print(
        f"{len(exported['events'])} events of {args.device_id} written to {args.out}; "
        f"anchor seq {exported['anchor']['seq']}, end seq {end['seq']} {end['hash']}"
    )
    return 0


def _audit(store: Any, args: argparse.Namespace) -> int:
    """``audit verify`` (exit 1 when the chain is broken or no longer holds the ``--anchor``),
    ``audit head`` and ``audit export``."""
    if args.action == "head":
        head = store.audit_head()
        text = json.dumps(head, indent=2, sort_keys=True) + "\n"
        if args.out is None:
            sys.stdout.write(text)
        else:
            descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write(text)
            print(f"audit head {head['seq']} {head['hash']} written to {args.out}")
        return 0
    if args.action == "verify":
        anchor = None
        if args.anchor is not None:
            try:
                anchor = json.loads(args.anchor.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                print(f"portier-central: --anchor: {exc}", file=sys.stderr)
                return 2
        result = store.verify_audit(anchor)
        if args.json:
            _print_json(result)
        else:
            for problem in result["problems"]:
                print(f"row {problem['seq']}: {problem['problem']}: {problem['detail']}")
            if anchor is not None and result["ok"]:
                print(f"anchor: row {anchor['seq']} still holds the kept head")
            state = "intact" if result["ok"] else "BROKEN"
            print(
                f"audit chain {state}: {result['rows']} rows, head {result['head_seq']} "
                f"{result['head_hash']}"
            )
        return 0 if result["ok"] else 1
    since = parse_time(args.since) * 1000 if args.since else None
    until = parse_time(args.until) * 1000 if args.until else None
    exported = store.audit_export(since_ms=since, until_ms=until)
    args.out.write_text(json.dumps(exported, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(
        f"{len(exported['entries'])} audit rows written to {args.out}; chain head "
        f"{exported['head_seq']} {exported['head_hash']}"
    )
    return 0


def _events(admin: CentralAdmin, args: argparse.Namespace) -> int:
    view = admin.received(verify=args.verify)
    if args.device is not None:
        listed = admin.all_device_events(args.device)
        for entry in view["devices"]:
            if entry["device_id"] == args.device:
                entry["events"] = listed
    if args.json:
        _print_json(view)
        return 0
    for d in view["devices"]:
        chain = "ok" if d["chain_ok"] else f"BROKEN at seq {d['chain_broken_at']}"
        if d["chain_verified"] is not None:
            chain += ", re-verified" if d["chain_verified"] else ", re-verification FAILED"
        print(
            f"{d['device_id']} ({d['site']}/{d['door']}): {d['unique_events']} events, "
            f"{d['duplicates_seen']} duplicates, {d['rejected']} rejected, "
            f"next seq {d['next_seq']}, chain {chain}"
        )
        for event in d.get("events", []):
            print(f"  {event['seq']} {event['id']} {event['type']} {event['status']}")
    totals = view["totals"]
    print(
        f"total: {totals['devices']} devices, {totals['unique_events']} events, "
        f"{totals['duplicates_seen']} duplicates, chains {'ok' if totals['chain_ok'] else 'BROKEN'}"
    )
    return 0


def _faults(admin: CentralAdmin, args: argparse.Namespace) -> int:
    action = args.action or "list"
    if action == "on":
        fields = {
            key: getattr(args, key)
            for key in (
                "endpoint",
                "delay_s",
                "status",
                "retry_after_s",
                "every",
                "probability",
                "seed",
                "count",
            )
        }
        faults = admin.set_fault(args.name, **fields)
    elif action == "off":
        faults = admin.clear_faults(args.name, args.endpoint)
    else:
        faults = admin.faults()
    if getattr(args, "json", False):
        _print_json({"faults": faults})
    elif not faults:
        print("no faults")
    else:
        for fault in faults:
            extra = ", ".join(f"{k}={v}" for k, v in fault.items() if k not in ("name", "endpoint"))
            print(f"{fault['name']} on {fault['endpoint']}: {extra}")
    return 0


def _run(admin: CentralAdmin, args: argparse.Namespace) -> int:
    command, action = args.command, getattr(args, "action", None)
    if command == "events":
        return _events(admin, args)
    if command == "faults":
        return _faults(admin, args)
    if command == "events-export":
        return _events_export(admin, args)
    if action is None:
        raise UsageError(f"{command}: give an action (see portier-central {command} --help)")
    if command == "invite" and action == "create":
        if not args.door and not args.zone:
            raise UsageError("invite create: give --door (or --zone)")
        not_before = parse_time(args.valid_from) if args.valid_from else None
        result = admin.create_invitation(
            visitor=args.visitor,
            doors=args.door or None,
            zones=args.zone or None,
            host=args.host_name,
            host_email=args.host_email,
            visitor_email=args.visitor_email,
            lang=args.lang,
            site=args.site,
            not_before=not_before,
            expires=parse_time(args.valid_until) if args.valid_until else None,
            single_use=args.single_use,
        )
        if args.json:
            _print_json(result)
        if result["token"] is None:  # the deny list held it: no token until approved
            print(
                f"invitation {result['invitation']['id']} awaits a security officer's approval "
                "(deny list): no token yet",
                file=sys.stderr,
            )
            return 4
        if args.png is not None:
            write_qr_png(result["token"], args.png)
        if not args.json:
            print(result["token"])
    elif command == "invite" and action == "revoke":
        _print_json(admin.revoke_invitation(args.invitation_id))
    elif command == "badge" and action == "add":
        guard: dict[str, Any] = {}
        if args.role is not None and args.pin is None:
            raise UsageError("badge add --role guard: give --pin")
        if args.role is None and args.guard_id is not None:
            raise UsageError("badge add: --guard-id needs --role guard")
        if args.pin is not None:
            # Any badge may have a PIN: a guard's console login, anyone's card + PIN door.
            from portier_common.pins import hash_pin

            try:
                guard["pin_hash"] = hash_pin(args.pin)
            except ValueError as exc:  # fewer than 6 digits: refused for new PINs
                raise UsageError(f"badge add --{exc}") from None
        if args.role is not None:
            guard.update(role=args.role, guard_id=args.guard_id)
        result = admin.put_badge(
            **guard,
            uid=args.uid,
            holder=args.holder,
            doors=args.door,
            zones=args.zone,
            kind=args.kind,
            site=args.site,
            enabled=not args.disabled,
            not_before=parse_time(args.valid_from) if args.valid_from else None,
            not_after=parse_time(args.valid_until) if args.valid_until else None,
        )
        if args.json:
            _print_json(result)
        else:
            print(f"badge {result['uid']} ({result['kind']}) for {result['holder']} stored")
    elif command == "badge" and action == "revoke":
        _print_json(admin.revoke_badge(args.uid))
    elif command == "badge" and action == "delete":
        admin.delete_badge(args.uid)
        print(f"badge {args.uid} deleted")
    elif command == "keys" and action == "rotate":
        _print_json(admin.rotate_key(retire_now=args.retire_now))
    elif command == "keys" and action == "list":
        _print_json(admin.keys())
    elif command == "enroll-token" and action == "create":
        result = admin.create_enroll_token(
            args.door, site=args.site, ttl_s=args.ttl_s, zones=args.zone or None
        )
        if args.json:
            _print_json(result)
        else:
            print(result["enroll_token"])
    elif command == "schedule" and action == "set":
        rules = [parse_rule(rule) for rule in args.rule]
        _print_json(
            admin.put_schedule(
                args.schedule_id,
                site=args.site,
                timezone=args.timezone,
                rules=rules,
            )
        )
    elif command == "schedule" and action == "delete":
        admin.delete_schedule(args.schedule_id, site=args.site)
        print(f"schedule {args.schedule_id} deleted")
    elif command == "door-settings" and action == "set":
        try:
            settings = json.loads(args.settings)
        except ValueError as exc:
            raise UsageError(f"--settings is not JSON: {exc}") from None
        _print_json(admin.put_door_settings(args.door, settings, site=args.site))
    elif command == "event-pack" and action == "create":
        result = admin.create_event_pack(
            args.device_id,
            name=args.name,
            starts=parse_time(args.starts),
            ends=parse_time(args.ends),
            invitations=args.invitation,
            kiosk={"language": args.language, "welcome": args.welcome},
        )
        _write_private(args.out, result.pop("file").encode("utf-8"))
        print(
            f"event pack {result['pack_id']} (serial {result['serial']}) for device "
            f"{result['device_id']}: {result['guests']} guests, written to {args.out}"
        )
    elif command == "event-pack" and action == "merge":
        _print_merge(admin.merge_journal(_read_export(args.file)), args.json)
    elif command == "device" and action == "disable":
        _print_json(admin.disable_device(args.device_id))
    elif command == "device" and action == "reset":
        _print_json(admin.reset_device(args.device_id))
    else:  # pragma: no cover - argparse only lets known actions through
        raise UsageError(f"unknown command {command} {action}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``portier-central``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command in ("operator", "token", "audit", "purge"):
            return _local(args)
        if args.command == "verify-export":
            return _verify_export(args)
        if args.command == "event-pack" and getattr(args, "data", None) is not None:
            return _merge_local(args)
        url = getattr(args, "url", None) or os.environ.get(URL_ENV)
        if not url:
            raise UsageError(f"give --url URL (or set ${URL_ENV})")
        with CentralAdmin(url, token=operator_token(args)) as admin:
            return _run(admin, args)
    except UsageError as exc:
        parser.exit(2, f"portier-central: {exc}\n")
    except CentralError as exc:
        print(f"portier-central: {exc.code} ({exc.status}): {exc.detail}", file=sys.stderr)
        return 1
    except CentralUnreachable as exc:
        print(f"portier-central: central unreachable: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        # serve: the address is taken or the data directory is not writable.
        print(f"portier-central: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        parser.exit(2, f"portier-central: {exc}\n")
    return 0
