"""Make the pictures of badge card faces in docs/badges/ from the PDFs the station renders.

    PYTHONPATH=. .venv/bin/python tools/make_badge_faces.py [OUT_DIR]

Each picture is the face's PDF (central.station.cardface.face_pdf, what ``portier-badge
issue --print-queue`` sends to the card printer) turned into a PNG by poppler's ``pdftoppm``
at 150 dpi. The photo is the drawn silhouette of tools/make_pass_images.py; the validity
is fixed (30 June 2027) so the pictures change only when the layout does.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

from central.station.cardface import CardFace, face_pdf

sys.path.insert(0, str(Path(__file__).parent))
from make_pass_images import silhouette

UNTIL = int(dt.datetime(2027, 6, 30, 12, tzinfo=dt.UTC).timestamp())


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    staff = CardFace("Grace Hopper", site="Portier HQ", valid_until=UNTIL, photo_jpeg=silhouette())
    guard = CardFace(
        "Gabrielle Roy", site="Portier HQ", valid_until=UNTIL, role="guard",
        photo_jpeg=silhouette(),
    )  # fmt: skip
    jobs = [
        ("card-face-en.png", staff, "en"),
        ("card-face-fr.png", staff, "fr"),
        ("card-face-guard-en.png", guard, "en"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, face, lang in jobs:
            pdf = Path(tmp) / "face.pdf"
            pdf.write_bytes(face_pdf(face, lang=lang, tz=dt.UTC))
            stem = Path(tmp) / "page"
            subprocess.run(
                ["pdftoppm", "-png", "-r", "150", "-singlefile", str(pdf), str(stem)], check=True
            )
            (out_dir / name).write_bytes(stem.with_suffix(".png").read_bytes())
            print(out_dir / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/badges"))
