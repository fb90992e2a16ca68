"""The `json_export` backup source: each table as gzipped JSON Lines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.backup_plugin import BackupSource
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import SourceOptions
from watchkeeper.schema.base import Secret


class JsonExportOptions(SourceOptions):
    """Export tables row by row through server-side cursors."""

    dsn: Secret = Field(description="Connection string of the database to export.")
    tables: Literal["all"] | list[str] = Field(
        "all", description="`all` or a list of (schema-qualified) tables."
    )
    schemas: list[str] = Field(
        default_factory=lambda: ["public"], description="Schemas searched when tables is `all`."
    )
    batch_size: int = Field(2000, ge=1, description="Rows fetched per round trip.")


class JsonExportSource(BackupSource):
    type = "json_export"
    Options = JsonExportOptions


@hookimpl
def watchkeeper_backup_sources():
    return [JsonExportSource]
