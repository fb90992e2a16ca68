"""What backup sources and destinations are: the class contracts of backup plugins.

A **source** turns one configured thing (a database, some files) into the files of a
backup and back. It never sees destinations, hashing or encryption: it writes plain bytes
into `DumpContext.file(name)` and the engine streams them on, so a dump is never held
whole in memory or on local disk. Restoring, it gets the backup's files already fetched,
checked against their SHA-256 and decrypted, as local paths.

A **destination** stores opaque objects under keys like `database/database-20261205T020000Z/
database.dump` and reads, lists and deletes them. `put` consumes an async iterator of
chunks; when the iterator raises, the destination must leave nothing behind under the key
(a local temporary file removed, an S3 multipart upload aborted).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from watchkeeper.schema.backups import DestinationOptions, SourceOptions

__all__ = [
    "BackupDestination", "BackupError", "BackupSource", "DumpContext", "FileOut",
    "RestoreContext",
]  # fmt: skip


class BackupError(Exception):
    """A backup, restore or verification cannot go on; the message is for the operator."""


class FileOut(Protocol):
    """Where a source writes one file of a backup."""

    async def write(self, data: bytes) -> None:
        """Take the next bytes of the file (any size; the engine rechunks)."""


@dataclass
class DumpContext:
    """What a source's `dump()` gets besides its options."""

    job: str
    base_dir: Path
    """monitor.yaml's folder: relative paths in options are relative to it."""
    log: logging.Logger
    file: Callable[[str], AbstractAsyncContextManager[FileOut]]
    """`async with ctx.file("name") as out: await out.write(...)`; a name is a plain file
    name (no `/`). Leaving the block normally completes the file at every destination."""


@dataclass
class RestoreContext:
    """What a source's `restore()` gets besides its options, files and target."""

    job: str
    base_dir: Path
    log: logging.Logger
    clean: bool = False
    """The operator asked to replace what is in the target (tables, files) instead of
    refusing a non-empty one."""
    notes: list[str] = field(default_factory=list)
    """Lines the source wants shown to the operator after the restore."""


class BackupSource:
    """Base of backup source plugins: produces a backup's files and restores them."""

    type: ClassVar[str]
    Options: ClassVar[type[SourceOptions]]
    restores_to: ClassVar[str] = "database"
    """What `backup restore --to` takes for this source: `database` (a DSN) or `directory`."""

    async def dump(self, options: Any, ctx: DumpContext) -> dict[str, Any]:
        """Write the backup's files through `ctx.file()`; return facts for the catalog.

        Raise BackupError (or any exception) to fail the run: files already written are
        then removed from every destination.
        """
        raise NotImplementedError(f"backup source {self.type!r} does not implement dump()")

    async def restore(
        self, options: Any, files: dict[str, Path], target: str, ctx: RestoreContext
    ) -> dict[str, Any]:
        """Restore from local, verified, decrypted files into a database (DSN) or directory.

        :param files: file name as written by `dump()` -> local path.
        :param target: a DSN when `restores_to` is `database`, else a directory.
        :return: facts for the operator, e.g. `{"tables": 4, "rows": 3000}`.
        """
        raise NotImplementedError(f"backup source {self.type!r} does not implement restore()")


class BackupDestination:
    """Base of backup destination plugins: stores, lists, reads and deletes backup files.

    One object per configured destination; methods may be called concurrently.
    """

    type: ClassVar[str]
    Options: ClassVar[type[DestinationOptions]]

    def __init__(self, options: Any, *, name: str, base_dir: Path):
        self.options = options
        self.name = name
        self.base_dir = base_dir

    def describe(self) -> str:
        """Return where this destination writes, for messages (no credentials)."""
        return self.type

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """Store an object read from `chunks`; visible under `key` only once complete.

        If iterating `chunks` raises, leave nothing under `key` and re-raise.
        """
        raise NotImplementedError

    def get(self, key: str) -> AsyncIterator[bytes]:
        """Iterate an object's bytes; raise FileNotFoundError when it does not exist."""
        raise NotImplementedError

    async def list(self, prefix: str = "") -> list[str]:
        """Return every key starting with `prefix` (keys use `/`, never a leading one)."""
        raise NotImplementedError

    async def delete(self, keys: list[str]) -> None:
        """Delete objects; keys that do not exist are ignored."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections. Idempotent."""
