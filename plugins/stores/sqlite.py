"""The `sqlite` state store: embedded, the default; one daemon per file."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.store import StateStore
from watchkeeper.schema.daemon import StoreOptions


class SqliteOptions(StoreOptions):
    """Keep state in a SQLite file next to monitor.yaml."""

    path: str = Field(
        ".watchkeeper/state.db", description="Database file; relative to monitor.yaml's folder."
    )


class SqliteStore(StateStore):
    type = "sqlite"
    Options = SqliteOptions


@hookimpl
def watchkeeper_state_stores():
    return [SqliteStore]
