"""The `redis` state store: shared by replicas; needs append-only persistence."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.store import StateStore
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


class RedisStore(StateStore):
    type = "redis"
    Options = RedisStoreOptions
    shared = True


@hookimpl
def watchkeeper_state_stores():
    return [RedisStore]
