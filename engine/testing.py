"""Helpers for testing probes, ours and third-party ones, the way the engine runs them.

    from watchkeeper.engine.testing import HttpTestServer, check_once

    with HttpTestServer() as server:
        server.reply("/health", json={"status": "ok"})
        result = check_once("http", {"url": server.url("/health")}, timeout=2)
    assert result.ok and result.metrics["response_time"] < 1

The options go through the probe's own `Options` model (unknown keys are errors, units
parse) and the run goes through the engine's timeout and error handling. `open_probe`
keeps one probe open across several checks, as the daemon does; `fired_alerts` judges a
result against threshold rules as the daemon's evaluator does.

Real servers on loopback to run probes against: `HttpTestServer` answers HTTP(S) as told
and records what it was sent; `TcpTestServer` runs a function per connection (a line
protocol, a STARTTLS responder) or, without one, accepts and stays silent;
`SilentUdpServer` receives and never answers; `DnsmasqServer` is a real DNS server
(needs the `dnsmasq` program). `make_certificates` writes a throwaway CA and
certificates (needs `cryptography`, installed with the `dev` extra).

Under pytest, `pytest_plugins = ["watchkeeper.engine.testing"]` in a conftest.py also
gives the fixtures `http_server`, `tcp_server`, `silent_udp` and `certificates`.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json as jsonlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

import anyio

from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.probe import OpenContext, Probe, ProbeContext, Result, run_probe

if TYPE_CHECKING:
    from watchkeeper.engine.alerting.alerts import Alert


def probe_class(probe_type: str) -> type[Probe]:
    """Return the installed probe class for a type name."""
    return registry().get("probe", probe_type)


def probe_options(probe_type: str, options: dict[str, Any]) -> Any:
    """Validate options with the probe's own Options model."""
    return probe_class(probe_type).Options.model_validate(options)


