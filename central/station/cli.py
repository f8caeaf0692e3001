"""``portier-badge``: issue, return and revoke NTAG 424 DNA badges at the Pass Office desk.

    portier-badge login --url URL [--name NAME]   (asks the password; keeps the session 0600)
    portier-badge issue --holder "Grace Hopper" --door lobby [--zone Z] [--role guard --pin PIN]
                        [--valid-until 2027-06-30] [--replaces LOST_UID]
                        [--print-queue CARDS --photo FACE.jpg]   (the face, CR80, via CUPS)
    portier-badge face --holder NAME [--valid-until D] (--print-queue CARDS | --face-out F.pdf)
    portier-badge reset                    (a returned card: revoked, back to factory keys)
    portier-badge revoke --uid UID
    portier-badge logout

The operator: the session of ``portier-badge login`` (:mod:`.login`), or an API token as for
``portier-central`` (``--token-file``, ``$PORTIER_CENTRAL_TOKEN``, ``--token``), which wins
when given; ``--url`` defaults to the session's. The reader: the first PC/SC reader,
``--reader NAME``, or ``--demo`` (an emulated blank card). Exit status: 0 done, 1 refused or
stopped (the message says what to do), 2 usage, 3 the central did not answer.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..admin import TOKEN_ENV, CentralAdmin, CentralUnreachable
from ..cli import URL_ENV, UsageError, operator_token, parse_time
from ..errors import CentralError, Unauthorized
from .cardface import CardFace, FacePrintError, check_printer, face_pdf, print_face, read_photo
from .issue import DEFAULT_BADGE_URL, EmulatedReader, IssueRequest, Reader, StationError
from .login import (
    SESSION_ENV,
    SessionFileError,
    default_session_path,
    delete_session,
    load_session,
    save_session,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portier-badge", description="Issue NTAG 424 DNA badges at the Pass Office desk."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser, *, card: bool = True) -> None:
        p.add_argument(
            "--url", help=f"the central's base URL (default: the login's, or ${URL_ENV})"
        )
        p.add_argument("--token", help=f"operator API token (default: ${TOKEN_ENV})")
        p.add_argument("--token-file", type=Path, help="file holding the token (mode 0600)")
        p.add_argument(
            "--session",
            type=Path,
            help=f"the login's session file (default: ${SESSION_ENV}, or "
            "~/.config/portier/badge-session.json)",
        )
        if card:
            p.add_argument("--reader", help="PC/SC reader name (part of it); default: the first")
            p.add_argument("--nfc", metavar="PATH", help="an nfcpy reader instead (usb, tty:USB0)")
            p.add_argument("--demo", action="store_true", help="an emulated blank card")
            p.add_argument(
                "--factory-key-file",
                type=Path,
                help="file with the cards' factory key 0 in hex (default: NXP's, all zero)",
            )

    login = sub.add_parser("login", help="log in with your name and password (asks them)")
    common(login, card=False)
    login.add_argument("--name", help="your operator name (asked when not given)")
    logout = sub.add_parser("logout", help="end the login's session, delete its file")
    common(logout, card=False)
    issue = sub.add_parser("issue", help="write the card on the reader and register it")
    common(issue)
    issue.add_argument("--holder", required=True)
    issue.add_argument("--door", action="append", default=[])
    issue.add_argument("--zone", action="append", default=[])
    issue.add_argument("--role", choices=("guard",))
    issue.add_argument("--pin", help="the guard's PIN (with --role guard)")
    issue.add_argument("--guard-id")
    issue.add_argument("--valid-from")
    issue.add_argument("--valid-until")
    issue.add_argument("--replaces", metavar="UID", help="a lost badge: revoked at once")
    issue.add_argument("--badge-url", default=DEFAULT_BADGE_URL, help="URL written on the card")
    issue.add_argument(
        "--random-id",
        action="store_true",
        help="the card shows a random UID to readers from then on (irreversible)",
    )
    face_options(issue)
    face = sub.add_parser(
        "face", help="print (or write) a badge's face again, without a card or the central"
    )
    face.add_argument("--holder", required=True)
    face.add_argument("--role", choices=("guard",))
    face.add_argument("--site", default="", help="the site's name printed on the face")
    face.add_argument("--valid-from")
    face.add_argument("--valid-until")
    face_options(face)
    reset = sub.add_parser("reset", help="a returned card: revoke it, back to factory keys")
    common(reset)
    revoke = sub.add_parser("revoke", help="revoke a badge at once (a lost card)")
    common(revoke, card=False)
    revoke.add_argument("--uid", required=True)
    return parser


def face_options(p: argparse.ArgumentParser) -> None:
    """Printing the badge's face (photo, name, validity) on a CR80 card printer (CUPS)."""
    p.add_argument("--print-queue", metavar="QUEUE", help="the card printer's CUPS queue")
    p.add_argument("--cups-server", default="", help="host:port of CUPS (default: the system's)")
    p.add_argument("--photo", type=Path, help="the holder's photo (JPEG, PNG) for the face")
    p.add_argument("--face-out", type=Path, metavar="FILE.pdf", help="write the face's PDF")
    p.add_argument("--lang", choices=("en", "fr"), default="en", help="the face's language")


