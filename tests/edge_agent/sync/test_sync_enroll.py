"""Enrollment with the one-time token, the stored credential, and TLS with a private CA.

Against the reference central (a server process, or in process behind TLS with a
CA and server certificate minted here with ``cryptography``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from central.testing import CentralProcess, TlsCentral, mint_ca, mint_server_cert
from edge_agent.enroll import (
    DeviceCredential,
    EnrollError,
    credential_path,
    enroll,
    load_credential,
)
from edge_agent.store import Store, StoreSettings
from edge_agent.sync import Alarms, Backoff, CentralClient, CentralRefused, Uplink
from tests.support.sync_rig import EDGE_AGENT, device_summary, make_config

pytestmark = pytest.mark.processes


@pytest.fixture
def central(central_per_test: CentralProcess) -> CentralProcess:
    """Each test enrolls into a central of its own (conftest's ``central`` is one per module)."""
    return central_per_test


def test_enroll_stores_the_credential_0600_and_never_logs_it(central, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = make_config(tmp_path / "a", central.url, device="door-1")
    with central.admin() as admin:
        token = admin.create_enroll_token("gate-a")["enroll_token"]
    credential = enroll(config, token)
    path = credential_path(config)
    assert path == config.paths.state_dir / "central-credential.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp
    stored = json.loads(path.read_text())
    assert stored["device_id"] == "door-1" and stored["device_token"] == credential.device_token
    assert load_credential(path) == credential
    assert credential.limits["max_batch_events"] == 1000
    assert credential.device_token not in repr(credential)
    assert credential.device_token not in caplog.text and token not in caplog.text
    # The credential works: the central knows this device.
    with CentralClient(central.url, credential=credential.device_token) as client:
        assert client.heartbeat({"sent_at_ms": 0})["next_seq"] == 1


def test_the_token_is_single_use(central, tmp_path) -> None:
    first = make_config(tmp_path / "a", central.url, device="door-1")
    second = make_config(tmp_path / "b", central.url, device="door-2")
    with central.admin() as admin:
        token = admin.create_enroll_token("gate-a")["enroll_token"]
    old = enroll(first, token)
    with pytest.raises(EnrollError) as refused:
        enroll(second, token)
    assert refused.value.code == "token_used"
    assert not credential_path(second).exists()
    # The same device may use it again (its answer was lost): a fresh credential,
    # and the one before stops working.
    new = enroll(first, token)
    assert new.device_token != old.device_token
    client = CentralClient(central.url, credential=old.device_token)
    with client, pytest.raises(CentralRefused) as stale:
        client.heartbeat({"sent_at_ms": 0})
    assert stale.value.status == 401


def test_unknown_token_and_wrong_door_are_refused(central, tmp_path) -> None:
    config = make_config(tmp_path / "a", central.url, device="door-1")
    with pytest.raises(EnrollError) as unknown:
        enroll(config, "pe1_not-a-token-at-all-xxxxxxxx")
    assert unknown.value.code == "token_invalid"
    with central.admin() as admin:
        other_door = admin.create_enroll_token("back-door")["enroll_token"]
    with pytest.raises(EnrollError) as scope:
        enroll(config, other_door)
    assert scope.value.code == "token_scope"
    assert not credential_path(config).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run as root without capabilities")
def test_enroll_without_access_to_the_agents_journal(central, tmp_path) -> None:
    """First boot runs as root without capabilities (CapabilityBoundingSet= empty): the
    agent's 0700 state directory, owned by the agent's user, is closed to it. Enrollment
    goes on without journal_head instead of failing (seen when the image booted under
    QEMU). The enrolling process here is root with an empty bounding set, the same."""
    import shutil

    config = make_config(
        tmp_path / "conf",
        central.url,
        device="door-sandboxed",
        central={"credential_file": str(tmp_path / "cred" / "central-credential.json")},
    )
    state = config.paths.state_dir
    state.mkdir(parents=True, exist_ok=True)
    with Store.open(StoreSettings(path=config.paths.database)):
        pass  # a journal exists, in a directory the enrolling process cannot enter
    for path in (state, *state.iterdir()):
        shutil.chown(path, "nobody")
    state.chmod(0o700)
    with central.admin() as admin:
        token = admin.create_enroll_token("gate-a")["enroll_token"]
    script = (
        "import sys\n"
        "from edge_agent.config import load_config\n"
        "from edge_agent.enroll import enroll\n"
        "credential = enroll(load_config(sys.argv[1]), sys.argv[2])\n"
        "print(credential.device_id)\n"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all",
         sys.executable, "-c", script, str(config.source), token],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[3],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "door-sandboxed"
    assert "journal not readable" in done.stderr and "Permission denied" in done.stderr


def test_cli_enroll(central, tmp_path) -> None:
    config = make_config(tmp_path / "a", central.url, device="door-cli")
    with central.admin() as admin:
        token = admin.create_enroll_token("gate-a")["enroll_token"]
    args = [EDGE_AGENT, "-v", "enroll", "--config", str(config.source), "--token"]
    done = subprocess.run([*args, token], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "enrolled: device door-cli at hq/gate-a" in done.stdout
    credential = load_credential(credential_path(config))
    assert credential.device_token not in done.stdout + done.stderr
    assert token not in done.stdout + done.stderr
    # From stdin, and a second use by another device: refused, exit 1.
    other = make_config(tmp_path / "b", central.url, device="door-other")
    again = subprocess.run(
        [EDGE_AGENT, "enroll", "--config", str(other.source), "--token", "-"],
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "token_used" in again.stderr


def test_enroll_waits_for_a_central_that_comes_up_later(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    central = CentralProcess(tmp_path / "central", port=port)
    central.start()
    with central.admin() as admin:
        token = admin.create_enroll_token("gate-a")["enroll_token"]
    central.stop()
    config = make_config(tmp_path / "a", central.url, device="door-late")
    with pytest.raises(EnrollError) as offline:
        enroll(config, token, wait_s=0)
    assert offline.value.code == "unreachable"
    restart = threading.Timer(1.5, central.start)
    restart.start()
    lines: list[str] = []
    try:
        credential = enroll(config, token, wait_s=60, progress=lines.append)
    finally:
        restart.join()
        central.stop()
    assert credential.device_id == "door-late" and lines  # it said it was retrying
    assert all("unreachable" in line for line in lines)


def test_journal_head_anchors_a_device_with_history_at_a_new_central(central, tmp_path):
    config = make_config(tmp_path / "a", central.url, device="door-old")
    config.paths.state_dir.mkdir(parents=True)
    with Store.open(StoreSettings(path=config.paths.database)) as store:
        store.journal.append_many([("access.decision", {"n": n}) for n in range(8)])
        # Events 1..5 went to a central that is gone.
        store.journal.mark_acked([e.id for e in store.journal.next_batch(5)])
        store.journal.requeue([e.id for e in store.journal.next_batch(10)])
    with central.admin() as admin:
        credential = enroll(config, admin.create_enroll_token("gate-a")["enroll_token"])
        assert credential.next_seq == 6
        with Store.open(StoreSettings(path=config.paths.database)) as store:
            uplink = Uplink(
                store.journal,
                CentralClient(central.url, credential=credential.device_token),
                Alarms(store.journal.append),
                batch_size=50,
                backoff=Backoff(0.01, 0.1),
                wait=lambda s: False,
            )
            assert uplink.drain() == 3
        summary = device_summary(admin, "door-old", verify=True)
    assert summary["anchor_seq"] == 6 and summary["unique_events"] == 3
    assert summary["chain_ok"] and summary["chain_verified"]


# -- TLS ----------------------------------------------------------------------------------


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca_file, ca_key, ca_cert = mint_ca(tmp_path, "good")
    other_ca, _, _ = mint_ca(tmp_path, "other")
    cert, key = mint_server_cert(tmp_path, ca_key, ca_cert)
    with TlsCentral(tmp_path / "central", cert, key) as central:
        token = central.server.store.create_enroll_token(door="gate-a")["enroll_token"]
        # Trusting another CA (or only the system's): the certificate does not verify.
        wrong = make_config(
            tmp_path / "wrong", central.url, device="tls-door", central={"ca_file": str(other_ca)}
        )
        with pytest.raises(EnrollError) as refused:
            enroll(wrong, token)
        assert refused.value.code == "unreachable" and "TLS" in str(refused.value)
        system = make_config(tmp_path / "system", central.url, device="tls-door")
        with pytest.raises(EnrollError):
            enroll(system, token)
        # With the CA file: enrolled, and the credential works over TLS.
        config = make_config(
            tmp_path / "good", central.url, device="tls-door", central={"ca_file": str(ca_file)}
        )
        credential = enroll(config, token)
        assert isinstance(credential, DeviceCredential)
        client = CentralClient(central.url, credential=credential.device_token, ca_file=ca_file)
        with client:
            assert client.heartbeat({"sent_at_ms": 1})["sent_at_ms"] == 1
