"""The `postgres` state store: shared by replicas; schema created and migrated by the store.

Every call is one SQL statement on a pooled autocommit connection, so one round trip:
a batch of documents or rows travels as arrays (`unnest`), fencing and its all-or-nothing
rule run inside the server (a function that raises, undoing the statement, when a key is
fenced off), and stream row counts are kept by the same statement that appends or trims.
The store's tables live in one schema (`watchkeeper` by default) whose version is
recorded in its `meta` table; missing migrations are applied at open() in one
transaction holding an advisory lock, so replicas starting together do not race.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.state.store import StateStore
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
    """Opens the implementation in `postgres_store` lazily: `validate` never imports the
    psycopg client library, a daemon that uses the store does."""

    type = "postgres"
    Options = PostgresStoreOptions
    shared = True

    def __new__(cls, options: Any, *, base_dir: Any = None) -> Any:
        from watchkeeper.plugins.stores.postgres_store import PostgresStore as Implementation

        return Implementation(options, base_dir=base_dir)


@hookimpl
def watchkeeper_state_stores():
    return [PostgresStore]
