"""Host notification: the sender that tells a host their visitor checked in.

The outbox is in the store (:mod:`central.store.notify`): a ``visitor.checked_in`` event
uploaded by a door queues one row per channel in the upload's own transaction. The
:class:`Notifier` runs in the central's event loop (started and stopped with
:class:`central.server.CentralServer`); every ``notify_poll_s`` it claims due rows and
delivers them:

- ``email``: SMTP (:mod:`smtplib` in a worker thread) to the invitation's ``host_email``,
  from ``smtp_from``; STARTTLS when ``smtp_starttls``, TLS from the start when ``smtp_tls``
  (the server's certificate verified), and AUTH as ``smtp_username`` when set; subject and
  body in the invitation's language (:data:`TEMPLATES`, EN and FR), the time of the check-in
  in the site's ``time_zone`` (Babel, en_GB / fr_BE as the kiosk writes dates). A refused
  login is logged as an error naming the setting to check, and retried as any failure.
- ``webhook``: ``POST`` of a JSON object to ``webhook_url``, with
  ``X-Portier-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`` and
  ``X-Portier-Timestamp``; any 2xx is delivered.

A failed attempt is retried after ``notify_retry_s``, doubling up to 10 minutes; attempts
and the last error are recorded. Past ``notify_give_up_s`` after the check-in it is recorded
``failed``. Without SMTP (or without a webhook) the row is recorded ``not_configured``.

The same outbox and sender carry the visitor's invitation (channel ``invitation``, queued by
:mod:`central.store.screening` when an invitation with a ``visitor_email`` is issued or
resent): the e-mail of :func:`central.invitations.invitation_email`, with the PDF attached,
rendered when it is sent; an invitation revoked or expired meanwhile is ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from string import Template
from typing import Any

import aiohttp
from babel.dates import format_date, format_time

from .errors import NotFound, NotIssued, Unavailable
from .invitations import invitation_email
from .settings import CentralSettings
from .store import CentralStore
from .store.screening import INVITATION_CHANNEL

__all__ = [
    "DATE_LOCALES",
    "SIGNATURE_HEADER",
    "TEMPLATES",
    "Notifier",
    "SmtpLoginError",
    "render_email",
    "sign",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Portier-Signature"
TIMESTAMP_HEADER = "X-Portier-Timestamp"
_MAX_BACKOFF_S = 600.0
_SMTP_TIMEOUT_S = 20.0
_WEBHOOK_TIMEOUT_S = 10.0

#: (subject, body) per language; ``$visitor``, ``$host``, ``$door``, ``$site``, ``$time``
#: (``13:00``, the site's local time; ``12:00 UTC`` when the site's zone is UTC) and ``$date``.
TEMPLATES: dict[str, tuple[Template, Template]] = {
    "en": (
        Template("$visitor has arrived at $door"),
        Template(
            "Hello $host,\n\n"
            "$visitor checked in at the $door entrance ($site) at $time on $date.\n"
            "Please come and meet them.\n\n"
            "-- Portier\n"
        ),
    ),
    "fr": (
        Template("$visitor est arrivé(e) à l'entrée $door"),
        Template(
            "Bonjour $host,\n\n"
            "$visitor s'est enregistré(e) à l'entrée $door ($site) à $time le $date.\n"
            "Merci de venir l'accueillir.\n\n"
            "-- Portier\n"
        ),
    ),
}


#: Babel locales for dates, as the kiosk has them (kiosk/ui/screens/denied.py): British
#: English and Belgian French both write the day first.
DATE_LOCALES = {"en": "en_GB", "fr": "fr_BE"}
#: Zones whose local time is UTC: the e-mail then says so.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Zulu", "Etc/Zulu"})


def _when(wall_ms: int | None, lang: str, zone: tzinfo) -> tuple[str, str]:
    """Return ``(time, date)`` of *wall_ms* in *zone*: ``("13:00", "Saturday 5 December
    2026")``, ``("13:00", "samedi 5 décembre 2026")``; the time says ``UTC`` in UTC."""
    moment = datetime.fromtimestamp((wall_ms or 0) / 1000, UTC).astimezone(zone)
    locale = DATE_LOCALES.get(lang, "en_GB")
    time_text = format_time(moment, "HH:mm", locale=locale)
    if str(zone) in _UTC_NAMES:
        time_text += " UTC"
    return time_text, format_date(moment, "EEEE d MMMM y", locale=locale)


def render_email(data: dict[str, Any], zone: tzinfo = UTC) -> tuple[str, str]:
    """Return the (subject, body) of a check-in notification in its language, the time of
    the check-in in *zone* (the site's ``time_zone``)."""
    lang = str(data.get("lang")) if data.get("lang") in TEMPLATES else "en"
    subject, body = TEMPLATES[lang]
    time_text, date_text = _when(data.get("wall_ms"), lang, zone)
    fields = {
        "visitor": data.get("visitor") or ("Un visiteur" if lang == "fr" else "A visitor"),
        "host": data.get("host") or "",
        "door": data.get("door") or "",
        "site": data.get("site") or "",
        "time": time_text,
        "date": date_text,
    }
    # One line: a visitor's name never adds a header to the message.
    return " ".join(subject.substitute(fields).split()), body.substitute(fields)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The webhook's signature header value: ``sha256=`` HMAC-SHA256 of
    ``timestamp + "." + body`` with *secret* (a receiver checks it with
    :func:`hmac.compare_digest` and refuses an old timestamp)."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class SmtpLoginError(RuntimeError):
    """The SMTP server refused the central's login (or offers none): a setting to fix."""


class Notifier:
    """The sender task: claims due notifications from *store* and delivers them.

    *db* runs a store call on the server's database thread (``CentralServer._db``).
    """

    def __init__(self, settings: CentralSettings, store: CentralStore, db: Any) -> None:
        self.settings = settings
        self.store = store
        self._db = db
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._zone = settings.zone

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="central-notifier")

    def wake(self) -> None:
        """Look for due notifications now (after an upload queued some)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Unavailable as exc:  # the database is away (a restart, a failover)
                log.warning("notification sender: %s", exc.detail)
            except Exception:  # a database hiccup: log, wait, go on
                log.exception("notification sender: unexpected error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.notify_poll_s)
            self._wake.clear()

    async def run_once(self) -> int:
        """Deliver what is due now; return how many were attempted."""
        lease_ms = int((_WEBHOOK_TIMEOUT_S + _SMTP_TIMEOUT_S) * 2000)
        items = await self._db(self.store.claim_notifications, 20, lease_ms)
        for item in items:
            await self._deliver(item)
        return len(items)

    async def _deliver(self, item: dict[str, Any]) -> None:
        data, channel = item["data"], item["channel"]
        try:
            if channel == INVITATION_CHANNEL:
                if self.settings.smtp_host is None:
                    await self._db(self.store.finish_notification, item, "not_configured")
                    return
                try:
                    found = await self._db(self.store.invitation_token, data["invitation_id"])
                except (NotIssued, NotFound) as exc:  # revoked, expired since it was queued
                    await self._db(
                        self.store.finish_notification, item, "cancelled", error=exc.detail
                    )
                    return
                if not found["invitation"].get("visitor_email"):
                    await self._db(self.store.finish_notification, item, "no_recipient")
                    return
                await asyncio.to_thread(self._send_invitation, data, found)
            elif channel == "email":
                if self.settings.smtp_host is None:
                    await self._db(self.store.finish_notification, item, "not_configured")
                    return
                if not data.get("host_email"):
                    await self._db(self.store.finish_notification, item, "no_recipient")
                    return
                await asyncio.to_thread(self._send_email, data)
            elif channel == "webhook":
                if self.settings.webhook_url is None:
                    await self._db(self.store.finish_notification, item, "not_configured")
                    return
                await self._post_webhook(data)
            else:
                raise ValueError(f"unknown channel {channel!r}")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            now_ms = self.store.now_ms()
            give_up_at = item["created_ms"] + self.settings.notify_give_up_s * 1000
            backoff = min(
                self.settings.notify_retry_s * 2 ** (item["attempts"] - 1), _MAX_BACKOFF_S
            )
            retry_at = now_ms + int(backoff * 1000)
            if retry_at > give_up_at:
                log.warning("notification %s/%s: giving up (%s)", channel, item["event_id"], error)
                await self._db(self.store.finish_notification, item, "failed", error=error)
            else:
                # A refused login is a setting to fix, not a passing hiccup: say so loudly.
                level = logging.ERROR if isinstance(exc, SmtpLoginError) else logging.INFO
                log.log(
                    level,
                    "notification %s/%s: attempt %d failed (%s), retry in %.1f s",
                    channel,
                    item["event_id"],
                    item["attempts"],
                    error,
                    backoff,
                )
                await self._db(
                    self.store.finish_notification,
                    item,
                    "pending",
                    error=error,
                    retry_at_ms=retry_at,
                )
            return
        log.info("notification %s/%s delivered", channel, item["event_id"])
        await self._db(self.store.finish_notification, item, "sent")

    def _send_email(self, data: dict[str, Any]) -> None:
        settings = self.settings
        assert settings.smtp_host is not None and settings.smtp_from is not None
        subject, body = render_email(data, self._zone)
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = data["host_email"]
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        # One id per check-in: a receiving system can spot a resend after a crash.
        domain = settings.smtp_from.rsplit("@", 1)[-1]
        message["Message-ID"] = make_msgid(idstring=data["event_id"], domain=domain)
        message["Content-Language"] = data.get("lang") or "en"
        message.set_content(body)
        self._smtp_send(message)

    def _send_invitation(self, data: dict[str, Any], found: dict[str, Any]) -> None:
        """The visitor's invitation: its PDF attached, its QR code inline
        (:mod:`central.invitations`), through the same SMTP session as the host e-mails."""
        assert self.settings.smtp_from is not None
        message = invitation_email(
            found["invitation"],
            found["token"],
            site_name=self.settings.site,
            zone=self._zone,
            sender=self.settings.smtp_from,
            message_id=data["event_id"],
        )
        message["Date"] = formatdate(usegmt=True)
        self._smtp_send(message)

    def _smtp_send(self, message: EmailMessage) -> None:
        """Send *message* with the configured SMTP server (the central's one sender)."""
        settings = self.settings
        assert settings.smtp_host is not None
        smtp: smtplib.SMTP
        if settings.smtp_tls:
            smtp = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=_SMTP_TIMEOUT_S,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=_SMTP_TIMEOUT_S)
        with smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username is not None:
                assert settings.smtp_password is not None
                where = f"{settings.smtp_host}:{settings.smtp_port}"
                try:
                    smtp.login(settings.smtp_username, settings.smtp_password)
                except smtplib.SMTPAuthenticationError as exc:
                    error = exc.smtp_error
                    reason = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
                    raise SmtpLoginError(
                        f"the SMTP server {where} refused the login of "
                        f"{settings.smtp_username!r} ({exc.smtp_code} {reason.strip()}): "
                        "check --smtp-username and --smtp-password-file"
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise SmtpLoginError(
                        f"the SMTP server {where} offers no AUTH on this connection: "
                        "check --smtp-starttls / --smtp-tls and --smtp-port"
                    ) from None
            smtp.send_message(message)

    async def _post_webhook(self, data: dict[str, Any]) -> None:
        settings = self.settings
        assert settings.webhook_url is not None and settings.webhook_secret is not None
        body = json.dumps(
            {
                "type": "visitor.checked_in",
                "event_id": data["event_id"],
                "device_id": data["device_id"],
                "invitation_id": data["invitation_id"],
                "visitor": data["visitor"],
                "host": data["host"],
                "site": data["site"],
                "door": data["door"],
                "wall_ms": data["wall_ms"],
                "lang": data["lang"],
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        timestamp = str(int(time.time()))
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_WEBHOOK_TIMEOUT_S)
            )
        async with self._session.post(
            settings.webhook_url,
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(settings.webhook_secret, timestamp, body),
                TIMESTAMP_HEADER: timestamp,
            },
            allow_redirects=False,
        ) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")
