"""Real receivers for tests: an HTTP server and SMTP servers that record what they get.

Both run in a thread of the test process on 127.0.0.1 with a free port, so code under
test (in the same process or a CLI subprocess) talks to them over real sockets:

    with HttpRecorder() as receiver:
        receiver.answer(503, 503, 200)          # then 200 for every later request
        ... send to receiver.url("/hook") ...
        receiver.wait_for(3)
        assert receiver.requests[-1].json()["status"] == "firing"

    with SmtpRecorder(starttls=True, auth={"user": "secret"}) as smtp:
        ... send to f"smtp://user:secret@127.0.0.1:{smtp.port}" ...
        message = smtp.messages[0].email       # an email.message.EmailMessage
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    """One answer of the HTTP recorder."""

    status: int = 200
    body: str | bytes = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (to provoke client timeouts)."""


@dataclass
class Request:
    """One request the HTTP recorder received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpRecorder:
    """A threaded HTTP server recording every request and answering from a script."""

    def __init__(self, default: Reply | int = 200):
        self.requests: list[Request] = []
        self.default = default if isinstance(default, Reply) else Reply(default)
        self._script: list[Reply] = []
        self._changed = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = recorder._next()
                # recorded before answering: a client that sends again after the answer
                # finds its requests in order
                recorder._record(
                    Request(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        answered=reply.status,
                    )
                )
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str = "/") -> str:
        """Return the URL of a path on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *replies: Reply | int) -> HttpRecorder:
        """Answer the next requests with these replies, in order, then with the default."""
        with self._changed:
            self._script += [r if isinstance(r, Reply) else Reply(r) for r in replies]
        return self

    def always(self, reply: Reply | int) -> HttpRecorder:
        """Answer every request without a scripted reply with this one."""
        self.default = reply if isinstance(reply, Reply) else Reply(reply)
        return self

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Block until `count` requests arrived (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} request(s), got {len(self.requests)} in {timeout}s"
                    )
                self._changed.wait(left)
            return list(self.requests)

    def _next(self) -> Reply:
        with self._changed:
            return self._script.pop(0) if self._script else self.default

    def _record(self, request: Request) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def __enter__(self) -> HttpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


# --- SMTP ----------------------------------------------------------------------------


