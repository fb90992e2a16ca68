"""The `redis` probe: ping latency and INFO figures."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration


class RedisOptions(ProbeOptions):
    """PING a Redis server and read its INFO."""

    url: Secret = Field(description="redis:// or rediss:// URL (may hold a password).")


_DOING = {"connect": "connecting to", "ping": "waiting for PONG from", "info": "reading INFO from"}
_FAILED = {
    "connect": "cannot connect to {}",
    "ping": "PING to {} failed",
    "info": "INFO from {} failed",
}


class RedisProbe(Probe):
    """PING a Redis server and read figures from its INFO."""

    type = "redis"
    Options = RedisOptions
    metrics = (
        Metric("connect_time", "duration", "connect (and `AUTH`, `SELECT`)"),
        Metric("ping_time", "duration", "one `PING` round trip"),
        Metric(
            "hit_rate",
            "ratio",
            "`keyspace_hits ÷ (keyspace_hits + keyspace_misses)` since the server started; "
            "left out while both are 0",
        ),
        Metric("used_memory", "bytes", "memory Redis allocated (`used_memory`)"),
        Metric("used_memory_ratio", "ratio", "`used_memory ÷ maxmemory`, when `maxmemory` is set"),
        Metric("connected_clients", "count", "client connections"),
        Metric("evicted_keys", "count", "keys evicted since the server started"),
    )

    async def check(self, options: RedisOptions, ctx: ProbeContext) -> Result:
        import anyio
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        url = options.url.get_secret_value()
        shown, password = _describe_url(url)
        budget = time_budget(ctx.timeout)
        after = format_duration(ctx.timeout)
        metrics: dict[str, float] = {}
        phase = "connect"
        try:
            client = aioredis.Redis.from_url(
                url,
                single_connection_client=True,
                socket_connect_timeout=budget,
                socket_timeout=budget,
                retry_on_timeout=False,
            )
        except ValueError as exc:  # a malformed URL
            return Result(ok=False, message=f"invalid redis URL {shown}: {_clean(exc, password)}")
        try:
            with anyio.fail_after(budget):
                start = time.perf_counter()
                await client.initialize()  # connects (and AUTHs, SELECTs) once
                metrics["connect_time"] = time.perf_counter() - start
                phase = "ping"
                start = time.perf_counter()
                await client.ping()
                metrics["ping_time"] = time.perf_counter() - start
                phase = "info"
                info = await client.info()
        except (TimeoutError, RedisError, OSError) as exc:
            if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
                message = f"timed out after {after} {_DOING[phase]} {shown}"
                return Result(ok=False, message=message, metrics=metrics, details={"timeout": True})
            message = _FAILED[phase].format(shown) + ": " + _clean(exc, password)
            return Result(ok=False, message=message, metrics=metrics)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await client.aclose()
        metrics.update(info_metrics(info))
        return Result(
            ok=True,
            message=f"{shown}: PONG in {took(metrics['ping_time'])}",
            metrics=metrics,
        )


def info_metrics(info: dict[str, Any]) -> dict[str, float]:
    """Pick the figures worth alerting on from INFO, in base units."""
    metrics: dict[str, float] = {}
    hits = float(info.get("keyspace_hits", 0) or 0)
    misses = float(info.get("keyspace_misses", 0) or 0)
    if hits + misses > 0:
        metrics["hit_rate"] = hits / (hits + misses)
    for name in ("used_memory", "connected_clients", "evicted_keys"):
        if isinstance(info.get(name), int | float):
            metrics[name] = float(info[name])
    maxmemory = info.get("maxmemory")
    if isinstance(maxmemory, int | float) and maxmemory > 0 and "used_memory" in metrics:
        metrics["used_memory_ratio"] = metrics["used_memory"] / maxmemory
    return metrics


def _describe_url(url: str) -> tuple[str, str | None]:
    """Return (the URL for messages, without credentials; the password, if any)."""
    try:
        parts = urlsplit(url)
        password = parts.password
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "redis URL", None
    if parts.scheme == "unix":
        return f"unix://{parts.path}", password
    host = f"[{host}]" if ":" in host else host
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}:{port}{parts.path or ''}", password


def _clean(exc: BaseException, password: str | None) -> str:
    text = network_reason(exc) or str(exc) or type(exc).__name__
    text = " ".join(text.split())
    if password:
        text = text.replace(password, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [RedisProbe]
