"""A real PostgreSQL for the tests, one per session, from the distribution's server binaries.

`postgres_server` (session scope) runs `initdb` into a fresh temporary directory and starts the
server with `pg_ctl`: TCP on 127.0.0.1 only, at a free port, with its unix socket in the same
temporary directory, and stops it (`pg_ctl stop -m fast`) at the end of the session. The binaries
are found in `$AESOP_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), else
`pg_config --bindir`, else `PATH`; when none is there the tests that need PostgreSQL are skipped
(`apt-get install postgresql`).

PostgreSQL refuses to run as root, so under root the server runs as the unprivileged `postgres`
account the distribution's package creates (else `nobody`); its data directory is handed over to
that account. Every statement the server receives is logged (`log_statement = all`), so a test
can prove what was, and was not, asked of it (`PostgresServer.statements_since`).

`PostgresServer.create_database()` gives each test its own database; `sql()` runs statements
through `psql` as the superuser; `reader_url()` is a connection URL for a read-only role, the way
an MCP server should be connected to a database it only reads.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "aesop"
READER = "aesop_reader"
START_TIMEOUT_S = 60
_VERSION_DIR = re.compile(r"/postgresql/(\d+)(?:\.\d+)?/bin$")


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and psql, or None."""
    override = os.environ.get("AESOP_PG_BIN")
    if override:
        return Path(override)
    candidates = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))]
    if candidates:

        def version(d: str) -> int:
            match = _VERSION_DIR.search(d)
            return int(match.group(1)) if match else 0

        return Path(max(candidates, key=version))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            bindir = Path(out.stdout.strip())
            if (bindir / "initdb").exists():
                return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.skip("running as root and no unprivileged account (postgres, nobody) to run PostgreSQL as")


@dataclass
class PostgresServer:
    """One running test server."""

    bin_dir: Path
    home: Path
    port: int
    account: pwd.struct_passwd | None
    log_file: Path
    databases: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home

    def url(self, database: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def reader_url(self, database: str) -> str:
        """A URL for the read-only role (it may read every table, and change none; its sessions are
        read-only by default)."""
        return self.url(database, READER)

    # -- running things ---------------------------------------------------------------------------
    def _run(self, argv: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}
        if self.account is not None:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=self.home,
                user=self.account.pw_uid,
                group=self.account.pw_gid,
                extra_groups=[],
            )
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.home)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
        return proc

    def sql(self, statements: str, database: str = "postgres") -> str:
        """Run SQL through psql as the superuser; returns the rows as `a|b` lines."""
        proc = self._run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                statements,
            ]
        )
        return proc.stdout.strip()

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database the read-only role may read."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        self.sql(f'CREATE DATABASE "{name}"')
        self.sql(f'GRANT CONNECT ON DATABASE "{name}" TO {READER}')
        self.sql(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER}", name)
        self.databases.append(name)
        return name

    # -- the statement log ------------------------------------------------------------------------
    def log_position(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def statements_since(self, position: int) -> str:
        """Everything the server logged after `position` (every statement is logged)."""
        with open(self.log_file, "rb") as handle:
            handle.seek(position)
            return handle.read().decode("utf-8", "replace")

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c log_statement=all",
                "-c log_min_messages=warning",
                "-c max_connections=50",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            timeout=START_TIMEOUT_S + 10,
        )

    def stop(self) -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], check=False)


def start_postgres() -> PostgresServer:
    bin_dir = find_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql, or set AESOP_PG_BIN)")
    account = _server_account()
    home = Path(tempfile.mkdtemp(prefix="aesop-pg-"))
    if account is not None:
        os.chown(home, account.pw_uid, account.pw_gid)
    server = PostgresServer(bin_dir, home, free_port(), account, home / "server.log")
    server._run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(server.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        timeout=120,
    )
    for attempt in range(3):  # the free port may be taken between choosing and binding it
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                log = server.log_file.read_text(errors="replace")[-4000:] if server.log_file.exists() else ""
                shutil.rmtree(home, ignore_errors=True)
                raise RuntimeError(f"PostgreSQL did not start; its log ends with:\n{log}") from None
            server.port = free_port()
            time.sleep(0.2)
    # The reader may read and nothing else, even if a statement ends the read-only transaction
    # the MCP server wraps it in: read-only by default, and SELECT rights only.
    server.sql(f"CREATE ROLE {READER} LOGIN; ALTER ROLE {READER} SET default_transaction_read_only = on")
    with contextlib.suppress(RuntimeError):  # PostgreSQL 14+; older ones get default privileges per database
        server.sql(f"GRANT pg_read_all_data TO {READER}")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (initdb in a temporary directory)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)
