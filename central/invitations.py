"""The invitation as the visitor gets it: a printable A4 PDF and the e-mail that carries it.

The PDF is drawn like the kiosk's visitor passes (:mod:`portier_common.pagedraw`: Pillow at
a printer's resolution, whole-pixel QR modules, Roboto), in black on white only, so it
prints the same on a black-and-white printer and reads on a phone: the visitor's name, the
QR code of the signed token (large, with its quiet zone), when it is valid, the entrance
(doors and zones), the host, and plain steps for the gate, in the invitation's language
(EN or FR, :data:`WORDS`). Dates and times are in the site's ``time_zone`` (Babel, en_GB /
fr_BE as the kiosk and the host e-mails write them).

The e-mail (:func:`invitation_email`) has a plain-text part, an HTML part with the QR code
inline (``cid:``, no remote image: a mail client that blocks remote images still shows it)
and the PDF attached. The central's one sender (:class:`central.notify.Notifier`) builds
and sends it from an outbox row (:mod:`central.store.screening`).
"""

from __future__ import annotations

import datetime as dt
import html
import io
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from aiohttp import web
from babel.dates import format_date

from portier_common import pagedraw

__all__ = [
    "A4_MM",
    "DPI",
    "WORDS",
    "invitation_email",
    "pdf_response",
    "qr_png",
    "render_image",
    "render_pdf",
]

A4_MM = (210.0, 297.0)
#: A printer's resolution: sharp text and QR code. The page is saved as pure black and
#: white (1 bit, compressed without loss): about 30 kB, and no grey a printer could blur.
DPI = 300
_LOCALES = {"en": "en_GB", "fr": "fr_BE"}

#: Every word the PDF and the e-mail say, per language.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "band": "INVITATION",
        "title": "Your visit to {site}",
        "valid": "Valid",
        "host": "Your host",
        "where": "Entrance",
        "use_single": "This code opens the gate once.",
        "use_multiple": "This code opens the gate as often as needed while it is valid.",
        "steps": "At the gate",
        "step1": "Go to the visitor kiosk at the entrance.",
        "step2": "Show this code to the camera of the kiosk, on this paper or on your phone "
        "(screen brightness up).",
        "step3": "Follow what the kiosk says. The gate opens when your code is accepted.",
        "step4": "This invitation is personal: do not share it. Bring an identity document.",
        "ref": "Invitation {id}",
        "subject": "Your invitation to {site}, {date}",
        "greeting": "Hello {visitor},",
        "body": "You are expected at {site}{host_part}. Your invitation is valid {when}.",
        "host_part": " by {host}",
        "body2": "At the gate, show the QR code below (or the attached PDF, printed or on your "
        "phone) to the camera of the visitor kiosk.",
        "signature": "-- Portier, for {site}",
        "pdf_name": "invitation-{id}.pdf",
    },
    "fr": {
        "band": "INVITATION",
        "title": "Votre visite à {site}",
        "valid": "Valable",
        "host": "Votre hôte",
        "where": "Entrée",
        "use_single": "Ce code ouvre l'accès une seule fois.",
        "use_multiple": "Ce code ouvre l'accès autant de fois que nécessaire pendant sa validité.",
        "steps": "À l'entrée",
        "step1": "Rendez-vous à la borne d'accueil des visiteurs, à l'entrée.",
        "step2": "Présentez ce code à la caméra de la borne, sur ce papier ou sur votre "
        "téléphone (luminosité de l'écran au maximum).",
        "step3": "Suivez les indications de la borne. L'accès s'ouvre quand votre code est "
        "accepté.",
        "step4": "Cette invitation est personnelle : ne la partagez pas. Munissez-vous d'une "
        "pièce d'identité.",
        "ref": "Invitation {id}",
        "subject": "Votre invitation à {site}, {date}",
        "greeting": "Bonjour {visitor},",
        "body": "Vous êtes attendu(e) à {site}{host_part}. Votre invitation est valable {when}.",
        "host_part": " par {host}",
        "body2": "À l'entrée, présentez le code QR ci-dessous (ou le PDF joint, imprimé ou sur "
        "votre téléphone) à la caméra de la borne d'accueil.",
        "signature": "-- Portier, pour {site}",
        "pdf_name": "invitation-{id}.pdf",
    },
}


