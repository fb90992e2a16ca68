"""The `postgres` probe: connect, run a query, optionally read server statistics."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions


class PostgresOptions(ProbeOptions):
    """Connect to PostgreSQL and time a query."""

    dsn: Secret = Field(description="Connection string (postgresql://user:pass@host/db).")
    query: str = Field("select 1", description="Query to time; must succeed.")
    expect_rows: int | None = Field(
        None, ge=0, description="Fail unless the query returns at least this many rows."
    )
    stats: bool = Field(False, description="Also report connections and database_size.")


class PostgresProbe(Probe):
    """Metrics: connect_time, query_time; with stats: connections, database_size."""

    type = "postgres"
    Options = PostgresOptions


@hookimpl
def watchkeeper_probes():
    return [PostgresProbe]
