"""The redis probe against the local Redis (127.0.0.1:6379)."""

from __future__ import annotations

import uuid

import pytest
import redis

from watchkeeper.engine.testing import TcpTestServer, check_once, free_port
from watchkeeper.plugins.probes.redis import info_metrics

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def client():
    client = redis.Redis.from_url(URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379 ({exc}); tests/services.sh")
    yield client
    client.close()


@pytest.fixture
def prefix(client):
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"wk-probe-test:{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_ping_and_info(client, prefix):
    client.set(f"{prefix}k", "v")
    client.get(f"{prefix}k")  # a hit
    client.get(f"{prefix}missing")  # a miss
    result = check_once("redis", {"url": URL})
    assert result.ok, result.message
    assert result.message.startswith(f"{URL}: PONG in ")
    assert 0 < result.metrics["ping_time"] < 1
    assert 0 < result.metrics["connect_time"] < 1
    assert 0 < result.metrics["hit_rate"] < 1
    assert result.metrics["used_memory"] > 100_000  # bytes
    assert result.metrics["connected_clients"] >= 1
    assert result.metrics["evicted_keys"] >= 0


def test_wrong_password_message_hides_it(client):
    password = "n0t-the-pa55word"
    result = check_once("redis", {"url": f"redis://wk-nobody:{password}@127.0.0.1:6379/0"})
    assert not result.ok
    assert password not in result.message
    assert result.message.startswith("cannot connect to redis://wk-nobody@127.0.0.1:6379/0: ")


def test_unknown_database_index(client):
    result = check_once("redis", {"url": "redis://127.0.0.1:6379/9999"})
    assert not result.ok
    assert result.message == (
        "cannot connect to redis://127.0.0.1:6379/9999: DB index is out of range"
    )


def test_nothing_listening():
    port = free_port()
    result = check_once("redis", {"url": f"redis://:pw-abcdef@127.0.0.1:{port}/0"})
    assert not result.ok
    assert result.message == f"cannot connect to redis://127.0.0.1:{port}/0: connection refused"


def test_silent_server_times_out():
    with TcpTestServer() as silent:  # accepts, never answers
        port = silent.port
        result = check_once("redis", {"url": f"redis://127.0.0.1:{port}/0"}, timeout=1)
    assert not result.ok
    # redis-py's handshake (CLIENT SETINFO) is part of connecting
    assert result.message == f"timed out after 1s connecting to redis://127.0.0.1:{port}/0"
    assert result.details["timeout"] is True


def test_not_a_redis_url():
    result = check_once("redis", {"url": "http://127.0.0.1:6379"})
    assert not result.ok
    assert result.message.startswith("invalid redis URL")


def test_info_metrics_in_base_units():
    info = {
        "keyspace_hits": 90,
        "keyspace_misses": 10,
        "used_memory": 50_000_000,
        "maxmemory": 100_000_000,
        "connected_clients": 7,
        "evicted_keys": 3,
    }
    assert info_metrics(info) == {
        "hit_rate": 0.9,
        "used_memory": 50_000_000,
        "used_memory_ratio": 0.5,
        "connected_clients": 7,
        "evicted_keys": 3,
    }


def test_hit_rate_is_omitted_without_lookups_and_ratio_without_maxmemory():
    info = {"keyspace_hits": 0, "keyspace_misses": 0, "used_memory": 1, "maxmemory": 0}
    metrics = info_metrics(info)
    assert "hit_rate" not in metrics
    assert "used_memory_ratio" not in metrics
