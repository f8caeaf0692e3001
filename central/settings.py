"""Typed, validated settings of the reference central (``portier-central serve`` flags)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from portier_common.ntag424 import Ntag424Section, SunVerifier
from portier_common.settings import (
    ConfigError,
    build,
    integer,
    load,
    matches,
    number,
    read_private_file,
)

from .tls import Network, parse_proxies

MIB = 1024 * 1024
_EMAIL_RE = re.compile(r"[^@\s<>]{1,64}@[^@\s<>]{1,253}\Z")

#: Site, door, zone, device and schedule names (docs/central-api.yaml ``Name``).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
_NAME_RULE = "1 to 64 characters of letters, digits and ._:- (starting with a letter or digit)"


def check_name(field: str, value: object) -> str:
    """Return *value* if it is a valid name, else raise ConfigError naming *field*."""
    return matches(field, value, NAME_RE, _NAME_RULE)


#: The URL schemes ``--db`` accepts for PostgreSQL (libpq's two spellings).
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``--db`` URL: SQLite at ``path``, or PostgreSQL at ``url`` (libpq's form)."""

    dialect: str
    #: SQLite: the database file.
    path: Path | None = None
    #: PostgreSQL: the URL as given, for libpq (kept out of repr: it may hold a password).
    url: str | None = field(default=None, repr=False)

    def redacted(self) -> str:
        """The URL without its password, for logs and messages."""
        if self.path is not None:
            return f"sqlite://{self.path}" if self.path.is_absolute() else f"sqlite:{self.path}"
        return redact_url(self.url or "")


