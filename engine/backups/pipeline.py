"""One backup's files on their way out: hashing, optional encryption, fan-out to destinations.

A source writes plain bytes; each chunk is hashed, encrypted when the job says so,
hashed again as stored, gathered into 1 MiB pieces and handed to every destination
still alive through a small bounded queue, so the slowest destination sets the pace
and memory stays flat. A destination that fails is dropped from this backup (the
others go on); when none is left the source is stopped. Leaving `file()` normally
completes the file everywhere; an error aborts it everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from watchkeeper.engine.backups import encryption
from watchkeeper.engine.backups.manifest import FileRecord
from watchkeeper.engine.backups.plugin import BackupDestination, BackupError
from watchkeeper.engine.observe.redaction import redact

log = logging.getLogger("watchkeeper.backups")

PIECE = 1 << 20  # bytes handed to destinations at a time
QUEUE = 4  # pieces queued per destination before the source waits
PROGRESS_EVERY = 0.25  # seconds between progress reports


@dataclass
class Progress:
    """A progress report: bytes of plain data read from the source so far."""

    job: str
    file: str
    done: int
    total: int | None = None
    finished: bool = False


class _Aborted(Exception):
    pass


def unwrap(exc: BaseException) -> BaseException:
    """Return the one exception inside (nested) single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def describe_error(exc: BaseException) -> str:
    """Return a one-line, secret-free description of an exception."""
    exc = unwrap(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, BackupError | OSError | TimeoutError):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)[:500]


class _Lane:
    """One destination's queue for the file being written."""

    def __init__(self, name: str, destination: BackupDestination):
        self.name = name
        self.destination = destination
        self.send: MemoryObjectSendStream[bytes]
        self.send, self.receive = anyio.create_memory_object_stream[bytes](QUEUE)
        self.aborted = False
        self.done = anyio.Event()
        self.error: str | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.receive:
            yield chunk
        if self.aborted:
            raise _Aborted("backup aborted")

    async def upload(self, key: str, on_error: Callable[[str, str], None]) -> None:
        try:
            await self.destination.put(key, self.chunks())
        except _Aborted:
            pass
        except Exception as exc:
            self.error = describe_error(exc)
            on_error(self.name, self.error)
        finally:
            self.receive.close()
            self.done.set()


class Pipeline:
    """Write the files of one backup to a set of destinations."""

    def __init__(
        self,
        *,
        job: str,
        folder: str,
        destinations: dict[str, BackupDestination],
        recipients: list[str] | None = None,
        progress: Callable[[Progress], Any] | None = None,
    ):
        self.job = job
        self.folder = folder
        self.destinations = dict(destinations)
        self.recipients = list(recipients or [])
        self._recipient_keys = encryption.recipients(self.recipients) if recipients else None
        self.progress = progress
        self.failed: dict[str, str] = {}
        self.files: list[FileRecord] = []
        self.written: dict[str, list[str]] = {name: [] for name in destinations}

    @property
    def alive(self) -> list[str]:
        return [n for n in self.destinations if n not in self.failed]

    def _failed(self, name: str, error: str) -> None:
        if name not in self.failed:
            self.failed[name] = error
            log.warning(
                "backup destination failed",
                extra={"job": self.job, "destination": name, "error": error},
            )

    def stored_name(self, name: str) -> str:
        return name + encryption.SUFFIX if self.recipients else name

    @asynccontextmanager
    async def file(self, name: str) -> AsyncIterator[_Sink]:
        """Open one file of the backup at every live destination (see `DumpContext.file`)."""
        if "/" in name or name in ("", ".", "..") or name.startswith("."):
            raise BackupError(f"invalid backup file name {name!r}")
        stored = self.stored_name(name)
        if any(f.name == stored for f in self.files):
            raise BackupError(f"backup file {name!r} written twice")
        if not self.alive:
            raise BackupError("no destination left to write to")
        lanes = [_Lane(n, self.destinations[n]) for n in self.alive]
        sink = _Sink(self, name, stored, lanes)
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            for lane in lanes:
                tg.start_soon(lane.upload, self.folder + stored, self._failed)
            if sink.cipher is not None:
                tg.start_soon(sink.cipher.run)
            try:
                yield sink
                await sink.finish()
            except Exception as exc:
                error = exc
                sink.abort()
            except BaseException:
                sink.abort()
                raise
            finally:
                for lane in lanes:
                    lane.send.close()
        if error is not None:
            raise error
        for lane in lanes:
            if lane.error is None and lane.name not in self.failed:
                self.written[lane.name].append(self.folder + stored)
        self.files.append(sink.record())
        if not self.alive:
            raise BackupError("every destination failed: " + self.failure_text())

    async def put_small(self, name: str, data: bytes) -> None:
        """Write a small unencrypted file (manifest, sums) to every live destination."""

        async def one(lane_name: str) -> None:
            async def chunks() -> AsyncIterator[bytes]:
                yield data

            try:
                await self.destinations[lane_name].put(self.folder + name, chunks())
                self.written[lane_name].append(self.folder + name)
            except Exception as exc:
                self._failed(lane_name, describe_error(exc))

        async with anyio.create_task_group() as tg:
            for lane_name in self.alive:
                tg.start_soon(one, lane_name)

    def failure_text(self) -> str:
        return "; ".join(f"{n}: {e}" for n, e in self.failed.items())


