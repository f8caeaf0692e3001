"""Each injected fault as a client sees it, against a real server process on loopback.

Every test switches its faults off again (the ``clean_faults`` fixture), so the
tests do not depend on their order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from central.errors import NotFound
from central.faults import ENDPOINT_PATHS, ENDPOINTS, FaultInjector, FaultSpec
from central.testing import CentralProcess, ChainBuilder, ContractChecker, enroll_device, wait_for

pytestmark = pytest.mark.processes

TIMEOUT = 10


@pytest.fixture(scope="module")
def central(central_on_each_backend: CentralProcess) -> CentralProcess:
    """The central of these tests: each backend in turn (tests/conftest.py)."""
    return central_on_each_backend


@pytest.fixture(scope="module")
def contract() -> ContractChecker:
    return ContractChecker()


@pytest.fixture(autouse=True)
def clean_faults(central: CentralProcess) -> Iterator[None]:
    with central.admin() as admin:
        admin.clear_faults()
    yield
    with central.admin() as admin:
        admin.clear_faults()


_ids = iter(range(10_000))


class Device:
    """A device as the tests drive it: its chain and its credential."""

    def __init__(self, central: CentralProcess) -> None:
        self.central = central
        enrolled, self.session = enroll_device(central.url, device_id=f"fault-{next(_ids)}")
        self.device_id = enrolled["device_id"]
        self.chain = ChainBuilder()

    def post(self, events: list[dict], timeout: float = TIMEOUT) -> requests.Response:
        return self.session.post(
            f"{self.central.url}/v1/events", json={"events": events}, timeout=timeout
        )

    def stored(self) -> int:
        with self.central.admin() as admin:
            view = admin.received()
        return next(d for d in view["devices"] if d["device_id"] == self.device_id)["unique_events"]


def fault(central: CentralProcess, name: str, **fields) -> None:
    with central.admin() as admin:
        admin.set_fault(name, **fields)


def fired(central: CentralProcess, name: str) -> int:
    with central.admin() as admin:
        return sum(f["fired"] for f in admin.faults() if f["name"] == name)


def test_latency_beyond_the_client_timeout(central: CentralProcess) -> None:
    device = Device(central)
    batch = device.chain.events(3)
    fault(central, "latency", endpoint="events", delay_s=2.0, count=1)
    with pytest.raises(requests.ReadTimeout):
        device.post(batch, timeout=0.3)
    # Latency delays the answer but the request is still handled: the resend is a duplicate.
    assert wait_for(lambda: device.stored() == 3)
    statuses = [ack["status"] for ack in device.post(batch).json()["acks"]]
    assert statuses == ["duplicate"] * 3


def test_latency_within_the_client_timeout(central: CentralProcess) -> None:
    device = Device(central)
    fault(central, "latency", endpoint="events", delay_s=0.2)
    response = device.post(device.chain.events(2))
    assert response.status_code == 200
    assert fired(central, "latency") == 1


def test_timeout_then_the_retry_is_acked_as_duplicate(central: CentralProcess) -> None:
    device = Device(central)
    batch = device.chain.events(4)
    fault(central, "timeout", endpoint="events", delay_s=1.5, count=1)
    with pytest.raises(requests.ReadTimeout):
        device.post(batch, timeout=0.3)
    assert wait_for(lambda: device.stored() == 4)  # the slow server did the work
    acks = device.post(batch).json()["acks"]
    assert [ack["status"] for ack in acks] == ["duplicate"] * 4
    assert device.stored() == 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_status_and_nothing_stored(
    central: CentralProcess, contract: ContractChecker, status: int
) -> None:
    device = Device(central)
    batch = device.chain.events(2)
    fault(central, "error", endpoint="events", status=status, count=1)
    response = device.post(batch)
    assert response.status_code == status
    body = response.json()
    assert body["error"] in ("internal", "bad_gateway", "unavailable", "gateway_timeout")
    contract.check_response("POST", "/v1/events", status, body)
    assert device.stored() == 0
    assert [a["status"] for a in device.post(batch).json()["acks"]] == ["accepted"] * 2


def test_throttle_sends_retry_after(central: CentralProcess, contract: ContractChecker) -> None:
    device = Device(central)
    fault(central, "throttle", endpoint="events", retry_after_s=7)
    response = device.post(device.chain.events(1))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    contract.check_response("POST", "/v1/events", 429, response.json())
    assert response.json()["retry_after_s"] == 7
    assert device.stored() == 0


def test_drop_mid_body_resets_the_connection(central: CentralProcess) -> None:
    device = Device(central)
    big = [device.chain.event("door.held_open", {"pad": "x" * 2000}) for _ in range(500)]
    fault(central, "drop_mid_body", endpoint="events", count=1)
    with pytest.raises(requests.ConnectionError):
        device.post(big)
    assert device.stored() == 0
    assert fired(central, "drop_mid_body") == 1
    acks = device.post(big).json()["acks"]
    assert {ack["status"] for ack in acks} == {"accepted"}


def test_drop_before_response_stores_nothing(central: CentralProcess) -> None:
    device = Device(central)
    batch = device.chain.events(3)
    fault(central, "drop_before_response", endpoint="events", count=1)
    with pytest.raises(requests.ConnectionError):
        device.post(batch)
    assert device.stored() == 0
    assert [a["status"] for a in device.post(batch).json()["acks"]] == ["accepted"] * 3


def test_response_lost_after_commit_then_retry_is_duplicate(central: CentralProcess) -> None:
    device = Device(central)
    batch = device.chain.events(5)
    fault(central, "lost_after_commit", endpoint="events", count=1)
    with pytest.raises(requests.ConnectionError):
        device.post(batch)
    assert device.stored() == 5  # committed before the connection was cut
    acks = device.post(batch).json()["acks"]
    assert [ack["status"] for ack in acks] == ["duplicate"] * 5
    assert device.stored() == 5


def test_lost_enrollment_answer_is_recovered_by_the_same_device(central: CentralProcess) -> None:
    with central.admin() as admin:
        token = admin.create_enroll_token("lobby")["enroll_token"]
    url = f"{central.url}/v1/enroll"
    # The retry secret (issue 10) is what proves the retry comes from the same device.
    body = {"enroll_token": token, "device_id": "fault-enroll", "retry_secret": "r" * 32}
    fault(central, "lost_after_commit", endpoint="enroll", count=1)
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=body, timeout=TIMEOUT)
    other = requests.post(url, json={**body, "device_id": "thief"}, timeout=TIMEOUT)
    assert other.status_code == 409
    no_secret = {"enroll_token": token, "device_id": "fault-enroll"}
    assert requests.post(url, json=no_secret, timeout=TIMEOUT).status_code == 409
    again = requests.post(url, json=body, timeout=TIMEOUT)
    assert again.status_code == 201 and again.json()["device_id"] == "fault-enroll"


def test_every_nth_request(central: CentralProcess) -> None:
    device = Device(central)
    fault(central, "error", endpoint="events", every=2)
    batch = device.chain.events(1)
    codes = [device.post(batch).status_code for _ in range(4)]
    assert codes == [200, 500, 200, 500]


def test_probability_with_a_seed_is_repeatable(central: CentralProcess) -> None:
    device = Device(central)
    url = f"{central.url}/v1/deltas"

    def pattern() -> list[int]:
        fault(central, "throttle", endpoint="deltas", probability=0.5, seed=42)
        codes = [device.session.get(url, timeout=TIMEOUT).status_code for _ in range(16)]
        with central.admin() as admin:
            admin.clear_faults("throttle")
        return codes

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 429}


def test_count_switches_the_fault_off(central: CentralProcess) -> None:
    device = Device(central)
    fault(central, "error", endpoint="heartbeat", count=2)
    url = f"{central.url}/v1/heartbeat"
    codes = [
        device.session.post(url, json={"sent_at_ms": 1}, timeout=TIMEOUT).status_code
        for _ in range(3)
    ]
    assert codes == [500, 500, 200]
    with central.admin() as admin:
        listed = admin.faults()
    assert listed == [
        {"name": "error", "endpoint": "heartbeat", "count": 2, "matched": 2, "fired": 2}
    ]


def test_fault_applies_to_its_endpoint_only(central: CentralProcess) -> None:
    device = Device(central)
    fault(central, "error", endpoint="deltas")
    assert device.post(device.chain.events(1)).status_code == 200
    assert device.session.get(f"{central.url}/v1/deltas", timeout=TIMEOUT).status_code == 500


def test_selftest_upload_can_be_faulted(central: CentralProcess) -> None:
    device = Device(central)
    report = {"ok": True, "results": []}
    url = f"{central.url}/v1/selftest"
    fault(central, "error", endpoint="selftest", status=502, count=1)
    assert device.session.post(url, json=report, timeout=TIMEOUT).status_code == 502
    with central.admin() as admin, pytest.raises(NotFound):
        admin.device_selftest(device.device_id)  # nothing stored
    assert device.session.post(url, json=report, timeout=TIMEOUT).status_code == 200
    assert device.post(device.chain.events(1)).status_code == 200  # other endpoints: no fault
    assert fired(central, "error") == 1


def test_every_fault_endpoint_is_documented(contract: ContractChecker) -> None:
    documented = contract.doc["components"]["schemas"]["FaultEndpoint"]["enum"]
    assert documented == list(ENDPOINTS)
    # Each names a device path of the contract (which the server's middleware matches).
    paths = contract.doc["paths"]
    assert all(path in paths and path.startswith("/v1/") for path in ENDPOINT_PATHS)


def test_enroll_fault_and_admin_is_never_faulted(central: CentralProcess) -> None:
    fault(central, "error", endpoint="*", status=503)
    with central.admin() as admin:
        token = admin.create_enroll_token("lobby")["enroll_token"]  # admin unaffected
    response = requests.post(
        f"{central.url}/v1/enroll", json={"enroll_token": token}, timeout=TIMEOUT
    )
    assert response.status_code == 503
    with central.admin() as admin:
        admin.clear_faults(endpoint="*")
    response = requests.post(
        f"{central.url}/v1/enroll", json={"enroll_token": token}, timeout=TIMEOUT
    )
    assert response.status_code == 201  # the faulted attempt did not spend the token


def test_clear_by_name(central: CentralProcess) -> None:
    fault(central, "latency", delay_s=0.01)
    fault(central, "throttle", endpoint="deltas")
    with central.admin() as admin:
        left = admin.clear_faults("throttle")
    assert [f["name"] for f in left] == ["latency"]


def test_fault_spec_validation() -> None:
    for fields, message in (
        ({"name": "gremlins"}, "name"),
        ({"name": "error", "endpoint": "admin"}, "endpoint"),
        ({"name": "error", "status": 404}, "status"),
        ({"name": "latency", "delay_s": -1}, "delay_s"),
        ({"name": "throttle", "retry_after_s": 1.5}, "retry_after_s"),
        ({"name": "error", "every": 0}, "every"),
        ({"name": "error", "probability": 0}, "probability"),
        ({"name": "error", "every": 2, "probability": 0.5}, "every"),
        ({"name": "error", "count": 0}, "count"),
        ({"name": "error", "colour": "red"}, "unknown"),
        ({}, "name"),
    ):
        with pytest.raises(ValueError, match=message):
            FaultSpec.from_dict(fields)


def test_injector_order_latency_combines_first_action_wins() -> None:
    injector = FaultInjector()
    injector.set(FaultSpec("latency", delay_s=0.1))
    injector.set(FaultSpec("lost_after_commit", endpoint="events"))
    injector.set(FaultSpec("throttle", endpoint="events"))
    latency, action = injector.pick("events")
    assert latency is not None and latency.name == "latency"
    assert action is not None and action.name == "throttle"
    latency, action = injector.pick("deltas")
    assert latency is not None and action is None
    assert injector.clear(endpoint="events") == 2
    assert injector.pick("events")[1] is None
