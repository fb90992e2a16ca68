"""The nats probe against the local NATS with JetStream (127.0.0.1:4222) and servers of its own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import anyio
import nats
import pytest
from pydantic import ValidationError

from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import (
    TcpTestServer,
    check_once,
    free_port,
    make_certificates,
    probe_options,
)
from watchkeeper.plugins.probes.nats import NatsProbe

SHARED = "nats://127.0.0.1:4222"
PASSWORD = "n4ts-s3cret-pass"


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def shared():
    if not listening(4222):
        pytest.skip("NATS is not reachable at 127.0.0.1:4222 (nats-server -js)")
    return SHARED


@pytest.fixture(scope="module")
def stream(shared):
    """A stream of this module's own with 3 messages and a consumer that has read none."""
    name = f"wk-probe-test-{uuid.uuid4().hex[:8]}"

    async def create():
        client = await nats.connect(shared)
        try:
            jetstream = client.jetstream()
            await jetstream.add_stream(name=name, subjects=[f"{name}.>"])
            for _ in range(3):
                await jetstream.publish(f"{name}.jobs", b"job")
            await jetstream.add_consumer(name, durable_name="workers")
        finally:
            await client.close()

    async def delete():
        client = await nats.connect(shared)
        try:
            await client.jetstream().delete_stream(name)
        finally:
            await client.close()

    anyio.run(create)
    yield name
    anyio.run(delete)


class NatsServer:
    """A nats-server of the tests' own on a free port, started with the given options."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.port = free_port()
        self.log = directory / f"nats-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two nats-servers without JetStream: one with a user and password, one with TLS."""
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    directory = tmp_path_factory.mktemp("nats")
    certs = make_certificates(directory / "pki")
    auth = NatsServer(directory, "--user", "probe", "--pass", PASSWORD)
    tls = NatsServer(directory, "--tls", "--tlscert", str(certs.cert), "--tlskey", str(certs.key))
    yield auth, tls, certs
    auth.stop()
    tls.stop()


# --- up ---------------------------------------------------------------------------------------


def test_round_trip(shared):
    result = check_once("nats", {"url": shared})
    assert result.ok, result.message
    assert result.message.startswith("round trip through nats://127.0.0.1:4222 in ")
    assert 0 < result.metrics["connect_time"] < 1
    assert 0 < result.metrics["round_trip_time"] < 1
    assert set(result.metrics) == {"connect_time", "round_trip_time"}
    assert undeclared(NatsProbe, result) == []


def test_stream_and_consumer_counts(shared, stream):
    result = check_once("nats", {"url": shared, "stream": stream, "consumer": "workers"})
    assert result.ok, result.message
    assert result.metrics["stream_messages"] == 3
    assert result.metrics["consumer_pending"] == 3
    assert result.message.endswith(f"; stream {stream}: 3 messages, workers: 3 pending")
    assert undeclared(NatsProbe, result) == []


@pytest.mark.slow
def test_credentials_in_the_url_or_as_options(servers):
    auth, _, _ = servers
    result = check_once("nats", {"url": f"nats://probe:{PASSWORD}@127.0.0.1:{auth.port}"})
    assert result.ok, result.message
    assert result.message.startswith(f"round trip through nats://probe@127.0.0.1:{auth.port} in ")
    options = {"url": f"nats://127.0.0.1:{auth.port}", "username": "probe", "password": PASSWORD}
    result = check_once("nats", options)
    assert result.ok, result.message


@pytest.mark.slow
def test_tls(servers):
    _, tls, certs = servers
    url = f"tls://127.0.0.1:{tls.port}"
    result = check_once("nats", {"url": url, "ca_bundle": str(certs.ca)})
    assert result.ok, result.message
    assert result.message.startswith(f"round trip through {url} in ")
    assert check_once("nats", {"url": url, "verify": False}).ok
    result = check_once("nats", {"url": url})
    assert not result.ok
    assert result.message == (
        f"TLS certificate of {url} is not trusted: unable to get local issuer certificate"
    )


# --- down -------------------------------------------------------------------------------------


def test_missing_stream(shared):
    missing = f"wk-missing-{uuid.uuid4().hex[:8]}"
    result = check_once("nats", {"url": shared, "stream": missing})
    assert not result.ok
    assert result.message == f"stream {missing} not found at nats://127.0.0.1:4222"
    assert result.metrics["round_trip_time"] > 0  # the server itself answered


def test_missing_consumer(shared, stream):
    result = check_once("nats", {"url": shared, "stream": stream, "consumer": "nobody"})
    assert not result.ok
    assert result.message == (
        f"consumer nobody of stream {stream} not found at nats://127.0.0.1:4222"
    )
    assert result.metrics["stream_messages"] == 3


