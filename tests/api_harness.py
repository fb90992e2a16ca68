"""Run a daemon in this process with its HTTP API on a real port, for the API tests.

`LiveDaemon` builds a `Daemon` from a monitor.yaml, runs `serve()` in an event loop of
its own thread and serves the API on 127.0.0.1: the daemon's own server when
engine/daemon.py starts one, else `serve_http` beside it. Tests talk to it over real
HTTP with `httpx`, as any client would.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import yaml
from anyio.from_thread import start_blocking_portal

from tests.receivers import LogCapture
from watchkeeper.engine.api import check_rows

ADMIN_TOKEN = "adm1n-T0ken-for-tests-9f2c"


def live_config(checks: dict, **more: object) -> dict:
    """A config for a `LiveDaemon`: its checks on the daemon's own event loop (no worker),
    SQLite state beside the file, the admin token from `ADMIN_TOKEN`; `more` adds or
    replaces sections."""
    return {
        "version": 1,
        "engine": {"workers": 0},
        "state": {"type": "sqlite", "path": "state.db"},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": checks,
        **more,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_serves_http() -> bool:
    """True once engine/daemon.py starts the HTTP server itself."""
    from watchkeeper.engine.daemon import Daemon

    source = inspect.getsource(Daemon.serve)
    return "serve_http" in source or "bind_http" in source


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "it"):
    """Poll until `predicate()` is truthy; return its value (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _restore(saved: dict[str, str | None]) -> None:
    import os

    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class LiveDaemon:
    """A daemon of this process serving its API on a free loopback port."""

    def __init__(
        self, directory: Path, config: str | dict[str, Any], env: dict[str, str] | None = None
    ):
        self.directory = Path(directory)
        self.path = self.directory / "monitor.yaml"
        self.port = free_port()
        self.write(config)
        self.env = env
        self.daemon: Any = None
        self.url = f"http://127.0.0.1:{self.port}"
        self._stack = contextlib.ExitStack()
        self.logs = LogCapture()

    def write(self, config: str | dict[str, Any]) -> None:
        """Write monitor.yaml; a dict gets `server.listen` set to this daemon's port."""
        if isinstance(config, dict):
            config = {
                **config,
                "server": {**config.get("server", {}), "listen": f"127.0.0.1:{self.port}"},
            }
            text = yaml.safe_dump(config, sort_keys=False)
        else:
            text = textwrap.dedent(config).lstrip("\n").replace("{PORT}", str(self.port))
        self.path.write_text(text)

    # -- life -------------------------------------------------------------------------------

    def start(self) -> LiveDaemon:
        import os

        from watchkeeper.engine.api import serve_http
        from watchkeeper.engine.config.validation import load_config
        from watchkeeper.engine.daemon import Daemon

        # the daemon reads its environment again on every reload, as a real one does
        saved = {k: os.environ.get(k) for k in self.env or {}}
        os.environ.update(self.env or {})
        self._stack.callback(_restore, saved)
        env = dict(os.environ)
        self._stack.enter_context(self.logs)
        portal = self._stack.enter_context(start_blocking_portal())
        self.portal = portal

        async def build() -> Any:
            return Daemon(load_config(self.path, env=env))

        self.daemon = portal.call(build)

        async def no_signals(tg) -> None:  # signals belong to the main thread, not ours
            await anyio.sleep_forever()

        self.daemon._signals = no_signals
        self.serving = portal.start_task_soon(self.daemon.serve)
        wait_until(lambda: self.daemon.ready.is_set() or self.serving.done(), 30, what="start")
        if self.serving.done():
            self.serving.result()  # raises what stopped it
        if not self._listening():
            self.server, self.address = portal.start_task(serve_http, self.daemon)
        return self

    def _listening(self) -> bool:
        try:
            httpx.get(self.url + "/ready", timeout=2)
        except httpx.TransportError:
            return False
        return True

    def stop(self) -> None:
        if self.daemon is not None and not self.serving.done():
            self.portal.call(self.daemon.stop)
            with contextlib.suppress(Exception):
                self.serving.result(timeout=30)
        self._stack.close()

    def __enter__(self) -> LiveDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- talking to it ----------------------------------------------------------------------

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def get(self, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
        with self.client(token) as client:
            return client.get(path, **kwargs)

    def post(self, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
        with self.client(token) as client:
            return client.post(path, **kwargs)

    def delete(self, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
        with self.client(token) as client:
            return client.delete(path, **kwargs)

    def call(self, fn, *args: Any) -> Any:
        """Run a function (sync or async) in the daemon's event loop; return its result."""
        return self.portal.call(fn, *args)

    def status_of(self, name: str) -> str | None:
        """The status /api/status gives an instance of this daemon's (None for a location's
        run, which shows under its check, and for an unknown name)."""
        runtime = self.daemon.runtime
        instance = runtime.instances.get(name)
        if instance is None or not check_rows.listed(instance):
            return None
        return check_rows.LocalRuns(runtime).status(name)[0]

    def wait_status(self, name: str, status: str, timeout: float = 15.0) -> None:
        wait_until(lambda: self.status_of(name) == status, timeout, what=f"{name} {status}")

    @contextlib.contextmanager
    def store_refusing_writes(self, reason: str = "database is locked"):
        """Make the daemon's store look unreachable: its writer degraded and not flushing."""
        writer = self.daemon.writer

        async def hold() -> bool:
            return False

        def degrade(state: str | None) -> None:
            writer.degraded = state
            if state is None:
                del writer.flush
            else:
                writer.flush = hold

        self.call(degrade, reason)
        try:
            yield
        finally:
            self.call(degrade, None)

    def flush(self) -> None:
        """Write what the daemon buffered to its store now."""
        self.call(self.daemon.writer.flush)
