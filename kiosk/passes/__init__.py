"""Visitor passes: what a pass says (:class:`VisitorPass`) and its rendering to PDF.

The kiosk renders the pass itself (Pillow, at the printer's resolution) and hands the
PDF on to be printed through CUPS; no printer protocol is written here. Layouts, the
QR code's content and the supported printers are in docs/passes.md.

Importing this package has no side effects (no Kivy, no printer, no network).
"""

from kiosk.passes.model import VisitorPass, pass_from_claims
from kiosk.passes.render import PASS_WORDS, render_image, render_pdf

__all__ = ["PASS_WORDS", "VisitorPass", "pass_from_claims", "render_image", "render_pdf"]
