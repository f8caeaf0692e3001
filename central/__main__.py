"""``python -m central``: the same as the ``portier-central`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