def redact_url(url: str) -> str:
    """Return *url* with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: hide everything before an "@"
        return re.sub(r"//[^/]*@", "//***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def parse_db_url(value: object, field: str = "db") -> DatabaseUrl:
    """Parse a ``--db`` URL: ``sqlite:///absolute/path`` (or ``sqlite:relative/path``) or
    ``postgresql://[user[:password]@][host][:port]/dbname[?param=value...]``.

    Raises:
        ValueError: anything else; the message names *field* and says what is accepted.
    """
    accepted = "must be sqlite:///PATH or postgresql://[USER@]HOST[:PORT]/DBNAME"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: {value!r} {accepted}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        shown = redact_url(value)
        raise ValueError(f"{field}: {shown!r} is not a URL ({exc}); {accepted}") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"{field}: {value!r} {accepted} (no host, query or fragment)")
        path = parts.path
        if not path or path.endswith("/"):
            raise ValueError(f"{field}: {value!r} names no database file; {accepted}")
        return DatabaseUrl("sqlite", path=Path(path))
    if scheme in POSTGRES_SCHEMES:
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise ValueError(f"{field}: {redact_url(value)!r} names no database; {accepted}")
        return DatabaseUrl("postgresql", url=value)
    raise ValueError(f"{field}: {redact_url(value)!r} {accepted}")


@dataclass(frozen=True)
class CentralSettings:
    """Where the reference central keeps its data, where it listens, and its limits.

    ``host`` defaults to loopback. Off loopback the central serves HTTPS (``tls_cert``
    and ``tls_key``), or plain HTTP behind a TLS-terminating reverse proxy whose
    ``X-Forwarded-*`` headers it believes from ``trusted_proxies`` only
    (docs/deploying-central.md).

    Raises:
        ValueError: a field is out of range; the message names it.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    #: 0 picks a free port (printed when ready).
    port: int = 8080
    #: The site enrollment tokens, invitations and badges belong to by default.
    site: str = "hq"
    max_batch_events: int = 1000
    max_batch_bytes: int = 4 * MIB
    max_payload_bytes: int = 256 * 1024
    max_deltas_limit: int = 1000
    #: How long the device that consumed an enrollment token may enroll again with it.
    enroll_retry_window_s: int = 600
    enroll_token_ttl_s: int = 7 * 24 * 3600
    invitation_default_s: int = 8 * 3600
    heartbeat_interval_s: int = 60
    poll_interval_s: int = 30
    #: Seconds a stop waits for requests in flight (a held "timeout" fault) before cutting them.
    shutdown_timeout_s: float = 2.0
    #: The site's NTAG 424 keys (the agent's ``[ntag424]`` table): with them the central
    #: verifies the SUN message of every ``badge.counter`` claim before sharing it.
    ntag424: Ntag424Section | None = None
    #: The master key the badges' own keys (0, 3, 4) derive from (AN10922, per card and key
    #: version): the keys file's ``[issuance] card_master_key``. Only the central holds it, never
    #: a door (docs/badges.md, "The Pass Office"); without it no badge is issued. Kept out of repr.
    card_master_key: bytes | None = field(default=None, repr=False)
    #: Without keys: how far above the last shared counter a claimed one may be.
    counter_max_advance: int = 1000
    #: The database (``--db``): ``sqlite:///PATH`` or ``postgresql://...``; None is
    #: SQLite in ``data_dir`` (``central.db``). Kept out of repr: it may hold a password.
    db: str | None = field(default=None, repr=False)
    #: HTTPS: the PEM certificate (chain after the leaf) and its private key (0600).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Reverse proxies (addresses or networks) whose X-Forwarded-For/-Proto/-Host count.
    trusted_proxies: tuple[str, ...] = ()
    #: Host notification (central/notify.py). SMTP: no ``smtp_host``, no e-mail (each
    #: notification is recorded ``not_configured``); ``smtp_from`` is then required.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    #: STARTTLS after connecting (submission, port 587), or TLS from the first byte
    #: (``smtp_tls``, port 465); the server's certificate is verified either way.
    smtp_starttls: bool = False
    smtp_tls: bool = False
    #: SMTP AUTH: the user name, and the password read from a 0600 file
    #: (:func:`load_smtp_password`); only over STARTTLS or TLS. Kept out of repr.
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    #: The site's time zone (an IANA name) for the times in host e-mails.
    time_zone: str = "UTC"
    #: Webhook: POST JSON to this http(s) URL, signed with HMAC-SHA256 of ``webhook_secret``
    #: (read from a 0600 file: :func:`load_webhook_secret`). Kept out of repr.
    webhook_url: str | None = None
    webhook_secret: bytes | None = field(default=None, repr=False)
    #: Seconds before the first retry of a failed notification (doubling, up to 10 minutes),
    #: and how long after the check-in the sender gives up (recorded ``failed``).
    notify_retry_s: float = 5.0
    notify_give_up_s: int = 24 * 3600
    #: How often the sender looks for due notifications.
    notify_poll_s: float = 1.0
    #: Retention (central/store/retention.py): visitors' personal data (names, hosts, host
    #: e-mails, photos) is pseudonymised this many days after it arrived (an invitation:
    #: after it expired); ``serve`` purges every ``purge_interval_s``.
    retention_days: int = 90
    #: The technical log (devices' self-test reports, alarm acknowledgements, their contact
    #: quarters, the event packs made) is deleted this many days after it was written: it
    #: names no visitor, and the security office looks back further than the visitors'
    #: period (a year's availability, last year's alarms). central/store/retention.py.
    technical_log_days: int = 400
    purge_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.data_dir, str):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not isinstance(self.data_dir, Path) or not str(self.data_dir):
            raise ConfigError("data_dir", f"{self.data_dir!r} must be a directory path")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host", f"{self.host!r} must be a host name or address")
        integer("port", self.port, 0, 65535)
        check_name("site", self.site)
        integer("max_batch_events", self.max_batch_events, 1, 100_000)
        integer("max_batch_bytes", self.max_batch_bytes, 1024, 1024 * MIB)
        integer("max_payload_bytes", self.max_payload_bytes, 256, self.max_batch_bytes)
        integer("max_deltas_limit", self.max_deltas_limit, 1, 100_000)
        integer("enroll_retry_window_s", self.enroll_retry_window_s, 0, 86_400)
        integer("enroll_token_ttl_s", self.enroll_token_ttl_s, 60, 366 * 86_400)
        integer("invitation_default_s", self.invitation_default_s, 60, 366 * 86_400)
        integer("heartbeat_interval_s", self.heartbeat_interval_s, 1, 86_400)
        integer("poll_interval_s", self.poll_interval_s, 1, 86_400)
        integer("counter_max_advance", self.counter_max_advance, 1, 2**24 - 1)
        if self.db is not None:
            parse_db_url(self.db)
        if self.ntag424 is not None and not isinstance(self.ntag424, Ntag424Section):
            raise ConfigError("ntag424", "must be an Ntag424Section")
        if self.ntag424 is not None and not self.ntag424.configured:
            raise ConfigError("ntag424", "needs file_read_key or file_read_master_key")
        if self.card_master_key is not None and (
            not isinstance(self.card_master_key, bytes) or len(self.card_master_key) != 16
        ):
            raise ConfigError("card_master_key", "must be 16 bytes (an AES-128 key)")
        number("shutdown_timeout_s", self.shutdown_timeout_s, 0, 600, unit=" seconds")
        if self.smtp_host is not None:
            if not isinstance(self.smtp_host, str) or not self.smtp_host.strip():
                raise ConfigError("smtp_host", f"{self.smtp_host!r} must be a host name or address")
            if not isinstance(self.smtp_from, str) or not _EMAIL_RE.match(self.smtp_from):
                raise ConfigError(
                    "smtp_from", f"{self.smtp_from!r} must be an e-mail address (with smtp_host)"
                )
        integer("smtp_port", self.smtp_port, 1, 65535)
        if not isinstance(self.smtp_starttls, bool):
            raise ConfigError("smtp_starttls", f"{self.smtp_starttls!r} must be true or false")
        if not isinstance(self.smtp_tls, bool):
            raise ConfigError("smtp_tls", f"{self.smtp_tls!r} must be true or false")
        if self.smtp_tls and self.smtp_starttls:
            raise ConfigError("smtp_tls", "choose TLS from the start or STARTTLS, not both")
        if self.smtp_username is not None:
            if not isinstance(self.smtp_username, str) or not self.smtp_username.strip():
                raise ConfigError("smtp_username", f"{self.smtp_username!r} must be a user name")
            if not self.smtp_password:
                raise ConfigError("smtp_password", "an SMTP login needs a password (a 0600 file)")
            if not (self.smtp_tls or self.smtp_starttls):
                raise ConfigError(
                    "smtp_username",
                    "an SMTP login needs smtp_starttls or smtp_tls: the password never "
                    "crosses the network in clear",
                )
        elif self.smtp_password is not None:
            raise ConfigError("smtp_password", "an SMTP password needs smtp_username")
        self.zone  # noqa: B018 - raises ConfigError naming time_zone
        if self.webhook_url is not None:
            parts = urlsplit(self.webhook_url) if isinstance(self.webhook_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError("webhook_url", f"{self.webhook_url!r} must be an http(s) URL")
            if not self.webhook_secret:
                raise ConfigError("webhook_secret", "a webhook needs a secret (a 0600 file)")
        number("notify_retry_s", self.notify_retry_s, 0.01, 3600, unit=" seconds")
        integer("notify_give_up_s", self.notify_give_up_s, 1, 30 * 86_400)
        number("notify_poll_s", self.notify_poll_s, 0.01, 3600, unit=" seconds")
        integer("retention_days", self.retention_days, 1, 36_500)
        integer("technical_log_days", self.technical_log_days, 1, 36_500)
        number("purge_interval_s", self.purge_interval_s, 0.1, 86_400, unit=" seconds")
        for name in ("tls_cert", "tls_key"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert", "give the certificate and its key together, or neither")
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        parse_proxies(self.trusted_proxies)

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone (``time_zone``).

        Raises:
            ConfigError: ``time_zone`` is not an IANA time zone name.
        """
        rule = "must be an IANA time zone name such as Europe/Brussels or UTC"
        if not isinstance(self.time_zone, str) or not self.time_zone.strip():
            raise ConfigError("time_zone", f"{self.time_zone!r} {rule}")
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("time_zone", f"{self.time_zone!r} {rule}") from None

    @property
    def tls(self) -> bool:
        """Whether the central serves HTTPS itself."""
        return self.tls_cert is not None

    def proxies(self) -> tuple[Network, ...]:
        """The trusted proxies' networks."""
        return parse_proxies(self.trusted_proxies)

    def sun_verifier(self) -> SunVerifier | None:
        """Return the SUN verifier of the site's keys (None when none are configured)."""
        return None if self.ntag424 is None else self.ntag424.verifier()

    @property
    def database(self) -> DatabaseUrl:
        """The database to open: ``db`` parsed, or SQLite at ``data_dir/central.db``."""
        if self.db is None:
            return DatabaseUrl("sqlite", path=self.data_dir / "central.db")
        return parse_db_url(self.db)

    @property
    def db_path(self) -> Path:
        """The SQLite database file: ``--db sqlite:///PATH``, else inside ``data_dir``."""
        database = self.database
        return database.path if database.path is not None else self.data_dir / "central.db"

    def limits(self) -> dict[str, int]:
        """Return the ``Limits`` object of the API (sent at enrollment and in /admin/info)."""
        return {
            "max_batch_events": self.max_batch_events,
            "max_batch_bytes": self.max_batch_bytes,
            "max_deltas_limit": self.max_deltas_limit,
        }


def load_webhook_secret(path: Path) -> bytes:
    """Read the webhook's HMAC secret: a file only its owner may read or write (0600 or
    stricter), holding at least 16 bytes (surrounding whitespace stripped).

    Raises:
        ConfigError: unreadable, readable by others, or too short (``webhook_secret_file``).
    """
    secret = read_private_file("webhook_secret_file", path).strip()
    if len(secret) < 16:
        raise ConfigError("webhook_secret_file", f"{path}: the secret must be 16 bytes or more")
    return secret


def load_smtp_password(path: Path) -> str:
    """Read the SMTP password: a file only its owner may read or write (0600 or stricter),
    its first line (a trailing newline is not part of it).

    Raises:
        ConfigError: unreadable, readable by others, empty or not UTF-8
            (``smtp_password_file``).
    """
    data = read_private_file("smtp_password_file", path)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError("smtp_password_file", f"{path}: the password must be UTF-8") from None
    if not lines or not lines[0]:
        raise ConfigError("smtp_password_file", f"{path}: the file holds no password")
    return lines[0]


def load_ntag424_keys(path: Path) -> Ntag424Section:
    """Read the site's NTAG 424 keys from a TOML file with an ``[ntag424]`` table (the
    agent's keys: meta_read_key, file_read_key or file_read_master_key, picc_param,
    mac_param).

    Raises:
        ConfigError: unreadable, not TOML, or a bad key (named, with the file).
    """

    def parse(data: dict[str, Any]) -> Ntag424Section:
        if not isinstance(data.get("ntag424"), dict):
            raise ConfigError("ntag424", "the keys file has no [ntag424] table")
        return build(Ntag424Section, data["ntag424"], "ntag424")

    return load(path, parse)


def load_card_master_key(path: Path) -> bytes | None:
    """Read the badge issuance master key from the keys file's optional ``[issuance]`` table
    (``card_master_key``, 32 hex digits); None when the file has none.

    Raises:
        ConfigError: unreadable, not TOML, or a bad key.
    """

    def parse(data: dict[str, Any]) -> bytes | None:
        table = data.get("issuance")
        if table is None:
            return None
        if not isinstance(table, dict) or set(table) - {"card_master_key"}:
            raise ConfigError("issuance", "the [issuance] table holds card_master_key only")
        value = table.get("card_master_key")
        if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Fa-f]{32}", value):
            raise ConfigError("issuance.card_master_key", "must be 32 hex digits (AES-128)")
        key = bytes.fromhex(value)
        if key == bytes(16):
            raise ConfigError("issuance.card_master_key", "must not be the zero key")
        return key

    return load(path, parse)