def _words(invitation: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    lang = invitation.get("lang") if invitation.get("lang") in WORDS else "en"
    assert isinstance(lang, str)
    return lang, WORDS[lang]


def _local(seconds: int, zone: dt.tzinfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).astimezone(zone)


def validity(invitation: Mapping[str, Any], zone: dt.tzinfo) -> str:
    """``Saturday 5 December 2026, 09:00 – 17:00`` (one day) or ``5 December 2026 09:00 –
    7 December 2026 17:00``, in the invitation's language and the site's time."""
    lang, _ = _words(invitation)
    locale = _LOCALES[lang]
    start, end = _local(invitation["not_before"], zone), _local(invitation["expires"], zone)
    if start.date() == end.date():
        day = format_date(start, "EEEE d MMMM y", locale=locale)
        return f"{day}, {start:%H:%M} – {end:%H:%M}"
    return (
        f"{format_date(start, 'd MMMM y', locale=locale)} {start:%H:%M} – "
        f"{format_date(end, 'd MMMM y', locale=locale)} {end:%H:%M}"
    )


def _where(invitation: Mapping[str, Any]) -> str:
    return ", ".join([*invitation.get("doors", ()), *invitation.get("zones", ())])


def render_image(
    invitation: Mapping[str, Any], token: str, *, site_name: str, zone: dt.tzinfo
) -> Any:
    """The A4 page of the invitation (an RGB Pillow image at :data:`DPI`)."""
    _, words = _words(invitation)
    width, height = A4_MM
    margin = 18.0
    text_w = width - 2 * margin
    page = pagedraw.Canvas(width, height, DPI)
    page.band(16.0, "black", words["band"])
    y = page.line(margin, 24.0, words["title"].format(site=site_name), text_w, 7.0)
    y = page.line(margin, y + 1.0, " ".join(invitation["visitor"].split()), text_w, 12.0, bold=True)
    # The code: large and centred, the one thing the kiosk's camera needs.
    qr_size = 95.0
    qr_top = y + 3.0
    page.qr(token, (width - qr_size) / 2, qr_top, qr_size)
    y = qr_top + qr_size + 3.0
    label_w = 38.0
    rows = [(words["valid"], validity(invitation, zone))]
    if invitation.get("host"):
        rows.append((words["host"], invitation["host"]))
    rows.append((words["where"], _where(invitation)))
    for label, value in rows:
        page.line(margin, y, label, label_w - 2.0, 5.0, bold=True)
        y = page.paragraph(margin + label_w, y, value, text_w - label_w, 5.0)
    use = words["use_single"] if invitation.get("single_use") else words["use_multiple"]
    y = page.paragraph(margin, y + 1.0, use, text_w, 4.6)
    # The steps, framed: what to do at the gate, readable from arm's length.
    box_top = y + 4.0
    y = page.line(margin + 5.0, box_top + 4.0, words["steps"], text_w - 10.0, 6.0, bold=True)
    for number, key in enumerate(("step1", "step2", "step3", "step4"), start=1):
        page.line(margin + 5.0, y, f"{number}.", 8.0, 4.8, bold=True)
        y = page.paragraph(margin + 13.0, y, words[key], text_w - 18.0, 4.8) + 0.8
    page.box(margin, box_top, text_w, y - box_top + 2.0, 0.6)
    page.line(
        margin,
        height - 12.0,
        words["ref"].format(id=invitation["id"]),
        text_w,
        3.6,
        fill="black",
    )
    return page.image


def render_pdf(
    invitation: Mapping[str, Any], token: str, *, site_name: str, zone: dt.tzinfo
) -> bytes:
    """The invitation as a one-page A4 PDF (see :func:`render_image`)."""
    image = render_image(invitation, token, site_name=site_name, zone=zone)
    bilevel = image.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
    return pagedraw.pdf_bytes(
        bilevel, DPI, title=f"Invitation {invitation['id']}", creator="Portier central"
    )


def pdf_response(pdf: bytes, invitation_id: str) -> web.Response:
    """The PDF as a download (the admin API's and the console's): never cached, it holds
    a token that opens the gate."""
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="invitation-{invitation_id}.pdf"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def qr_png(token: str, size_px: int = 480) -> bytes:
    """The QR code alone as a PNG (the e-mail's inline image)."""
    out = io.BytesIO()
    pagedraw.qr_image(token, size_px).save(out, "PNG")
    return out.getvalue()


def invitation_email(
    invitation: Mapping[str, Any],
    token: str,
    *,
    site_name: str,
    zone: dt.tzinfo,
    sender: str,
    message_id: str,
) -> EmailMessage:
    """The e-mail to ``invitation["visitor_email"]``: text, HTML with the QR code inline,
    the PDF attached. *message_id* names this sending (a resend is another message)."""
    lang, words = _words(invitation)
    when = validity(invitation, zone)
    visitor = " ".join(invitation["visitor"].split())
    host_part = words["host_part"].format(host=invitation["host"]) if invitation.get("host") else ""
    lines = [
        words["greeting"].format(visitor=visitor),
        "",
        words["body"].format(site=site_name, host_part=host_part, when=when),
        words["where"] + ": " + _where(invitation),
        "",
        words["body2"],
        "",
        *(f"{n}. {words[f'step{n}']}" for n in range(1, 5)),
        "",
        words["signature"].format(site=site_name),
    ]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = invitation["visitor_email"]
    start = _local(invitation["not_before"], zone)
    first_day = format_date(start, "d MMMM y", locale=_LOCALES[lang])
    # One line: a visitor's name never adds a header to the message.
    subject = words["subject"].format(site=site_name, date=first_day)
    message["Subject"] = " ".join(subject.split())
    message["Message-ID"] = make_msgid(
        idstring=message_id.replace("/", "."), domain=sender.rsplit("@", 1)[-1]
    )
    message["Content-Language"] = lang
    message.set_content("\n".join(lines) + "\n")
    qr_cid = make_msgid(domain="portier.invalid")
    esc = html.escape
    paragraphs = "".join(f"<p>{esc(line)}</p>" for line in lines[:4] if line)
    steps = "".join(f"<li>{esc(words[f'step{n}'])}</li>" for n in range(1, 5))
    message.add_alternative(
        f'<!DOCTYPE html><html lang="{lang}"><body style="font-family:sans-serif">'
        f"{paragraphs}<p>{esc(words['body2'])}</p>"
        f'<p><img src="cid:{qr_cid[1:-1]}" width="240" height="240" alt="QR"></p>'
        f"<h2>{esc(words['steps'])}</h2><ol>{steps}</ol>"
        f"<p>{esc(words['signature'].format(site=site_name))}</p></body></html>",
        subtype="html",
    )
    html_part = message.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(qr_png(token), "image", "png", cid=qr_cid, filename="invitation-qr.png")
    message.add_attachment(
        render_pdf(invitation, token, site_name=site_name, zone=zone),
        maintype="application",
        subtype="pdf",
        filename=words["pdf_name"].format(id=invitation["id"]),
    )
    return message