@pytest.mark.slow
def test_wrong_credentials_are_auth_failed_and_never_shown(servers):
    auth, _, _ = servers
    wrong = "wr0ng-s3cret"
    for options, shown in (
        ({"url": f"nats://probe:{wrong}@127.0.0.1:{auth.port}"}, f"probe@127.0.0.1:{auth.port}"),
        ({"url": f"nats://{wrong}@127.0.0.1:{auth.port}"}, f"127.0.0.1:{auth.port}"),
        ({"url": f"nats://127.0.0.1:{auth.port}", "token": wrong}, f"127.0.0.1:{auth.port}"),
    ):
        result = check_once("nats", options)
        assert not result.ok
        assert result.message == (
            f"authentication failed at nats://{shown}: authorization violation"
        )
        assert wrong not in result.message


@pytest.mark.slow
def test_no_jetstream(servers):
    auth, _, _ = servers
    url = f"nats://probe:{PASSWORD}@127.0.0.1:{auth.port}"
    result = check_once("nats", {"url": url, "stream": "orders"})
    assert not result.ok
    assert result.message == (
        f"JetStream is not enabled at nats://probe@127.0.0.1:{auth.port} "
        "(nothing answered for orders)"
    )


@pytest.mark.slow
def test_tls_url_to_a_plain_server(shared):
    result = check_once("nats", {"url": "tls://127.0.0.1:4222", "verify": False})
    assert not result.ok
    assert result.message == "tls://127.0.0.1:4222 answered in plain text: the server has no TLS"


def test_connection_refused():
    port = free_port()
    result = check_once("nats", {"url": f"nats://watch:{PASSWORD}@127.0.0.1:{port}"})
    assert not result.ok
    assert result.message == f"cannot connect to nats://watch@127.0.0.1:{port}: connection refused"


def test_silent_server_times_out():
    with TcpTestServer() as silent:
        result = check_once("nats", {"url": f"nats://127.0.0.1:{silent.port}"}, timeout=1)
    assert result.duration < 1.2  # the check itself; opening the probe imports the client
    assert result.message == f"timed out after 1s connecting to nats://127.0.0.1:{silent.port}"
    assert result.details["timeout"] is True


def test_without_the_library_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["nats"] = None  # as if watchkeeper[nats] were not installed
        from watchkeeper.engine.testing import check_once
        print(check_once("nats", {"url": "nats://127.0.0.1:1"}).message)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the nats probe needs nats-py: pip install 'watchkeeper[nats]'"


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "url\n  Field required"),
        ({"url": f"http://u:{PASSWORD}@nats:4222"}, "url must start with nats:// or tls://"),
        ({"url": "nats://"}, "url has no host"),
        ({"url": "nats://nats:port"}, "url is not a valid URL"),
        ({"url": SHARED, "consumer": "workers"}, "consumer needs stream"),
        ({"url": SHARED, "verify": False}, "verify apply to tls:// URLs only"),
        ({"url": SHARED, "subject": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options(options, problem):
    with pytest.raises(ValidationError) as caught:
        probe_options("nats", options)
    assert problem in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_validate_through_the_cli(cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          wrong-scheme:
            probe: nats
            url: http://watch:{PASSWORD}@nats:4222
          no-url:
            probe: nats
            stream: orders
          good:
            probe: nats
            url: tls://nats.example.com:4222
            stream: orders
            consumer: billing
            thresholds: [{{metric: consumer_pending, above: 1000}}]
        """
    )
    result = cli("validate")
    assert result.code == 1, result.output
    assert "checks.wrong-scheme.url: url must start with nats:// or tls://" in result.output
    assert "checks.no-url.url: missing required key 'url'" in result.output
    assert "checks.good" not in result.output
    assert PASSWORD not in result.output


# --- through the CLI --------------------------------------------------------------------------


@pytest.mark.slow
def test_check_through_the_cli(shared, stream, cli, write_config):
    closed = free_port()
    write_config(
        f"""
        version: 1
        checks:
          bus:
            probe: nats
            url: {shared}
            stream: {stream}
            consumer: workers
            thresholds: [{{metric: consumer_pending, above: 100}}]
          bus-missing-stream:
            probe: nats
            url: {shared}
            stream: nope-{stream}
          bus-gone:
            probe: nats
            url: nats://watch:{PASSWORD}@127.0.0.1:{closed}
        """
    )
    result = cli("check", "--format", "json")
    assert result.code == 1, result.output
    rows = {row["check"]: row for row in result.json()}
    assert rows["bus"]["ok"], rows["bus"]["message"]
    assert rows["bus"]["metrics"]["stream_messages"] == 3
    assert rows["bus"]["metrics"]["consumer_pending"] == 3
    # the URL is a secret, and the CLI masks secrets' values wherever they appear
    assert rows["bus-missing-stream"]["message"] == f"stream nope-{stream} not found at **********"
    assert rows["bus-gone"]["message"] == (
        f"cannot connect to nats://watch@127.0.0.1:{closed}: connection refused"
    )
    assert PASSWORD not in result.output
