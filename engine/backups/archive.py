"""Our own checks on a files backup's tar archive, and the extraction that follows them.

Whoever can write to a destination can put any archive there, with checksums to match,
and tarfile's `data` filter is not enough on every Python (CVE-2025-4517: a chain of
symlinks through long folder names makes `os.path.realpath` give up, and the filter
lets a link climb out). So every member is checked here first, against an in-memory
model of the tree the archive builds — nothing on disk is consulted:

- names are relative and have no `..` (`./` and repeated `/` are ignored);
- only regular files, folders, symbolic links and hard links; no device nodes, FIFOs or
  other special files; no set-uid or set-gid bit;
- nothing is written through a symbolic link, and no path appears twice (a second
  entry could otherwise turn a folder into a link after the check);
- a symbolic link is kept only when its target is relative and, resolved the way the
  kernel would (following the archive's other links, `..` going up from where a link
  leads, at most 40 hops), stays inside the target; a hard link must name a regular
  file earlier in the archive.

Then the archive is unpacked into a fresh folder inside the target (`O_EXCL |
O_NOFOLLOW` files, symbolic links created last, each resolved path checked to stay in
that folder), and moved into place by renames only when everything passed. Files are
owned by whoever restores; their mode keeps the permission bits but group/other write.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from watchkeeper.engine.backups.encryption import ThreadPipe
from watchkeeper.engine.backups.manifest import Refused, quote
from watchkeeper.engine.backups.plugin import BackupError

WORK_PREFIX = ".watchkeeper-restore-"
MAX_HOPS = 40  # symbolic links followed while resolving one path, as Linux does
COPY_CHUNK = 1 << 20
MODE_BITS = 0o755  # permission bits kept: no set-uid/set-gid/sticky, no group/other write


@dataclass
class Member:
    info: tarfile.TarInfo
    path: str
    """Normalised relative path (`a/b`), "" for the target folder itself."""
    kind: str
    """`file`, `dir`, `symlink` or `hardlink`."""
    link: str | None = None
    """Normalised path of the file a hard link names."""


class Checker:
    """Apply the archive policy to members one at a time, in archive order.

    `add()` raises `Refused` for a member that breaks a rule; `finish()` resolves every
    symbolic link against the whole tree and raises for one that leads outside.
    `where` is how messages name the target ("/srv/restored", "the target").
    """

    def __init__(self, where: str = "the target"):
        self.where = where
        self.kinds: dict[str, str] = {}  # path -> "dir" | "file" | "symlink"
        self.links: dict[str, str] = {}  # symlink path -> its target as written
        self.members: list[Member] = []

    def _refuse(self, name: str, reason: str) -> NoReturn:
        raise Refused(f"archive member {quote(name)} {reason}")

    def _parts(self, name: str, member: str, what: str) -> list[str] | None:
        """Split a name into its parts; None when it is absolute or has a `..`."""
        if not name or "\x00" in name:
            self._refuse(member, f"has an empty or invalid {what}")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts:
            return None
        return parts

    def _kind(self, info: tarfile.TarInfo) -> str:
        if info.isreg():
            return "file"
        if info.isdir():
            return "dir"
        if info.issym():
            return "symlink"
        if info.islnk():
            return "hardlink"
        if info.ischr():
            self._refuse(info.name, "is a character device: device files are never restored")
        if info.isblk():
            self._refuse(info.name, "is a block device: device files are never restored")
        if info.isfifo():
            self._refuse(info.name, "is a FIFO: special files are never restored")
        self._refuse(info.name, f"is a special file (tar type {info.type!r}): never restored")

    def add(self, info: tarfile.TarInfo) -> Member:
        name = info.name
        kind = self._kind(info)
        parts = self._parts(name, name, "name")
        if parts is None:
            self._refuse(name, f"would be written outside {self.where}")
        if info.mode & stat.S_ISUID:
            self._refuse(name, "has the set-uid bit: refused")
        if info.mode & stat.S_ISGID:
            self._refuse(name, "has the set-gid bit: refused")
        if not parts:
            if kind != "dir":
                self._refuse(name, f"would replace {self.where} itself")
            member = Member(info, "", kind)
            self.members.append(member)
            return member
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            found = self.kinds.get(prefix)
            if found == "symlink":
                self._refuse(name, f"would be written through the symbolic link {quote(prefix)}")
            if found == "file":
                self._refuse(name, f"would be written under the file {quote(prefix)}")
        path = "/".join(parts)
        if path in self.kinds and not (kind == "dir" and self.kinds[path] == "dir"):
            self._refuse(name, "appears twice in the archive")
        member = Member(info, path, kind)
        if kind == "symlink":
            target = info.linkname
            if not target or "\x00" in target:
                self._refuse(name, "is a symbolic link without a target")
            if target.startswith("/"):
                self._refuse(name, f"is a symbolic link to {quote(target)}, outside {self.where}")
            self.links[path] = target
        elif kind == "hardlink":
            target_parts = self._parts(info.linkname, name, "link target")
            if not target_parts:  # None (leaves the target) or the target itself
                self._refuse(
                    name, f"is a hard link to {quote(info.linkname)}, outside {self.where}"
                )
            member.link = "/".join(target_parts)
            if self.kinds.get(member.link) != "file":
                self._refuse(
                    name,
                    f"is a hard link to {quote(info.linkname)}, which is not a file earlier "
                    "in the archive",
                )
        for i in range(1, len(parts)):
            self.kinds.setdefault("/".join(parts[:i]), "dir")
        self.kinds[path] = "file" if kind == "hardlink" else kind
        self.members.append(member)
        return member

    def resolve(self, parts: list[str]) -> list[str] | None:
        """Resolve a path in the archive's tree as the kernel would; None when it leaves
        the target (or loops)."""
        stack: list[str] = []
        todo = list(reversed(parts))
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    return None
                stack.pop()
                continue
            stack.append(part)
            target = self.links.get("/".join(stack))
            if target is not None:
                hops += 1
                if hops > MAX_HOPS or target.startswith("/"):
                    return None
                stack.pop()
                todo.extend(reversed(target.split("/")))
        return stack

    def finish(self) -> None:
        for path, target in self.links.items():
            if self.resolve(path.split("/")[:-1] + target.split("/")) is None:
                self._refuse(path, f"is a symbolic link to {quote(target)}, outside {self.where}")

    @property
    def count(self) -> int:
        return sum(1 for m in self.members if m.path)


def check_archive(tar: tarfile.TarFile, where: str) -> Checker:
    """Check every member of an open archive; nothing is written."""
    checker = Checker(where)
    for info in tar:
        checker.add(info)
    checker.finish()
    return checker


# -- restoring ----------------------------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def check_target(checker: Checker, dest: Path, clean: bool) -> None:
    """Refuse what the target already holds in the way: a symbolic link where the archive
    has a folder (never written through), a folder where it has a file; files that exist
    unless `clean`."""
    wanted: dict[str, str] = {}
    for member in checker.members:
        if not member.path:
            continue
        parts = member.path.split("/")
        for i in range(1, len(parts)):
            wanted.setdefault("/".join(parts[:i]), "dir")
        wanted[member.path] = "dir" if member.kind == "dir" else "file"
    clashes = []
    for path, kind in sorted(wanted.items()):
        try:
            st = os.lstat(dest / path)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue  # a parent is a file: reported as a clash for that parent
        if stat.S_ISLNK(st.st_mode):
            if kind == "dir":
                raise Refused(
                    f"{quote(path)} in {dest} is a symbolic link where the backup has a "
                    "folder; a restore never writes through one"
                )
            clashes.append(path)
        elif stat.S_ISDIR(st.st_mode):
            if kind != "dir":
                raise Refused(f"{quote(path)} in {dest} is a folder where the backup has a file")
        else:
            clashes.append(path)
    if clashes and not clean:
        raise Refused(
            f"{len(clashes)} file(s) already exist in {dest} (e.g. {clashes[0]}): restore "
            "into an empty directory, or pass --clean to overwrite them"
        )


def _extract(tar: tarfile.TarFile, checker: Checker, work: Path) -> None:
    root = os.path.realpath(work)

    def place(path: str) -> str:
        full = os.path.join(root, *path.split("/"))
        parent = os.path.dirname(full)
        os.makedirs(parent, exist_ok=True)
        if os.path.islink(parent) or not _inside(parent, root):
            raise Refused(f"archive member {quote(path)} would be written outside {work}")
        return full

    folders: list[tuple[str, tarfile.TarInfo]] = []
    links: list[Member] = []
    for member in checker.members:
        info = member.info
        if member.kind == "dir":
            full = place(member.path) if member.path else root
            os.makedirs(full, mode=0o700, exist_ok=True)
            if os.path.islink(full) or not _inside(full, root):
                raise Refused(f"archive member {quote(member.path)} would be written outside")
            folders.append((full, info))
        elif member.kind == "file":
            full = place(member.path)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(full, flags, 0o600)
            try:
                source = tar.extractfile(info)
                if source is not None:
                    while chunk := source.read(COPY_CHUNK):
                        os.write(fd, chunk)
                os.fchmod(fd, info.mode & MODE_BITS)
                os.utime(fd, (info.mtime, info.mtime))
            finally:
                os.close(fd)
        elif member.kind == "hardlink":
            assert member.link is not None
            full = place(member.path)
            os.link(os.path.join(root, *member.link.split("/")), full, follow_symlinks=False)
        else:
            links.append(member)
    # links last: nothing of this archive can be written through one
    for member in links:
        full = place(member.path)
        os.symlink(member.info.linkname, full)
        if not _inside(full, root):
            raise Refused(
                f"archive member {quote(member.path)} is a symbolic link to "
                f"{quote(member.info.linkname)}, outside the target"
            )
    for full, info in reversed(folders):
        os.chmod(full, (info.mode & MODE_BITS) | 0o700)
        os.utime(full, (info.mtime, info.mtime))


def _move_into_place(work: Path, dest: Path, moved: list[tuple[Path, Path]]) -> None:
    for entry in sorted(os.listdir(work)):
        src, dst = work / entry, dest / entry
        src_is_dir = not src.is_symlink() and src.is_dir()
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            os.rename(src, dst)
            moved.append((src, dst))
            continue
        if stat.S_ISDIR(st.st_mode) and src_is_dir:
            _move_into_place(src, dst, moved)
            continue
        if stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and src_is_dir):
            raise Refused(f"{quote(str(dst))} changed while restoring")  # checked before
        if src_is_dir:
            os.unlink(dst)  # --clean: a file where the backup has a folder
        os.replace(src, dst)


def restore_archive(path: Path, target: Path, *, clean: bool) -> dict[str, Any]:
    """Check and unpack a tar.gz into `target` (created when missing); all or nothing.

    Blocking: run it in a worker thread. Raises `Refused` naming the first offending
    member; the target is then as it was (a folder created for it removed again).
    """
    shown = Path(os.path.abspath(os.path.expanduser(target)))
    dest = Path(os.path.realpath(shown))
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{shown} exists and is not a directory")
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            checker = check_archive(tar, str(shown))
            check_target(checker, dest, clean)
            created = _make_folder(dest)
            work: Path | None = None
            moved: list[tuple[Path, Path]] = []
            try:
                work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=dest))
                _extract(tar, checker, work)
                _move_into_place(work, dest, moved)
            except BaseException:
                for src, dst in reversed(moved):  # new entries go back; then all goes
                    with contextlib.suppress(OSError):
                        os.rename(dst, src)
                if work is not None:
                    shutil.rmtree(work, ignore_errors=True)
                for folder in created:
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                raise
            shutil.rmtree(work, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupError(f"{path.name} is not a readable tar.gz archive: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot restore into {shown}: {exc.strerror or exc}") from None
    return {"directory": str(shown), "files": checker.count}


def _make_folder(dest: Path) -> list[Path]:
    """Create `dest` and missing parents; return those created, deepest first."""
    created: list[Path] = []
    folder = dest
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    for folder in reversed(created):
        folder.mkdir()
    return created


# -- verifying ----------------------------------------------------------------------------


class StreamCheck:
    """Check an archive's members as its bytes go by, writing nothing (`backup verify`).

    A worker thread reads the stream with tarfile in stream mode and applies `Checker`;
    `problem` is then None or the refusal. Start `run` in a task group, `send` the
    plain bytes, `close` at the end (or on error).
    """

    def __init__(self) -> None:
        self.problem: str | None = None
        self.pipe = ThreadPipe(self._scan, self._nothing)

    async def _nothing(self, data: bytes) -> None:
        pass

    def _scan(self, reader: Any, writer: Any) -> None:
        try:
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:
                check_archive(tar, "the target")
        except Refused as exc:
            self.problem = str(exc)
        except Exception as exc:
            self.problem = f"not a readable tar.gz archive: {exc}"
        finally:
            while reader.read(COPY_CHUNK):
                pass  # drain, so the sending side never waits on a stopped reader

    async def run(self) -> None:
        await self.pipe.run()

    async def send(self, data: bytes) -> None:
        await self.pipe.send(data)

    def close(self) -> None:
        self.pipe.close()
