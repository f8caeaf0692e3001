"""Who may call which admin route: one table (docs/central.md, "Operators and roles").

``ROUTE_ROLES[(method, route)]`` is the set of roles that may call that admin route;
a route missing from the table is refused to everyone (tests check that every admin
route of the server is in it). ``security_officer`` may do everything.

The roles:

* ``security_officer`` administers the operators (accounts, roles, passwords, anyone's
  tokens and sessions) and can never disable or demote the last enabled one.
* ``pass_office``: visitors and badges (invitations, badges), reads the summary.
* ``security_officer``: everything (keys, schedules, door modes, devices, faults, the deny
  list and the approval of the invitations it holds).
* ``auditor``: reads only (received events, stored events, keys, self-tests), reads,
  verifies and exports the audit log, and exports a device's events with their chain proof.
* ``installer``: enrolls and resets devices, reads self-tests, uses fault injection
  on a test rig.
"""

from __future__ import annotations

from .errors import Unauthorized
from .settings import CentralSettings
from .store.operators import ADMIN_ROLE, ROLES, TOKEN_TTL_S

__all__ = [
    "ADMIN_ROLE",
    "PASSWORD_CHANGE_ROUTES",
    "PUBLIC_ADMIN_ROUTES",
    "ROLES",
    "ROUTE_ROLES",
    "allowed",
    "bootstrap_token",
]

_ALL = frozenset(ROLES)
_PASS = frozenset({"pass_office", "security_officer"})
_SECURITY = frozenset({"security_officer"})
_INSTALL = frozenset({"installer", "security_officer"})
_READ = frozenset({"auditor", "security_officer"})
_READ_INSTALL = frozenset({"auditor", "installer", "security_officer"})

