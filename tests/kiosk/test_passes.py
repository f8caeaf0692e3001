"""The visitor pass: its QR text, its two layouts, its PDF and the [passes] settings."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from hardware.qr import QRSettings, open_decoder
from kiosk.config import ConfigError, PassSection, parse_config
from kiosk.passes import VisitorPass, render_image, render_pdf
from kiosk.passes.render import format_validity
from portier_common.passes import PassQrError, new_pass_id, parse_pass_qr, pass_qr_text

BRUSSELS = dt.timezone(dt.timedelta(hours=1))
T0 = 1_796_457_600.0  # 2026-12-05 09:00 in Brussels (08:00 UTC)


def make_pass(**fields: object) -> VisitorPass:
    values: dict[str, object] = {
        "pass_id": new_pass_id(),
        "visitor": "Ada Lovelace",
        "host": "Charles Babbage",
        "site": "hq",
        "valid_from": T0,
        "valid_until": T0 + 8 * 3600,
        "issued_at": T0 + 600,
        "doors": ("lobby",),
    }
    values.update(fields)
    return VisitorPass(**values)


def decode(image: Image.Image) -> list[str]:
    decoder = open_decoder(QRSettings())
    return [c.text for c in decoder.decode(np.asarray(image.convert("L")))]


def test_pass_qr_text_round_trips_and_refuses_other_texts() -> None:
    pass_id = new_pass_id()
    assert len(pass_id) == 26
    assert parse_pass_qr(pass_qr_text(pass_id)) == pass_id
    assert new_pass_id() != pass_id
    for bad in ("PT1:ABC", "PV1:abc", "PV1:" + "A" * 25, "PV1:" + "1" * 26):
        with pytest.raises(PassQrError):
            parse_pass_qr(bad)


@pytest.mark.parametrize(
    ("layout", "size_mm"), [("label62", (62.0, 100.0)), ("cr80", (85.6, 53.98))]
)
def test_each_layout_has_its_size_and_a_readable_qr_code(
    layout: str, size_mm: tuple[float, float]
) -> None:
    visitor_pass = make_pass(photo_jpeg=_jpeg())
    image = render_image(visitor_pass, PassSection(layout=layout), "fr", tz=BRUSSELS)
    width_mm, height_mm = (px * 25.4 / 300 for px in image.size)
    assert width_mm == pytest.approx(size_mm[0], abs=0.2)
    assert height_mm == pytest.approx(size_mm[1], abs=0.2)
    assert decode(image) == [visitor_pass.qr_text]


def test_the_band_takes_the_category_colour() -> None:
    section = PassSection()
    for category, colour in (("visitor", "#B71C1C"), ("contractor", "#E65100")):
        image = render_image(make_pass(category=category), section, "en", tz=BRUSSELS)
        assert image.getpixel((5, 5)) == tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    # An unknown category prints as a visitor.
    image = render_image(make_pass(category="alien"), section, "en", tz=BRUSSELS)
    assert image.getpixel((5, 5)) == (0xB7, 0x1C, 0x1C)


def test_the_pdf_is_one_page_of_the_label_size() -> None:
    pdf = render_pdf(make_pass(), PassSection(label_length_mm=90), "en", tz=BRUSSELS)
    assert pdf.startswith(b"%PDF-")
    # 62 x 90 mm in PostScript points (1/72 in).
    boxes = re.findall(rb"/MediaBox \[ ?0 0 ([0-9.]+) ([0-9.]+) ?\]", pdf)
    assert len(boxes) == 1
    width_pt, height_pt = (float(v) for v in boxes[0])
    assert width_pt == pytest.approx(62 / 25.4 * 72, abs=0.5)
    assert height_pt == pytest.approx(90 / 25.4 * 72, abs=0.5)


def test_validity_is_written_like_the_kiosk_writes_dates() -> None:
    assert format_validity(T0, T0 + 8 * 3600, "en", BRUSSELS) == "5 Dec 2026, 09:00–17:00"
    assert format_validity(T0, T0 + 8 * 3600, "fr", BRUSSELS) == "5 déc. 2026, 09:00–17:00"
    two_days = format_validity(T0, T0 + 30 * 3600, "en", BRUSSELS)
    assert two_days == "5 Dec 2026 09:00 – 6 Dec 2026 15:00"


def test_passes_settings_are_checked_and_errors_name_the_key() -> None:
    camera = {"backend": "replay", "replay_path": "x"}
    cfg = parse_config({"camera": camera, "passes": {"layout": "cr80"}}, base_dir=_here())
    assert cfg.passes.layout == "cr80"
    for table, key in (
        ({"layout": "a4"}, "passes.layout"),
        ({"dpi": 50}, "passes.dpi"),
        (
            {"categories": [{"id": "visitor", "colour": "red", "en": "V", "fr": "V"}]},
            "passes.categories[0].colour",
        ),
        (
            {"categories": [{"id": "vip", "colour": "#000000", "en": "V", "fr": "V"}]},
            "passes.categories",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config({"camera": camera, "passes": table}, base_dir=_here())
        assert caught.value.key == key


def _here() -> Path:
    return Path(__file__).parent


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (240, 320), "#7a8ca0").save(out, "JPEG")
    return out.getvalue()


class FakeClient:
    """``print_pass`` of the agent's client: records the PDF, or raises ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[bytes, str, str]] = []

    def print_pass(self, pdf: bytes, *, pass_id: str, invitation_id: str) -> dict[str, object]:
        if self.error is not None:
            raise self.error
        self.sent.append((pdf, pass_id, invitation_id))
        return {"printed": True, "job": "labels-1", "pass_id": pass_id}


