"""PostgreSQL for tests: a database of our own on the local server, or a private server.

`local_test_database()` creates `watchkeeper_test_<random>` on the shared local server
(127.0.0.1:5432, user postgres, trust auth) and drops it afterwards. `PgServer` runs a
PostgreSQL of its own (`initdb` + `pg_ctl`, a temporary directory, a free port) for tests
that stop, kill and restart the server; the shared server is never touched.

    with PgServer() as server:          # started; stopped and deleted at the end
        url = server.url                # postgresql://postgres@127.0.0.1:PORT/postgres
        server.restart()                # same port, same data
        server.stop(); server.start()
        server.kill()                   # SIGKILL, like a crash; start() recovers
        server.freeze(); server.thaw()  # SIGSTOP/SIGCONT: a server that never answers
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"


class PgUnavailable(RuntimeError):
    """PostgreSQL's server programs or the local server are not there: skip the test."""


@contextlib.contextmanager
def local_test_database(prefix: str = "watchkeeper_test") -> Iterator[str]:
    """Create a database on the local server, yield its URL, drop it afterwards."""
    try:
        admin = psycopg.connect(f"{LOCAL_SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        raise PgUnavailable(
            f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc}); run tests/services.sh"
        ) from exc
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{LOCAL_SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_program(name: str) -> str:
    """Return the path of a PostgreSQL server program (initdb, pg_ctl), newest version first."""
    for folder in ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise PgUnavailable(f"{name} not found (apt-get install postgresql)")


class PgServer:
    """A private PostgreSQL server: temporary data directory, free port, trust auth."""

    def __init__(self, *, port: int | None = None, fsync: bool = False, user: str = "postgres"):
        self.port = port or free_port()
        self.fsync = fsync
        """fsync=off survives process crashes (SIGKILL), not power cuts: fine for tests."""
        self.user = user
        self.initdb = find_program("initdb")
        self.pg_ctl = find_program("pg_ctl")
        # root may not run PostgreSQL: the server runs as an unprivileged account
        self._run_as = _unprivileged_account() if os.geteuid() == 0 else None
        self.dir = Path(tempfile.mkdtemp(prefix="wk-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if self._run_as is not None:
            os.chown(self.dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self._initialised = False

    @property
    def url(self) -> str:
        """URL of the `postgres` database; `database_url(name)` for another."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create a database and return its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> PgServer:
        """Start the server (initialising the data directory the first time); wait for it."""
        if not self._initialised:
            self._command(
                self.initdb, "-D", str(self.data), "-U", self.user, "-A", "trust",
                "-E", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            self._initialised = True
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            f" -c fsync={'on' if self.fsync else 'off'} -c max_connections=100"
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self._command(
                    self.pg_ctl, "start", "-D", str(self.data), "-l", str(self.log),
                    "-w", "-t", "30", "-o", options,
                )  # fmt: skip
                break
            except PgUnavailable:
                # after kill(), the old server's processes may still hold shared memory
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clients are disconnected), `smart` or `immediate`."""
        if self.pid() is None:
            return
        self._command(self.pg_ctl, "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")

    def kill(self) -> None:
        """SIGKILL the server and its processes, as a crash would; start() recovers."""
        pid = self.pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_exists(v) for v in victims) and time.monotonic() < deadline:
            time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP the server's processes: it accepts connections and never answers, like
        a host behind a network partition. thaw() lets it carry on."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        pid = self.pid()
        if pid is None:
            return
        for victim in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signum)

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(mode)
        self.start()

    def pid(self) -> int | None:
        """The running postmaster's pid, or None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if _exists(pid) else None

    def cleanup(self) -> None:
        """Stop the server (immediately) and delete its directory."""
        self.thaw()
        with contextlib.suppress(PgUnavailable):
            self.stop("immediate")
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def _command(self, *argv: str) -> None:
        kwargs = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid}
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, cwd=self.dir, **kwargs
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PgUnavailable(
                f"{Path(argv[0]).name} {argv[1]} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PgUnavailable("running as root, and no postgres or nobody account to run PostgreSQL")


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(Path(stat).parent.name))
    return found
