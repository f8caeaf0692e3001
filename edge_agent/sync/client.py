"""The device side of the central API's transport: one ``requests`` session, typed errors.

:class:`CentralClient` makes the four device calls of ``docs/central-api.yaml``
(enroll, events, deltas, heartbeat) with a timeout on every call, the device
credential as a bearer token, and TLS verified against the configured CA file.
It never retries on its own except for failed *connects* (no byte of the request
left the device, so any method may be retried): what to do with every other
failure is the caller's decision, because only the caller knows whether a
request is safe to resend (event uploads are, by their idempotency keys).

Answers are classified once, here:

* a 2xx answer with a JSON object body: returned;
* an HTTP error answer: :class:`CentralRefused` with the status, the body's
  stable ``error`` code and the ``Retry-After`` delay (parsed by urllib3's
  :class:`~urllib3.util.Retry`, which understands delta-seconds and HTTP dates);
* no complete answer (refused, reset, timed out, TLS failure, a 2xx whose body is
  not JSON): :class:`CentralUnreachable` -- the outcome is unknown, the central
  may have committed the request.

:class:`Backoff` (from :mod:`edge_agent.retry`) is the retry schedule: exponential
with *full* jitter, with a ``Retry-After`` delay as a floor; :func:`central_transient`
tells :func:`edge_agent.retry.retry_until` which of these errors are worth a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

from edge_agent.config import check_central_url
from edge_agent.retry import Backoff, Transient
from portier_common.signing import KID_HEADER, SIGNATURE_HEADER

log = logging.getLogger(__name__)

__all__ = [
    "Backoff",
    "CentralClient",
    "CentralRefused",
    "CentralUnreachable",
    "SignedPage",
    "central_transient",
]

#: Never wait longer than this for a Retry-After, whatever the central says.
MAX_RETRY_AFTER_S = 3600.0


class CentralUnreachable(ConnectionError):
    """No complete answer: connection refused or reset, timeout, TLS failure.

    The outcome of the request is unknown. ``tls`` is True when the TLS
    handshake or certificate verification failed (a wrong CA file, or a clock
    so wrong that the certificate looks expired).
    """

    def __init__(self, message: str, *, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls


@dataclass(frozen=True)
class SignedPage:
    """A deltas answer as received: the exact body bytes and the signature headers
    (checked with :class:`portier_common.signing.DeltaKey` before the body is parsed)."""

    body: bytes
    kid: str | None
    signature: str | None


class CentralRefused(Exception):
    """The central answered with an error status.

    Attributes: ``status`` (HTTP status), ``code`` (the body's stable ``error``
    code, or ``"http_<status>"``), ``detail``, ``retry_after_s`` (seconds from
    ``Retry-After``, or None) and ``body`` (the parsed body, or None).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        retry_after_s: float | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.body = dict(body) if body is not None else None

    @property
    def transient(self) -> bool:
        """True for statuses that mean "try the same request again later" (429, 5xx)."""
        return self.status == 429 or self.status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds (None if absent or
    unreadable), capped at :data:`MAX_RETRY_AFTER_S`."""
    if not value:
        return None
    try:
        seconds = Retry(total=0).parse_retry_after(value)
    except InvalidHeader:
        log.warning("central sent an unreadable Retry-After: %r", value)
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def central_transient(exc: Exception) -> Transient | None:
    """The central's failures worth another try: no answer, or a transient refusal
    (429, 5xx: its ``Retry-After`` kept). Anything else (a refusal that will not change,
    another error) is None: for :func:`edge_agent.retry.retry_until`, raised at once."""
    if isinstance(exc, CentralUnreachable):
        return Transient(f"central unreachable: {exc}")
    if isinstance(exc, CentralRefused) and exc.transient:
        return Transient(f"central busy ({exc.status} {exc.code})", exc.retry_after_s)
    return None


class CentralClient:
    """The device's calls to the central API.

    Args:
        url: the central's base URL (``https://...``; ``http://`` for the reference
            central on loopback).
        credential: the device credential (``device_token``) or None before
            enrollment; may be replaced later with :meth:`set_credential`.
        ca_file: CA bundle that verifies the central's certificate (None: the
            system's trust store). Verification is never turned off.
        timeout_s: connect and read timeout of every call.
        user_agent: the ``User-Agent`` header.

    Thread-safe enough for one caller per thread: each call is one
    ``Session.request``; use one client per thread for concurrent calls.
    """

    def __init__(
        self,
        url: str,
        *,
        credential: str | None = None,
        ca_file: Path | str | None = None,
        timeout_s: float = 10.0,
        user_agent: str = "portier-edge-agent",
    ) -> None:
        try:
            check_central_url(url)
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        # Retry failed connects only: nothing was sent, so any request may go again.
        # Everything else (read errors, statuses) is decided by the caller.
        retry = Retry(
            total=1,
            connect=1,
            read=0,
            status=0,
            other=0,
            redirect=0,
            backoff_factor=0.1,
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=2)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        # Passed with every request: a session-level verify loses to $REQUESTS_CA_BUNDLE
        # in requests' environment merge, and the configured CA must always win.
        self._verify: str | bool = str(ca_file) if ca_file is not None else True
        self._session.headers["User-Agent"] = user_agent
        self._session.headers["Accept"] = "application/json"
        self.set_credential(credential)

    def set_credential(self, credential: str | None) -> None:
        """Use ``credential`` (the device token) from the next call on; None to send none."""
        if credential:
            self._session.headers["Authorization"] = f"Bearer {credential}"
        else:
            self._session.headers.pop("Authorization", None)

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the calls ----------------------------------------------------------------

    def enroll(self, body: Mapping[str, Any], credential: str | None = None) -> dict[str, Any]:
        """POST /v1/enroll; return the ``EnrollResponse``. Raises like :meth:`request`.

        *credential*: the device's current credential, sent as a bearer token when an
        enrolled device enrolls again (the central requires it for a known device id).
        """
        headers = {"Authorization": f"Bearer {credential}"} if credential else None
        return self.request("POST", "/v1/enroll", json=body, auth=False, headers=headers)

    def upload(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /v1/events with ``events`` (``Event.to_wire()`` dicts); return the
        ``EventsResponse``. Raises like :meth:`request`."""
        return self.request("POST", "/v1/events", json={"events": events})

    def deltas(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """GET /v1/deltas after ``cursor`` (None: from the beginning); return the
        ``DeltasResponse``. Raises like :meth:`request`."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self.request("GET", "/v1/deltas", params=params)

    def signed_deltas(self, cursor: str | None, limit: int) -> SignedPage:
        """GET /v1/deltas after ``cursor``; return the body bytes and signature headers,
        unparsed (verify first). Raises like :meth:`request`."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = self._send("GET", "/v1/deltas", params=params)
        if response.status_code >= 400:
            raise _refused(response, _json_or_none(response))
        return SignedPage(
            response.content,
            response.headers.get(KID_HEADER),
            response.headers.get(SIGNATURE_HEADER),
        )

    def heartbeat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/heartbeat; return the ``HeartbeatResponse``. Raises like :meth:`request`."""
        return self.request("POST", "/v1/heartbeat", json=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Make one call; return the JSON object the central answered with.

        ``auth=False`` sends no device credential unless ``headers`` carries one.
        Raises :class:`CentralRefused` for an error status and
        :class:`CentralUnreachable` when no complete answer arrived.
        """
        response = self._send(method, path, json=json, params=params, auth=auth, headers=headers)
        body = _json_or_none(response)
        if response.status_code >= 400:
            raise _refused(response, body)
        if not isinstance(body, dict):
            # A 2xx that is not the documented JSON object: a proxy or a cut answer.
            # The outcome is unknown, exactly as for a lost answer.
            raise CentralUnreachable(
                f"{method} {path}: answer {response.status_code} without a JSON object body"
            )
        return body

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        sent: dict[str, str | None] | None = None
        if not auth or headers:
            sent = {} if auth else {"Authorization": None}
            sent.update(headers or {})
        try:
            response = self._session.request(
                method,
                self.url + path,
                json=json,
                params=params,
                # requests drops a header set to None (its documented way to leave out a
                # session header); its annotation leaves None out.
                headers=sent,  # type: ignore[arg-type]
                timeout=(self.timeout_s, self.timeout_s),
                verify=self._verify,
            )
            response.content  # noqa: B018 - read the whole body here: a cut one is unreachable
        except requests.exceptions.SSLError as exc:
            raise CentralUnreachable(f"{method} {path}: TLS failure: {exc}", tls=True) from exc
        except requests.RequestException as exc:
            raise CentralUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return response


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _refused(response: requests.Response, body: object) -> CentralRefused:
    code = f"http_{response.status_code}"
    detail = response.reason or ""
    extra: Mapping[str, Any] | None = None
    if isinstance(body, dict):
        extra = body
        if isinstance(body.get("error"), str):
            code = body["error"]
        if isinstance(body.get("detail"), str):
            detail = body["detail"]
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and isinstance(body, dict):
        value = body.get("retry_after_s")
        if isinstance(value, int | float) and not isinstance(value, bool):
            retry_after = min(max(0.0, float(value)), MAX_RETRY_AFTER_S)
    return CentralRefused(response.status_code, code, detail, retry_after_s=retry_after, body=extra)