def test_the_check_in_pass_is_rendered_from_the_invitation_and_sent() -> None:
    from edge_agent.client import AgentUnavailable, ApiError
    from kiosk.config import parse_config
    from kiosk.passes.printing import GUARD, NO_PRINTER, PRINTED, print_checkin_pass
    from portier_common.tokens import InvitationClaims, SigningKey, mint

    claims = InvitationClaims(
        invitation_id="inv-ada",
        visitor="Ada Lovelace",
        site="hq",
        not_before=int(T0),
        expires=int(T0) + 8 * 3600,
        single_use=False,
        doors=("gate-a",),
        host="Charles Babbage",
        extra={"category": "contractor"},
    )
    token = mint(claims, SigningKey.generate("k1"))
    config = parse_config({"camera": {"backend": "replay", "replay_path": "x"}}, _here())
    client = FakeClient()
    kwargs: dict[str, Any] = {
        "token": token,
        "invitation_id": "inv-ada",
        "pass_id": "VE3D4WJ6Q2ZK5M7XN4P3L2H6AA",  # the check-in answered it
        "config": config,
        "lang": "fr",
    }
    assert print_checkin_pass(client, now=T0, **kwargs) == PRINTED
    pdf, pass_id, invitation_id = client.sent[0]
    assert invitation_id == "inv-ada"
    assert pdf.startswith(b"%PDF-")
    assert pass_id == "VE3D4WJ6Q2ZK5M7XN4P3L2H6AA"
    # No pass id in the check-in's answer: nothing printed, a guard hands the pass.
    assert print_checkin_pass(FakeClient(), now=T0, **{**kwargs, "pass_id": ""}) == GUARD
    refused = ApiError(503, "printer_unavailable", "jammed", {})
    assert print_checkin_pass(FakeClient(refused), now=T0, **kwargs) == GUARD
    none = ApiError(409, "no_printer", "none", {})
    assert print_checkin_pass(FakeClient(none), now=T0, **kwargs) == NO_PRINTER
    down = AgentUnavailable("socket gone")
    assert print_checkin_pass(FakeClient(down), now=T0, **kwargs) == GUARD


def test_the_muster_list_renders_on_pages_of_the_pass_layout() -> None:
    from kiosk.config import PassSection
    from kiosk.passes.muster import render_muster_pages, render_muster_pdf

    entry = {"visitor": "Ada Lovelace", "host": "Charles Babbage", "entered_at": T0}
    answer = {"at": T0 + 60, "door_id": "gate-a", "visitors": [entry] * 30}
    label = PassSection()
    pages = render_muster_pages(answer, label, "fr")
    assert len(pages) > 1
    assert all(p.size == (732, 1181) for p in pages)  # 62 x 100 mm at 300 dpi
    card = render_muster_pages(answer, PassSection(layout="cr80"), "en")
    assert card[0].size[0] < card[0].size[1]  # a card turned upright
    assert len(render_muster_pages({"visitors": []}, label, "en")) == 1
    pdf = render_muster_pdf(answer, label, "en", "Main gate")
    assert pdf.startswith(b"%PDF-") and f"/Count {len(pages)}".encode() in pdf
