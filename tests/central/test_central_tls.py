"""HTTPS served by the central itself (``serve --tls-cert/--tls-key``), plain HTTP
refused off loopback, and X-Forwarded-* believed from trusted proxies only.

Real processes and real certificates: a private CA and a server certificate minted
with ``cryptography`` (central.testing.mint_ca / mint_server_cert)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from central.admin import TOKEN_ENV
from central.testing import CentralProcess, mint_ca, mint_server_cert
from central.tls import forwarded, parse_proxies, server_context
from edge_agent.sync.client import CentralClient, CentralUnreachable

pytestmark = [
    pytest.mark.processes,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(CA file, server certificate, server key 0600)."""
    ca_file, ca_key, ca_cert = mint_ca(tmp_path, "site")
    cert, key = mint_server_cert(tmp_path, ca_key, ca_cert)
    key.chmod(0o600)
    return ca_file, cert, key


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``portier-central serve`` that is expected to refuse to start."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "central",
            "serve",
            "--port",
            "0",
            "--data",
            str(tmp_path / "x"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def expired_cert(where: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(ca.subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=10))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    path = where / "expired.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = where / "expired.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return path


# -- HTTPS ---------------------------------------------------------------------------


def test_devices_and_the_cli_speak_https_with_the_private_ca(
    tmp_path: Path, pki: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, cert, key = pki
    other_ca, _, _ = mint_ca(tmp_path, "other")
    central = CentralProcess(
        tmp_path / "central", extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]
    )
    with central:
        assert central.url.startswith("https://127.0.0.1:") and central.info["tls"] is True
        # The CLI, trusting the site's CA (requests' REQUESTS_CA_BUNDLE).
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(ca_file), TOKEN_ENV: central.token or ""}
        command = [sys.executable, "-m", "central", "enroll-token", "create", "--door", "lobby"]
        made = subprocess.run(
            [*command, "--url", central.url], capture_output=True, text=True, env=env, cwd=ROOT
        )
        assert made.returncode == 0, made.stderr
        enroll_token = made.stdout.strip()
        # Without the CA the CLI cannot verify the central: unreachable (3), nothing sent.
        env["REQUESTS_CA_BUNDLE"] = str(other_ca)
        blind = subprocess.run(
            [*command, "--url", central.url], capture_output=True, text=True, env=env, cwd=ROOT
        )
        assert blind.returncode == 3 and "certificate" in blind.stderr.lower(), blind.stderr

        # The device: bearer credential over TLS, verified against the private CA.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        with CentralClient(central.url, ca_file=other_ca) as wrong:
            with pytest.raises(CentralUnreachable) as failure:
                wrong.enroll({"enroll_token": enroll_token, "device_id": "tls-door"})
            assert failure.value.tls
        with CentralClient(central.url, ca_file=ca_file) as client:
            enrolled = client.enroll({"enroll_token": enroll_token, "device_id": "tls-door"})
            client.set_credential(enrolled["device_token"])
            assert client.heartbeat({"sent_at_ms": 1})["sent_at_ms"] == 1
            assert isinstance(client.deltas(None, 10), dict)

        # Plain HTTP to the TLS port gets no answer.
        plain = central.url.replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{plain}/admin/info", timeout=5)
        # TLS 1.1 (and older) is refused; TLS 1.2 works.
        port = int(central.info["port"])
        assert handshake(port, ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        with pytest.raises(ssl.SSLError):
            handshake(port, ca_file, ssl.TLSVersion.TLSv1_1)


def handshake(port: int, ca_file: Path, version: ssl.TLSVersion) -> str | None:
    """The TLS version a client capped at *version* gets (this client does speak TLS
    1.1 with SECLEVEL=0: a refusal is the server's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer what it may
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


def test_the_server_context_is_tls_1_2_and_up_with_forward_secret_aead(
    pki: tuple[Path, Path, Path],
) -> None:
    _, cert, key = pki
    context = server_context(cert, key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    suites = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert suites and all(c["aead"] and c["kea"] == "kx-ecdhe" for c in suites), suites


def test_bad_certificates_and_keys_stop_the_start_naming_the_option(
    tmp_path: Path, pki: tuple[Path, Path, Path]
) -> None:
    ca_file, cert, key = pki
    other = tmp_path / "other"
    other.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    _, other_key = mint_server_cert(
        other, ca_key, x509.load_pem_x509_certificate(ca_file.read_bytes())
    )
    other_key.chmod(0o600)
    refused(
        serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(other_key)),
        "--tls-key",
        "does not match",
    )
    expired = expired_cert(tmp_path, ca_key, x509.load_pem_x509_certificate(ca_file.read_bytes()))
    refused(
        serve(tmp_path, "--tls-cert", str(expired), "--tls-key", str(tmp_path / "expired.key")),
        "--tls-cert",
        "expired",
    )
    refused(
        serve(tmp_path, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)),
        "--tls-cert",
        "No such file",
    )
    refused(
        serve(tmp_path, "--tls-cert", str(key), "--tls-key", str(key)),
        "--tls-cert",
        "not a PEM certificate",
    )
    key.chmod(0o644)
    refused(
        serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)),
        "--tls-key",
        "others may read",
        "chmod 0600",
    )
    key.chmod(0o640)
    refused(serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)), "--tls-key")
    refused(serve(tmp_path, "--tls-cert", str(cert)), "--tls-cert and --tls-key")
    assert not (tmp_path / "x" / "central.db").exists()  # refused before any database


def test_plain_http_off_loopback_needs_insecure_http(tmp_path: Path) -> None:
    line = refused(serve(tmp_path, "--host", "0.0.0.0"), "--host 0.0.0.0", "--insecure-http")
    assert "--tls-cert" in line
    refused(serve(tmp_path, "--host", "central.example"), "--insecure-http")
    with CentralProcess(
        tmp_path / "central", extra_args=["--host", "0.0.0.0", "--insecure-http"]
    ) as central:
        assert central.url.startswith("http://0.0.0.0:")


# -- reverse proxies ----------------------------------------------------------------


def proxied_change(central: CentralProcess, **headers: str) -> requests.Response:
    """An admin change as a reverse proxy on loopback would pass it on."""
    return requests.post(
        f"{central.url}/admin/enroll-tokens",
        json={"door": "lobby"},
        headers={"Authorization": f"Bearer {central.token}", **headers},
        timeout=10,
    )


def changes(journal: list[dict]) -> list[dict]:
    return [e for e in journal if e["action"] == "POST /admin/enroll-tokens"]


def test_forwarded_headers_count_from_a_trusted_proxy_only(tmp_path: Path) -> None:
    proxy = {
        "X-Forwarded-For": "198.51.100.66, 203.0.113.9",  # the client forged the first
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "central.example",
        "Origin": "https://central.example",
    }
    trusted = CentralProcess(tmp_path / "trusted", extra_args=["--trusted-proxy", "127.0.0.0/8"])
    with trusted, trusted.admin() as admin:
        assert proxied_change(trusted, **proxy).status_code == 201
        # Another site, as the proxy names it: cross-site.
        assert (
            proxied_change(trusted, **{**proxy, "Origin": "https://evil.example"}).status_code
            == 403
        )
        [entry] = changes(admin.operator_journal())
        assert entry["status"] == 201 and entry["remote"] == "203.0.113.9"

    untrusted = CentralProcess(tmp_path / "untrusted", extra_args=["--trusted-proxy", "10.9.9.9"])
    with untrusted, untrusted.admin() as admin:
        # A client that is no trusted proxy: its X-Forwarded-* are ignored; its Origin
        # (https://central.example) is not this central's (http://127.0.0.1:PORT).
        assert proxied_change(untrusted, **proxy).status_code == 403
        without_origin = {k: v for k, v in proxy.items() if k != "Origin"}
        assert proxied_change(untrusted, **without_origin).status_code == 201
        assert [e["remote"] for e in changes(admin.operator_journal())] == ["127.0.0.1"]


def test_forwarded_reads_the_chain_from_the_right() -> None:
    proxies = parse_proxies(["10.0.0.0/24", "127.0.0.1"])
    headers = {"X-Forwarded-For": "1.2.3.4, 203.0.113.9, 10.0.0.7", "X-Forwarded-Proto": "https"}
    assert forwarded(headers, "127.0.0.1", proxies) == ("https", None, "203.0.113.9")
    assert forwarded({}, "127.0.0.1", proxies) == (None, None, "127.0.0.1")
    assert forwarded({"X-Forwarded-For": "junk"}, "10.0.0.2", proxies)[2] == "10.0.0.2"
    assert forwarded({"X-Forwarded-Proto": "gopher"}, "10.0.0.2", proxies)[0] is None
    with pytest.raises(ValueError, match="--trusted-proxy"):
        parse_proxies(["proxy.example"])
