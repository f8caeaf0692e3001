"""HTTPS for the central itself (``serve --tls-cert/--tls-key``) and the trusted reverse
proxies whose ``X-Forwarded-*`` headers it believes (``serve --trusted-proxy``).

:func:`server_context` checks the certificate and key files once, at start-up, and
returns the server's TLS context: TLS 1.2 or newer, forward-secret AEAD ciphers only.
Every refusal is a :class:`ValueError` whose message starts with the option at fault
(``--tls-cert`` or ``--tls-key``): the command prints it in one line and exits 2.

:func:`parse_proxies` reads the ``--trusted-proxy`` values (an address or a network);
:func:`forwarded` reads the client's scheme, host and address from the headers of a
request that came through one of them (docs/deploying-central.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cryptography import x509

from portier_common.settings import read_private_file

__all__ = ["TLS_CIPHERS", "Network", "forwarded", "is_trusted", "parse_proxies", "server_context"]

#: TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305.
#: TLS 1.3 suites are OpenSSL's (all of them AEAD).
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _certificate(cert: Path, now: dt.datetime) -> None:
    try:
        data = cert.read_bytes()
    except OSError as exc:
        raise ValueError(f"--tls-cert {cert}: {exc.strerror or exc}") from None
    try:
        leaf = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError(f"--tls-cert {cert}: not a PEM certificate") from None
    if leaf.not_valid_after_utc <= now:
        raise ValueError(
            f"--tls-cert {cert}: expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if leaf.not_valid_before_utc > now:
        raise ValueError(
            f"--tls-cert {cert}: not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def _key(key: Path) -> None:
    read_private_file("--tls-key", key)


def server_context(cert: Path, key: Path, *, now: dt.datetime | None = None) -> ssl.SSLContext:
    """Return the server's TLS context for *cert* (PEM, the chain after the leaf) and *key*.

    Raises:
        ValueError: a file is unreadable, the certificate is expired (or not yet valid),
            the key is readable by group or others, or does not match the certificate;
            the message starts with the option at fault.
    """
    _certificate(cert, now or dt.datetime.now(dt.UTC))
    _key(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "MISMATCH" in reason.upper():
            raise ValueError(f"--tls-key {key}: does not match the certificate in {cert}") from None
        raise ValueError(f"--tls-key {key}: not a usable private key ({reason})") from None
    return context


def parse_proxies(values: Iterable[str]) -> tuple[Network, ...]:
    """Return the networks of ``--trusted-proxy`` values (``10.0.0.5``, ``10.0.0.0/24``).

    Raises:
        ValueError: a value is not an address or network (the message names it).
    """
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"--trusted-proxy {value!r}: not an IP address or network (e.g. 10.0.0.5)"
            ) from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def is_trusted(remote: str | None, proxies: Sequence[Network]) -> bool:
    """Whether the peer *remote* is one of the trusted proxies."""
    address = _address(remote) if remote and proxies else None
    return address is not None and any(address in network for network in proxies)


def forwarded(
    headers: Mapping[str, str], peer: str, proxies: Sequence[Network]
) -> tuple[str | None, str | None, str]:
    """Return ``(scheme, host, client address)`` from a trusted proxy's request headers.

    ``X-Forwarded-For`` is read from the right: each proxy appends the address it got
    the request from, so the first address (from the right) that is not a trusted proxy
    is the client; whatever the client itself sent stands to its left and is ignored.
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are the nearest proxy's (their last
    value). None: the header is absent (keep the connection's).
    """
    client = peer
    chain = [part.strip() for part in headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([part for part in chain if part]):
        address = _address(hop)
        if address is None:
            break  # garbage: stop at the last address known good
        client = str(address)
        if not any(address in network for network in proxies):
            break
    proto = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    host = headers.get("X-Forwarded-Host", "").split(",")[-1].strip()
    return (proto if proto in ("http", "https") else None), (host or None), client
