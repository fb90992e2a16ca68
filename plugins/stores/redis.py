"""The `redis` state store: shared by replicas; needs append-only persistence.

Every key starts with the deployment's prefix (default `watchkeeper:`), so deployments
sharing a server never meet. Key layout, with P the prefix:

    P meta                  hash: schema_version
    P collections           set of collection names (for stats)
    P doc:<collection>      hash: key -> document JSON
    P epoch:<collection>    hash: key -> fencing epoch (only for documents that have one)
    P rows:<stream>:<key>   sorted set: score = row time, member = 24-char unique id + JSON
    P keys:<stream>         set of keys that have rows in the stream
    P rowcount              hash: stream -> rows
    P lease:holder|epoch|expires|data   hashes: lease name -> field
    P epoch                 the store-wide epoch counter (INCR)

Each call is one round trip: a MULTI/EXEC pipeline for plain batches, one Lua script
(EVALSHA) where a decision must be taken atomically on the server (fenced writes, trims,
leases timed by the server's clock). Reading every key of a stream takes two: the key set,
then one pipelined range read per key.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.state.store import StateStore
from watchkeeper.schema.base import Secret
from watchkeeper.schema.daemon import StoreOptions


class RedisStoreOptions(StoreOptions):
    """Keep state in Redis under a key prefix; several daemons may share it."""

    url: Secret = Field(description="redis:// or rediss:// URL.")
    prefix: str = Field(
        "watchkeeper:",
        description="Key prefix, one per deployment, so two deployments can share a server.",
    )
    require_aof: bool = Field(
        True,
        description="Refuse to start when the server does not "
        "persist with appendonly (false: warn only).",
    )
    pool_size: int = Field(8, ge=1, description="Connections at most; more callers wait.")


class RedisStore(StateStore):
    """Opens the implementation in `redis_store` lazily: `validate` never imports the
    redis client library, a daemon that uses the store does."""

    type = "redis"
    Options = RedisStoreOptions
    shared = True

    def __new__(cls, options: Any, *, base_dir: Any = None) -> Any:
        from watchkeeper.plugins.stores.redis_store import RedisStore as Implementation

        return Implementation(options, base_dir=base_dir)


@hookimpl
def watchkeeper_state_stores():
    return [RedisStore]
