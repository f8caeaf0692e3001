"""``python -m portier_demo``: same as ``portier-demo``."""

import sys

from portier_demo.cli import main

sys.exit(main())
