"""The grpc probe against gRPC aio servers with the standard health service, in this process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from watchkeeper.engine.testing import TcpTestServer, check_once, free_port, make_certificates

TOKEN = "Bearer grpc-s3cr3t-0042"
Status = health_pb2.HealthCheckResponse


class RequireToken(grpc.aio.ServerInterceptor):
    """Refuse calls whose `authorization` metadata, when sent, is not TOKEN."""

    async def intercept_service(self, continuation, details):
        sent = dict(details.invocation_metadata or ())
        if sent.get("authorization", TOKEN) == TOKEN:
            return await continuation(details)

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid token")

        return grpc.unary_unary_rpc_method_handler(
            deny,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )


class GrpcServer:
    """A grpc.aio server on an event loop of its own thread."""

    def __init__(self, *, with_health: bool = True, certs=None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.health = None
        self.port = self._call(self._start(with_health, certs))
        self.target = f"127.0.0.1:{self.port}"

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self, with_health: bool, certs) -> int:
        self.server = grpc.aio.server(interceptors=[RequireToken()])
        if with_health:
            self.health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if certs is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            pair = (certs.key.read_bytes(), certs.cert.read_bytes())
            credentials = grpc.ssl_server_credentials([pair])
            port = self.server.add_secure_port("127.0.0.1:0", credentials)
        await self.server.start()
        return port

    def set(self, service: str, status: int) -> None:
        self._call(self.health.set(service, status))

    def stop(self) -> None:
        self._call(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server():
    started = GrpcServer()
    started.set("", Status.SERVING)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), hostnames=("grpc.test", "127.0.0.1"))


@pytest.fixture
def secure(certs):
    started = GrpcServer(certs=certs)
    started.set("", Status.SERVING)
    yield started
    started.stop()


# --- through the CLI, as a user runs it ------------------------------------------------


@pytest.mark.slow
def test_serving_and_not_serving_through_the_cli(server, cli, write_config):
    server.set("billing.Invoices", Status.SERVING)
    server.set("billing.Payments", Status.NOT_SERVING)
    write_config(
        f"""
        version: 1
        checks:
          billing:
            probe: grpc
            target: {server.target}
            metadata: {{authorization: "${{GRPC_TOKEN}}"}}
            thresholds: [{{metric: response_time, above: 2s, severity: warning}}]
          invoices:
            probe: grpc
            target: {server.target}
            service: billing.Invoices
          payments:
            probe: grpc
            target: {server.target}
            service: billing.Payments
        """
    )
    env = {"GRPC_TOKEN": TOKEN}
    rows = {}
    for name in ("billing", "invoices", "payments"):
        checked = cli("check", name, "--format", "json", env=env)
        [rows[name]] = checked.json()
        assert TOKEN not in checked.output
    assert rows["billing"]["ok"] is True, rows["billing"]["message"]
    assert set(rows["billing"]["metrics"]) == {"response_time"}
    assert 0 < rows["billing"]["metrics"]["response_time"] < 2
    assert rows["billing"]["message"].startswith(f"{server.target}: the server is SERVING (")
    assert rows["invoices"]["ok"] is True
    assert rows["invoices"]["message"].startswith(
        f"{server.target}: service 'billing.Invoices' is SERVING ("
    )
    assert rows["payments"]["ok"] is False
    assert rows["payments"]["message"] == (
        f"{server.target}: service 'billing.Payments' is NOT_SERVING"
    )
    assert "response_time" in rows["payments"]["metrics"]


# --- direct runs: each status, each failure -------------------------------------------------


@pytest.mark.slow
def test_each_health_status(server):
    server.set("db", Status.NOT_SERVING)
    result = check_once("grpc", {"target": server.target, "service": "db"})
    assert (result.ok, result.message) == (False, f"{server.target}: service 'db' is NOT_SERVING")
    assert result.details["status"] == "NOT_SERVING"
    server.set("db", Status.SERVING)
    assert check_once("grpc", {"target": server.target, "service": "db"}).ok
    server.set("db", Status.SERVICE_UNKNOWN)
    result = check_once("grpc", {"target": server.target, "service": "db"})
    assert result.message == f"{server.target} does not know service 'db' (SERVICE_UNKNOWN)"
    server.set("db", Status.UNKNOWN)
    result = check_once("grpc", {"target": server.target, "service": "db"})
    assert result.message == f"{server.target}: service 'db' is UNKNOWN"


@pytest.mark.slow
def test_a_service_the_server_never_heard_of(server):
    result = check_once("grpc", {"target": server.target, "service": "no.Such"})
    assert not result.ok
    assert result.message == (
        f"{server.target} does not know service 'no.Such' (SERVICE_UNKNOWN: NOT_FOUND)"
    )


@pytest.mark.slow
def test_no_health_service_is_unimplemented():
    bare = GrpcServer(with_health=False)
    try:
        result = check_once("grpc", {"target": bare.target})
    finally:
        bare.stop()
    assert not result.ok
    assert result.message == f"{bare.target} has no health service (UNIMPLEMENTED)"
    assert result.details["code"] == "UNIMPLEMENTED"


def test_refused_is_unavailable():
    target = f"127.0.0.1:{free_port()}"
    result = check_once("grpc", {"target": target})
    assert not result.ok
    assert result.message == f"cannot connect to {target}: connection refused (UNAVAILABLE)"


@pytest.mark.slow
def test_silent_port_times_out():
    with TcpTestServer() as silent:
        target = f"127.0.0.1:{silent.port}"
        result = check_once("grpc", {"target": target}, timeout=1)
    assert not result.ok
    assert result.message == f"timed out after 1s waiting for the health status from {target}"
    assert result.details["timeout"] is True


@pytest.mark.slow
def test_wrong_metadata_is_refused_and_never_shown(server):
    wrong = "Bearer not-the-token-0815"
    result = check_once("grpc", {"target": server.target, "metadata": {"authorization": wrong}})
    assert not result.ok
    assert result.message == (
        f"health check of {server.target} failed: UNAUTHENTICATED: invalid token"
    )
    assert wrong not in result.message
    good = check_once("grpc", {"target": server.target, "metadata": {"authorization": TOKEN}})
    assert good.ok, good.message


# --- TLS ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tls_with_a_private_ca(secure, certs, tmp_path):
    (tmp_path / "ca.pem").write_bytes(certs.ca.read_bytes())
    options = {"target": secure.target, "tls": True, "ca_bundle": "ca.pem"}
    result = check_once("grpc", options, base_dir=tmp_path)
    assert result.ok, result.message
    named = {**options, "server_name": "grpc.test"}
    assert check_once("grpc", named, base_dir=tmp_path).ok


@pytest.mark.slow
def test_tls_failures(secure, certs):
    untrusted = check_once("grpc", {"target": secure.target, "tls": True})
    assert not untrusted.ok
    expected = f"TLS handshake with {secure.target} failed (UNAVAILABLE): "
    assert untrusted.message.startswith(expected), untrusted.message
    wrong_name = check_once(
        "grpc",
        {
            "target": secure.target,
            "tls": True,
            "ca_bundle": str(certs.ca),
            "server_name": "other.test",
        },
    )
    assert not wrong_name.ok
    assert wrong_name.message.startswith(f"TLS handshake with {secure.target} failed")


@pytest.mark.slow
def test_tls_without_verification(secure):
    result = check_once("grpc", {"target": secure.target, "tls": True, "verify": False})
    assert result.ok, result.message


@pytest.mark.slow
def test_tls_against_a_plaintext_server(server):
    result = check_once("grpc", {"target": server.target, "tls": True, "verify": False})
    assert not result.ok
    assert result.message.startswith(f"TLS handshake with {server.target} failed")


# --- options ---------------------------------------------------------------------------


def test_validate_names_each_bad_option(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          no-target:
            probe: grpc
          url-not-target:
            probe: grpc
            target: https://api.example.com
          no-port:
            probe: grpc
            target: api.example.com
          ca-without-tls:
            probe: grpc
            target: api.example.com:443
            ca_bundle: ca.pem
          upper-case-metadata:
            probe: grpc
            target: api.example.com:443
            metadata: {Authorization: token}
        """
    )
    checked = cli("validate")
    assert checked.code == 1
    out = checked.stdout
    assert "checks.no-target.target: missing required key 'target'" in out
    assert out.count("expected host:port, e.g. api.internal:50051 or [::1]:50051") == 2
    assert "`ca_bundle` needs `tls: true`" in out
    assert "metadata key 'Authorization': use lower-case letters" in out


def test_missing_library_names_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["grpc"] = None  # as if the extra were not installed
        from watchkeeper.engine.testing import check_once
        print(check_once("grpc", {"target": "127.0.0.1:9"}).message)
        """
    )
    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.stdout.strip() == (
        "the grpc probe needs grpcio: pip install 'watchkeeper[grpc]'"
    ), done.stderr
