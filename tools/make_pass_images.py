"""Make the pictures of printed passes in docs/passes/ from the PDFs the kiosk renders.

    PYTHONPATH=. .venv/bin/python tools/make_pass_images.py [OUT_DIR]

Each picture is the pass's PDF (kiosk.passes.render_pdf) turned into a PNG by poppler's
``pdftoppm`` at 150 dpi, as a printer would receive it. The visitor's photo is a drawn
silhouette standing in for a consented check-in photo. Times are fixed (5 December 2026,
Brussels) so the pictures change only when the layout does.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from kiosk.config import PassSection
from kiosk.passes import VisitorPass, render_pdf

BRUSSELS = dt.timezone(dt.timedelta(hours=1))
T0 = 1_796_457_600.0  # 2026-12-05 09:00 Brussels
NAMES = {"gate-a": {"en": "Main entrance", "fr": "Entrée principale"}}


def silhouette() -> bytes:
    image = Image.new("RGB", (300, 400), "#c9d3dd")
    draw = ImageDraw.Draw(image)
    draw.ellipse((95, 60, 205, 185), fill="#6d7f91")
    draw.ellipse((40, 210, 260, 460), fill="#6d7f91")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    visitor_pass = VisitorPass(
        pass_id="VE3D4WJ6Q2ZK5M7XN4P3L2H6AA",
        visitor="Ada Lovelace",
        host="Charles Babbage",
        site="hq",
        valid_from=T0,
        valid_until=T0 + 8 * 3600,
        issued_at=T0 + 300,
        doors=("gate-a",),
        photo_jpeg=silhouette(),
    )
    contractor = VisitorPass(
        pass_id="KQ7M2XWD5N3PZL4HJ6R2TBVAAA",
        visitor="Jean-Baptiste Tremblay-Dubois",
        host="Grace Hopper",
        site="hq",
        valid_from=T0,
        valid_until=T0 + 30 * 3600,
        issued_at=T0 + 300,
        doors=("gate-a",),
        zones=("perimeter",),
        category="contractor",
    )
    site = PassSection(site_name="Portier HQ, Brussels")
    jobs = [
        ("pass-label62-en.png", visitor_pass, site, "en"),
        ("pass-label62-fr.png", visitor_pass, site, "fr"),
        (
            "pass-cr80-en.png",
            contractor,
            PassSection(layout="cr80", site_name=site.site_name),
            "en",
        ),
        (
            "pass-cr80-fr.png",
            visitor_pass,
            PassSection(layout="cr80", site_name=site.site_name),
            "fr",
        ),
    ]
    with tempfile.TemporaryDirectory() as folder:
        for name, card, section, lang in jobs:
            pdf = Path(folder) / "pass.pdf"
            pdf.write_bytes(render_pdf(card, section, lang, place_names=NAMES, tz=BRUSSELS))
            target = out_dir / name
            subprocess.run(
                [
                    "pdftoppm",
                    "-png",
                    "-r",
                    "150",
                    "-singlefile",
                    str(pdf),
                    str(target.with_suffix("")),
                ],
                check=True,
                timeout=60,
            )
            print(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/passes"))