class EchoRefusal:
    """An HTTP server refusing every POST with 500 and quoting its body back, as many APIs
    do in their errors (where a secret the request carried comes back in a response)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = b"rejected: " + body
                self.send_response(500)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Mail:
    """One message the SMTP recorder accepted."""

    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    """Whether the session was encrypted (STARTTLS or implicit TLS) when it was sent."""
    login: str | None

    @property
    def email(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else None


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a self-signed certificate and its key for `host` (and localhost) to folder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpRecorder:
    """An aiosmtpd server recording accepted mail: plain, STARTTLS or implicit TLS.

    `auth` maps user names to passwords (AUTH PLAIN/LOGIN offered; over TLS only when
    `starttls`); `refuse` returns an SMTP reply such as "451 4.3.0 try later" for
    every RCPT TO instead of accepting it.
    """

    def __init__(
        self,
        *,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth: dict[str, str] | None = None,
        refuse: str | Callable[[str], str | None] | None = None,
        cert_dir: Path | None = None,
    ):
        import tempfile

        self.messages: list[Mail] = []
        self.port = free_port()
        self._tmp = None
        self.tls_context: ssl.SSLContext | None = None
        if starttls or implicit_tls:
            if cert_dir is None:
                self._tmp = tempfile.TemporaryDirectory()
                cert_dir = Path(self._tmp.name)
            cert, key = self_signed_certificate(cert_dir)
            self.cert_path = cert
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.tls_context = context
        self._starttls = starttls
        self._implicit = implicit_tls
        self._auth = auth
        self._refuse = refuse
        self._changed = threading.Condition()
        self.controller: Any = None

    def _handler(self) -> Any:
        recorder = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                refuse = recorder._refuse
                answer = refuse(address) if callable(refuse) else refuse
                if answer:
                    return answer
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                mail = Mail(
                    sender=envelope.mail_from,
                    recipients=list(envelope.rcpt_tos),
                    data=envelope.original_content or envelope.content,
                    tls=session.ssl is not None
                    or server.transport.get_extra_info("sslcontext") is not None,
                    login=_text(getattr(session, "auth_data", None)),
                )
                with recorder._changed:
                    recorder.messages.append(mail)
                    recorder._changed.notify_all()
                return "250 Message accepted for delivery"

        return Handler()

    def _authenticator(self) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        users = self._auth or {}

        def check(server, session, envelope, mechanism, auth_data):
            if isinstance(auth_data, LoginPassword):
                user = auth_data.login.decode()
                if users.get(user) == auth_data.password.decode():
                    return AuthResult(success=True, auth_data=user)
            return AuthResult(success=False, handled=False)

        return check

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Mail]:
        """Block until `count` messages arrived (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mail(s), got {len(self.messages)}")
                self._changed.wait(left)
            return list(self.messages)

    def __enter__(self) -> SmtpRecorder:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self._auth is not None:
            kwargs |= {
                "authenticator": self._authenticator(),
                "auth_require_tls": self._starttls,
            }
        if self._starttls:
            kwargs |= {"tls_context": self.tls_context, "require_starttls": False}
        if self._implicit:
            kwargs["ssl_context"] = self.tls_context
        self.controller = Controller(
            self._handler(),
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=5,
            **kwargs,
        )
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


# --- logs, and what tests send ---------------------------------------------------------


class LogCapture(logging.Handler):
    """Collect the `watchkeeper` loggers' records, formatted as the daemon writes them."""

    def __init__(self, logger: str = "watchkeeper"):
        super().__init__(logging.DEBUG)
        from watchkeeper.engine.observe.logs import TextFormatter

        self.setFormatter(TextFormatter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self._logger = logging.getLogger(logger)
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __enter__(self) -> LogCapture:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def alert_of(**fields: Any) -> Any:
    """Return a NoticeAlert: a firing `slow` response-time alert unless fields say otherwise."""
    from watchkeeper.engine.alerting.notice import NoticeAlert

    values: dict[str, Any] = {
        "id": "al-7f3a9c",
        "check": "api-health",
        "environment": "production",
        "rule": "slow",
        "severity": "high",
        "status": "firing",
        "summary": "response_time is 5.2s, above the high threshold 5s",
        "started_at": "2026-11-26T20:44:08Z",
        "metric": "response_time",
        "value": 5.2,
        "value_text": "5.2s",
        "threshold": 5.0,
        "threshold_text": "5s",
        "direction": "above",
        "labels": {"team": "web"},
        "runbook": "https://wiki.example.com/runbooks/api-health",
        "change": "firing",
    }
    values.update(fields)
    return NoticeAlert(**values)


def resolved_of(**fields: Any) -> Any:
    """Return the resolved twin of `alert_of()`: 16 minutes long."""
    values = {
        "status": "resolved",
        "resolved_at": "2026-11-26T21:00:08Z",
        "duration": 960.0,
        "change": "resolved",
    }
    return alert_of(**(values | fields))


def notice_of(*alerts: Any, **fields: Any) -> Any:
    """Return an alert Notice holding these alerts (default: one `alert_of()`)."""
    from watchkeeper.engine.alerting.notice import Notice

    members = list(alerts) or [alert_of()]
    firing = [a for a in members if a.status == "firing"]
    values: dict[str, Any] = {
        "id": "wk-0123456789abcdef0123",
        "kind": "alert",
        "status": "firing" if firing else "resolved",
        "title": "api-health@production",
        "severity": (firing or members)[0].severity,
        "alerts": members,
        "group": {"check": "api-health", "environment": "production"},
        "created_at": 1795725848.0,
    }
    values.update(fields)
    return Notice(**values)


async def deliver(
    notifier: Any,
    options: dict[str, Any],
    notice: Any,
    *,
    name: str = "target",
    timeout: float = 5.0,
    base_dir: Path | None = None,
) -> None:
    """Send one notice through a notifier (a class or an instance), as the outbox does."""
    from watchkeeper.engine.alerting.notifier import NotifyContext

    plugin = notifier() if isinstance(notifier, type) else notifier
    model = type(plugin).Options.model_validate(options)
    ctx = NotifyContext(
        name=name,
        log=logging.getLogger(f"watchkeeper.notify.{name}"),
        timeout=timeout,
        base_dir=base_dir or Path.cwd(),
    )
    await plugin.send(notice, model, ctx)
