"""The `files` backup source: paths and globs packed into a tar.gz.

The archive is written by `tarfile` in stream mode in a worker thread, its output handed
back to the event loop as it is produced, so no copy of it is kept locally. Members are
named relative to monitor.yaml's folder (paths outside it keep their absolute path,
without the leading `/`). Restoring checks every member with our own code first (see
`engine/backups/archive.py`: no absolute paths, no `..`, no device files or FIFOs, no
set-uid/set-gid bits, nothing through a symbolic link, no link leaving the target), then
unpacks into a fresh folder inside the target and moves the files into place.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import tarfile
from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import Field

from watchkeeper.engine.backups.archive import restore_archive
from watchkeeper.engine.backups.plugin import BackupError, BackupSource, DumpContext, RestoreContext
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import SourceOptions

ARCHIVE = "files.tar.gz"
GLOB_CHARS = set("*?[")


class FilesOptions(SourceOptions):
    """Archive files; paths are relative to monitor.yaml's folder."""

    paths: list[str] = Field(
        default_factory=lambda: ["monitor.yaml"],
        description="Files, folders and globs (default: monitor.yaml itself).",
    )
    exclude: list[str] = Field(default_factory=list, description="Globs left out.")


def collect(options: FilesOptions, base_dir: Path) -> list[tuple[Path, str]]:
    """Return (path, name in the archive) of every file to pack, sorted, without duplicates."""
    found: dict[str, Path] = {}

    def arcname(path: Path) -> str:
        return path.relative_to(base_dir).as_posix() if path.is_relative_to(base_dir) else (
            path.as_posix().lstrip("/")
        )  # fmt: skip

    def excluded(name: str) -> bool:
        return any(
            fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(Path(name).name, pattern)
            for pattern in options.exclude
        )

    def add(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for file in sorted(files):
                    add(Path(folder, file))
            return
        name = arcname(path)
        if not excluded(name):
            found.setdefault(name, path)

    for pattern in options.paths:
        full = Path(os.path.expanduser(pattern))
        full = full if full.is_absolute() else base_dir / full
        if GLOB_CHARS & set(pattern):
            for match in sorted(glob.glob(str(full), recursive=True)):
                add(Path(match).absolute())
        elif full.exists() or full.is_symlink():
            add(full.absolute())
        else:
            raise BackupError(f"{pattern}: no such file or folder (looked in {full.parent})")
    return sorted(((p, n) for n, p in found.items()), key=lambda pair: pair[1])


class _ThreadWriter:
    """A blocking file-like object whose writes go to an async sink, from a worker thread."""

    def __init__(self, out: Any):
        self.out = out
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.pending.append(bytes(data))
        self.size += len(data)
        if self.size >= 1 << 20:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.pending:
            data, self.pending, self.size = b"".join(self.pending), [], 0
            anyio.from_thread.run(self.out.write, data)


class FilesSource(BackupSource):
    type = "files"
    Options = FilesOptions
    restores_to = "directory"
    archives: ClassVar[frozenset[str]] = frozenset({ARCHIVE})
    """Plain files that are tar.gz archives: `backup verify` checks their members too."""

    async def dump(self, options: FilesOptions, ctx: DumpContext) -> dict[str, Any]:
        members = await anyio.to_thread.run_sync(collect, options, ctx.base_dir)
        total = 0
        async with ctx.file(ARCHIVE) as out:
            writer = _ThreadWriter(out)

            def pack() -> int:
                size = 0
                with tarfile.open(fileobj=writer, mode="w|gz") as tar:  # type: ignore[call-overload]
                    for path, name in members:
                        try:
                            tar.add(str(path), arcname=name, recursive=False)
                        except FileNotFoundError:
                            continue  # removed while we packed: not an error of the backup
                        size += path.lstat().st_size if path.exists() else 0
                writer.flush()
                return size

            total = await anyio.to_thread.run_sync(pack)
        return {"files": len(members), "bytes": total}

    async def restore(
        self, options: Any, files: dict[str, Path], target: str, ctx: RestoreContext
    ) -> dict[str, Any]:
        if ARCHIVE not in files:
            raise BackupError(f"the backup has no {ARCHIVE}: not a files backup")
        return await anyio.to_thread.run_sync(
            lambda: restore_archive(files[ARCHIVE], Path(target), clean=ctx.clean)
        )


@hookimpl
def watchkeeper_backup_sources():
    return [FilesSource]
