"""The Pass Office and security office web console, served by the central at ``/console/``.

HTML pages rendered on the server (Jinja2), plain forms that work without JavaScript,
English and French (gettext catalogues, :mod:`central.console.i18n`), CSS served by the
central itself. :class:`~central.console.app.Console` holds the routes; the central's
server (``central/server.py``) adds them to its application. Nothing happens at import.
docs/console.md says what exists and how to add a page.
"""

from __future__ import annotations

from .app import PAGES, Console, Page

__all__ = ["PAGES", "Console", "Page"]