class ProbeRunner:
    """An opened probe that runs checks through the engine's runner, like the daemon."""

    def __init__(self, probe_type: str, probe: Probe, base_dir: Path, log: logging.Logger):
        self.probe_type = probe_type
        self.probe = probe
        self.base_dir = base_dir
        self.log = log

    async def check(
        self,
        options: dict[str, Any],
        *,
        timeout: float = 10.0,
        check: str = "test",
        environment: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Result:
        """Validate options and run one check with the engine's timeout and error handling."""
        # the probe object's own model: a plugin under test need not be installed yet
        parsed = type(self.probe).Options.model_validate(options)
        ctx = ProbeContext(
            check=check,
            environment=environment,
            timeout=timeout,
            base_dir=self.base_dir,
            log=self.log,
            labels=labels or {},
        )
        return await run_probe(self.probe, parsed, ctx)


@asynccontextmanager
async def open_probe(
    probe_type: str, *, base_dir: Path | str = ".", probe: Probe | None = None
) -> AsyncIterator[ProbeRunner]:
    """Open a probe (or the given instance), yield a runner for its checks, then close it."""
    probe = probe or probe_class(probe_type)()
    log = logging.getLogger(f"watchkeeper.test.{probe_type}")
    await probe.open(OpenContext(base_dir=Path(base_dir), log=log))
    try:
        yield ProbeRunner(probe_type, probe, Path(base_dir), log)
    finally:
        with anyio.CancelScope(shield=True):
            await probe.close()


async def acheck_once(
    probe_type: str,
    options: dict[str, Any],
    *,
    timeout: float = 10.0,
    check: str = "test",
    environment: str | None = None,
    base_dir: Path | str = ".",
    labels: dict[str, str] | None = None,
    probe: Probe | None = None,
) -> Result:
    """Open a probe, run one check through the engine's runner, close it."""
    async with open_probe(probe_type, base_dir=base_dir, probe=probe) as runner:
        return await runner.check(
            options, timeout=timeout, check=check, environment=environment, labels=labels
        )


def check_once(probe_type: str, options: dict[str, Any], **kwargs: Any) -> Result:
    """Run `acheck_once` from synchronous test code."""
    return anyio.run(lambda: acheck_once(probe_type, options, **kwargs))


# --- the probe author's contract (docs/probe-authors.md) -----------------------------------


def contract_problems(probe: type[Probe]) -> list[str]:
    """Return how a probe class breaks the contract's static rules (empty when it keeps them).

    It has a `type` and an `Options` model derived from ProbeOptions; `open`, `check`
    and `close` are coroutine functions; it is made with no arguments; every options
    model (nested ones too) forbids unknown keys and describes every field; fields named
    like credentials (token, password, dsn, key...) are secret types.
    """
    import inspect

    from watchkeeper.engine.observe.redaction import is_secret_name
    from watchkeeper.schema.checks import ProbeOptions

    problems = []
    name = getattr(probe, "type", None)
    if not isinstance(name, str) or not name:
        problems.append("no `type` name")
    options = getattr(probe, "Options", None)
    if not (isinstance(options, type) and issubclass(options, ProbeOptions)):
        return [*problems, "`Options` is not a subclass of ProbeOptions"]
    for method in ("open", "check", "close"):
        if not inspect.iscoroutinefunction(getattr(probe, method, None)):
            problems.append(f"`{method}` is not an async def")
    try:
        probe()
    except Exception as exc:
        problems.append(f"cannot be made without arguments: {type(exc).__name__}: {exc}")
    for model in _models(options):
        if model.model_config.get("extra") != "forbid":
            problems.append(f"{model.__name__} accepts unknown keys (use extra='forbid')")
        for key, info in model.model_fields.items():
            if not (info.description or "").strip():
                problems.append(f"{model.__name__}.{key} has no Field(description=...)")
            credential = is_secret_name(key) and key not in _NOT_CREDENTIALS
            if credential and not _holds_secret(info.annotation):
                problems.append(f"{model.__name__}.{key} holds a credential: make it Secret")
    return problems


_NOT_CREDENTIALS = frozenset({"client_key", "private_key_file", "host_key"})
"""Named like credentials, but paths to key files or public keys: plain strings are right."""


def _models(model: type) -> list[type]:
    """The model and every pydantic model nested in its fields' types."""
    import typing

    from pydantic import BaseModel, SecretStr

    found: list[type] = []

    def visit(annotation: object) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                for info in annotation.model_fields.values():
                    visit(info.annotation)
            return
        if annotation is not SecretStr:
            for arg in typing.get_args(annotation):
                visit(arg)

    visit(model)
    return found


def _holds_secret(annotation: object) -> bool:
    import typing

    from pydantic import SecretStr

    return annotation is SecretStr or any(_holds_secret(a) for a in typing.get_args(annotation))


@dataclass
class Cancelled:
    """How a check() took being cancelled from outside (see `acheck_cancelled`)."""

    cancelled: bool
    """The cancellation came back out of check(), as it must."""
    returned: Result | None
    """What check() returned instead of letting the cancellation through (should be None)."""
    elapsed: float
    """Seconds from the start of the check to its end."""


async def acheck_cancelled(
    probe_type: str,
    options: dict[str, Any],
    *,
    after: float = 0.3,
    probe: Probe | None = None,
) -> Cancelled:
    """Run check() with a long timeout of its own and cancel it from outside after `after`.

    Point the probe at something that never answers: a probe that keeps the contract
    stops at once (`cancelled` and an `elapsed` close to `after`) and returns nothing.
    """
    async with open_probe(probe_type, probe=probe) as runner:
        parsed = type(runner.probe).Options.model_validate(options)
        ctx = ProbeContext(
            check="contract",
            environment=None,
            timeout=max(30.0, after * 10),
            base_dir=runner.base_dir,
            log=runner.log,
        )
        returned: list[Result] = []
        start = anyio.current_time()
        with anyio.move_on_after(after) as scope:
            returned.append(await runner.probe.check(parsed, ctx))
        elapsed = anyio.current_time() - start
        return Cancelled(scope.cancelled_caught, returned[0] if returned else None, elapsed)


# --- judging a result as the daemon does ------------------------------------------------


def fired_alerts(
    result: Result,
    thresholds: list[dict[str, Any]],
    *,
    check: str = "test",
    severity: str = "critical",
) -> list[Alert]:
    """Judge one result with the daemon's evaluator; return the alerts it fires at once.

    A failed run fires the check's `up` alert (with `severity`); a good one fires each
    threshold rule it breaches, e.g. `[{"metric": "certificate_expiry", "below": "14d"}]`.
    Rules that need several runs (`for: 3`, windows) see this one run only.
    """
    from watchkeeper.engine.config.instances import Instance
    from watchkeeper.engine.run.evaluate import AlertBook, Evaluator
    from watchkeeper.schema.checks import Threshold

    instance = Instance(
        key=check,
        check=check,
        environment=None,
        probe_type="test",
        probe_class=Probe,
        options=None,
        schedule=None,
        timezone="UTC",
        timeout=10.0,
        severity=severity,
        failure_threshold=1,
        success_threshold=1,
        min_samples=1,
        flap_threshold=6,
        flap_window=3600.0,
        labels={},
        thresholds=[Threshold.model_validate(rule) for rule in thresholds],
        runbook=None,
        description=None,
    )
    evaluator = Evaluator(instance, list(SEVERITIES), AlertBook())
    changes = evaluator.evaluate(result, time.time())
    return [change.alert for change in changes if change.kind == "firing"]


SEVERITIES = ("critical", "high", "medium", "warning", "low", "info")


# --- a real HTTP server on loopback ------------------------------------------------------


@dataclass
class Reply:
    """How the test server answers one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""
    hang: bool = False
    """Accept the request and never answer (until the server stops)."""
    handler: Callable[[RecordedRequest], Reply] | None = None
    """Compute the reply from the request instead."""


@dataclass
class RecordedRequest:
    """A request the test server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class HttpTestServer:
    """A threaded HTTP (or, with `ssl_context`, HTTPS) server on 127.0.0.1 for tests.

    Tell it how to answer with `reply(path, ...)`; every request is kept in `requests`.
    Unknown paths get 404. Use it as a context manager: hanging replies are released and
    the threads stopped on exit.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.routes: dict[str, Reply] = {}
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self._server = _QuietServer((host, 0), _handler_for(self))
        if ssl_context is not None:
            # the handshake happens in the request's thread, so a client that never
            # completes one cannot stall the accept loop
            self._server.socket = ssl_context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if ssl_context is not None else "http"
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll
            name="http-test-server",
            daemon=True,
        )

    def url(self, path: str = "/") -> str:
        """Return the full URL of a path on this server."""
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def reply(
        self,
        path: str,
        status: int = 200,
        *,
        json: Any = None,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        hang: bool = False,
        redirect: str | None = None,
        handler: Callable[[RecordedRequest], Reply] | None = None,
    ) -> None:
        """Answer `path` like this from now on (`redirect` sends a 302 to that location)."""
        headers = dict(headers or {})
        if json is not None:
            data = jsonlib.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = body or b""
        if redirect is not None:
            status = status if 300 <= status < 400 else 302
            headers["Location"] = redirect
        self.routes[path] = Reply(status, data, headers, delay, hang, handler)

    def start(self) -> HttpTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of checks (their
    # clients retry a second later), which would read as the engine being late
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up or reject our certificate are part of the tests


def _handler_for(server: HttpTestServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers=dict(self.headers.items()),
                body=self.rfile.read(length) if length else b"",
            )
            server.requests.append(request)
            reply = server.routes.get(parts.path, Reply(404, b"not found"))
            if reply.handler is not None:
                reply = reply.handler(request)
            if reply.hang:
                server.stopping.wait()
                return
            if reply.delay and server.stopping.wait(reply.delay):
                return
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up first, e.g. after its timeout

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- plain TCP and UDP servers ----------------------------------------------------------


def free_port(kind: Literal["tcp", "udp"] = "tcp") -> int:
    """Return a port free on 127.0.0.1 right now (another process may take it later)."""
    family = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, family) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpTestServer:
    """A threaded TCP server on 127.0.0.1: `handler(conn)` runs for each connection.

    Without a handler it accepts and stays silent (reading and discarding) until it
    stops: a service that hangs, to test timeouts. On exit every connection is shut down,
    which ends handlers blocked in `recv`. `connections` counts those accepted.
    """

    def __init__(
        self,
        handler: Callable[[socket.socket], None] | None = None,
        host: str = "127.0.0.1",
    ):
        self.handler = handler or _silent
        self.host = host
        self.stopping = threading.Event()
        self.connections = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="tcp-test-server", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except (OSError, ValueError):
            pass  # the client went away, or the server is stopping
        finally:
            _shut(conn)

    def start(self) -> TcpTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for conn in self._open:
                _shut(conn)

    def __enter__(self) -> TcpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _silent(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


class SilentUdpServer:
    """A UDP socket on 127.0.0.1 that receives datagrams and never answers them."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self.port = self._sock.getsockname()[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._sock.close()

    def __enter__(self) -> SilentUdpServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- a real DNS server --------------------------------------------------------------------


class DnsmasqServer:
    """dnsmasq answering on 127.0.0.1 (UDP and TCP) from the records it is given.

        with DnsmasqServer("--local=/test/", "--host-record=www.test,10.0.0.1") as dns:
            check_once("dns", {"name": "www.test", "resolvers": [dns.address]})

    Upstream servers, /etc/hosts and config files are off, so it answers only for the
    records given (names under a `--local` domain that it does not know get NXDOMAIN,
    others REFUSED). `DnsmasqServer.binary()` is None where dnsmasq is not installed
    (Debian: `apt-get install dnsmasq-base`).
    """

    def __init__(self, *options: str, binary: str | None = None):
        self.options = options
        self.program = binary or self.binary()
        if self.program is None:
            raise FileNotFoundError("dnsmasq is not installed (apt-get install dnsmasq-base)")
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="watchkeeper-dnsmasq-")

    @staticmethod
    def binary() -> str | None:
        """Return the dnsmasq program, or None when it is not installed."""
        found = shutil.which("dnsmasq")
        if found is None and os.access("/usr/sbin/dnsmasq", os.X_OK):
            found = "/usr/sbin/dnsmasq"
        return found

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 5.0) -> DnsmasqServer:
        problem = ""
        for _ in range(5):  # a free port may be taken between choosing and binding it
            self.port = free_port("udp")
            self.process = subprocess.Popen(
                [
                    str(self.program),
                    "--keep-in-foreground",
                    f"--port={self.port}",
                    f"--listen-address={self.host}",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    f"--pid-file={self._dir.name}/dnsmasq.pid",
                    "--log-facility=-",
                    *self.options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    socket.create_connection((self.host, self.port), timeout=0.2).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            if self.process.poll() is None:
                self.stop()
                raise TimeoutError(f"dnsmasq did not listen on {self.address} in {timeout}s")
            problem = (self.process.stderr.read() if self.process.stderr else b"").decode()
            if "in use" not in problem:
                break
        raise RuntimeError(f"dnsmasq did not start: {problem.strip()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self._dir.cleanup()

    def __enter__(self) -> DnsmasqServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- throwaway certificates -------------------------------------------------------------


@dataclass
class Certificates:
    """PEM files of a throwaway CA, a server certificate it signed, and a client one."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    not_after: dt.datetime

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """Return an SSLContext serving the server certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def make_certificates(
    directory: Path | str,
    *,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    valid_for: dt.timedelta = dt.timedelta(days=30),
    self_signed: bool = False,
) -> Certificates:
    """Write a CA and a server certificate for `hostnames` valid for `valid_for` from now.

    `self_signed` makes the server certificate its own issuer (the CA file then trusts
    nothing it presents).
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = now + valid_for
    # an expired certificate (negative valid_for) was valid for a day before it expired
    not_before = min(now - dt.timedelta(hours=1), not_after - dt.timedelta(days=1))

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("watchkeeper test CA"))
        .issuer_name(name("watchkeeper test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, usage, sans: list[x509.GeneralName]):
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key, issuer_name = (key, name(common)) if self_signed else (ca_key, ca_cert.subject)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        return key, builder.sign(issuer_key, hashes.SHA256())

    sans: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_key, server_cert = leaf(hostnames[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_key, client_cert = leaf("watchkeeper test client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    pem = serialization.Encoding.PEM
    files = Certificates(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        not_after=not_after,
    )
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.cert.write_bytes(server_cert.public_bytes(pem))
    write_key(server_key, files.key)
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    write_key(client_key, files.client_key)
    return files


# --- pytest fixtures (with `pytest_plugins = ["watchkeeper.engine.testing"]`) ------------

# defined only when pytest runs: importing this module elsewhere must not import pytest
if "pytest" in sys.modules:
    import pytest

    @pytest.fixture
    def http_server():
        """A started `HttpTestServer`, stopped after the test."""
        with HttpTestServer() as server:
            yield server

    @pytest.fixture
    def tcp_server():
        """Start `TcpTestServer(handler)` servers (silent without one); all stop after."""
        servers: list[TcpTestServer] = []

        def start(handler: Callable[[socket.socket], None] | None = None) -> TcpTestServer:
            servers.append(TcpTestServer(handler).start())
            return servers[-1]

        yield start
        for server in servers:
            server.stop()

    @pytest.fixture
    def silent_udp():
        """A `SilentUdpServer`, closed after the test."""
        with SilentUdpServer() as server:
            yield server

    @pytest.fixture
    def certificates(tmp_path):
        """`make_certificates` in the test's temporary directory (30 days, localhost)."""
        return make_certificates(tmp_path / "pki")
