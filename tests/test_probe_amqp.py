"""The amqp probe against the local RabbitMQ (127.0.0.1:5672, guest/guest).

Queues the tests need are their own: declared under a unique name, deleted at the end.
"""

from __future__ import annotations

import sys
import time
import uuid

import anyio
import pytest
from pydantic import ValidationError

aiormq = pytest.importorskip("aiormq", reason="the amqp extra is not installed")

from watchkeeper.engine.run.declared_metrics import undeclared  # noqa: E402
from watchkeeper.engine.testing import (  # noqa: E402
    TcpTestServer,
    acheck_cancelled,
    acheck_once,
    check_once,
    contract_problems,
    fired_alerts,
    free_port,
    probe_options,
)
from watchkeeper.plugins.probes.amqp import INSTALL, AmqpProbe, parse_url  # noqa: E402

URL = "amqp://guest:guest@127.0.0.1:5672/"
SHOWN = "amqp://guest@127.0.0.1:5672/"
PASSWORD = "n0t-the-pa55word"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def broker():
    """The local RabbitMQ; the tests skip when it does not answer."""

    async def ping() -> None:
        with anyio.fail_after(5):
            conn = await aiormq.connect(URL)
            await conn.close()

    try:
        anyio.run(ping)
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        pytest.skip(f"RabbitMQ is not reachable at 127.0.0.1:5672 ({exc!r}); tests/services.sh")


@pytest.fixture
async def channel(broker):
    conn = await aiormq.connect(URL)
    channel = await conn.channel()
    yield channel
    await conn.close()


@pytest.fixture
async def queue(channel):
    """A queue of this test's own, deleted at the end."""
    name = f"wk-probe-test-{uuid.uuid4().hex[:10]}"
    await channel.queue_declare(name, auto_delete=False)
    yield name
    await channel.queue_delete(name)


def amqp(options: dict, **kwargs):
    return check_once("amqp", options, **kwargs)


# --- up -------------------------------------------------------------------------------------


def test_up(broker):
    result = amqp({"url": URL})
    assert result.ok, result.message
    assert result.message.startswith(f"{SHOWN}: connected in ")
    assert set(result.metrics) == {"connect_time"}
    assert 0 < result.metrics["connect_time"] < 1
    assert undeclared(AmqpProbe, result) == []


def test_the_default_vhost_in_its_spellings(broker):
    for url in ("amqp://guest:guest@127.0.0.1:5672", "amqp://guest:guest@127.0.0.1/%2F"):
        result = amqp({"url": url})
        assert result.ok, (url, result.message)


@pytest.mark.anyio
async def test_a_queue_with_messages_and_a_consumer(channel, queue):
    for n in range(5):
        await channel.basic_publish(f"job {n}".encode(), routing_key=queue)  # confirmed
    idle = await acheck_once("amqp", {"url": URL, "queue": queue})
    assert idle.ok, idle.message
    assert idle.metrics["messages"] == 5
    assert idle.metrics["consumers"] == 0
    assert idle.message.endswith(f"; queue {queue!r} holds 5 messages for 0 consumers")
    assert undeclared(AmqpProbe, idle) == []
    [alert] = fired_alerts(idle, [{"metric": "messages", "above": 3, "severity": "warning"}])
    assert alert.rule == "messages"
    [alert] = fired_alerts(idle, [{"metric": "consumers", "below": 1, "severity": "high"}])
    assert alert.rule == "consumers"

    # a consumer holding one unacknowledged message: `messages` counts those ready
    await channel.basic_qos(prefetch_count=1)
    taken = anyio.Event()

    async def hold(message) -> None:
        taken.set()

    await channel.basic_consume(queue, hold, no_ack=False)
    with anyio.fail_after(5):
        await taken.wait()
    busy = await acheck_once("amqp", {"url": URL, "queue": queue})
    assert busy.ok, busy.message
    assert busy.metrics["consumers"] == 1
    assert busy.metrics["messages"] == 4


# --- down -----------------------------------------------------------------------------------


def test_a_missing_queue_is_down(broker):
    name = f"wk-probe-missing-{uuid.uuid4().hex[:10]}"
    result = amqp({"url": URL, "queue": name})
    assert not result.ok
    assert result.message == f"{SHOWN}: queue {name!r} does not exist"
    assert result.metrics["connect_time"] > 0  # it connected; the queue is what failed
    assert "messages" not in result.metrics


def test_wrong_credentials_say_auth_failed_and_hide_the_password(broker):
    result = amqp({"url": f"amqp://guest:{PASSWORD}@127.0.0.1:5672/"})
    assert not result.ok
    assert PASSWORD not in result.message
    assert result.message == (
        f"cannot connect to {SHOWN}: auth failed: the broker refused the login of user 'guest'"
    )