class _Sink:
    """The writer a source gets for one file."""

    def __init__(self, pipeline: Pipeline, name: str, stored: str, lanes: list[_Lane]):
        self.pipeline = pipeline
        self.name = name
        self.stored = stored
        self.lanes = lanes
        self.plain = hashlib.sha256()
        self.plain_size = 0
        self.at_rest = hashlib.sha256()
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.cipher = (
            encryption.encrypter(pipeline._recipient_keys, self._stored)
            if pipeline._recipient_keys
            else None
        )
        self._reported = 0.0

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.plain.update(data)
        self.plain_size += len(data)
        if self.cipher is not None:
            await self.cipher.send(bytes(data))
        else:
            await self._stored(bytes(data))
        self._report(False)

    async def _stored(self, data: bytes) -> None:
        self.at_rest.update(data)
        self.size += len(data)
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= PIECE:
            await self._flush()

    async def _flush(self) -> None:
        if not self.pending:
            return
        piece, self.pending, self.pending_size = b"".join(self.pending), [], 0
        for lane in self.lanes:
            if lane.done.is_set() or lane.name in self.pipeline.failed:
                continue
            try:
                await lane.send.send(piece)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the upload ended; its task recorded why
        if not any(
            not lane.done.is_set() and lane.name not in self.pipeline.failed for lane in self.lanes
        ):
            raise BackupError("every destination failed: " + self.pipeline.failure_text())

    async def finish(self) -> None:
        if self.cipher is not None:
            await self.cipher.finish()
        await self._flush()
        for lane in self.lanes:
            lane.send.close()
        for lane in self.lanes:
            await lane.done.wait()
        self._report(True)

    def abort(self) -> None:
        if self.cipher is not None:
            self.cipher.close()
        for lane in self.lanes:
            lane.aborted = True
            lane.send.close()

    def record(self) -> FileRecord:
        if self.cipher is None:
            return FileRecord(self.stored, self.size, self.at_rest.hexdigest())
        return FileRecord(
            self.stored,
            self.size,
            self.at_rest.hexdigest(),
            plain_size=self.plain_size,
            plain_sha256=self.plain.hexdigest(),
        )

    def _report(self, finished: bool) -> None:
        callback = self.pipeline.progress
        if callback is None:
            return
        now = time.monotonic()
        if not finished and now - self._reported < PROGRESS_EVERY:
            return
        self._reported = now
        try:
            callback(Progress(self.pipeline.job, self.name, self.plain_size, finished=finished))
        except Exception:
            log.debug("progress callback failed", exc_info=True)
