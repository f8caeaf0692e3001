"""Colours and sizes of the kiosk: high contrast, large touch targets.

Contrast ratios (WCAG 2.x relative luminance) of the text/background pairs used:
white on :data:`BG` 18.0:1, on :data:`PANEL` 14.2:1, on :data:`NEUTRAL` 8.3:1,
on :data:`OK` 6.0:1 and on :data:`BAD` 7.3:1; :data:`INK` on :data:`PRIMARY`
14.4:1 and on :data:`WARN` 9.8:1; :data:`MUTED` on :data:`BG` 10.5:1 and on
:data:`PANEL` 8.3:1; a disabled button's :data:`DISABLED_INK` on :data:`DISABLED_BG`
6.0:1 -- all above WCAG AAA's 4.5:1 for large text.
``tests/kiosk/test_kiosk_units.py`` recomputes them.

Sizes are in *units*: one unit is one pixel on the 800x480 official display
and scales with the window (``app.u``), so a 1920x1080 screen shows the same
layout 2.25 times larger. The smallest touch target is :data:`TOUCH` units:
56 px on the 7" display (154 mm wide, 800 px), about 10.8 mm, enough for a
gloved finger.
"""

from __future__ import annotations

#: Design size in pixels (the official Raspberry Pi 7" touch display).
DESIGN_SIZE = (800, 480)
#: Smallest touch target, in units.
TOUCH = 56

BG = (0.04, 0.09, 0.16, 1)  # #0A1729 deep navy
PANEL = (0.10, 0.17, 0.27, 1)  # #1A2B45
INK = (0.0, 0.0, 0.0, 1)
WHITE = (1, 1, 1, 1)
MUTED = (0.72, 0.78, 0.86, 1)  # #B8C7DB secondary text
PRIMARY = (1.0, 0.82, 0.0, 1)  # #FFD100 signal yellow: the main action
OK = (0.0, 0.45, 0.20, 1)  # #007333 green
BAD = (0.69, 0.0, 0.13, 1)  # #B00021 red
WARN = (1.0, 0.60, 0.0, 1)  # #FF9900 amber
NEUTRAL = (0.23, 0.31, 0.42, 1)  # #3B4F6B secondary buttons
PRESSED = (0.55, 0.62, 0.72, 1)
#: A disabled button: greyed out, still readable (6.0:1; Kivy draws a disabled label in
#: its ``disabled_color``, white at 30 % by default: 2.7:1).
DISABLED_BG = (0.16, 0.20, 0.26, 1)
DISABLED_INK = (0.66, 0.70, 0.76, 1)