def _face(args: argparse.Namespace, badge: dict[str, object]) -> CardFace | None:
    """The face to print for ``badge`` (the central's ``Badge``), or None when not asked."""
    if not (args.print_queue or args.face_out):
        return None
    photo = None
    if args.photo is not None:
        try:
            photo = read_photo(args.photo.read_bytes())
        except OSError as exc:
            raise UsageError(f"--photo {args.photo}: {exc.strerror or exc}") from None
    until, start = badge.get("not_after"), badge.get("not_before")
    try:
        return CardFace(
            holder=str(badge["holder"]),
            site=str(badge.get("site") or ""),
            valid_from=int(start) if isinstance(start, int) else None,
            valid_until=int(until) if isinstance(until, int) else None,
            role=str(badge["role"]) if badge.get("role") else None,
            photo_jpeg=photo,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _put_face(args: argparse.Namespace, face: CardFace) -> None:
    """Write and/or print ``face``; raises :class:`FacePrintError`."""
    pdf = face_pdf(face, lang=args.lang)
    if args.face_out is not None:
        args.face_out.write_bytes(pdf)
        print(f"card face written to {args.face_out}")
    if args.print_queue:
        job = print_face(
            pdf, queue=args.print_queue, server=args.cups_server, title=f"badge {face.holder}"
        )
        print(f"card face sent to {args.print_queue} (job {job or '?'}): put the card in it")


def _face_only(args: argparse.Namespace) -> int:
    """``portier-badge face``: a face printed again (a card printer that jammed)."""
    if not (args.print_queue or args.face_out):
        raise UsageError("face: give --print-queue QUEUE or --face-out FILE.pdf")
    badge = {
        "holder": args.holder,
        "site": args.site,
        "role": args.role,
        "not_before": parse_time(args.valid_from) if args.valid_from else None,
        "not_after": parse_time(args.valid_until) if args.valid_until else None,
    }
    face = _face(args, badge)
    assert face is not None
    _put_face(args, face)
    return 0


def _reader(args: argparse.Namespace) -> Reader:
    if args.demo:
        from portier_common.ntag424.card import EmulatedNtag424

        return EmulatedReader(EmulatedNtag424())
    if args.nfc:
        from .nfcreader import open_nfc_reader

        return open_nfc_reader(args.nfc)
    from .pcsc import open_reader

    return open_reader(args.reader)


def _factory_key(args: argparse.Namespace) -> bytes:
    if args.factory_key_file is None:
        return bytes(16)
    from portier_common.settings import ConfigError, read_private_file

    try:
        key = bytes.fromhex(read_private_file("--factory-key-file", args.factory_key_file).decode())
    except (ConfigError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--factory-key-file: {exc}") from None
    if len(key) != 16:
        raise UsageError("--factory-key-file: 32 hex digits (an AES-128 key)")
    return key


def _run(admin: CentralAdmin, args: argparse.Namespace) -> int:
    if args.command == "revoke":
        admin.revoke_badge(args.uid)
        print(
            f"done: badge {args.uid.upper()} is revoked; the doors refuse it from their next poll"
        )
        return 0
    reader = _reader(args)
    try:
        return _with_card(admin, args, reader)
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def _with_card(admin: CentralAdmin, args: argparse.Namespace, reader: Reader) -> int:
    from .issue import issue_badge, return_badge

    say = print
    if args.command == "reset":
        uid = return_badge(admin, reader, factory_key=_factory_key(args), say=say)
        print(f"done: card {uid.upper()} is back to factory keys and can be issued again")
        return 0
    if not args.door and not args.zone:
        raise UsageError("issue: give --door (or --zone)")
    guard: dict[str, object] = {}
    if args.role is not None:
        if args.pin is None:
            raise UsageError("issue --role guard: give --pin")
        from portier_common.pins import hash_pin

        try:
            guard = {"role": args.role, "pin_hash": hash_pin(args.pin), "guard_id": args.guard_id}
        except ValueError as exc:
            raise UsageError(f"issue --{exc}") from None
    if args.print_queue:
        # Before the card is written: a badge issued whose face cannot be printed is a
        # half-done job at the desk.
        check_printer(args.print_queue, server=args.cups_server)
    if args.photo is not None and not (args.print_queue or args.face_out):
        raise UsageError("issue --photo: give --print-queue QUEUE (or --face-out FILE.pdf)")
    request = IssueRequest(
        holder=args.holder,
        doors=tuple(args.door),
        zones=tuple(args.zone),
        not_before=parse_time(args.valid_from) if args.valid_from else None,
        not_after=parse_time(args.valid_until) if args.valid_until else None,
        guard=guard,
        replaces=args.replaces,
    )
    badge = issue_badge(
        admin,
        reader,
        request,
        factory_key=_factory_key(args),
        base_url=args.badge_url,
        random_id=args.random_id,
        say=say,
    )
    where = ", ".join([*badge.get("doors", []), *(f"zone {z}" for z in badge.get("zones", []))])
    print(
        f"done: badge {badge['uid'].upper()} issued to {badge['holder']} for {where} "
        f"(key version {badge.get('key_version')}); hand the card over"
    )
    face = _face(args, badge)
    if face is not None:
        try:
            _put_face(args, face)
        except FacePrintError as exc:
            print(
                f"portier-badge: the badge is issued, but its face was not printed: {exc}. "
                "Print it again with portier-badge face --holder … --print-queue QUEUE",
                file=sys.stderr,
            )
            return 1
    return 0


def _token_given(args: argparse.Namespace) -> bool:
    return bool(args.token or args.token_file or os.environ.get(TOKEN_ENV))


def _login(args: argparse.Namespace, path: Path) -> int:
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        raise UsageError(f"login: give --url URL (or set ${URL_ENV})")
    name = args.name or input("Operator name: ").strip()
    password = getpass.getpass("Password: ")
    if not name or not password:
        raise UsageError("login: give your name and password")
    with CentralAdmin(url) as admin:
        answer = admin.login(name, password)
        if answer.get("must_change_password"):
            admin.logout()
            print(
                "portier-badge: your password was set by a security officer: change it in "
                "the console first (Change password), then log in here",
                file=sys.stderr,
            )
            return 1
    save_session(path, {**answer, "url": url})
    hours = max(0, (int(answer["expires_at_ms"]) // 1000 - int(time.time())) // 3600)
    print(
        f"logged in as {answer['operator']} ({answer['role']}) at {url} for {hours} hours; "
        f"session kept in {path} (0600). portier-badge logout ends it"
    )
    return 0


def _logout(args: argparse.Namespace, path: Path) -> int:
    try:
        kept = load_session(path)
    except SessionFileError:
        kept = None  # ended or unreadable: deleting the file is all there is to do
    if kept is not None:
        try:
            with CentralAdmin(
                args.url or kept["url"], session=(kept["session"], kept["csrf_token"])
            ) as admin:
                admin.logout()
        except (CentralError, CentralUnreachable) as exc:
            print(f"portier-badge: the central did not end the session ({exc})", file=sys.stderr)
    print("logged out" if delete_session(path) else "not logged in")
    return 0


def _admin(args: argparse.Namespace, path: Path) -> CentralAdmin:
    """The central as the operator: a token when given, else the login's session."""
    if _token_given(args):
        url = args.url or os.environ.get(URL_ENV)
        if not url:
            raise UsageError(f"give --url URL (or set ${URL_ENV})")
        return CentralAdmin(url, token=operator_token(args))
    try:
        kept = load_session(path)
    except SessionFileError as exc:
        raise UsageError(str(exc)) from None
    if kept is None:
        raise UsageError(
            "log in first: portier-badge login --url URL (or give an API token: --token-file)"
        )
    return CentralAdmin(args.url or kept["url"], session=(kept["session"], kept["csrf_token"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``portier-badge``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    path = getattr(args, "session", None) or default_session_path()
    try:
        if args.command == "login":
            return _login(args, path)
        if args.command == "logout":
            return _logout(args, path)
        if args.command == "face":
            return _face_only(args)
        with _admin(args, path) as admin:
            return _run(admin, args)
    except UsageError as exc:
        parser.exit(2, f"portier-badge: {exc}\n")
    except (StationError, FacePrintError) as exc:
        print(f"portier-badge: {exc}", file=sys.stderr)
        return 1
    except Unauthorized as exc:
        print(
            f"portier-badge: the central does not know you ({exc.detail}): "
            "portier-badge login again, or check the token",
            file=sys.stderr,
        )
        return 1
    except CentralError as exc:
        print(f"portier-badge: the central refused: {exc.detail}", file=sys.stderr)
        return 1
    except CentralUnreachable as exc:
        print(f"portier-badge: the central did not answer: {exc}", file=sys.stderr)
        return 3
    except RuntimeError as exc:  # ReaderUnavailable
        print(f"portier-badge: {exc}", file=sys.stderr)
        return 1
    return 0
