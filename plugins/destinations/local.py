"""The `local` backup destination: a directory on this host."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.backup_plugin import BackupDestination
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import DestinationOptions


class LocalOptions(DestinationOptions):
    """Write backups into a directory (atomically: temp file, fsync, rename)."""

    path: str = Field(description="Directory; relative paths are relative to monitor.yaml.")


class LocalDestination(BackupDestination):
    type = "local"
    Options = LocalOptions


@hookimpl
def watchkeeper_backup_destinations():
    return [LocalDestination]
