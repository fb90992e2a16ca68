"""Redis for tests: a key prefix of our own on the local server, or a private server.

The shared local Redis (127.0.0.1:6379) runs without append-only persistence; tests use
it with a key prefix per test and `delete_prefix` afterwards. `RedisServer` runs a
redis-server of its own (a temporary directory, a free port, `appendonly yes` unless
told otherwise) for tests that stop, kill and restart the server, or need its settings.

    with RedisServer() as server:       # started; stopped and deleted at the end
        url = server.url                # redis://127.0.0.1:PORT/0
        server.restart()                # same port, same data (reloaded from the AOF)
        server.stop(); server.start()
        server.kill()                   # SIGKILL, like a crash; start() recovers
        server.freeze(); server.thaw()  # SIGSTOP/SIGCONT: a server that never answers
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


class RedisUnavailable(RuntimeError):
    """redis-server or the local Redis is not there: skip the test."""


def local_redis(url: str = LOCAL_REDIS) -> redis.Redis:
    """Return a client of the local Redis; RedisUnavailable when it does not answer."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise RedisUnavailable(
            f"Redis is not reachable at {url} ({exc}); run tests/services.sh"
        ) from exc
    return client


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key starting with prefix; return how many there were."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        pattern = _glob_escape(prefix) + "*"
        deleted = 0
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
        return deleted
    finally:
        client.close()


def keys_with_prefix(url: str, prefix: str) -> list[str]:
    """Every key starting with prefix, decoded and sorted."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=_glob_escape(prefix) + "*", count=1000))
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server: temporary directory, free port, append-only by default."""

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = True,
        password: str | None = None,
        args: tuple[str, ...] = (),
    ):
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.args = args
        """Extra command-line settings, e.g. ("--rename-command", "CONFIG", "")."""
        program = shutil.which("redis-server")
        if program is None:
            raise RedisUnavailable("redis-server not found (apt-get install redis-server)")
        self.program = program
        self.dir = Path(tempfile.mkdtemp(prefix="wk-redis-"))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A (synchronous) client of this server."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=3, decode_responses=True)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server (reloading its data) and wait until it answers."""
        if self.running:
            return self
        argv = [
            self.program,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        argv += list(self.args)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RedisUnavailable(f"redis-server exited ({self.proc.returncode}):\n{log}")
            try:
                with contextlib.closing(self.client()) as client:
                    # answers PING while loading the AOF; LOADING errors on anything else
                    if client.info("persistence").get("loading") == 0:
                        return self
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RedisUnavailable(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the server the clean way (SIGTERM: it flushes its append-only file)."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; start() reloads what it had written."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP the server: it accepts connections and never answers, like a host
        behind a network partition. thaw() lets it carry on."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Kill the server and delete its directory."""
        self.thaw()
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def _glob_escape(text: str) -> str:
    """Escape SCAN MATCH's glob characters."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
