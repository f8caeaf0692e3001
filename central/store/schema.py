"""The central's schema, as numbered steps, and the one function that applies them.

``SCHEMA_VERSION`` is the version this code writes. Each backend has its steps:
``version -> statements`` that bring a database of the version before to this one, run in
one transaction with the new version recorded (:meth:`Database.set_schema_version`). A
new database (version 0) runs every step; a database of version 1 or 2 the steps after it.

A schema change is a new step for **each** backend, and ``SCHEMA_VERSION`` + 1. The
SQLite DDL below is SQLite's own (``STRICT`` tables, ``BLOB``, ``ANY``,
``AUTOINCREMENT``): docs/central-store.md lists what a PostgreSQL schema writes instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .auditchain import chain_existing_rows
from .db import Database, Step
from .stats import rebuild_onsite_visits

__all__ = ["POSTGRES_STEPS", "SCHEMA_VERSION", "SQLITE_STEPS", "migrate"]

SCHEMA_VERSION = 16

#: Schema 1: the tables of the first central.
_SCHEMA_V1 = (
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT""",
    """CREATE TABLE enroll_tokens (
        token_hash BLOB PRIMARY KEY,
        site TEXT NOT NULL,
        door TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_by TEXT,
        used_at_ms INTEGER
    ) STRICT""",
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        door TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        credential_hash BLOB UNIQUE,
        enrolled_at_ms INTEGER NOT NULL,
        hardware TEXT NOT NULL DEFAULT '{}',
        versions TEXT NOT NULL DEFAULT '{}',
        next_seq INTEGER NOT NULL DEFAULT 1,
        last_hash TEXT,
        anchor_seq INTEGER,
        anchor_prev_hash TEXT,
        chain_ok INTEGER NOT NULL DEFAULT 1,
        chain_broken_at INTEGER,
        chain_break_reason TEXT,
        unique_events INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        gaps INTEGER NOT NULL DEFAULT 0,
        last_event_at_ms INTEGER,
        last_heartbeat_at_ms INTEGER,
        last_heartbeat TEXT
    ) STRICT""",
    # status 'stored' or 'rejected': a rejected event that arrived at next_seq
    # still holds its place in the sequence (see upload_events).
    """CREATE TABLE events (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        wall_ms INTEGER,
        mono_ns INTEGER,
        type TEXT,
        payload TEXT,
        prev_hash TEXT,
        hash TEXT,
        received_at_ms INTEGER NOT NULL,
        link_ok INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        PRIMARY KEY (device_id, seq)
    ) STRICT""",
    "CREATE UNIQUE INDEX events_id ON events(device_id, id)",
    """CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        private_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        not_before INTEGER,
        not_after INTEGER,
        active INTEGER NOT NULL DEFAULT 0
    ) STRICT""",
    """CREATE TABLE invitations (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        kid TEXT NOT NULL,
        expires INTEGER NOT NULL,
        revoked_at INTEGER,
        data TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE revocations (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        site TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    ) STRICT""",
    """CREATE TABLE badges (uid TEXT PRIMARY KEY, site TEXT NOT NULL, data TEXT NOT NULL) STRICT""",
    """CREATE TABLE schedules (
        site TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (site, id)
    ) STRICT""",
    """CREATE TABLE door_settings (
        site TEXT NOT NULL,
        door TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (site, door)
    ) STRICT""",
    """CREATE TABLE used_invitations (
        id TEXT PRIMARY KEY, site TEXT NOT NULL, data TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE badge_counters (
        site TEXT NOT NULL,
        uid TEXT NOT NULL,
        counter INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (site, uid)
    ) STRICT""",
    # The deltas log. site NULL: for every site (signing keys).
    """CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        site TEXT,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
        data TEXT
    ) STRICT""",
)

#: Tables added by schema 2: the latest self-test report of each device (first boot).
_SCHEMA_V2 = (
    """CREATE TABLE selftest_reports (
        device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
        received_at_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        report TEXT NOT NULL
    ) STRICT""",
)

#: Schema 3 (issue 10): which zones a device's door is in (admin-declared on its enroll
#: token), whether it has a guard console, an admin reset that allows one re-enrollment,
#: the enroll retry secret, and the central's own delta signing keys.
_SCHEMA_V3 = (
    "ALTER TABLE devices ADD COLUMN zones TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE devices ADD COLUMN guard_console INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE devices ADD COLUMN reset_allowed INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE enroll_tokens ADD COLUMN zones TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE enroll_tokens ADD COLUMN retry_hash BLOB",
    """CREATE TABLE delta_keys (
        kid TEXT PRIMARY KEY,
        private_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 0
    ) STRICT""",
)

#: Schema 4 (issue 13): operator accounts, their API tokens and browser sessions, and the
#: operator journal (central/store/operators.py).
_SCHEMA_V4 = (
    """CREATE TABLE operators (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_ms INTEGER NOT NULL,
        failed_count INTEGER NOT NULL DEFAULT 0,
        first_failed_ms INTEGER,
        locked_until_ms INTEGER
    ) STRICT""",
    """CREATE TABLE api_tokens (
        token_id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        operator TEXT NOT NULL REFERENCES operators(name),
        label TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    ) STRICT""",
    """CREATE TABLE operator_sessions (
        session_hash BLOB PRIMARY KEY,
        operator TEXT NOT NULL REFERENCES operators(name),
        csrf_hash BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) STRICT""",
    """CREATE TABLE operator_journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        operator TEXT,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        remote TEXT,
        status INTEGER
    ) STRICT""",
)


#: Schema 5 (issue 13): the operator journal becomes the hash-chained, append-only audit
#: log (:mod:`central.store.auditchain`): the rows written before are numbered and chained,
#: then triggers refuse any UPDATE or DELETE of a row.
_SCHEMA_V5_SQLITE: Sequence[Step] = (
    "ALTER TABLE operator_journal ADD COLUMN prev_hash TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE operator_journal ADD COLUMN hash TEXT NOT NULL DEFAULT ''",
    chain_existing_rows,
    """CREATE TRIGGER operator_journal_no_update BEFORE UPDATE ON operator_journal
    BEGIN SELECT RAISE(ABORT, 'operator_journal is append-only'); END""",
    """CREATE TRIGGER operator_journal_no_delete BEFORE DELETE ON operator_journal
    BEGIN SELECT RAISE(ABORT, 'operator_journal is append-only'); END""",
)

_SCHEMA_V5_POSTGRES: Sequence[Step] = (
    # The chain numbers its rows itself (seq = the head's + 1, under the write lock).
    "ALTER TABLE operator_journal ALTER COLUMN seq SET GENERATED BY DEFAULT",
    "ALTER TABLE operator_journal ADD COLUMN prev_hash TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE operator_journal ADD COLUMN hash TEXT NOT NULL DEFAULT ''",
    chain_existing_rows,
    """CREATE FUNCTION portier_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'operator_journal is append-only';
    END $$""",
    """CREATE TRIGGER operator_journal_no_change BEFORE UPDATE OR DELETE ON operator_journal
    FOR EACH ROW EXECUTE FUNCTION portier_append_only()""",
    """CREATE TRIGGER operator_journal_no_truncate BEFORE TRUNCATE ON operator_journal
    FOR EACH STATEMENT EXECUTE FUNCTION portier_append_only()""",
)


#: Schema 6 (issue 13): host notification. An invitation's host e-mail and language (kept
#: here only: never in the signed token nor in the deltas devices receive), and the outbox:
#: one row per (check-in event, channel), written in the transaction that stores the event
#: (central/store/notify.py, central/notify.py).
_SCHEMA_V6 = (
    "ALTER TABLE invitations ADD COLUMN host_email TEXT",
    "ALTER TABLE invitations ADD COLUMN lang TEXT",
    """CREATE TABLE notifications (
        device_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        invitation_id TEXT,
        created_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at_ms INTEGER NOT NULL,
        last_error TEXT,
        done_ms INTEGER,
        data TEXT NOT NULL,
        PRIMARY KEY (device_id, event_id, channel)
    ) STRICT""",
    "CREATE INDEX notifications_due ON notifications(status, next_at_ms)",
)


#: Schema 7 (issue 13): retention (central/store/retention.py). ``purged_at_ms`` marks the
#: events, invitations and notifications whose personal fields were pseudonymised; the
#: index lets each purge read only the events that became old since the last one.
_SCHEMA_V7_SQLITE = (
    "ALTER TABLE events ADD COLUMN purged_at_ms INTEGER",
    "ALTER TABLE invitations ADD COLUMN purged_at_ms INTEGER",
    "ALTER TABLE notifications ADD COLUMN purged_at_ms INTEGER",
    "CREATE INDEX events_received ON events(received_at_ms)",
)
_SCHEMA_V7_POSTGRES = (
    "ALTER TABLE events ADD COLUMN purged_at_ms BIGINT",
    "ALTER TABLE invitations ADD COLUMN purged_at_ms BIGINT",
    "ALTER TABLE notifications ADD COLUMN purged_at_ms BIGINT",
    "CREATE INDEX events_received ON events(received_at_ms)",
)


#: Schema 8 (issue 13): operators over HTTP. An operator whose password a security officer
#: set (a new account, a reset) must change it at the next login (central/store/operators.py).
_SCHEMA_V8 = ("ALTER TABLE operators ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0",)


#: Schema 9 (issue 17): NTAG 424 DNA badges issued at the Pass Office (central/store/issuance.py):
#: per UID, the key version last handed to a station and whether that card was registered.
#: Kept when the badge is deleted, so a card issued again never gets a key version twice.
_SCHEMA_V9_SQLITE = (
    """CREATE TABLE badge_issues (
        uid TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        state TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    ) STRICT""",
)
_SCHEMA_V9_POSTGRES = (
    """CREATE TABLE badge_issues (
        uid TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        state TEXT NOT NULL,
        updated_ms BIGINT NOT NULL
    )""",
)


#: Schema 10 (issue 14, the console's alarms and devices pages): a security officer's
#: acknowledgement of a device's alarm (one per raise: device, code, since when), and every
#: self-test report a device sent (``selftest_reports`` keeps the latest only).
_SCHEMA_V10_SQLITE = (
    """CREATE TABLE alarm_acks (
        device_id TEXT NOT NULL,
        code TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        acked_at_ms INTEGER NOT NULL,
        operator TEXT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (device_id, code, since_ms)
    ) STRICT""",
    """CREATE TABLE selftest_log (
        device_id TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        report TEXT NOT NULL
    ) STRICT""",
    "CREATE INDEX selftest_log_device ON selftest_log(device_id, received_at_ms)",
    "CREATE INDEX alarm_acks_time ON alarm_acks(acked_at_ms)",
)
_SCHEMA_V10_POSTGRES = (
    """CREATE TABLE alarm_acks (
        device_id TEXT NOT NULL,
        code TEXT NOT NULL,
        since_ms BIGINT NOT NULL,
        acked_at_ms BIGINT NOT NULL,
        operator TEXT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (device_id, code, since_ms)
    )""",
    """CREATE TABLE selftest_log (
        device_id TEXT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        ok BIGINT NOT NULL,
        report TEXT NOT NULL
    )""",
    "CREATE INDEX selftest_log_device ON selftest_log(device_id, received_at_ms)",
    "CREATE INDEX alarm_acks_time ON alarm_acks(acked_at_ms)",
)


#: Schema 11 (issue 14): door modes set from the security office, for a door or a zone, with
#: who and why (central/store/doormodes.py); the doors get them in their door settings.
_SCHEMA_V11_SQLITE = (
    """CREATE TABLE door_modes (
        site TEXT NOT NULL,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        mode TEXT NOT NULL,
        set_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        set_at_ms INTEGER NOT NULL,
        PRIMARY KEY (site, scope, name)
    ) STRICT""",
)
_SCHEMA_V11_POSTGRES = (
    """CREATE TABLE door_modes (
        site TEXT NOT NULL,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        mode TEXT NOT NULL,
        set_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        set_at_ms BIGINT NOT NULL,
        PRIMARY KEY (site, scope, name)
    )""",
)


#: Schema 12 (issue 14): the visitor's e-mail of an invitation (its PDF is mailed to it), the
#: site's deny list (names and their comparison key) and the approvals of the invitations it
#: screened out (central/store/screening.py).
_SCHEMA_V12_SQLITE = (
    "ALTER TABLE invitations ADD COLUMN visitor_email TEXT",
    """CREATE TABLE deny_list (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        reason TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_ms INTEGER NOT NULL
    ) STRICT""",
    """CREATE TABLE invitation_approvals (
        invitation_id TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL,
        entry_name TEXT NOT NULL,
        state TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_ms INTEGER NOT NULL,
        decided_by TEXT,
        decided_ms INTEGER,
        reason TEXT
    ) STRICT""",
    "CREATE INDEX invitation_approvals_state ON invitation_approvals(state, requested_ms)",
)
_SCHEMA_V12_POSTGRES = (
    "ALTER TABLE invitations ADD COLUMN visitor_email TEXT",
    """CREATE TABLE deny_list (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        reason TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE invitation_approvals (
        invitation_id TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL,
        entry_name TEXT NOT NULL,
        state TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_ms BIGINT NOT NULL,
        decided_by TEXT,
        decided_ms BIGINT,
        reason TEXT
    )""",
    "CREATE INDEX invitation_approvals_state ON invitation_approvals(state, requested_ms)",
)


#: Schema 13 (issue 14): invitations made together (a group, a recurring visitor's days, a
#: CSV import) and an extension's link between the invitation it replaced and its successor
#: (central/store/visits.py); the console's CSV uploads kept between preview and confirm.
_SCHEMA_V13_SQLITE = (
    """CREATE TABLE invitation_groups (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) STRICT""",
    "ALTER TABLE invitations ADD COLUMN group_id TEXT",
    "ALTER TABLE invitations ADD COLUMN replaces TEXT",
    "ALTER TABLE invitations ADD COLUMN replaced_by TEXT",
    "CREATE INDEX invitations_group ON invitations(group_id)",
    """CREATE TABLE import_drafts (
        id TEXT PRIMARY KEY,
        session_hash TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        label TEXT NOT NULL,
        data TEXT NOT NULL
    ) STRICT""",
)
_SCHEMA_V13_POSTGRES = (
    """CREATE TABLE invitation_groups (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )""",
    "ALTER TABLE invitations ADD COLUMN group_id TEXT",
    "ALTER TABLE invitations ADD COLUMN replaces TEXT",
    "ALTER TABLE invitations ADD COLUMN replaced_by TEXT",
    "CREATE INDEX invitations_group ON invitations(group_id)",
    """CREATE TABLE import_drafts (
        id TEXT PRIMARY KEY,
        session_hash TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        label TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
)

#: Schema 14 (issue 14, the console's statistics and who is on site): the statistics and the
#: on-site list read events of a few types over a period of their time (the device's wall
#: clock, else the reception: the expression is written the same in every query, so the
#: index serves it) -- without the index a year of events is read whole at each page. And
#: each device's contact, one row per quarter hour it sent a heartbeat in (the devices' table
#: keeps only the latest one), for its availability over a period. And the visits open now
#: (who is on site: a check-in not followed by a check-out at that device), kept by the upload
#: so the page does not replay every check-in ever; filled from the events already stored.
_SCHEMA_V14_SQLITE = (
    "CREATE INDEX events_kind_time ON events(type, (coalesce(wall_ms, received_at_ms)))",
    """CREATE TABLE device_contact (
        device_id TEXT NOT NULL,
        quarter INTEGER NOT NULL,
        PRIMARY KEY (device_id, quarter)
    ) STRICT, WITHOUT ROWID""",
    """CREATE TABLE onsite_visits (
        device_id TEXT NOT NULL,
        invitation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, invitation_id)
    ) STRICT, WITHOUT ROWID""",
    rebuild_onsite_visits,
)
_SCHEMA_V14_POSTGRES = (
    "CREATE INDEX events_kind_time ON events(type, (coalesce(wall_ms, received_at_ms)))",
    """CREATE TABLE device_contact (
        device_id TEXT NOT NULL,
        quarter BIGINT NOT NULL,
        PRIMARY KEY (device_id, quarter)
    )""",
    """CREATE TABLE onsite_visits (
        device_id TEXT NOT NULL,
        invitation_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (device_id, invitation_id)
    )""",
    rebuild_onsite_visits,
)


#: Schema 15 (issue 14, access levels): the site's holidays, on which every schedule of the
#: site is closed (central/store/access.py); the doors get them inside the schedules.
_SCHEMA_V15_SQLITE = (
    """CREATE TABLE holidays (
        site TEXT NOT NULL,
        day TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (site, day)
    ) STRICT""",
)
_SCHEMA_V15_POSTGRES = (
    """CREATE TABLE holidays (
        site TEXT NOT NULL,
        day TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (site, day)
    )""",
)


#: Schema 16 (issue #14, event packs): the device's event-pack public key (X25519, sent at
#: enrollment), and the packs exported (their serial orders them per device: a device
#: refuses a pack not newer than the last it installed).
_SCHEMA_V16_SQLITE = (
    "ALTER TABLE devices ADD COLUMN pack_key BLOB",
    """CREATE TABLE event_packs (
        serial INTEGER PRIMARY KEY,
        pack_id TEXT NOT NULL UNIQUE,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        starts INTEGER NOT NULL,
        ends INTEGER NOT NULL,
        guests INTEGER NOT NULL,
        not_after_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL
    ) STRICT""",
)
_SCHEMA_V16_POSTGRES = (
    "ALTER TABLE devices ADD COLUMN pack_key BYTEA",
    """CREATE TABLE event_packs (
        serial BIGINT PRIMARY KEY,
        pack_id TEXT NOT NULL UNIQUE,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        starts BIGINT NOT NULL,
        ends BIGINT NOT NULL,
        guests BIGINT NOT NULL,
        not_after_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        created_by TEXT NOT NULL
    )""",
)


#: SQLite's steps (a database of schema 1 to 15 is migrated on open).
SQLITE_STEPS: Mapping[int, Sequence[Step]] = {
    1: _SCHEMA_V1,
    2: _SCHEMA_V2,
    3: _SCHEMA_V3,
    4: _SCHEMA_V4,
    5: _SCHEMA_V5_SQLITE,
    6: _SCHEMA_V6,
    7: _SCHEMA_V7_SQLITE,
    8: _SCHEMA_V8,
    9: _SCHEMA_V9_SQLITE,
    10: _SCHEMA_V10_SQLITE,
    11: _SCHEMA_V11_SQLITE,
    12: _SCHEMA_V12_SQLITE,
    13: _SCHEMA_V13_SQLITE,
    14: _SCHEMA_V14_SQLITE,
    15: _SCHEMA_V15_SQLITE,
    16: _SCHEMA_V16_SQLITE,
}


#: PostgreSQL's steps: a PostgreSQL database starts at schema 3 (one step, the whole schema),
#: then schema 4 (operators), schema 5 (the audit chain), schema 6 (host notification),
#: schema 7 (retention), schema 8 (must_change_password), schema 9 (badge issuance),
#: schema 10 (alarm acknowledgements, the self-test log), schema 11 (door modes),
#: schema 12 (visitor e-mail, deny list, approvals), schema 13 (invitation groups and
#: extensions, the console's CSV import drafts), schema 14 (the statistics' index, device
#: contact, the visits open now), schema 15 (holidays), schema 16 (event packs).
#: The same tables as SQLite's: ``BIGINT`` for integers, ``BYTEA`` for blobs, an identity
#: column for the deltas cursor; booleans stay 0/1 integers (one code path for both).
POSTGRES_STEPS: Mapping[int, Sequence[Step]] = {
    3: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
        """CREATE TABLE enroll_tokens (
            token_hash BYTEA PRIMARY KEY,
            site TEXT NOT NULL,
            door TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_by TEXT,
            used_at_ms BIGINT,
            zones TEXT NOT NULL DEFAULT '[]',
            retry_hash BYTEA
        )""",
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            door TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            credential_hash BYTEA UNIQUE,
            enrolled_at_ms BIGINT NOT NULL,
            hardware TEXT NOT NULL DEFAULT '{}',
            versions TEXT NOT NULL DEFAULT '{}',
            next_seq BIGINT NOT NULL DEFAULT 1,
            last_hash TEXT,
            anchor_seq BIGINT,
            anchor_prev_hash TEXT,
            chain_ok INTEGER NOT NULL DEFAULT 1,
            chain_broken_at BIGINT,
            chain_break_reason TEXT,
            unique_events BIGINT NOT NULL DEFAULT 0,
            duplicates BIGINT NOT NULL DEFAULT 0,
            rejected BIGINT NOT NULL DEFAULT 0,
            gaps BIGINT NOT NULL DEFAULT 0,
            last_event_at_ms BIGINT,
            last_heartbeat_at_ms BIGINT,
            last_heartbeat TEXT,
            zones TEXT NOT NULL DEFAULT '[]',
            guard_console INTEGER NOT NULL DEFAULT 0,
            reset_allowed INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE events (
            device_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            id TEXT NOT NULL,
            wall_ms BIGINT,
            mono_ns BIGINT,
            type TEXT,
            payload TEXT,
            prev_hash TEXT,
            hash TEXT,
            received_at_ms BIGINT NOT NULL,
            link_ok INTEGER NOT NULL,
            status TEXT NOT NULL,
            reason TEXT,
            PRIMARY KEY (device_id, seq)
        )""",
        "CREATE UNIQUE INDEX events_id ON events(device_id, id)",
        """CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            private_key BYTEA NOT NULL,
            public_key BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            not_before BIGINT,
            not_after BIGINT,
            active INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE invitations (
            id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            kid TEXT NOT NULL,
            expires BIGINT NOT NULL,
            revoked_at BIGINT,
            data TEXT NOT NULL
        )""",
        """CREATE TABLE revocations (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            site TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (kind, id)
        )""",
        "CREATE TABLE badges (uid TEXT PRIMARY KEY, site TEXT NOT NULL, data TEXT NOT NULL)",
        """CREATE TABLE schedules (
            site TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (site, id)
        )""",
        """CREATE TABLE door_settings (
            site TEXT NOT NULL,
            door TEXT NOT NULL,
            version BIGINT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (site, door)
        )""",
        """CREATE TABLE used_invitations (
            id TEXT PRIMARY KEY, site TEXT NOT NULL, data TEXT NOT NULL
        )""",
        """CREATE TABLE badge_counters (
            site TEXT NOT NULL,
            uid TEXT NOT NULL,
            counter BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (site, uid)
        )""",
        """CREATE TABLE changes (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            site TEXT,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
            data TEXT
        )""",
        """CREATE TABLE selftest_reports (
            device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
            received_at_ms BIGINT NOT NULL,
            ok INTEGER NOT NULL,
            report TEXT NOT NULL
        )""",
        """CREATE TABLE delta_keys (
            kid TEXT PRIMARY KEY,
            private_key BYTEA NOT NULL,
            public_key BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0
        )""",
    ),
    4: (
        """CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            password_hash TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_ms BIGINT NOT NULL,
            failed_count INTEGER NOT NULL DEFAULT 0,
            first_failed_ms BIGINT,
            locked_until_ms BIGINT
        )""",
        """CREATE TABLE api_tokens (
            token_id TEXT PRIMARY KEY,
            token_hash BYTEA NOT NULL UNIQUE,
            operator TEXT NOT NULL REFERENCES operators(name),
            label TEXT NOT NULL DEFAULT '',
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL,
            revoked_ms BIGINT
        )""",
        """CREATE TABLE operator_sessions (
            session_hash BYTEA PRIMARY KEY,
            operator TEXT NOT NULL REFERENCES operators(name),
            csrf_hash BYTEA NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL
        )""",
        """CREATE TABLE operator_journal (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at_ms BIGINT NOT NULL,
            operator TEXT,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            remote TEXT,
            status INTEGER
        )""",
    ),
    5: _SCHEMA_V5_POSTGRES,
    6: (
        "ALTER TABLE invitations ADD COLUMN host_email TEXT",
        "ALTER TABLE invitations ADD COLUMN lang TEXT",
        """CREATE TABLE notifications (
            device_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            invitation_id TEXT,
            created_ms BIGINT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at_ms BIGINT NOT NULL,
            last_error TEXT,
            done_ms BIGINT,
            data TEXT NOT NULL,
            PRIMARY KEY (device_id, event_id, channel)
        )""",
        "CREATE INDEX notifications_due ON notifications(status, next_at_ms)",
    ),
    7: _SCHEMA_V7_POSTGRES,
    8: _SCHEMA_V8,
    9: _SCHEMA_V9_POSTGRES,
    10: _SCHEMA_V10_POSTGRES,
    11: _SCHEMA_V11_POSTGRES,
    12: _SCHEMA_V12_POSTGRES,
    13: _SCHEMA_V13_POSTGRES,
    14: _SCHEMA_V14_POSTGRES,
    15: _SCHEMA_V15_POSTGRES,
    16: _SCHEMA_V16_POSTGRES,
}


def migrate(db: Database) -> None:
    """Bring *db* to ``SCHEMA_VERSION`` with its steps, in one transaction.

    Raises:
        RuntimeError: the database was written by newer code.
    """
    if db.schema_version() == SCHEMA_VERSION:
        return
    with db.transaction() as conn:
        # Read the version again under the transaction's write lock: another process
        # starting on the same (new) database may have migrated it while this one
        # waited for the lock (PostgreSQL: the advisory lock; SQLite: BEGIN IMMEDIATE).
        version = db.schema_version()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"central database schema {version} is newer than this code ({SCHEMA_VERSION})"
            )
        # 0: a new database; 1: one written before self-test reports existed;
        # 2: one written before issue 10 (device trust, signed deltas); 3: one written
        # before operator accounts (issue 13); 4: one written before the audit chain;
        # 5: before host notification; 6: before retention; 7: before operators over HTTP;
        # 8: before badge issuance; 9: before the console's alarm acknowledgements;
        # 10: before door modes; 11: before the deny list and visitor e-mails; 12: before
        # invitation groups; 13: before the statistics' index and device contact; 14: before
        # holidays; 15: before event packs.
        for step, statements in sorted(db.migrations.items()):
            if version < step <= SCHEMA_VERSION:
                for statement in statements:
                    if callable(statement):
                        statement(conn)  # a step in Python (chaining existing rows)
                    else:
                        conn.execute(statement)
        db.set_schema_version(conn, SCHEMA_VERSION)
