"""Host notification (issue 13): a check-in a door uploads tells the host, once.

A real central process (``portier-central serve --smtp-... --webhook ...``), a real SMTP
server on loopback (aiosmtpd) and a webhook receiver (aiohttp on loopback): the upload is
the one a door's agent makes (``POST /v1/events`` with a hash-chained ``visitor.checked_in``).
The outbox rules on both backends are in the store tests at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from central.admin import CentralAdmin
from central.notify import Notifier, render_email
from central.settings import CentralSettings, load_webhook_secret
from central.store import CentralStore
from central.testing import CentralProcess, ChainBuilder, enroll_device, wait_for
from portier_common.settings import ConfigError

pytestmark = pytest.mark.processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message.envelope_to = list(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def subject(message: Any) -> str:
    return str(make_header(decode_header(message["Subject"])))


def body(message: Any) -> str:
    return message.get_payload(decode=True).decode(message.get_content_charset() or "utf-8")


def upload(session: Any, url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = session.post(f"{url}/v1/events", json={"events": events}, timeout=10)
    response.raise_for_status()
    return response.json()


def notifications(central: CentralProcess) -> list[dict[str, Any]]:
    with CentralStore(CentralSettings(data_dir=central.data_dir)) as store:
        return store.notifications()


def start_central(tmp_path: Path, *args: str) -> CentralProcess:
    process = CentralProcess(tmp_path / "central", extra_args=["--notify-retry", "0.2", *args])
    process.start()
    return process


def check_in(chain: ChainBuilder, invitation: dict[str, Any]) -> dict[str, Any]:
    event = chain.event(
        "visitor.checked_in",
        {"invitation_id": invitation["id"], "by": "visitor", "photo": None, "consent": False},
        wall_ms=1_795_331_200_000,  # 2026-11-22 07:06:40 UTC
    )
    return event


def test_checkin_mails_the_host_once_in_the_invitation_language(
    tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    central = start_central(
        tmp_path, "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
        "--smtp-from", "portier@example.com", "--time-zone", "Europe/Brussels",
    )  # fmt: skip
    try:
        with CentralAdmin(central.url) as admin:
            en = admin.create_invitation(
                visitor="Ada Lovelace",
                host="Grace Hopper",
                host_email="grace@example.com",
                doors=["lobby"],
            )
            fr = admin.create_invitation(
                visitor="Marie Curie",
                host="Pierre",
                host_email="pierre@example.fr",
                lang="fr",
                doors=["lobby"],
            )
        _, session = enroll_device(central.url, door="lobby")
        chain = ChainBuilder()
        batch = [
            check_in(chain, en["invitation"]),
            check_in(chain, fr["invitation"]),
        ]
        acks = upload(session, central.url, batch)["acks"]
        assert [ack["status"] for ack in acks] == ["accepted", "accepted"]
        assert wait_for(lambda: len(inbox.messages) >= 2, 15)
        # The same batch again (the agent's retry after a lost answer): nothing new.
        acks = upload(session, central.url, batch)["acks"]
        assert [ack["status"] for ack in acks] == ["duplicate", "duplicate"]
        assert not wait_for(lambda: len(inbox.messages) > 2, 1.5)

        by_to = {message["To"]: message for message in inbox.messages}
        assert set(by_to) == {"grace@example.com", "pierre@example.fr"}
        english, french = by_to["grace@example.com"], by_to["pierre@example.fr"]
        assert subject(english) == "Ada Lovelace has arrived at lobby"
        assert "Hello Grace Hopper" in body(english)
        # 07:06 UTC is 08:06 in Brussels in November (CET, UTC+1).
        assert (
            "Ada Lovelace checked in at the lobby entrance (hq) at 08:06 "
            "on Sunday 22 November 2026." in body(english)
        )
        assert subject(french) == "Marie Curie est arrivé(e) à l'entrée lobby"
        assert "Bonjour Pierre" in body(french)
        assert "à l'entrée lobby (hq) à 08:06 le dimanche 22 novembre 2026." in body(french)
        assert english["From"] == "portier@example.com"

        rows = notifications(central)
        email = [row for row in rows if row["channel"] == "email"]
        assert [row["status"] for row in email] == ["sent", "sent"]
        assert all(row["attempts"] == 1 for row in email)
        webhook = [row for row in rows if row["channel"] == "webhook"]
        assert [row["status"] for row in webhook] == ["not_configured"] * 2
    finally:
        central.stop()


def test_smtp_down_then_up_is_delivered_after_a_retry(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    central = start_central(
        tmp_path, "--smtp-host", "127.0.0.1", "--smtp-port", str(port),
        "--smtp-from", "portier@example.com",
    )  # fmt: skip
    controller = None
    try:
        with CentralAdmin(central.url) as admin:
            made = admin.create_invitation(
                visitor="Ada", host="Grace", host_email="g@example.com", doors=["lobby"]
            )
        _, session = enroll_device(central.url)
        upload(session, central.url, [check_in(ChainBuilder(), made["invitation"])])

        def failed_once() -> bool:
            row = next(r for r in notifications(central) if r["channel"] == "email")
            return row["attempts"] >= 1 and row["last_error"] is not None

        assert wait_for(failed_once, 15)
        row = next(r for r in notifications(central) if r["channel"] == "email")
        assert row["status"] == "pending" and "Connection" in row["last_error"]

        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        assert wait_for(lambda: len(inbox.messages) == 1, 30)
        assert wait_for(
            lambda: (
                next(r for r in notifications(central) if r["channel"] == "email")["status"]
                == "sent"
            ),
            10,
        )
        row = next(r for r in notifications(central) if r["channel"] == "email")
        assert row["attempts"] >= 2
    finally:
        central.stop()
        if controller is not None:
            controller.stop()


class WebhookReceiver:
    """An aiohttp server on loopback in a thread of its own; keeps each request."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = status
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_webhook_gets_a_signed_post_and_retries(tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text("s3cret-s3cret-s3cret\n")
    secret_file.chmod(0o600)
    with WebhookReceiver(status=503) as receiver:
        central = start_central(
            tmp_path, "--webhook", f"http://127.0.0.1:{receiver.port}/hook",
            "--webhook-secret-file", str(secret_file),
        )  # fmt: skip
        try:
            with CentralAdmin(central.url) as admin:
                made = admin.create_invitation(
                    visitor="Ada", host="Grace", host_email="g@example.com", doors=["gate"]
                )
            _, session = enroll_device(central.url, door="gate")
            event = check_in(ChainBuilder(), made["invitation"])
            upload(session, central.url, [event])
            assert wait_for(lambda: len(receiver.requests) >= 1, 15)  # refused: 503
            receiver.status = 200
            assert wait_for(
                lambda: (
                    next(r for r in notifications(central) if r["channel"] == "webhook")["status"]
                    == "sent"
                ),
                20,
            )
        finally:
            central.stop()
    headers, raw = receiver.requests[-1]
    timestamp = headers["X-Portier-Timestamp"]
    expected = hmac.new(b"s3cret-s3cret-s3cret", timestamp.encode() + b"." + raw, hashlib.sha256)
    assert hmac.compare_digest(headers["X-Portier-Signature"], "sha256=" + expected.hexdigest())
    sent = json.loads(raw)
    assert sent["type"] == "visitor.checked_in" and sent["event_id"] == event["id"]
    assert sent["visitor"] == "Ada" and sent["door"] == "gate" and sent["host"] == "Grace"
    assert "host_email" not in sent  # the host's address stays in the central
    rows = notifications(central)
    assert next(r for r in rows if r["channel"] == "email")["status"] == "not_configured"


# -- the outbox on both backends (no process) -------------------------------------------


def test_outbox_once_per_checkin_and_gives_up(tmp_path: Path, central_db: Any) -> None:
    now = [1_795_331_200_000]
    settings = CentralSettings(
        data_dir=tmp_path / "data", db=central_db(), smtp_host="127.0.0.1",
        smtp_port=free_port(), smtp_from="portier@example.com", notify_give_up_s=60,
    )  # fmt: skip
    with CentralStore(settings, clock=lambda: now[0]) as store:
        made = store.create_invitation(
            {"visitor": "Ada", "host_email": "g@example.com", "doors": ["lobby"]}
        )
        assert made["invitation"]["host_email"] == "g@example.com"
        token = store.create_enroll_token(door="lobby")["enroll_token"]
        store.enroll({"enroll_token": token, "device_id": "dev-a"})
        chain = ChainBuilder()
        batch = [
            chain.event("access.decision"),
            chain.event("visitor.checked_in", {"invitation_id": made["invitation"]["id"]}),
        ]
        store.upload_events("dev-a", batch)
        store.upload_events("dev-a", batch)
        rows = store.notifications()
        assert sorted(row["channel"] for row in rows) == ["email", "webhook"]
        claimed = store.claim_notifications()
        assert len(claimed) == 2 and store.claim_notifications() == []  # leased
        email = next(item for item in claimed if item["channel"] == "email")
        assert email["data"]["host_email"] == "g@example.com" and email["data"]["door"] == "lobby"

        notifier = Notifier(settings, store, _direct)
        # SMTP down; the next retry would be past the give-up time: recorded failed.
        now[0] += 59_000
        asyncio.run(notifier._deliver(email))
        row = next(row for row in store.notifications() if row["channel"] == "email")
        assert row["status"] == "failed" and row["last_error"]


async def _direct(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def test_invitation_host_email_and_lang_are_validated(tmp_path: Path) -> None:
    from central.errors import BadRequest

    with CentralStore(CentralSettings(data_dir=tmp_path)) as store:
        with pytest.raises(BadRequest, match="host_email"):
            store.create_invitation(
                {"visitor": "Ada", "host_email": "not an address", "doors": ["d"]}
            )
        with pytest.raises(BadRequest, match="lang"):
            store.create_invitation({"visitor": "Ada", "lang": "de", "doors": ["d"]})
        made = store.create_invitation(
            {"visitor": "Ada", "host_email": "a@example.com", "doors": ["d"]}
        )
        delta = store.deltas(made["invitation"]["site"], None)
        assert "a@example.com" not in json.dumps(delta)


def test_settings_name_the_bad_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="smtp_from"):
        CentralSettings(data_dir=tmp_path, smtp_host="mail.example.com")
    with pytest.raises(ConfigError, match="webhook_url"):
        CentralSettings(data_dir=tmp_path, webhook_url="ftp://x", webhook_secret=b"x" * 16)
    with pytest.raises(ConfigError, match="webhook_secret"):
        CentralSettings(data_dir=tmp_path, webhook_url="https://hooks.example.com/x")
    loose = tmp_path / "secret"
    loose.write_text("x" * 32)
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match=r"webhook_secret_file.*0600"):
        load_webhook_secret(loose)