def test_an_unknown_vhost(broker):
    vhost = f"wk-missing-{uuid.uuid4().hex[:8]}"
    result = amqp({"url": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"})
    assert not result.ok
    assert result.message == (
        f"cannot connect to amqp://guest@127.0.0.1:5672/{vhost}: the broker refused vhost "
        f"{vhost!r} (it does not exist, or the user may not use it)"
    )


def test_closed_port_is_refused():
    port = free_port()
    result = amqp({"url": f"amqp://guest:{PASSWORD}@127.0.0.1:{port}/"})
    assert not result.ok
    assert result.message == f"cannot connect to amqp://guest@127.0.0.1:{port}/: connection refused"


def test_amqps_to_a_plain_port_fails_tls(broker):
    result = amqp({"url": f"amqps://guest:{PASSWORD}@127.0.0.1:5672/"})
    assert not result.ok
    assert result.message == (
        "cannot connect to amqps://guest@127.0.0.1:5672/: TLS failed: wrong version number"
    )


def hang_up(conn) -> None:
    conn.recv(8)  # the protocol header, then nothing: what many non-AMQP servers do


def amqp_1_0(conn) -> None:
    conn.recv(8)
    conn.sendall(b"AMQP\x00\x01\x00\x00")  # an AMQP 1.0 broker's own header


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (hang_up, "the server hung up mid-conversation (is it an AMQP 0-9-1 broker?)"),
        (amqp_1_0, "the server speaks another version of AMQP, not 0-9-1"),
    ],
)
def test_not_an_amqp_0_9_1_broker(handler, reason):
    with TcpTestServer(handler) as server:
        result = amqp({"url": f"amqp://guest:guest@127.0.0.1:{server.port}/"})
    assert not result.ok
    assert result.message == f"cannot connect to amqp://guest@127.0.0.1:{server.port}/: {reason}"


def test_a_silent_server_times_out_in_time():
    with TcpTestServer() as silent:
        start = time.perf_counter()
        result = amqp({"url": f"amqp://guest:guest@127.0.0.1:{silent.port}/"}, timeout=1)
        elapsed = time.perf_counter() - start
    assert (
        result.message == f"timed out after 1s connecting to amqp://guest@127.0.0.1:{silent.port}/"
    )
    assert result.details["timeout"] is True
    assert elapsed < 1.5


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aiormq", None)  # `import aiormq` now fails
    result = amqp({"url": URL})
    assert not result.ok
    assert result.message == f"the amqp probe needs aiormq: {INSTALL}"
    assert INSTALL == "pip install 'watchkeeper[amqp]'"


def test_keeps_the_contract():
    assert contract_problems(AmqpProbe) == []
    with TcpTestServer() as silent:
        options = {"url": f"amqp://guest:{PASSWORD}@127.0.0.1:{silent.port}/"}
        outcome = anyio.run(lambda: acheck_cancelled("amqp", options))
    assert outcome.cancelled
    assert outcome.returned is None


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": f"http://guest:{PASSWORD}@mq/"}, "expected an amqp:// or amqps:// URL, got http://"),
        ({"url": f"amqp://guest:{PASSWORD}@:5672/"}, "the URL names no host"),
        ({"url": "amqp://mq:99999/"}, "not a valid amqp:// URL"),
        ({"url": "amqp://mq/a/b"}, "write a / inside it as %2F"),
        ({"url": URL, "queue": ""}, "at least 1 character"),
        ({"queue": "jobs"}, "Field required"),
    ],
)  # fmt: skip
def test_invalid_options(options, problem):
    with pytest.raises(ValidationError) as caught:
        probe_options("amqp", options)
    assert problem in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_url_forms():
    assert parse_url("amqps://app:p%40ss@mq.internal/orders").shown == (
        "amqps://app@mq.internal:5671/orders"
    )
    assert parse_url("amqps://app:p%40ss@mq.internal/orders").password == "p@ss"
    assert parse_url("amqp://mq").shown == "amqp://mq:5672/"
    assert parse_url("amqp://mq").vhost == "/"
    assert parse_url("amqp://mq/%2F").vhost == "/"
    assert parse_url("amqp://mq/a%2Fb").vhost == "a/b"


def test_validate_through_the_cli(cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          wrong-scheme:
            probe: amqp
            url: http://guest:{PASSWORD}@mq/
          no-url:
            probe: amqp
            queue: jobs
          good:
            probe: amqp
            url: amqps://app:{PASSWORD}@mq.internal/orders
            queue: jobs
            thresholds: [{{metric: messages, above: 1000}}, {{metric: consumers, below: 1}}]
        """
    )
    result = cli("validate")
    assert result.code == 1, result.output
    assert (
        "monitor.yaml:5:10: checks.wrong-scheme.url: expected an amqp:// or amqps:// URL, "
        "got http://" in result.output
    )
    assert "monitor.yaml:7:5: checks.no-url.url: missing required key 'url'" in result.output
    assert "checks.good" not in result.output
    assert PASSWORD not in result.output


# --- through the CLI --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
async def test_check_through_the_cli(channel, queue, cli, write_config):
    for n in range(3):
        await channel.basic_publish(f"job {n}".encode(), routing_key=queue)
    missing = f"wk-probe-missing-{uuid.uuid4().hex[:10]}"
    write_config(
        f"""
        version: 1
        checks:
          jobs:
            probe: amqp
            url: {URL}
            queue: {queue}
            thresholds:
              - {{metric: messages, above: 1000, severity: warning}}
          gone:
            probe: amqp
            url: {URL}
            queue: {missing}
          wrong-password:
            probe: amqp
            url: amqp://guest:{PASSWORD}@127.0.0.1:5672/
        """
    )
    result = await anyio.to_thread.run_sync(lambda: cli("check", "--format", "json"))
    assert result.code == 1, result.output
    rows = {row["check"]: row for row in result.json()}
    assert rows["jobs"]["ok"] is True, rows["jobs"]["message"]
    assert rows["jobs"]["metrics"]["messages"] == 3
    assert rows["jobs"]["metrics"]["consumers"] == 0
    assert rows["gone"]["ok"] is False
    # the daemon's own safety net masks guest/guest's password, which is also the user name
    assert rows["gone"]["message"] == (
        f"amqp://**********@127.0.0.1:5672/: queue {missing!r} does not exist"
    )
    assert rows["wrong-password"]["ok"] is False
    assert "auth failed" in rows["wrong-password"]["message"]
    assert PASSWORD not in result.output
