"""The `postgres` backup source: pg_dump in custom format, restored with pg_restore."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.backup_plugin import BackupSource
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import SourceOptions
from watchkeeper.schema.base import Secret


class PostgresSourceOptions(SourceOptions):
    """Dump one PostgreSQL database with pg_dump (custom format, streamed)."""

    dsn: Secret = Field(description="Connection string of the database to dump.")
    schemas: list[str] = Field(default_factory=list, description="Only these schemas.")
    exclude_schemas: list[str] = Field(default_factory=list, description="Not these schemas.")
    tables: list[str] = Field(default_factory=list, description="Only these tables.")
    exclude_tables: list[str] = Field(default_factory=list, description="Not these tables.")
    exclude_table_data: list[str] = Field(
        default_factory=list, description="Schema but no rows for these tables."
    )
    compress: int = Field(6, ge=0, le=9, description="pg_dump compression level.")
    pg_dump: str = Field("pg_dump", description="pg_dump program to run.")
    pg_restore: str = Field("pg_restore", description="pg_restore program to run.")


class PostgresSource(BackupSource):
    type = "postgres"
    Options = PostgresSourceOptions


@hookimpl
def watchkeeper_backup_sources():
    return [PostgresSource]
