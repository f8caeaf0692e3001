"""The agent prints the visitor passes and turns the printer's state into an alarm.

A mock printer here (the CUPS backend has its own tests against a real cupsd, in
tests/hardware/test_printer_cups.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import ActionError
from edge_agent.api import action_status
from edge_agent.passdesk import STATE_TTL_S
from hardware.printer import PrinterStatus
from portier_common.passes import new_pass_id, pass_hash
from tests.edge_agent.test_agent import rigs

PRINTER = {"printer": {"backend": "mock", "queue": "labels"}}
PDF = b"%PDF-1.4\n% a pass\n"


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    with rigs(tmp_path) as build:
        yield build


def alarms(rig: Any) -> dict[str, Any]:
    return {a["alarm"]: a for a in rig.agent.status()["door"]["alarms"]}


def checked_in(rig: Any, ident: str = "inv-bob") -> str:
    """Check ``ident`` in (a guard's manual check-in); return the pass id it answers."""
    return rig.agent.checkin(ident, consent=False, photo=None, token=rig.login())["pass_id"]


def test_a_pass_is_printed_and_journaled(make_rig: Any) -> None:
    rig = make_rig(hardware=PRINTER)
    assert rig.agent.status()["printer"] == {
        "name": "labels",
        "status": "ready",
        "can_print": True,
        "reasons": [],
        "message": "",
    }
    pass_id = checked_in(rig)
    answer = rig.agent.print_pass(PDF, pass_id=pass_id, invitation_id="inv-bob")
    assert answer == {"printed": True, "job": "labels-1", "pass_id": pass_id}
    assert rig.devices.printer.jobs[0][2] == PDF
    # The journal (synced, and published on the event stream) holds the pass's hash only.
    assert rig.events("pass.printed")[-1].payload == {
        "pass_hash": pass_hash(pass_id),
        "invitation_id": "inv-bob",
        "by": "visitor",
        "reprint": False,
        "job": "labels-1",
    }
    # A guard's reprint: a new pass id (the old pass stops working), printed, says who.
    token = rig.login()
    reissued = rig.agent.reissue_pass(token, "inv-bob")
    assert reissued["visitor"] == "Bob Builder" and reissued["pass_id"] != pass_id
    with pytest.raises(ActionError) as old:
        rig.agent.print_pass(PDF, pass_id=pass_id, invitation_id="inv-bob", token=token)
    assert (old.value.code, action_status(old.value)) == ("wrong_pass", 403)
    rig.agent.print_pass(PDF, pass_id=reissued["pass_id"], invitation_id="inv-bob", token=token)
    last = rig.events("pass.printed")[-1].payload
    assert last["by"] == "guard:g-7" and last["reprint"] is True
    (event,) = rig.events("visitor.pass_reissued")
    assert event.payload["pass_hash"] == pass_hash(reissued["pass_id"])
    assert pass_id not in str([e.payload for e in rig.store.journal.events(from_seq=1)])


def test_a_pass_id_the_agent_did_not_give_is_not_printed(make_rig: Any) -> None:
    rig = make_rig(hardware=PRINTER)
    checked_in(rig)
    with pytest.raises(ActionError) as refused:
        rig.agent.print_pass(PDF, pass_id=new_pass_id(), invitation_id="inv-bob")
    assert (refused.value.code, action_status(refused.value)) == ("wrong_pass", 403)
    assert rig.devices.printer.jobs == []


def test_a_jammed_printer_is_an_alarm_and_the_failure_is_journaled(make_rig: Any) -> None:
    rig = make_rig(hardware=PRINTER)
    assert "printer_fault" not in alarms(rig)
    rig.devices.printer.set_state(PrinterStatus.JAMMED, "media-jam-error", message="Jam")
    rig.clock.advance(STATE_TTL_S + 1)
    status = rig.agent.status()
    assert status["printer"]["status"] == "jammed"
    assert alarms(rig)["printer_fault"]["active"]
    assert rig.events("alarm.raised")[-1].payload["alarm"] == "printer_fault"
    with pytest.raises(ActionError) as refused:
        rig.agent.print_pass(PDF, pass_id=checked_in(rig), invitation_id="inv-bob")
    assert refused.value.code == "printer_unavailable"
    assert action_status(refused.value) == 503
    failed = rig.events("pass.print_failed")[-1].payload
    assert failed["printer"]["status"] == "jammed"
    assert failed["by"] == "visitor"
    assert rig.devices.printer.jobs == []
    # Cleared: the alarm ends by itself.
    rig.devices.printer.set_state(PrinterStatus.READY)
    rig.clock.advance(STATE_TTL_S + 1)
    assert rig.agent.status()["printer"]["can_print"]
    assert not alarms(rig).get("printer_fault", {"active": False})["active"]


def test_without_a_printer_there_is_nothing_to_print_on(make_rig: Any) -> None:
    rig = make_rig()
    assert rig.agent.status()["printer"] is None
    with pytest.raises(ActionError) as refused:
        rig.agent.print_pass(PDF, pass_id=new_pass_id(), invitation_id="inv-ada")
    assert refused.value.code == "no_printer"
    assert action_status(refused.value) == 409


@pytest.mark.parametrize(
    ("pdf", "pass_id"),
    [(b"not a pdf", None), (PDF, "PV1:not-an-id"), (PDF, "abc")],
)
def test_a_bad_request_prints_nothing(make_rig: Any, pdf: bytes, pass_id: str | None) -> None:
    rig = make_rig(hardware=PRINTER)
    with pytest.raises(ActionError) as refused:
        rig.agent.print_pass(pdf, pass_id=pass_id or new_pass_id(), invitation_id="inv-ada")
    assert refused.value.code == "bad_request"
    assert rig.devices.printer.jobs == []


def test_the_muster_list_is_printed_and_journaled(make_rig: Any) -> None:
    rig = make_rig(hardware=PRINTER)
    assert rig.agent.print_muster(PDF) == {"printed": True, "job": "labels-1"}
    assert rig.events("muster.printed")[-1].payload == {"job": "labels-1"}
    with pytest.raises(ActionError) as bad:
        rig.agent.print_muster(b"not a pdf")
    assert bad.value.code == "bad_request"
    rig.devices.printer.set_state(PrinterStatus.JAMMED, "media-jam-error", message="Jam")
    rig.clock.advance(STATE_TTL_S + 1)
    with pytest.raises(ActionError) as refused:
        rig.agent.print_muster(PDF)
    assert (refused.value.code, action_status(refused.value)) == ("printer_unavailable", 503)
    assert rig.events("muster.print_failed")[-1].payload["printer"]["status"] == "jammed"
    without = make_rig()
    with pytest.raises(ActionError) as none:
        without.agent.print_muster(PDF)
    assert none.value.code == "no_printer"
