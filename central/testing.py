"""Helpers for tests that talk to the reference central (this repo's tests and the agent's).

* :class:`CentralProcess`: ``python -m central serve`` in a subprocess on a free
  loopback port, ready when its ready line was read; stopped with SIGTERM.
* :class:`ChainBuilder`: well-formed journal events with a valid hash chain,
  built with the journal's own :func:`portier_common.encoding.event_hash`.
* :class:`ContractChecker`: validates JSON bodies against docs/central-api.yaml
  (needs ``pyyaml`` and ``jsonschema``, test-only dependencies imported lazily).
* :class:`TlsCentral`, :func:`mint_ca`, :func:`mint_server_cert`: the central's
  application behind HTTPS with a private CA minted with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portier_common.encoding import GENESIS_HASH, UUIDv7Generator, canonical_json, event_hash

from .admin import TOKEN_ENV, CentralAdmin
from .auth import bootstrap_token
from .server import CentralServer
from .settings import CentralSettings

__all__ = [
    "API_DOC",
    "CentralProcess",
    "ChainBuilder",
    "ContractChecker",
    "TlsCentral",
    "enroll_device",
    "mint_ca",
    "mint_server_cert",
    "wait_for",
]

#: The contract, in a source checkout.
API_DOC = Path(__file__).resolve().parents[1] / "docs" / "central-api.yaml"


class CentralProcess:
    """The reference central running in a child process.

    Args:
        data_dir: its data directory (kept after stop, so a restart reopens it).
        port: 0 for a free port.
        site: its default site.
        log_path: where its stderr goes (default ``data_dir/../central.log`` next to it).
        ready_timeout_s: how long :meth:`start` waits for the ready line.
        extra_args: more ``serve`` flags (``["--ntag424-keys", FILE]``...).
        token: the operator API token :meth:`start` registers in the data directory
            (a ``security_officer`` named ``tests``) and :meth:`admin` sends; default
            ``$PORTIER_CENTRAL_TOKEN`` (the suite sets one), else a new one.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int = 0,
        site: str = "hq",
        log_path: Path | str | None = None,
        ready_timeout_s: float = 30.0,
        extra_args: list[str] | None = None,
        token: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.token = token or os.environ.get(TOKEN_ENV) or None
        self.extra_args = list(extra_args or [])
        self.port = port
        self.site = site
        self.log_path = (
            Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".log")
        )
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.info: dict[str, Any] = {}

    def start(self) -> str:
        """Start the server; return its URL once it printed its ready line.

        Raises:
            RuntimeError: it exited or stayed silent past ``ready_timeout_s``
                (its log is in the message).
        """
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # The operator the tests act as, registered before the server opens the database.
        # The same database the server opens (``--db`` among the extra arguments, if given).
        db = None
        if "--db" in self.extra_args:
            db = self.extra_args[self.extra_args.index("--db") + 1]
        self.token = bootstrap_token(
            CentralSettings(data_dir=self.data_dir, db=db), operator="tests", token=self.token
        )
        log = self.log_path.open("a")
        # Ask for a fixed port again on a restart, so clients keep their URL.
        port = self.info.get("port", self.port)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "central",
                "serve",
                "--port",
                str(port),
                "--data",
                str(self.data_dir),
                "--site",
                self.site,
                *self.extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(self.ready_timeout_s)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(f"central did not start: {self.log_path.read_text()[-2000:]}")
        self.info = json.loads(line[0])
        self.url = self.info["url"]
        return self.url

    def admin(self, timeout: float = 10.0) -> CentralAdmin:
        """Return an admin client for this server."""
        return CentralAdmin(self.url, timeout=timeout, token=self.token)

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return None if self.process is None else self.process.pid

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the server and wait for it; return its exit status (None if not started).

        It is killed if it does not stop within *timeout_s*.
        """
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> CentralProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def enroll_device(
    url: str,
    *,
    door: str = "lobby",
    device_id: str | None = None,
    site: str | None = None,
    timeout: float = 10.0,
    guard_console: bool = False,
    zones: list[str] | None = None,
    token: str | None = None,
    event_pack_key: str | None = None,
) -> tuple[dict[str, Any], requests.Session]:
    """Create an enrollment token, enroll with it, and return the ``EnrollResponse`` and
    a :class:`requests.Session` that sends the device credential.

    *guard_console*: the device has a guard console (it then gets guards' PIN hashes);
    *zones*: the zones the door is in (declared on the token by the administrator);
    *token*: the operator's API token (default ``$PORTIER_CENTRAL_TOKEN``);
    *event_pack_key*: the device's X25519 public key (base64url) event packs are sealed to.

    Raises:
        CentralError: the central refused (as :class:`CentralAdmin` raises it).
        requests.HTTPError: enrollment itself failed.
    """
    with CentralAdmin(url, timeout=timeout, token=token) as admin:
        enroll_token = admin.create_enroll_token(door, site=site, zones=zones)["enroll_token"]
    body: dict[str, Any] = {"enroll_token": enroll_token, "guard_console": guard_console}
    if device_id is not None:
        body["device_id"] = device_id
    if event_pack_key is not None:
        body["event_pack_key"] = event_pack_key
    response = requests.post(f"{url}/v1/enroll", json=body, timeout=timeout)
    response.raise_for_status()
    enrolled = response.json()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {enrolled['device_token']}"
    return enrolled, session


class ChainBuilder:
    """Makes the events a device with a correct journal would upload (the form of
    ``edge_agent.store`` ``Event.to_wire()``).

    Args:
        next_seq: sequence number of the next event.
        prev_hash: hash of the event before it (32 bytes).
    """

    def __init__(self, next_seq: int = 1, prev_hash: bytes = GENESIS_HASH) -> None:
        self.next_seq = next_seq
        self.prev_hash = prev_hash
        self._ids = UUIDv7Generator()

    def event(
        self,
        type_: str = "access.decision",
        payload: Mapping[str, Any] | None = None,
        *,
        wall_ms: int | None = None,
    ) -> dict[str, Any]:
        """Return the next event as its upload JSON object and advance the chain."""
        wall = time.time_ns() // 1_000_000 if wall_ms is None else wall_ms
        mono = time.monotonic_ns()
        body = dict(payload if payload is not None else {"granted": True, "n": self.next_seq})
        text = canonical_json(body)  # what the journal stores and sends verbatim
        event_id = self._ids.next_bytes(wall)
        digest = event_hash(self.prev_hash, self.next_seq, event_id, wall, mono, type_, text)
        event = {
            "id": str(uuid.UUID(bytes=event_id)),
            "seq": self.next_seq,
            "wall_ms": wall,
            "mono_ns": mono,
            "type": type_,
            "payload_json": text,
            "prev_hash": self.prev_hash.hex(),
            "hash": digest.hex(),
        }
        self.next_seq += 1
        self.prev_hash = digest
        return event

    def events(self, count: int, type_: str = "access.decision") -> list[dict[str, Any]]:
        """Return the next *count* events."""
        return [self.event(type_) for _ in range(count)]


class ContractChecker:
    """Validates bodies against the component schemas and responses of the OpenAPI document.

    Raises (on construction):
        ImportError: pyyaml or jsonschema is missing.
        OSError: the document cannot be read.
    """

    def __init__(self, path: Path = API_DOC) -> None:
        import yaml
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.doc: dict[str, Any] = yaml.safe_load(path.read_text())
        self._base = "urn:portier:central-api"
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(self._base, resource)
        self._validator_cls = Draft202012Validator

    def validate(self, instance: object, schema_name: str) -> None:
        """Check *instance* against ``components/schemas/<schema_name>``.

        Raises:
            jsonschema.ValidationError: it does not match.
            KeyError: no such schema.
        """
        if schema_name not in self.doc["components"]["schemas"]:
            raise KeyError(schema_name)
        self._check(instance, f"#/components/schemas/{schema_name}")

    def response_schema_pointer(self, method: str, path: str, status: int) -> str:
        """Return the JSON pointer of the response schema the document gives.

        Raises:
            KeyError: the document lists no such path, method or status.
        """
        operation = self.doc["paths"][path][method.lower()]
        response = operation["responses"][str(status)]
        if "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[1]
            response = self.doc["components"]["responses"][name]
        schema = response["content"]["application/json"]["schema"]
        pointer = schema.get("$ref")
        if pointer is None:
            return (
                f"#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}"
                f"/responses/{status}/content/application~1json/schema"
            )
        return pointer

    def check_response(self, method: str, path: str, status: int, body: object) -> None:
        """Check that *status* is documented for *method path* and *body* matches it.

        Raises:
            KeyError: the status is not documented there.
            jsonschema.ValidationError: the body does not match.
        """
        self._check(body, self.response_schema_pointer(method, path, status))

    def _check(self, instance: object, pointer: str) -> None:
        validator = self._validator_cls({"$ref": f"{self._base}{pointer}"}, registry=self._registry)
        validator.validate(instance)

    def documented(self) -> list[tuple[str, str, str]]:
        """Return every documented (method, path, status)."""
        found = []
        for path, item in self.doc["paths"].items():
            for method, operation in item.items():
                for status in operation.get("responses", {}):
                    found.append((method.upper(), path, status))
        return found


def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.02) -> bool:
    """Poll *predicate* until it returns true or *timeout_s* passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval_s)


