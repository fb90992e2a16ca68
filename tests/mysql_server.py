"""MariaDB for tests: the shared local server, or a private mariadbd of the test's own.

The shared server (127.0.0.1:3306, root without a password, database `test`) is used
through throwaway databases that each test creates and drops. `MariadbServer` runs a
server of its own (a temporary data directory, a free port) for what the shared one
must not be changed for: TLS, binary logs, replication.

    with MariadbServer("--log-bin", "--server-id=1") as primary:
        primary.sql("CREATE DATABASE app")       # as root, through the socket
        dsn = primary.dsn("app")                 # mysql://root@127.0.0.1:PORT/app
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql

from watchkeeper.engine.testing import free_port

SHARED = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
SHARED_DSN = "mysql://root@127.0.0.1:3306/test"
SHARED_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock")
# small InnoDB files: a private server is made and deleted in about a second
SMALL = ("--innodb-log-file-size=4M", "--innodb-buffer-pool-size=8M")


class MariadbUnavailable(RuntimeError):
    """The shared server does not answer, or mariadbd is not installed: skip the test."""


def shared(**options: Any) -> pymysql.Connection:
    """A connection to the shared server; MariadbUnavailable when it does not answer."""
    try:
        return pymysql.connect(**{**SHARED, "connect_timeout": 3, "autocommit": True, **options})
    except pymysql.Error as exc:
        raise MariadbUnavailable(
            f"MariaDB is not reachable at 127.0.0.1:3306 ({exc}); start it (tests/services.sh)"
        ) from exc


@contextlib.contextmanager
def throwaway_database(prefix: str = "wk_probe"):
    """Create a database of this test's own on the shared server; drop it at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = shared()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


class MariadbServer:
    """A private mariadbd on a free port of loopback, deleted when stopped."""

    def __init__(self, *options: str) -> None:
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._dir: Path | None = None

    @staticmethod
    def binaries() -> tuple[str, str] | None:
        server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        install = shutil.which("mariadb-install-db")
        return (server, install) if server and install else None

    @property
    def socket(self) -> str:
        assert self._dir is not None
        return str(self._dir / "sock")

    def dsn(self, database: str = "", host: str = "127.0.0.1") -> str:
        return f"mysql://root@{host}:{self.port}/{database}"

    def start(self) -> MariadbServer:
        found = self.binaries()
        if found is None:
            raise MariadbUnavailable("mariadbd is not installed (apt-get install mariadb-server)")
        server, install = found
        self._dir = Path(tempfile.mkdtemp(prefix="wk-mariadb-"))
        data = self._dir / "data"
        subprocess.run(
            [install, "--no-defaults", f"--datadir={data}", "--user=root", "--skip-test-db",
             "--auth-root-authentication-method=normal", *SMALL],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
             f"--pid-file={self._dir / 'pid'}", f"--log-error={self._dir / 'error.log'}",
             *SMALL, *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sql("SELECT 1")
                return self
            except pymysql.Error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self._dir / "error.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"mariadbd did not start:\n{log}") from None
                time.sleep(0.1)

    def sql(self, statement: str) -> list[dict[str, Any]]:
        """Run one statement as root through the socket; return its rows."""
        conn = pymysql.connect(
            unix_socket=self.socket,
            user="root",
            connect_timeout=3,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> MariadbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
