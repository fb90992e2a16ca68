"""The `local` backup destination: a directory on this host.

Writes are atomic (a hidden `.NAME.*.part` file, fsync, rename). A write that fails —
a full disk, an aborted backup — removes its temporary file and the folders it created,
so a failed backup leaves nothing behind. Every key is checked (`manifest.check_key`)
and must resolve inside the directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from pydantic import Field

from watchkeeper.engine.backups.manifest import check_key
from watchkeeper.engine.backups.plugin import BackupDestination
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import DestinationOptions

BUFFER = 1 << 20  # bytes gathered before one write() call in the worker thread
READ_CHUNK = 1 << 20


class LocalOptions(DestinationOptions):
    """Write backups into a directory (atomically: temp file, fsync, rename)."""

    path: str = Field(description="Directory; relative paths are relative to monitor.yaml.")


class LocalDestination(BackupDestination):
    type = "local"
    Options = LocalOptions

    @property
    def root(self) -> Path:
        return (self.base_dir / os.path.expanduser(self.options.path)).resolve()

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key {key!r} leaves the destination directory")
        return path

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        path = self._path(key)
        root = self.root
        # a hidden temporary name in the same directory: rename() is then atomic
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        created: list[Path] = []
        handle = await anyio.to_thread.run_sync(_open_temp, temp, root, created)
        try:
            pending: list[bytes] = []
            size = 0
            async for chunk in chunks:
                pending.append(chunk)
                size += len(chunk)
                if size >= BUFFER:
                    data, pending, size = b"".join(pending), [], 0
                    await anyio.to_thread.run_sync(handle.write, data)
            if pending:
                await anyio.to_thread.run_sync(handle.write, b"".join(pending))
            await anyio.to_thread.run_sync(_sync_close, handle)
            await anyio.to_thread.run_sync(os.replace, temp, path)
            await anyio.to_thread.run_sync(_fsync_dir, path.parent)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, handle, temp, created)
            raise

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        handle = await anyio.to_thread.run_sync(lambda: open(path, "rb"))  # noqa: SIM115
        try:
            while chunk := await anyio.to_thread.run_sync(handle.read, READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    async def list(self, prefix: str = "") -> list[str]:
        root = self.root

        def walk() -> list[str]:
            if not root.is_dir():
                return []
            found = []
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if name.startswith("."):
                        continue  # temporary files of writes under way
                    key = Path(folder, name).relative_to(root).as_posix()
                    if key.startswith(prefix):
                        found.append(key)
            return sorted(found)

        return await anyio.to_thread.run_sync(walk)

    async def delete(self, keys: list[str]) -> None:
        root = self.root

        def remove() -> None:
            folders = set()
            for key in keys:
                path = self._path(key)
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                folders.add(path.parent)
            # a backup's folder and its job's folder go when they become empty
            for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
                while folder != root and folder.is_relative_to(root):
                    try:
                        folder.rmdir()
                    except OSError:
                        break
                    folder = folder.parent

        await anyio.to_thread.run_sync(remove)


def _sync_close(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _fsync_dir(folder: Path) -> None:
    # the rename is durable only once the directory entry itself is on disk
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_temp(temp: Path, root: Path, created: list[Path]):
    """Create the folders up to `temp` (noting those made, deepest first) and open it."""
    for attempt in range(3):
        missing = []
        folder = temp.parent
        while not folder.is_dir() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                # backups hold whole databases: what is made here is the owner's alone,
                # whatever the umask
                folder.mkdir(mode=0o700)
            except FileExistsError:
                continue
            if folder != root and folder.is_relative_to(root):
                created.insert(0, folder)  # the destination's own folder stays
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            return os.fdopen(os.open(temp, flags, 0o600), "wb")
        except FileNotFoundError:
            if attempt == 2:  # a concurrent cleanup removed a folder we rely on: retry
                _prune(created)
                raise
        except BaseException:
            _prune(created)
            raise
    raise AssertionError("unreachable")


def _prune(created: list[Path]) -> None:
    """Remove the folders a failed write created, deepest first, while they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def _discard(handle, temp: Path, created: list[Path]) -> None:
    try:
        handle.close()
    except OSError:
        pass  # a full disk: flushing what was buffered fails again; the file is closed
    try:
        temp.unlink()
    except FileNotFoundError:
        pass
    _prune(created)


@hookimpl
def watchkeeper_backup_destinations():
    return [LocalDestination]
