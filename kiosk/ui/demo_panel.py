"""The demo panel (``kiosk --demo``): present credentials and drive the simulated door.

Invitations are held up to the demo camera (:mod:`kiosk.demo_camera`), so the
real scan path decodes them; badges are tapped on the agent's simulated reader
(``POST /v1/sim/badge``); the door contact and the fire alarm go through
``/v1/sim/...``. Open it with the header's Demo button or F12.

Every invitation of the demo material has a button (valid, expired, forged,
not yet valid, for another door, revoked, already used), each leading to its
own answer from the agent; a label the material lacks shows a greyed-out button.
"Show my pass" holds the pass of the demo's last check-in up to the camera (its QR code,
``PV1:<pass id>``), so that check-out can be tried: greyed out until a check-in.
"""

from __future__ import annotations

from kivy.app import App
from kivy.uix.modalview import ModalView

from kiosk.i18n import N_

#: Demo panel buttons: (msgid, material label), one per label of
#: :data:`kiosk.demo_material.INVITATION_LABELS`.
INVITATION_BUTTONS = (
    (N_("Valid invitation"), "valid"),
    (N_("Expired invitation"), "expired"),
    (N_("Forged invitation"), "forged"),
    (N_("Invitation not valid yet"), "not_yet_valid"),
    (N_("Invitation for another door"), "wrong_door"),
    (N_("Cancelled invitation"), "revoked"),
    (N_("Invitation already used"), "replayed"),
)
BADGE_BUTTONS = (
    (N_("Staff badge"), "staff"),
    (N_("Unknown badge"), "unknown"),
    (N_("Withdrawn badge"), "revoked"),
    (N_("Guard badge"), "guard"),
)
#: Holds the pass of the demo's last check-in up to the camera (check-out).
SHOW_PASS = N_("Show my pass")
#: Simulated door inputs: (msgid, sim action, on, role).
SIM_BUTTONS = (
    (N_("Open the door"), "door_open", True, "neutral"),
    (N_("Close the door"), "door_close", True, "neutral"),
    (N_("Exit button"), "rex", True, "neutral"),
    (N_("Fire alarm on"), "fire", True, "bad"),
    (N_("Fire alarm off"), "fire", False, "neutral"),
    (N_("Tamper"), "tamper", True, "neutral"),
)


class DemoPanel(ModalView):
    """A modal grid of demo actions; every button closes the panel."""

    def on_kv_post(self, base_widget: object) -> None:
        """Fill the grid: one button per invitation, badge and simulated input."""
        from kiosk.ui.widgets import KButton

        grid = self.ids.grid
        app = App.get_running_app()
        tr = app.tr

        def add(msgid: str, action: object, *, disabled: bool = False, role: str = "neutral"):
            button = KButton(role=role, disabled=disabled)
            button.font_units = 18
            button.text = tr._(msgid)
            # A language switch re-labels the panel like every kv rule.
            tr.bind(_=lambda _tr, fn, b=button, m=msgid: setattr(b, "text", fn(m)))
            button.bind(on_release=lambda _b, act=action: act())
            grid.add_widget(button)
            return button

        for msgid, label in INVITATION_BUTTONS:
            add(
                msgid,
                lambda label=label: self.invitation(label),
                disabled=not self.available("invitation", label),
            )
        for msgid, label in BADGE_BUTTONS:
            add(
                msgid,
                lambda label=label: self.badge(label),
                disabled=not self.available("badge", label),
            )
        for msgid, action, on, role in SIM_BUTTONS:
            add(msgid, lambda action=action, on=on: self.sim(action, on), role=role)
        self._pass_button = add(SHOW_PASS, self.show_pass, disabled=not app.demo_pass_qr)

    def on_pre_open(self) -> None:
        """ "Show my pass" works once a check-in gave the demo visitor a pass."""
        button = getattr(self, "_pass_button", None)
        if button is not None:
            button.disabled = not App.get_running_app().demo_pass_qr

    def show_pass(self) -> None:
        """Show the pass of the last check-in to the camera: the visitor checks out."""
        self.dismiss(animation=False)
        App.get_running_app().demo_pass()

    def invitation(self, label: str) -> None:
        """Show the material's ``label`` invitation to the camera."""
        self.dismiss(animation=False)
        App.get_running_app().demo_invitation(label)

    def badge(self, label: str) -> None:
        """Tap the material's ``label`` badge on the simulated reader."""
        self.dismiss(animation=False)
        App.get_running_app().demo_badge(label)

    def sim(self, action: str, on: bool = True) -> None:
        """Simulated door contact / fire alarm."""
        self.dismiss(animation=False)
        App.get_running_app().demo_sim(action, on=on)

    def available(self, kind: str, label: str) -> bool:
        """True when the demo material has this invitation or badge."""
        material = App.get_running_app().material
        if material is None:
            return False
        if kind == "invitation":
            return material.invitation(label) is not None
        if label == "guard":
            return material.guard is not None
        return material.badge(label) is not None

    def quit(self) -> None:
        """Leave the demo."""
        self.dismiss(animation=False)
        App.get_running_app().quit()