# -- TLS with a private CA ----------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def mint_ca(where: Path, label: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Mint a one-day private CA; return its PEM path (``where/ca-LABEL.pem``), key and
    certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Portier test CA {label}"))
        .issuer_name(_name(f"Portier test CA {label}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    path = where / f"ca-{label}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def mint_server_cert(
    where: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    ip: str = "127.0.0.1",
) -> tuple[Path, Path]:
    """Mint a one-day server certificate for ``ip`` (and ``localhost``) signed by the
    CA; return the paths of its PEM certificate and PKCS#8 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ip))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = where / "server.pem", where / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsCentral:
    """The reference central's application behind HTTPS, on a thread's event loop."""

    def __init__(self, data: Path, cert: Path, key: Path, *, host: str = "127.0.0.1") -> None:
        self.host = host
        settings = CentralSettings(data_dir=data, port=0)
        #: The operator API token (``tests``, a security officer) its admin API takes.
        self.token = bootstrap_token(settings, operator="tests", token=os.environ.get(TOKEN_ENV))
        self.server = CentralServer(settings)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> TlsCentral:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.server.make_app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0, ssl_context=self.context)
        await site.start()
        self.url = f"https://{self.host}:{self.runner.addresses[0][1]}"

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self.runner is not None
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.server.store.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
