"""What backup sources and destinations are: the class contracts of backup plugins."""

from __future__ import annotations

from typing import Any, ClassVar

from watchkeeper.schema.backups import DestinationOptions, SourceOptions


class BackupSource:
    """Base of backup source plugins: produces a backup's files and restores them."""

    type: ClassVar[str]
    Options: ClassVar[type[SourceOptions]]
    restores_to: ClassVar[str] = "database"
    """What `backup restore --to` takes for this source: `database` (a DSN) or `directory`."""

    async def dump(self, options: Any, ctx: Any) -> Any:
        """Write the backup's files into ctx's working directory and describe them."""
        raise NotImplementedError(f"backup source {self.type!r} does not implement dump()")

    async def restore(self, options: Any, files: Any, target: str, ctx: Any) -> Any:
        """Restore a backup's files into a database (DSN) or a directory."""
        raise NotImplementedError(f"backup source {self.type!r} does not implement restore()")


class BackupDestination:
    """Base of backup destination plugins: stores, lists, reads and deletes backup files."""

    type: ClassVar[str]
    Options: ClassVar[type[DestinationOptions]]
