"""The `files` backup source: paths and globs packed into a tar.gz."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.backup_plugin import BackupSource
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import SourceOptions


class FilesOptions(SourceOptions):
    """Archive files; paths are relative to monitor.yaml's folder."""

    paths: list[str] = Field(
        default_factory=lambda: ["monitor.yaml"],
        description="Files, folders and globs (default: monitor.yaml itself).",
    )
    exclude: list[str] = Field(default_factory=list, description="Globs left out.")


class FilesSource(BackupSource):
    type = "files"
    Options = FilesOptions
    restores_to = "directory"


@hookimpl
def watchkeeper_backup_sources():
    return [FilesSource]
