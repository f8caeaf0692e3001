"""Widgets shared by the screens (their look is in ``widgets.kv``).

* :class:`KButton` -- a large, high-contrast button with a role colour;
* :class:`Header` -- door name, clock, the English/French switch, Help (visitor screens);
* :class:`HelpView` -- the confirmation that a guard was called;
* :class:`KeyPad` -- a grid of keys (PIN pad, hex pad, letter pad);
* :class:`Viewfinder` -- the camera's live image with a framing guide;
* :class:`DataLabel` -- text that is data (a name, a time), not a catalogue string.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from kivy.graphics.texture import Texture
from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    OptionProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.widget import Widget

from kiosk.ui import theme

log = logging.getLogger(__name__)

ROLES = ("primary", "ok", "bad", "warn", "neutral", "ghost")


class KLabel(Label):
    """A wrapping label; its text comes from the catalogue (``app.tr._``)."""


class DataLabel(KLabel):
    """A label showing data (names, times, counts) rather than catalogue text.

    The catalogue test skips these; every other label's text must be a
    catalogue translation.
    """


def role_colours(role: str, pressed: bool = False, disabled: bool = False) -> tuple[list, list]:
    """Return ``(background, text colour)`` for a role (see :data:`ROLES`) and state."""
    background, ink = {
        "primary": (theme.PRIMARY, theme.INK),
        "ok": (theme.OK, theme.WHITE),
        "bad": (theme.BAD, theme.WHITE),
        "warn": (theme.WARN, theme.INK),
        "neutral": (theme.NEUTRAL, theme.WHITE),
        "ghost": (theme.BG, theme.WHITE),
    }[role]
    if disabled:
        return list(theme.DISABLED_BG), list(theme.DISABLED_INK)
    if pressed:
        return list(theme.PRESSED), list(theme.INK)
    return list(background), list(ink)


class Pill(Label):
    """A coloured status badge (not a button): the door mode."""

    role = OptionProperty("neutral", options=ROLES)

    def role_colours(self, role: str) -> tuple[list, list]:
        """Return ``(background, text colour)`` of ``role``."""
        return role_colours(role)


class KButton(ButtonBehavior, Label):
    """A touch button at least :data:`theme.TOUCH` units high, coloured by ``role``."""

    role = OptionProperty("neutral", options=ROLES)
    #: The key this button stands for (key pads), or any tag a screen wants.
    key = StringProperty("")
    #: Caption size in units (rules may set ``font_size`` directly instead).
    font_units = NumericProperty(22)
    #: Room kept free left and right of the caption, in units (a key pad's
    #: one-letter keys need little: their letters, not the margin, must fit).
    margin_units = NumericProperty(16)

    def role_colours(self, role: str, pressed: bool, disabled: bool) -> tuple[list, list]:
        """Return ``(background, text colour)`` for a role and state."""
        return role_colours(role, pressed, disabled)


class Header(BoxLayout):
    """Top bar: a title, the clock, the language switch and (visitor screens) Help."""

    title = StringProperty("")
    show_languages = BooleanProperty(True)
    #: Set by the app on visitor screens: the Help button that calls a guard.
    show_help = BooleanProperty(False)
    #: False where the screen says "close the door" itself (the attract screen's banner).
    show_notice = BooleanProperty(True)
    #: True while "Please close the door." replaces the title (visitor screens, door
    #: held or forced open: ``app.door_notice``).
    notice = BooleanProperty(False)


class HelpView(ModalView):
    """The visitor's confirmation after Help: calling, called, or it did not work.

    A tap anywhere closes it; the app closes it after a while and on any screen change.
    """

    state = OptionProperty("calling", options=("calling", "called", "failed"))
    #: ``app.now()`` when it was (re)shown.
    opened_at = NumericProperty(0.0)

    def message(self, state: str, _: Any) -> tuple[str, str]:
        """Return (title, text) of ``state``, translated with ``_``."""
        if state == "failed":
            return (
                _("Help could not be called"),
                _("Please see the guard at the gate."),
            )
        if state == "calling":
            return _("Calling a guard…"), ""
        return _("A guard has been called"), _("Please wait here: someone is on the way.")


class KeyPad(GridLayout):
    """A grid of :class:`KButton` keys; dispatches ``on_key(key)`` when one is pressed.

    ``keys`` lists the key values; ``labels`` maps a key to its caption when
    the caption is not the key itself (``"back"`` -> a translated word).
    """

    keys = ListProperty([])
    labels = ObjectProperty({})
    key_role = StringProperty("neutral")
    #: True: the keys share the pad's height (big PIN keys); False: one touch height each.
    fill = BooleanProperty(False)
    #: Caption size in units.
    key_font = NumericProperty(22)

    __events__ = ("on_key",)

    def on_keys(self, *_args: object) -> None:
        """Rebuild the buttons when the keys change."""
        self.clear_widgets()
        for key in self.keys:
            button = KButton(key=key, role=self.key_role)
            if self.fill:
                button.size_hint_y = 1
            button.font_units = self.key_font
            button.margin_units = 4
            button.bind(on_release=self._pressed)
            self.add_widget(button)
        self._relabel()

    def on_fill(self, *_args: object) -> None:
        """Rebuild the buttons with the new sizing."""
        self.on_keys()

    def on_key_font(self, *_args: object) -> None:
        """Rebuild the buttons with the new caption size."""
        self.on_keys()

    def on_labels(self, *_args: object) -> None:
        """Relabel the keys (a language change arrives through ``labels``)."""
        self._relabel()

    def _relabel(self) -> None:
        for button in self.children:
            button.text = self.labels.get(button.key, button.key)

    def _pressed(self, button: KButton) -> None:
        self.dispatch("on_key", button.key)

    def on_key(self, key: str) -> None:
        """Default handler: nothing (screens bind to it)."""


class QRIcon(Widget):
    """A drawn QR code symbol (three finder patterns and a few modules): "your invitation"."""

    colour = ListProperty(list(theme.PRIMARY))


class BadgeIcon(Widget):
    """A drawn badge with contactless waves: "tap your badge"."""

    colour = ListProperty(list(theme.PRIMARY))


class Viewfinder(Widget):
    """Shows greyscale frames with a square framing guide in the middle.

    :meth:`show` uploads a ``(height, width)`` ``uint8`` image into a texture
    (on the UI thread); the frame keeps its aspect ratio inside the widget.
    """

    texture = ObjectProperty(None, allownone=True)
    #: Size (w, h) of the drawn image inside the widget, and its position.
    image_size = ListProperty([0, 0])
    image_pos = ListProperty([0, 0])
    #: Side of the framing guide square, in widget pixels.
    guide_side = NumericProperty(0)
    #: True to draw the framing guide.
    guide = BooleanProperty(True)
    #: Colour of the guide (turns green while a code is being checked).
    guide_colour = ListProperty(list(theme.PRIMARY))
    last_seq = NumericProperty(-1)

    def show(self, image: np.ndarray, seq: int = -1) -> None:
        """Draw ``image`` (2-D uint8); ``seq`` skips a frame already drawn."""
        if seq >= 0 and seq == self.last_seq:
            return
        height, width = image.shape
        texture = self.texture
        if texture is None or texture.size != (width, height):
            texture = Texture.create(size=(width, height), colorfmt="luminance")
            texture.flip_vertical()
        texture.blit_buffer(
            np.ascontiguousarray(image).tobytes(), colorfmt="luminance", bufferfmt="ubyte"
        )
        self.texture = texture
        self.last_seq = seq
        self.canvas.ask_update()
        self._layout()

    def clear(self) -> None:
        """Forget the image (the camera stopped)."""
        self.texture = None
        self.last_seq = -1

    def on_size(self, *_args: object) -> None:
        """Keep the image and guide fitted to the widget."""
        self._layout()

    def on_pos(self, *_args: object) -> None:
        """Keep the image and guide fitted to the widget."""
        self._layout()

    def _layout(self) -> None:
        texture = self.texture
        tw, th = texture.size if texture is not None else (4, 3)
        scale = min(self.width / tw, self.height / th) if tw and th else 0
        w, h = tw * scale, th * scale
        self.image_size = [w, h]
        self.image_pos = [self.x + (self.width - w) / 2, self.y + (self.height - h) / 2]
        self.guide_side = min(w, h) * 0.72
