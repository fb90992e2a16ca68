"""Drive a real `watchkeeper run` process against real local servers.

- `Target`: an HTTP server whose health endpoint can be made healthy, failing or hanging,
  and which counts the requests it gets.
- `Recorder`: an HTTP receiver recording every POST (webhook, Slack, PagerDuty shapes) and
  answering from a configurable sequence of status codes.
- `Daemon`: starts `python -m watchkeeper.engine run` on a config in a directory, waits for
  it to be started, stops it with a signal (or kills it), and collects its log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _TargetHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        owner: Target = self.server.owner  # type: ignore[attr-defined]
        with owner.lock:
            owner.hits += 1
            status, hang = owner.status, owner.hang
        if hang:
            time.sleep(hang)
        body = b'{"status": "ok"}' if status < 400 else b'{"status": "error"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Target(_Server):
    """A service to monitor: `status` and `hang` (seconds) decide how it answers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.status = 200
        self.hang = 0.0
        self.hits = 0
        super().__init__(_TargetHandler)


class _RecorderHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        owner: Recorder = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner.lock:
            status = owner.responses.pop(0) if owner.responses else owner.default
            owner.attempts.append(
                {"path": self.path, "headers": dict(self.headers), "body": body, "status": status}
            )
            if 200 <= status < 300:
                owner.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
            hold = owner.hold
        if hold:
            time.sleep(hold)  # recorded, not yet answered: a sender killed now never hears
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_PUT = do_POST

    def log_message(self, *args):
        pass


class Recorder(_Server):
    """A receiver: records accepted POSTs (`requests`) and every attempt (`attempts`);
    `hold` (seconds) delays each answer after the request is recorded."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.responses: list[int] = []
        self.default = 200
        self.hold = 0.0
        super().__init__(_RecorderHandler)

    def json(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(r["body"]) for r in self.requests if path is None or r["path"] == path
            ]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.json(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"expected {count} request(s) to {path or 'any path'}, got "
            f"{len(self.json(path))}: {self.json(path)}"
        )


class Daemon:
    """A `watchkeeper run` process on a config file in `directory`."""

    def __init__(
        self,
        directory: Path,
        config: str = "monitor.yaml",
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ):
        self.directory = Path(directory)
        self.config = config
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        self.env.update(env or {})
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log_path = self.directory / f"daemon-{time.monotonic_ns()}.log"

    def start(self, wait: bool = True, timeout: float = 30.0) -> Daemon:
        self.log_file = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watchkeeper.engine",
                "-c",
                self.config,
                "--log-level",
                "debug",
                "run",
                *self.args,
            ],
            cwd=self.directory,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_log("daemon started", timeout=timeout)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log
            if log.count(text) >= count:
                return log
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before logging {text!r}:\n{log}"
                )
            time.sleep(0.05)
        raise AssertionError(f"daemon did not log {text!r} within {timeout}s:\n{self.log}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self.log_file.close()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()
