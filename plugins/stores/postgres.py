"""The `postgres` state store: shared by replicas; schema created and migrated by the store."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.store import StateStore
from watchkeeper.schema.base import Secret
from watchkeeper.schema.daemon import StoreOptions


class PostgresStoreOptions(StoreOptions):
    """Keep state in PostgreSQL; several daemons may share it."""

    url: Secret = Field(description="postgresql:// connection string.")
    schema_: str = Field(
        "watchkeeper", alias="schema", description="Schema holding the store's tables."
    )
    pool_size: int = Field(4, ge=1, description="Connections kept open.")


class PostgresStore(StateStore):
    type = "postgres"
    Options = PostgresStoreOptions
    shared = True


@hookimpl
def watchkeeper_state_stores():
    return [PostgresStore]
