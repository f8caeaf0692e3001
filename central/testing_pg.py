"""A throw-away PostgreSQL server for tests and benchmarks (never for a site).

:class:`PostgresServer` runs Debian's PostgreSQL (``/usr/lib/postgresql/<version>/bin``,
the highest version installed; ``$PORTIER_PG_BIN`` overrides): ``initdb --no-locale``
into a temporary directory (as the ``postgres`` user when run as root, since initdb
refuses root), listening on a Unix socket only, ``fsync=off``, and removed by
:meth:`stop`. Each test gets its own database: :meth:`create_database` copies a template
that already holds the central's schema (``CREATE DATABASE ... TEMPLATE``), which is much
faster than migrating each one.

Needs psycopg 3 (the ``dev`` extra) for :meth:`create_database`.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["PostgresServer", "find_pg_bin", "migrate_only"]


def migrate_only(url: str) -> None:
    """Give the database at *url* the central's schema, and nothing else (no keys)."""
    from .store.postgres import PostgresDatabase
    from .store.schema import migrate

    database = PostgresDatabase(url)
    try:
        migrate(database)
    finally:
        database.close()


def find_pg_bin() -> Path | None:
    """Return the ``bin`` directory of the newest installed PostgreSQL (None: none)."""
    override = os.environ.get("PORTIER_PG_BIN")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class PostgresServer:
    """A PostgreSQL server in a temporary directory, on a Unix socket (context manager).

    Raises:
        FileNotFoundError: no PostgreSQL is installed (``apt-get install postgresql``).
        subprocess.CalledProcessError: initdb or pg_ctl failed (their output attached).
    """

    USER = "portier"

    def __init__(self) -> None:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = pg_bin
        self.base: Path | None = None
        self._os_user = "postgres" if os.geteuid() == 0 else None
        self._names = itertools.count(1)
        self._templates: set[str] = set()
        self._options = ""
        self._halted = False

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None, "not started"
        return self.base

    def url(self, database: str = "postgres") -> str:
        """Return the libpq URL of *database* on this server."""
        return f"postgresql://{self.USER}@/{database}?host={self.socket_dir}"

    def _run(self, *args: object) -> None:
        subprocess.run(
            [str(a) for a in args],
            check=True,
            capture_output=True,
            user=self._os_user,
            timeout=120,
        )

    def start(self) -> PostgresServer:
        """initdb and start; return self."""
        self.base = Path(tempfile.mkdtemp(prefix="portier-pg-"))
        if self._os_user is not None:
            shutil.chown(self.base, self._os_user, self._os_user)
        data = self.base / "data"
        try:
            self._run(self.bin / "initdb", "-D", data, "-U", self.USER, "--auth=trust",
                      "--no-locale", "-E", "UTF8", "--no-sync")  # fmt: skip
            options = self._options = (
                f"-k {self.base} -c listen_addresses='' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            self._run(self.bin / "pg_ctl", "-D", data, "-l", self.base / "log", "-o", options,
                      "-w", "start")  # fmt: skip
            self._halted = False
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            raise
        return self

    def halt(self) -> None:
        """Stop the server (fast shutdown: sessions are cut) and keep its data, as a
        restart or a failover does to the central; :meth:`resume` starts it again."""
        assert self.base is not None, "not started"
        self._run(self.bin / "pg_ctl", "-D", self.base / "data", "-m", "fast", "-w", "stop")
        self._halted = True

    def resume(self) -> None:
        """Start again the server :meth:`halt` stopped."""
        assert self.base is not None, "not started"
        self._run(self.bin / "pg_ctl", "-D", self.base / "data", "-l", self.base / "log",
                  "-o", self._options, "-w", "start")  # fmt: skip
        self._halted = False

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory; idempotent."""
        if self.base is None:
            return
        try:
            if not self._halted:
                self._run(self.bin / "pg_ctl", "-D", self.base / "data", "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def create_database(self, template: str | None = None) -> str:
        """Create a new database (a copy of *template* if given); return its URL."""
        import psycopg

        name = f"t{next(self._names)}"
        if template is not None and not re.fullmatch(r"[a-z_][a-z0-9_]*", template):
            raise ValueError(f"template: {template!r} is not a plain database name")
        copy = f" TEMPLATE {template}" if template else ""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of *url* (from :meth:`create_database`), closing its sessions."""
        import psycopg

        name = urlsplit(url).path.strip("/")
        if not re.fullmatch(r"t[0-9]+", name):
            raise ValueError(f"{name!r} is not a database create_database made")
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def template(self, name: str, prepare: Callable[[str], None] | None = None) -> str:
        """Return *name*, a database made once per server by *prepare(url)* to copy from.

        *prepare* takes the new database's URL (e.g. :func:`migrate_only`, so the copies
        start with the schema). A template must have no open connection when it is copied.
        """
        if name not in self._templates:
            import psycopg

            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"template: {name!r} is not a plain database name")
            with psycopg.connect(self.url(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            if prepare is not None:
                prepare(self.url(name))
            self._templates.add(name)
        return name

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
