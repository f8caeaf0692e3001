"""A small synchronous client for the agent's local API (Unix socket).

Used by the kiosk's worker threads and by ``edge-agent present|status``. It is
built on :mod:`http.client` so that the kiosk needs no extra HTTP stack and
every call has a timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote


class AgentUnavailable(ConnectionError):
    """The agent's socket is missing, refuses, or the call timed out."""


class ApiError(Exception):
    """The agent answered with an error status; ``code`` is its machine-readable reason."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.body = body


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        # A socket with a timeout is non-blocking underneath, and a Unix socket whose
        # accept queue is full (a burst of connections the agent has not accepted
        # yet) then answers EAGAIN at once instead of waiting: retry until the
        # timeout, as a blocking connect would wait.
        deadline = time.monotonic() + (self.timeout or 5.0)
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._path)
            except BlockingIOError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
                continue
            except OSError:
                sock.close()
                raise
            self.sock = sock
            return


#: Request header: when the caller gives up, in ms on the host's CLOCK_MONOTONIC.
DEADLINE_HEADER = "Portier-Deadline-Ms"


class AgentClient:
    """Calls the local API at ``socket_path``; one connection per call (thread-safe)."""

    def __init__(self, socket_path: str | Path, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.token: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the JSON answer (``headers``: extra, or overriding).

        Raises :class:`AgentUnavailable` when the agent cannot be reached and
        :class:`ApiError` for an error status.
        """
        conn = _UnixConnection(self.socket_path, timeout or self.timeout)
        # When this call gives up, on the host's monotonic clock (the agent is on the
        # same host: a Unix socket): an agent that hung meanwhile must not act on a
        # request nobody waits for any more (docs/local-api.md, "Deadlines").
        deadline_ms = int((time.monotonic() + (timeout or self.timeout)) * 1000)
        sent = {"Content-Type": "application/json", DEADLINE_HEADER: str(deadline_ms)}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AgentUnavailable(f"agent at {self.socket_path} unreachable: {exc}") from exc
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise ApiError(
                response.status, "bad_response", raw[:200].decode(errors="replace"), {}
            ) from exc
        if response.status >= 400:
            raise ApiError(
                response.status, answer.get("error", "error"), answer.get("message", ""), answer
            )
        return answer

    # -- convenience ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """GET /v1/status."""
        return self.request("GET", "/v1/status")

    def present_qr(
        self, text: str, source: str = "api", open_mode: str | None = None
    ) -> dict[str, Any]:
        """POST /v1/present with a QR payload.

        ``open_mode="on_request"``: decide now but open the door only on
        :meth:`open_grant` with the answer's ``grant["id"]`` (the kiosk's welcome
        step); None or ``"now"``: the door opens with the decision.
        """
        body = {"qr": text, "source": source}
        if open_mode is not None:
            body["open"] = open_mode
        return self.request("POST", "/v1/present", body)

    def open_grant(self, grant_id: str) -> dict[str, Any]:
        """POST /v1/grants/{id}/open: open the door for a grant held since the scan."""
        return self.request("POST", f"/v1/grants/{quote(grant_id, safe='')}/open", {})

    def present_badge(
        self, uid_hex: str, sun_url: str | None = None, source: str = "api"
    ) -> dict[str, Any]:
        """POST /v1/present with a badge UID (and SUN URL)."""
        body: dict[str, Any] = {"badge_uid": uid_hex, "source": source}
        if sun_url:
            body["sun_url"] = sun_url
        return self.request("POST", "/v1/present", body)

    def guard_login(self, badge_uid: str, pin: str, sun_url: str | None = None) -> dict[str, Any]:
        """Log a guard in; keeps the session token for later calls.

        ``sun_url``: the SUN URL of the tap, required for an NTAG 424 guard badge.
        """
        body = {"badge_uid": badge_uid, "pin": pin}
        if sun_url:
            body["sun_url"] = sun_url
        answer = self.request("POST", "/v1/guard/login", body)
        self.token = answer["token"]
        return answer

    def guard_logout(self) -> None:
        """Close the guard session."""
        if self.token:
            self.request("POST", "/v1/guard/logout", {})
            self.token = None

    def guard_action(self, action: str, reason: str, alarm: str | None = None) -> dict[str, Any]:
        """POST /v1/guard/actions."""
        body = {"action": action, "reason": reason}
        if alarm:
            body["alarm"] = alarm
        return self.request("POST", "/v1/guard/actions", body)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """GET /v1/guard/recent: the latest journal events, newest first (guard only)."""
        return self.request("GET", f"/v1/guard/recent?limit={int(limit)}")["events"]

    def visitors(self, query: str) -> list[dict[str, Any]]:
        """GET /v1/visitors: invitations whose visitor name starts with ``query`` (guard only)."""
        return self.request("GET", f"/v1/visitors?q={quote(query)}")["visitors"]

    def expected(self, limit: int = 100) -> dict[str, Any]:
        """GET /v1/guard/expected: the invitations valid today (guard only)."""
        return self.request("GET", f"/v1/guard/expected?limit={int(limit)}")

    def checkin(
        self,
        invitation_id: str,
        *,
        consent: bool,
        photo_jpeg: bytes | None = None,
        override_reason: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/checkin; the photo is sent only with the visitor's consent.

        ``override_reason``: a guard checks in an invitation the policy refused.
        """
        body: dict[str, Any] = {"invitation_id": invitation_id, "consent": consent}
        if override_reason is not None:
            body["override_reason"] = override_reason
        if photo_jpeg is not None:
            body["photo_jpeg_b64"] = base64.b64encode(photo_jpeg).decode("ascii")
        return self.request("POST", "/v1/checkin", body)

    def checkout(self, pass_id: str) -> dict[str, Any]:
        """POST /v1/checkout: a visitor checks out with their pass (the id in its QR code).

        Raises :class:`ApiError` ``unknown_pass`` (404) or ``not_on_site`` (409)."""
        return self.request("POST", "/v1/checkout", {"pass_id": pass_id})

    def print_muster(self, pdf: bytes) -> dict[str, Any]:
        """POST /v1/muster/print: print the muster list ``pdf`` (rendered by the kiosk).

        Raises :class:`ApiError` ``printer_unavailable`` (503) or ``no_printer`` (409)."""
        body = {"pdf_b64": base64.b64encode(pdf).decode("ascii")}
        return self.request("POST", "/v1/muster/print", body)

    def reissue_pass(self, invitation_id: str) -> dict[str, Any]:
        """POST /v1/guard/passes: a new pass id for a guard's reprint (the old pass stops
        working); the answer says what the pass prints."""
        return self.request("POST", "/v1/guard/passes", {"invitation_id": invitation_id})

    def guard_checkout(self, invitation_id: str, reason: str) -> dict[str, Any]:
        """POST /v1/guard/checkout: a guard checks a visitor out, with a reason."""
        return self.request(
            "POST", "/v1/guard/checkout", {"invitation_id": invitation_id, "reason": reason}
        )

    def muster(self) -> dict[str, Any]:
        """GET /v1/muster: the visitors on site (host, time of entry) and the fire input."""
        return self.request("GET", "/v1/muster")

    def call_help(self, screen: str, lang: str) -> dict[str, Any]:
        """POST /v1/help: a visitor on ``screen`` (in ``lang``) calls a guard."""
        return self.request("POST", "/v1/help", {"screen": screen, "lang": lang})

    def print_pass(self, pdf: bytes, *, pass_id: str, invitation_id: str) -> dict[str, Any]:
        """POST /v1/passes/print: print the visitor pass ``pdf`` (rendered by the kiosk).

        From a guard's session (this client holding its token) it is the guard's reprint.
        Raises :class:`ApiError` ``printer_unavailable`` (503) when the printer cannot
        print, ``no_printer`` (409) when there is none.
        """
        body = {
            "pass_id": pass_id,
            "invitation_id": invitation_id,
            "pdf_b64": base64.b64encode(pdf).decode("ascii"),
        }
        return self.request("POST", "/v1/passes/print", body)

    def simulate(self, action: str, **body: Any) -> dict[str, Any]:
        """POST /v1/sim/{action} (simulated hardware only)."""
        return self.request("POST", f"/v1/sim/{action}", body)

    def events(self, timeout: float = 30.0) -> Iterator[dict[str, Any]]:
        """Yield pushed events from GET /v1/events until the connection ends.

        ``timeout`` bounds the silence between two lines (the agent sends a
        keepalive every 15 s). Raises :class:`AgentUnavailable` when the
        stream cannot be opened or breaks.
        """
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            conn.request("GET", "/v1/events", headers={"Accept": "text/event-stream"})
            response = conn.getresponse()
            if response.status != 200:
                raise AgentUnavailable(f"event stream refused: {response.status}")
            while True:
                # HTTPResponse.readline undoes the chunked transfer encoding.
                line = response.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    yield json.loads(line[6:])
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise AgentUnavailable(f"event stream broke: {exc}") from exc
        finally:
            conn.close()