def test_templates_render_who_where_when() -> None:
    data = {"visitor": "Ada\r\nBcc: x@evil", "host": "Grace", "door": "lobby", "site": "hq",
            "wall_ms": 0, "lang": "fr"}  # fmt: skip
    subject_line, text = render_email(data)
    assert "\n" not in subject_line and subject_line.startswith("Ada Bcc")
    assert "à 00:00 UTC le jeudi 1 janvier 1970." in text  # the default zone: UTC, said so


def test_two_processes_never_claim_the_same_notification(tmp_path: Path, central_db: Any) -> None:
    """Two stores on one database (two central processes): each row is claimed by one."""
    url = central_db()
    settings = CentralSettings(data_dir=tmp_path / "data", db=url)
    with CentralStore(settings) as first, CentralStore(settings) as second:
        token = first.create_enroll_token(door="lobby")["enroll_token"]
        first.enroll({"enroll_token": token, "device_id": "dev-a"})
        chain = ChainBuilder()
        first.upload_events(
            "dev-a", [chain.event("visitor.checked_in", {"by": "visitor"}) for _ in range(30)]
        )
        taken: list[list[dict[str, Any]]] = [[], []]

        def drain(store: CentralStore, into: list[dict[str, Any]]) -> None:
            while batch := store.claim_notifications(limit=3):
                into.extend(batch)

        threads = [
            threading.Thread(target=drain, args=(store, into))
            for store, into in zip((first, second), taken, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        keys = [(item["event_id"], item["channel"]) for item in taken[0] + taken[1]]
        assert len(keys) == 60 == len(set(keys))


def test_serve_refuses_a_webhook_secret_others_can_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    secret = tmp_path / "secret"
    secret.write_text("x" * 32)
    secret.chmod(0o640)
    done = subprocess.run(
        [sys.executable, "-m", "central", "serve", "--port", "0", "--data", str(tmp_path / "d"),
         "--webhook", "http://127.0.0.1:9/hook", "--webhook-secret-file", str(secret)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "webhook_secret_file" in done.stderr and "0600" in done.stderr


# -- SMTP login (STARTTLS or TLS from the start) and the site's local time ---------------

SMTP_USER = "portier"
SMTP_PASSWORD = "correct horse battery"
#: Tuesday 8 December 2026, 12:00 UTC: 13:00 in Brussels (CET, winter).
NOON_UTC_WINTER_MS = 1_796_731_200_000


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A server context for the SMTP server (a certificate of a test CA), the CA trusted by
    the central's ``ssl.create_default_context()`` through ``SSL_CERT_FILE``."""
    import ssl

    from central.testing import mint_ca, mint_server_cert

    where = tmp_path / "pki"
    where.mkdir()
    ca_path, ca_key, ca_cert = mint_ca(where, "smtp")
    cert, key = mint_server_cert(where, ca_key, ca_cert)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _store_with_a_check_in(settings: CentralSettings) -> CentralStore:
    store = CentralStore(settings)
    made = store.create_invitation(
        {"visitor": "Ada", "host": "Grace", "host_email": "g@example.com", "doors": ["lobby"]}
    )
    token = store.create_enroll_token(door="lobby")["enroll_token"]
    store.enroll({"enroll_token": token, "device_id": "dev-a"})
    chain = ChainBuilder()
    event = chain.event(
        "visitor.checked_in",
        {"invitation_id": made["invitation"]["id"], "by": "visitor"},
        wall_ms=NOON_UTC_WINTER_MS,
    )
    store.upload_events("dev-a", [event])
    return store


def _email_row(store: CentralStore) -> dict[str, Any]:
    return next(row for row in store.notifications() if row["channel"] == "email")


@pytest.mark.parametrize("mode", ["starttls", "tls"])
# aiosmtpd's warning for the TLS-from-the-start server (see below): the line is encrypted.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_login_over_tls_and_the_sites_local_time(
    tmp_path: Path, smtp_ca: Any, mode: str
) -> None:
    inbox = Inbox()
    port = free_port()
    if mode == "starttls":
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, authenticator=_authenticator,
            auth_required=True, auth_require_tls=True, tls_context=smtp_ca,
            require_starttls=True,
        )  # fmt: skip
    else:
        # TLS from the first byte; aiosmtpd does not count that as TLS for
        # auth_require_tls (it looks for STARTTLS), hence False: the line is encrypted.
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, authenticator=_authenticator,
            auth_required=True, auth_require_tls=False, ssl_context=smtp_ca,
        )  # fmt: skip
    controller.start()
    try:
        settings = CentralSettings(
            data_dir=tmp_path / "data", smtp_host="127.0.0.1", smtp_port=port,
            smtp_from="portier@example.com", smtp_starttls=mode == "starttls",
            smtp_tls=mode == "tls", smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD,
            time_zone="Europe/Brussels",
        )  # fmt: skip
        with _store_with_a_check_in(settings) as store:
            # The e-mail, and the webhook's row (not configured).
            assert asyncio.run(Notifier(settings, store, _direct).run_once()) == 2
            assert _email_row(store)["status"] == "sent"
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    text = body(inbox.messages[0])
    assert "at 13:00 on Tuesday 8 December 2026." in text, text


def test_a_refused_smtp_login_is_logged_and_retried_not_a_crash(
    tmp_path: Path, smtp_ca: Any, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_authenticator,
        auth_required=True, auth_require_tls=True, tls_context=smtp_ca, require_starttls=True,
    )  # fmt: skip
    controller.start()
    common: dict[str, Any] = {
        "data_dir": tmp_path / "data", "smtp_host": "127.0.0.1", "smtp_port": port,
        "smtp_from": "portier@example.com", "smtp_starttls": True, "smtp_username": SMTP_USER,
        "notify_retry_s": 0.05, "time_zone": "Europe/Brussels",
    }  # fmt: skip
    try:
        wrong = CentralSettings(**common, smtp_password="wrong password")
        with _store_with_a_check_in(wrong) as store:
            with caplog.at_level("INFO", logger="central.notify"):
                assert asyncio.run(Notifier(wrong, store, _direct).run_once()) == 2
            row = _email_row(store)
            assert row["status"] == "pending" and row["attempts"] == 1
            assert "refused the login of 'portier'" in row["last_error"]
            assert "--smtp-password-file" in row["last_error"]
            errors = [r for r in caplog.records if r.levelname == "ERROR"]
            assert errors and "refused the login" in errors[0].getMessage()
            assert SMTP_PASSWORD not in caplog.text and "wrong password" not in caplog.text
            assert inbox.messages == []

            # The password file is fixed and the central restarted: the retry delivers it.
            right = CentralSettings(**common, smtp_password=SMTP_PASSWORD)
            time.sleep(0.1)  # past the retry delay
            assert asyncio.run(Notifier(right, store, _direct).run_once()) == 1
            assert _email_row(store)["status"] == "sent"
    finally:
        controller.stop()
    assert len(inbox.messages) == 1 and "at 13:00 on" in body(inbox.messages[0])


def test_smtp_login_and_time_zone_settings_name_the_bad_key(tmp_path: Path) -> None:
    from central.settings import load_smtp_password

    base: dict[str, Any] = {
        "data_dir": tmp_path, "smtp_host": "mail.example.com", "smtp_from": "p@example.com",
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"smtp_username.*in clear"):
        CentralSettings(**base, smtp_username="u", smtp_password="p")
    with pytest.raises(ConfigError, match="smtp_password"):
        CentralSettings(**base, smtp_username="u", smtp_starttls=True)
    with pytest.raises(ConfigError, match=r"smtp_password.*needs smtp_username"):
        CentralSettings(**base, smtp_password="p", smtp_tls=True)
    with pytest.raises(ConfigError, match="smtp_tls"):
        CentralSettings(**base, smtp_tls=True, smtp_starttls=True)
    with pytest.raises(ConfigError, match=r"time_zone.*IANA"):
        CentralSettings(data_dir=tmp_path, time_zone="Europe/Bruxelles")
    with pytest.raises(ConfigError, match="time_zone"):
        CentralSettings(data_dir=tmp_path, time_zone="../../etc/passwd")
    assert str(CentralSettings(data_dir=tmp_path).zone) == "UTC"
    password = tmp_path / "smtp.password"
    password.write_text("s3cret\n")
    password.chmod(0o644)
    with pytest.raises(ConfigError, match=r"smtp_password_file.*0600"):
        load_smtp_password(password)
    password.chmod(0o600)
    assert load_smtp_password(password) == "s3cret"
    shown = repr(CentralSettings(**base, smtp_username="u", smtp_password="s3cret", smtp_tls=True))
    assert "s3cret" not in shown


def test_serve_refuses_an_unknown_time_zone(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "central", "serve", "--port", "0", "--data", str(tmp_path / "d"),
         "--time-zone", "Mars/Olympus_Mons"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "time_zone" in done.stderr and "Mars/Olympus_Mons" in done.stderr