#: (method, route template) -> the roles that may call it.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/admin/info"): _ALL,
    ("GET", "/admin/whoami"): _ALL,
    ("POST", "/admin/logout"): _ALL,
    ("POST", "/admin/enroll-tokens"): _INSTALL,
    ("POST", "/admin/invitations"): _PASS,
    ("POST", "/admin/invitations/{invitation_id}/revoke"): _PASS,
    # The printable invitation and its e-mail sent again (docs/console.md, "Visitors").
    ("GET", "/admin/invitations/{invitation_id}/pdf"): _PASS,
    ("POST", "/admin/invitations/{invitation_id}/resend"): _PASS,
    # Deny-list screening: only a security officer decides, and keeps the list.
    ("POST", "/admin/invitations/{invitation_id}/decision"): _SECURITY,
    ("GET", "/admin/approvals"): _SECURITY,
    ("GET", "/admin/deny-list"): _SECURITY,
    ("POST", "/admin/deny-list"): _SECURITY,
    ("POST", "/admin/deny-list/{entry_id}/remove"): _SECURITY,
    # Several at once (a group, a CSV import), a recurring visitor, an extension (issue 14).
    ("POST", "/admin/invitations/batch"): _PASS,
    ("POST", "/admin/invitations/recurring"): _PASS,
    ("POST", "/admin/invitations/{invitation_id}/extend"): _PASS,
    # A whole group at once (central/store/groups.py).
    ("POST", "/admin/invitation-groups/{group_id}/revoke"): _PASS,
    ("POST", "/admin/invitation-groups/{group_id}/extend"): _PASS,
    ("GET", "/admin/badges"): _PASS | _READ,
    ("POST", "/admin/badges"): _PASS,
    ("DELETE", "/admin/badges/{uid}"): _PASS,
    ("POST", "/admin/badges/{uid}/revoke"): _PASS,
    # Badge issuance at the Pass Office desk (docs/badges.md): a card's keys, its registration.
    ("POST", "/admin/badges/{uid}/keys"): _PASS,
    ("POST", "/admin/badges/{uid}/issue"): _PASS,
    ("POST", "/admin/badges/identify"): _PASS,
    ("GET", "/admin/keys"): _READ,
    ("POST", "/admin/keys/rotate"): _SECURITY,
    ("PUT", "/admin/schedules/{schedule_id}"): _SECURITY,
    ("DELETE", "/admin/schedules/{schedule_id}"): _SECURITY,
    ("GET", "/admin/schedules"): _READ,
    ("GET", "/admin/holidays"): _READ,
    ("PUT", "/admin/holidays/{date}"): _SECURITY,
    ("DELETE", "/admin/holidays/{date}"): _SECURITY,
    # A badge's rights at a door explained (central/rights.py): who answers "why not?".
    ("GET", "/admin/rights"): _PASS | _READ,
    ("PUT", "/admin/doors/{door}/settings"): _SECURITY,
    ("PUT", "/admin/doors/{door}/mode"): _SECURITY,
    ("PUT", "/admin/zones/{zone}/mode"): _SECURITY,
    ("GET", "/admin/door-modes"): _READ,
    ("GET", "/admin/alarms"): _READ_INSTALL,
    ("POST", "/admin/alarms/acknowledge"): _SECURITY,
    ("POST", "/admin/devices/{device_id}/disable"): _INSTALL,
    ("POST", "/admin/devices/{device_id}/reset"): _INSTALL,
    ("GET", "/admin/events"): _READ_INSTALL,
    ("GET", "/admin/devices/{device_id}/events"): _READ,
    ("GET", "/admin/devices/{device_id}/export"): _READ,
    ("GET", "/admin/devices/{device_id}/selftest"): _READ_INSTALL,
    # Operators: a security officer administers them (auditors read who has which role);
    # tokens and sessions: everyone their own, a security officer anyone's (the handler).
    ("GET", "/admin/operators"): _READ,
    ("POST", "/admin/operators"): _SECURITY,
    ("POST", "/admin/operators/{name}/role"): _SECURITY,
    ("POST", "/admin/operators/{name}/disable"): _SECURITY,
    ("POST", "/admin/operators/{name}/enable"): _SECURITY,
    ("POST", "/admin/operators/{name}/password"): _SECURITY,
    ("POST", "/admin/operators/{name}/logout"): _SECURITY,
    ("POST", "/admin/password"): _ALL,
    ("GET", "/admin/tokens"): _ALL,
    ("POST", "/admin/tokens"): _ALL,
    ("DELETE", "/admin/tokens/{token_id}"): _ALL,
    ("GET", "/admin/sessions"): _ALL,
    ("DELETE", "/admin/sessions/{session_id}"): _ALL,
    ("GET", "/admin/operator-journal"): _READ,
    ("GET", "/admin/audit"): _READ,
    ("GET", "/admin/audit/verify"): _READ,
    ("GET", "/admin/audit/head"): _READ,
    # Event packs for off-site kiosks, and their journals merged back (issue #14).
    ("GET", "/admin/event-packs"): _PASS,
    ("POST", "/admin/event-packs"): _PASS,
    ("POST", "/admin/event-packs/merge"): _PASS,
    ("GET", "/admin/faults"): _INSTALL,
    ("POST", "/admin/faults"): _INSTALL,
    ("DELETE", "/admin/faults"): _INSTALL,
}

#: What a session whose password a security officer set may do: change it (and leave).
PASSWORD_CHANGE_ROUTES = frozenset(
    {("POST", "/admin/password"), ("GET", "/admin/whoami"), ("POST", "/admin/logout")}
)

#: Admin routes that need no credential: the browser's password login.
PUBLIC_ADMIN_ROUTES = frozenset({("POST", "/admin/login")})


def allowed(role: str, method: str, route: str) -> bool:
    """Return whether *role* may call *method* *route* (a route template)."""
    if method == "HEAD":
        method = "GET"
    return role in ROUTE_ROLES.get((method, route), frozenset())


def bootstrap_token(
    settings: CentralSettings,
    *,
    operator: str = "bootstrap",
    role: str = "security_officer",
    token: str | None = None,
    ttl_s: int = TOKEN_TTL_S,
) -> str:
    """Open the central's database locally (not over HTTP), make sure *operator* exists
    with *role*, and return an API token for it: *token* itself if given (registered for
    *operator* unless it already works), else a new one.

    What the demo and the test harness do before they start a central; an operator
    does the same with ``portier-central operator add`` and ``token create``.

    Raises:
        BadRequest: a bad name, role or token.
    """
    from .store import CentralStore

    with CentralStore(settings) as store:
        if token is not None:
            try:
                store.authenticate_operator(token)
                return token  # registered before (a restart on the same data)
            except Unauthorized:
                pass  # not registered (or no longer valid): registered below
        if operator not in {o["name"] for o in store.list_operators()}:
            store.add_operator(operator, role)
        return str(store.create_api_token(operator, ttl_s=ttl_s, secret=token)["token"])
