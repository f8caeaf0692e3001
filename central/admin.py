"""A small HTTP client for the reference central's admin API (used by the CLI and tests).

Every call has a timeout. Error answers raise the :mod:`central.errors` class
named by the body's ``error`` code (a plain :class:`CentralError` with the
status for codes it does not know).
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote

import requests

from .errors import BY_CODE, CentralError

__all__ = ["TOKEN_ENV", "CentralAdmin", "CentralUnreachable"]

#: The environment variable that holds an operator's API token (the CLI reads it too).
TOKEN_ENV = "PORTIER_CENTRAL_TOKEN"
#: The session cookie and CSRF header of a password login (``central.server``'s names; not
#: imported from there, which would load aiohttp into every admin client).
SESSION_COOKIE = "portier_session"
CSRF_HEADER = "X-CSRF-Token"

log = logging.getLogger(__name__)


class CentralUnreachable(ConnectionError):
    """The central did not answer (refused, reset, timed out)."""


class CentralAdmin:
    """Admin calls against a running reference central at *url*.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8080``.
        timeout: seconds for connect and for read, per call.
        token: the operator's API token, sent as ``Authorization: Bearer``
            (default: ``$PORTIER_CENTRAL_TOKEN``; none: calls get 401).
        session: instead of a token, a password login's session (:meth:`login`):
            ``(session, csrf_token)``, sent as the console's cookie and CSRF header.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        session: tuple[str, str] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url: {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if session is not None:
            self.use_session(*session)
            return
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def use_session(self, session: str, csrf_token: str) -> None:
        """Call as the operator of a password login's session (its cookie and CSRF token)."""
        self._session.headers.pop("Authorization", None)
        self._session.cookies.set(SESSION_COOKIE, session)
        self._session.headers[CSRF_HEADER] = csrf_token

    def login(self, name: str, password: str) -> dict[str, Any]:
        """``POST /admin/login``: a password login. Returns its answer (``operator``,
        ``role``, ``csrf_token``, ``expires_at_ms``, ``must_change_password``) with the
        session cookie's value as ``session``; later calls of this client use it."""
        answer: dict[str, Any] = self._call(
            "POST", "/admin/login", json={"name": name, "password": password}
        )
        session = self._session.cookies.get(SESSION_COOKIE)
        if not session:
            raise CentralError("the central answered the login without a session")
        self.use_session(session, str(answer["csrf_token"]))
        return {**answer, "session": session}

    def logout(self) -> None:
        """``POST /admin/logout``: end this client's session."""
        self._call("POST", "/admin/logout")

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> CentralAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        try:
            response = self._session.request(
                method, self.url + path, json=json, params=params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise CentralUnreachable(f"{method} {self.url}{path}: {exc}") from exc
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                cls = BY_CODE.get(body["error"], CentralError)
                extra = {k: v for k, v in body.items() if k not in ("error", "detail")}
                error = cls(str(body.get("detail", "")), **extra)
            else:
                error = CentralError(response.text[:200])
            if type(error) is CentralError:
                error.status = response.status_code  # type: ignore[misc]
            raise error
        return body

    def info(self) -> dict[str, Any]:
        """Return ``AdminInfo`` (site, active kid, head cursor, limits)."""
        return self._call("GET", "/admin/info")

    def whoami(self) -> dict[str, Any]:
        """Return the operator behind the token: ``{"name", "role", "via"}``."""
        return self._call("GET", "/admin/whoami")

    def operator_journal(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Return operator journal entries after *after* (who did what, from where)."""
        params = {"after": after, "limit": limit}
        return self._call("GET", "/admin/operator-journal", params=params)["entries"]

    def audit_export(
        self, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[str, Any]:
        """Return the audit log between *since_ms* and *until_ms* with its chain proof."""
        params = {
            name: value
            for name, value in (("since", since_ms), ("until", until_ms))
            if value is not None
        }
        return self._call("GET", "/admin/audit", params=params)

    def verify_audit(self) -> dict[str, Any]:
        """Return the central's walk of the whole audit chain (``ok``, ``problems``...)."""
        return self._call("GET", "/admin/audit/verify")

    # -- operators, tokens, sessions ------------------------------------------------

    def operators(self) -> list[dict[str, Any]]:
        """Return every operator (``Operator``: no secrets)."""
        return self._call("GET", "/admin/operators")["operators"]

    def add_operator(self, name: str, role: str, password: str | None = None) -> dict[str, Any]:
        """Create an operator (a password, if given, must be changed at the first login)."""
        body: dict[str, Any] = {"name": name, "role": role}
        if password is not None:
            body["password"] = password
        return self._call("POST", "/admin/operators", json=body)

    def set_operator_role(self, name: str, role: str) -> dict[str, Any]:
        """Give an operator another role (at once, for their tokens and sessions too)."""
        path = f"/admin/operators/{quote(name, safe='')}/role"
        return self._call("POST", path, json={"role": role})

    def disable_operator(self, name: str) -> dict[str, Any]:
        """Disable an operator: their tokens and sessions stop at once."""
        return self._call("POST", f"/admin/operators/{quote(name, safe='')}/disable")

    def enable_operator(self, name: str) -> dict[str, Any]:
        """Enable an operator again."""
        return self._call("POST", f"/admin/operators/{quote(name, safe='')}/enable")

    def reset_password(self, name: str, password: str | None = None) -> dict[str, Any]:
        """Set a new password (random if None; answered once in ``password``) to be changed
        at the next login; the operator's sessions end."""
        body = {} if password is None else {"password": password}
        return self._call("POST", f"/admin/operators/{quote(name, safe='')}/password", json=body)

    def logout_operator(self, name: str) -> int:
        """End every session of an operator; return how many."""
        path = f"/admin/operators/{quote(name, safe='')}/logout"
        return int(self._call("POST", path)["ended"])

    def change_password(self, current: str, new: str) -> dict[str, Any]:
        """Change one's own password."""
        body = {"current_password": current, "new_password": new}
        return self._call("POST", "/admin/password", json=body)

    def tokens(self, operator: str | None = None) -> list[dict[str, Any]]:
        """Return one's own API tokens (a security officer: *operator*'s, ``*``: all)."""
        params = None if operator is None else {"operator": operator}
        return self._call("GET", "/admin/tokens", params=params)["tokens"]

    def create_token(
        self, *, label: str = "", ttl_s: int | None = None, operator: str | None = None
    ) -> dict[str, Any]:
        """Mint an API token (for oneself; a security officer: for *operator*); the secret
        is in ``token``, shown this once."""
        body: dict[str, Any] = {"label": label}
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        if operator is not None:
            body["operator"] = operator
        return self._call("POST", "/admin/tokens", json=body)

    def revoke_token(self, token_id: str) -> None:
        """Revoke an API token (one's own; a security officer: any)."""
        self._call("DELETE", f"/admin/tokens/{quote(token_id, safe='')}")

    def sessions(self, operator: str | None = None) -> list[dict[str, Any]]:
        """Return live browser sessions: one's own (a security officer: *operator*'s)."""
        params = None if operator is None else {"operator": operator}
        return self._call("GET", "/admin/sessions", params=params)["sessions"]

    def end_session(self, session_id: str) -> None:
        """Log one session out."""
        self._call("DELETE", f"/admin/sessions/{quote(session_id, safe='')}")

    def audit_head(self) -> dict[str, Any]:
        """Return the audit chain's head, signed (``portier-central audit head``'s anchor)."""
        return self._call("GET", "/admin/audit/head")

    def create_enroll_token(
        self,
        door: str,
        *,
        site: str | None = None,
        ttl_s: int | None = None,
        zones: list[str] | None = None,
    ) -> dict[str, Any]:
        """Return a new ``EnrollToken`` for *door* (of *site*, default the central's), in
        *zones*."""
        body: dict[str, Any] = {"door": door}
        if zones:
            body["zones"] = list(zones)
        if site is not None:
            body["site"] = site
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        return self._call("POST", "/admin/enroll-tokens", json=body)

    def create_invitation(self, **fields: Any) -> dict[str, Any]:
        """Mint an invitation (``InvitationCreate`` fields); return ``{"token", "invitation"}``."""
        body = {key: value for key, value in fields.items() if value is not None}
        return self._call("POST", "/admin/invitations", json=body)

    def revoke_invitation(self, invitation_id: str) -> dict[str, Any]:
        """Revoke an invitation; return the ``Revocation``."""
        return self._call("POST", f"/admin/invitations/{quote(invitation_id, safe='')}/revoke")

    def invitation_pdf(self, invitation_id: str) -> bytes:
        """The printable invitation (A4 PDF with its QR code)."""
        path = f"/admin/invitations/{quote(invitation_id, safe='')}/pdf"
        try:
            response = self._session.get(self.url + path, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CentralUnreachable(f"GET {self.url}{path}: {exc}") from exc
        if response.status_code >= 400:
            return self._call("GET", path)  # raises the error the answer names
        return response.content

    def resend_invitation(self, invitation_id: str) -> dict[str, Any]:
        """Queue the visitor's invitation e-mail again; return ``{id, visitor_email}``."""
        return self._call("POST", f"/admin/invitations/{quote(invitation_id, safe='')}/resend")

    def decide_invitation(self, invitation_id: str, decision: str, reason: str) -> dict[str, Any]:
        """Approve (``approve``) or refuse (``refuse``) an invitation the deny list held."""
        path = f"/admin/invitations/{quote(invitation_id, safe='')}/decision"
        return self._call("POST", path, json={"decision": decision, "reason": reason})

    def approvals(self) -> list[dict[str, Any]]:
        """The invitations awaiting a security officer's approval."""
        return self._call("GET", "/admin/approvals")["invitations"]

    def deny_list(self) -> list[dict[str, Any]]:
        """The site's deny list."""
        return self._call("GET", "/admin/deny-list")["entries"]

    def add_deny_entry(self, name: str, reason: str) -> dict[str, Any]:
        """Put a person on the deny list, with the reason."""
        return self._call("POST", "/admin/deny-list", json={"name": name, "reason": reason})

    def remove_deny_entry(self, entry_id: str, reason: str) -> dict[str, Any]:
        """Take an entry off the deny list, with the reason."""
        path = f"/admin/deny-list/{quote(entry_id, safe='')}/remove"
        return self._call("POST", path, json={"reason": reason})

    def create_invitation_group(
        self, label: str, invitations: list[dict[str, Any]], *, kind: str = "group"
    ) -> dict[str, Any]:
        """Make several invitations together, all or none (``InvitationGroupCreate``);
        return ``{"id", "group", "invitations": [{"token", "invitation"}]}``."""
        body = {"kind": kind, "label": label, "invitations": invitations}
        return self._call("POST", "/admin/invitations/batch", json=body)

    def create_recurring_invitations(self, **fields: Any) -> dict[str, Any]:
        """One invitation per day of a recurring visit (``InvitationRecurring`` fields);
        return as :meth:`create_invitation_group`."""
        body = {key: value for key, value in fields.items() if value is not None}
        return self._call("POST", "/admin/invitations/recurring", json=body)

    def extend_invitation(self, invitation_id: str, expires: int) -> dict[str, Any]:
        """A later end: a new invitation and token replace the old (revoked); return
        ``{"id", "replaced", "token", "invitation", "revocation"}``."""
        path = f"/admin/invitations/{quote(invitation_id, safe='')}/extend"
        return self._call("POST", path, json={"expires": expires})

    def revoke_invitation_group(self, group_id: str, reason: str) -> dict[str, Any]:
        """Revoke every still-valid invitation of a group, with the reason; return
        ``{"id", "group", "reason", "revoked", "held"}``."""
        path = f"/admin/invitation-groups/{quote(group_id, safe='')}/revoke"
        return self._call("POST", path, json={"reason": reason})

    def extend_invitation_group(self, group_id: str, expires: int) -> dict[str, Any]:
        """Every still-valid invitation of a group to a new end (new tokens, the old
        revoked); return ``{"id", "group", "invitations", "replaced", "held"}``."""
        path = f"/admin/invitation-groups/{quote(group_id, safe='')}/extend"
        return self._call("POST", path, json={"expires": expires})

    def put_badge(self, **fields: Any) -> dict[str, Any]:
        """Add or replace a badge (``BadgeCreate`` fields); return the ``Badge``."""
        body = {key: value for key, value in fields.items() if value is not None}
        return self._call("POST", "/admin/badges", json=body)

    def revoke_badge(self, uid: str) -> dict[str, Any]:
        """Revoke a badge; return the ``Revocation``."""
        return self._call("POST", f"/admin/badges/{quote(uid, safe='')}/revoke")

    def delete_badge(self, uid: str) -> None:
        """Forget a badge."""
        self._call("DELETE", f"/admin/badges/{quote(uid, safe='')}")

    def badge_card_keys(self, uid: str, **fields: Any) -> dict[str, Any]:
        """The keys of the NTAG 424 card *uid* for the issuance station (``CardKeysRequest``
        fields: ``key_version``, ``replaces``, ``sun_url``); return ``CardKeys``."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", f"/admin/badges/{quote(uid, safe='')}/keys", json=body)

    def identify_card(self, sun_url: str) -> str:
        """The UID (hex) of the card of this site that wrote *sun_url*."""
        return str(self._call("POST", "/admin/badges/identify", json={"sun_url": sun_url})["uid"])

    def issue_badge(self, uid: str, **fields: Any) -> dict[str, Any]:
        """Register the card *uid* the station wrote (``BadgeIssue``); return the ``Badge``."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", f"/admin/badges/{quote(uid, safe='')}/issue", json=body)

    def keys(self) -> dict[str, Any]:
        """Return ``{"active_kid", "keys"}``."""
        return self._call("GET", "/admin/keys")

    def rotate_key(self, *, retire_now: bool = False) -> dict[str, Any]:
        """Rotate the signing key; return ``{"active", "previous"}``."""
        return self._call("POST", "/admin/keys/rotate", json={"retire_now": retire_now})

    def put_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        """Set the schedule of door or zone *schedule_id* (``ScheduleInput`` fields)."""
        body = {key: value for key, value in fields.items() if value is not None}
        return self._call("PUT", f"/admin/schedules/{quote(schedule_id, safe='')}", json=body)

    def list_schedules(self, *, site: str | None = None) -> list[dict[str, Any]]:
        """The schedules of the doors and zones."""
        params = {"site": site} if site is not None else None
        return list(self._call("GET", "/admin/schedules", params=params)["schedules"])

    def list_holidays(self, *, site: str | None = None) -> list[dict[str, Any]]:
        """The site's holidays, by date."""
        params = {"site": site} if site is not None else None
        return list(self._call("GET", "/admin/holidays", params=params)["holidays"])

    def put_holiday(self, date: str, name: str, *, site: str | None = None) -> dict[str, Any]:
        """Close every schedule of the site on *date* (``YYYY-MM-DD``), named *name*."""
        body: dict[str, Any] = {"name": name}
        if site is not None:
            body["site"] = site
        return dict(self._call("PUT", f"/admin/holidays/{quote(date, safe='')}", json=body))

    def delete_holiday(self, date: str, *, site: str | None = None) -> None:
        """Remove the holiday of *date*."""
        params = {"site": site} if site is not None else None
        self._call("DELETE", f"/admin/holidays/{quote(date, safe='')}", params=params)

    def list_badges(self, search: str | None = None) -> list[dict[str, Any]]:
        """The badges (holder, doors, zones, guard or not, revoked, key version)."""
        params = {"q": search} if search else None
        return list(self._call("GET", "/admin/badges", params=params)["badges"])

    def rights(self, uid: str, door: str) -> dict[str, Any]:
        """Whether badge *uid* opens *door* now and this week's spans."""
        return dict(self._call("GET", "/admin/rights", params={"uid": uid, "door": door}))

    def delete_schedule(self, schedule_id: str, *, site: str | None = None) -> None:
        """Remove the schedule of a door or zone (of *site*, default the central's)."""
        params = {"site": site} if site is not None else None
        self._call("DELETE", f"/admin/schedules/{quote(schedule_id, safe='')}", params=params)

    def set_door_mode(
        self, door: str, mode: str, reason: str, *, zone: bool = False, site: str | None = None
    ) -> dict[str, Any]:
        """Set a door's mode (*zone*: every enrolled door of zone *door*), with the reason;
        return the ``DoorMode``."""
        body: dict[str, Any] = {"mode": mode, "reason": reason}
        if site is not None:
            body["site"] = site
        path = f"/admin/{'zones' if zone else 'doors'}/{quote(door, safe='')}/mode"
        return self._call("PUT", path, json=body)

    def door_modes(self, *, site: str | None = None) -> dict[str, Any]:
        """Return the doors and zones with their modes (``DoorModes``)."""
        return self._call("GET", "/admin/door-modes", params={"site": site} if site else None)

    def alarms(self) -> list[dict[str, Any]]:
        """Return the alarms the devices report now, each with its acknowledgement."""
        return list(self._call("GET", "/admin/alarms")["alarms"])

    def acknowledge_alarm(
        self, device_id: str, code: str, since_ms: int, note: str
    ) -> dict[str, Any]:
        """Acknowledge the alarm *code* of *device_id* raised at *since_ms*, with *note*."""
        body = {"device_id": device_id, "code": code, "since_ms": since_ms, "note": note}
        return self._call("POST", "/admin/alarms/acknowledge", json=body)

    def put_door_settings(
        self, door: str, settings: dict[str, Any], *, site: str | None = None
    ) -> dict[str, Any]:
        """Replace a door's settings; return the ``DoorSettings``."""
        body: dict[str, Any] = {"settings": settings}
        if site is not None:
            body["site"] = site
        return self._call("PUT", f"/admin/doors/{quote(door, safe='')}/settings", json=body)

    def create_event_pack(
        self,
        device_id: str,
        *,
        name: str,
        starts: int,
        ends: int,
        invitations: list[str] | None = None,
        kiosk: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Make an event pack for *device_id* (docs/sync.md "Event packs"); the answer's
        ``file`` is the pack to save as it is."""
        body: dict[str, Any] = {
            "device_id": device_id,
            "event": {"name": name, "starts": starts, "ends": ends},
        }
        if invitations is not None:
            body["invitations"] = invitations
        if kiosk is not None:
            body["kiosk"] = kiosk
        return self._call("POST", "/admin/event-packs", json=body)

    def event_packs(self) -> dict[str, Any]:
        """Return ``{"packs": [...], "devices": [...]}``: the packs made, and the devices a
        pack can be made for."""
        return self._call("GET", "/admin/event-packs")

    def merge_journal(self, export: dict[str, Any]) -> dict[str, Any]:
        """Merge a journal exported by ``edge-agent journal export``; return the counts."""
        return self._call("POST", "/admin/event-packs/merge", json=export)

    def disable_device(self, device_id: str) -> dict[str, Any]:
        """Disable a device; return its ``DeviceSummary``."""
        return self._call("POST", f"/admin/devices/{quote(device_id, safe='')}/disable")

    def reset_device(self, device_id: str) -> dict[str, Any]:
        """Allow one re-enrollment of a device without its credential; return its summary."""
        return self._call("POST", f"/admin/devices/{quote(device_id, safe='')}/reset")

    def received(self, *, verify: bool = False) -> dict[str, Any]:
        """Return the ``ReceivedView`` (per-device counts, duplicates, chain state)."""
        return self._call("GET", "/admin/events", params={"verify": "true" if verify else "false"})

    def device_events(
        self, device_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> dict[str, Any]:
        """Return one ``StoredEventsPage`` of *device_id*."""
        return self._call(
            "GET",
            f"/admin/devices/{quote(device_id, safe='')}/events",
            params={"after_seq": after_seq, "limit": limit},
        )

    def export_device_events(
        self, device_id: str, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> dict[str, Any]:
        """Return *device_id*'s events between *since_ms* and *until_ms* (the device's clock)
        with the chain proof (``central.store.eventchain.verify_export`` re-checks it)."""
        params = {
            name: value
            for name, value in (("since", since_ms), ("until", until_ms))
            if value is not None
        }
        return self._call(
            "GET", f"/admin/devices/{quote(device_id, safe='')}/export", params=params
        )

    def all_device_events(self, device_id: str, *, page: int = 5000) -> list[dict[str, Any]]:
        """Return every stored event of *device_id*, by seq (pages through them)."""
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            result = self.device_events(device_id, after_seq=after, limit=page)
            events.extend(result["events"])
            after = result["next_after_seq"]
            if not result["more"]:
                return events

    def device_selftest(self, device_id: str) -> dict[str, Any]:
        """Return the ``StoredSelfTest`` of *device_id* (its latest self-test report)."""
        return self._call("GET", f"/admin/devices/{quote(device_id, safe='')}/selftest")

    def faults(self) -> list[dict[str, Any]]:
        """Return the faults that are on (and spent), with their counters."""
        return self._call("GET", "/admin/faults")["faults"]

    def set_fault(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """Switch fault *name* on (``FaultSpec`` fields); return the fault list."""
        body = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
        return self._call("POST", "/admin/faults", json=body)["faults"]

    def clear_faults(
        self, name: str | None = None, endpoint: str | None = None
    ) -> list[dict[str, Any]]:
        """Switch faults off (all, or those of *name* / *endpoint*); return those left."""
        params = {k: v for k, v in (("name", name), ("endpoint", endpoint)) if v is not None}
        return self._call("DELETE", "/admin/faults", params=params)["faults"]
