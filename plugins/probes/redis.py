"""The `redis` probe: ping latency and INFO figures."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions


class RedisOptions(ProbeOptions):
    """PING a Redis server and read its INFO."""

    url: Secret = Field(description="redis:// or rediss:// URL (may hold a password).")


class RedisProbe(Probe):
    """Metrics: ping_time, hit_rate, used_memory, connected_clients, evicted_keys."""

    type = "redis"
    Options = RedisOptions


@hookimpl
def watchkeeper_probes():
    return [RedisProbe]
