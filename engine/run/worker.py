"""A probe worker process: runs checks the daemon sends it, returns their results.

The daemon talks to each worker over its stdin/stdout with length-prefixed pickled frames:

    daemon -> worker   ("load", records, {key: packed check}, [secrets])  the checks it
                                                                    may run (replaces all)
                       ("add", records, {key: packed check}, [secrets])   more checks, or
                                                                    new options for some
                       ("runs", [(job_id, key), ...])               run these now
                       ("stop",)                                    finish and exit
    worker -> daemon   ("ready", pid)                               after start-up
                       ("results", [(job_id, packed Result), ...])  as runs finish

A check is sent once, in compact form (runspec.py), and named by its key afterwards: a run
is a job id and a key. Runs and results travel in batches, so a pipe write, a pickle and a
wake-up on each side are paid per batch, not per run: the scheduler releases the runs due
within a tick (`scheduler.TICK`) of each other at once and the daemon sends them in one
frame; the worker sends results back as soon as no run of its own is going, and otherwise gathers
those that finish within `RESULT_WINDOW` into one frame, so that a batch of runs comes back
in one. The worker imports only the
probe plugins its checks use. Probes run on the worker's own event loop with the engine's
usual timeout handling, many at once; the daemon adds the outer guard (a worker that stops
answering is killed and replaced).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from watchkeeper.engine.observe.memory import release_free_memory
from watchkeeper.engine.run.runspec import RunSpec, unpack

HEADER = struct.Struct(">I")

RESULT_WINDOW = 0.05
"""Seconds a finished result may wait for others to share its frame back to the daemon,
while other runs are still going (with none going, it goes at once). Each frame wakes the
daemon: at a steady rate the runs of one batch finish within a few ms of each other and
come back together (a 4 ms window sent two or three frames a batch, and default settings
paid 1.18x the CPU per probe of `workers: 0` instead of 1.11-1.14x); a result is never
held longer than this, far below anything an alert waits for."""


def read_frame(stream: BinaryIO) -> Any:
    """Read one frame (blocking); None at end of stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def frame(message: Any) -> bytes:
    """Encode one message as a frame."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def split_frames(buffer: bytearray) -> list[Any]:
    """Take every complete frame off the front of `buffer`; return their messages."""
    messages = []
    pos = 0
    size = HEADER.size
    while len(buffer) - pos >= size:
        (length,) = HEADER.unpack_from(buffer, pos)
        if len(buffer) - pos - size < length:
            break
        messages.append(pickle.loads(buffer[pos + size : pos + size + length]))
        pos += size + length
    del buffer[:pos]
    return messages


def pack_result(result: Any) -> tuple:
    """A Result as plain values: several times cheaper to pickle than the dataclass."""
    samples = [(s.name, s.value, s.labels) for s in result.samples] if result.samples else None
    return (
        result.ok,
        result.message,
        result.metrics,
        samples,
        result.duration,
        result.details or None,
    )


def unpack_result(packed: tuple) -> Any:
    """The Result `pack_result` packed."""
    from watchkeeper.engine.run.probe import Result, Sample

    ok, message, metrics, samples, duration, details = packed
    return Result(
        ok,
        message,
        metrics,
        [Sample(*s) for s in samples] if samples else [],
        duration,
        details if details is not None else {},
    )


BUILTIN_PROBES = "watchkeeper.plugins.probes."


class Probes:
    """Probe classes by type, for a worker: a built-in probe's module is imported by its
    name when its type is first run (a worker of http checks loads the http probe and
    neither the plugin registry nor the config's models); a third-party probe's type is
    looked up in the full registry."""

    def __init__(self) -> None:
        self.builtin: set[str] = set()  # the daemon sends their options as records
        self.classes: dict[str, type] = {}
        self.registry: Any = None

    def get(self, kind: str, name: str) -> type:
        cls = self.classes.get(name)
        if cls is None:
            if name in self.builtin:
                import importlib

                module = importlib.import_module(BUILTIN_PROBES + name)
                cls = module.watchkeeper_probes()[0]
            else:
                if self.registry is None:
                    from watchkeeper.engine.plugins import registry

                    self.registry = registry()
                cls = self.registry.get(kind, name)
            self.classes[name] = cls
        return cls


class WorkerState:
    """The checks a worker knows and the probes it runs them with."""

    def __init__(self, base_dir: Path):
        from watchkeeper.engine.run.executor import LocalExecutor

        self.probes = Probes()
        self.executor = LocalExecutor(self.probes, base_dir)  # type: ignore[arg-type]
        self.specs: dict[str, RunSpec] = {}

    def take(self, message: tuple) -> None:
        """Apply a `load` or `add` message."""
        from watchkeeper.engine.observe.redaction import REDACTOR

        kind, records, checks, secrets = message
        builtin = {name for name, fields in records.items() if fields is not None}
        for name in builtin - self.probes.builtin:
            self.probes.builtin.add(name)
            try:
                self.probes.get("probe", name)  # imported now rather than at a first run
            except Exception:
                pass  # its runs report why, as a probe that cannot start
        specs = {}
        while checks:  # each packed check let go of as its spec is made
            key, packed = checks.popitem()
            specs[key] = unpack(key, packed, records)
        if kind == "load":
            self.specs = specs  # every check this worker may run
        else:
            self.specs.update(specs)  # more, or new options for some it has
        for secret in secrets:
            REDACTOR.add(secret)

    async def run(self, key: str) -> Any:
        from watchkeeper.engine.run.probe import Result

        spec = self.specs.get(key)
        if spec is None:
            return Result(ok=False, message=f"worker does not know check {key!r}")
        return await self.executor.run(spec)  # type: ignore[arg-type]


async def serve(base_dir: Path, *, window: float = RESULT_WINDOW) -> None:
    """Run checks until stdin closes or a stop message arrives."""
    import asyncio

    loop = asyncio.get_running_loop()
    state = WorkerState(base_dir)
    out = sys.stdout.buffer
    finished: list[tuple[int, tuple]] = []
    running: set[asyncio.Task] = set()
    stopped = asyncio.Event()
    timer: asyncio.TimerHandle | None = None
    going = 0  # runs started and not yet reported

    def write(message: Any) -> None:
        out.write(frame(message))
        out.flush()

    def flush_results() -> None:
        nonlocal finished, timer
        if timer is not None:
            timer.cancel()
            timer = None
        batch, finished = finished, []
        if not batch:
            return
        try:
            data = frame(("results", batch))
        except Exception:  # a probe put something unpicklable in its result
            batch = [(job_id, _picklable(packed)) for job_id, packed in batch]
            data = frame(("results", batch))
        out.write(data)
        out.flush()

    def report(job_id: int, result: Any) -> None:
        nonlocal timer
        finished.append((job_id, pack_result(result)))
        if not going:
            # no run is going: the batch goes back now, without waiting for a timer
            flush_results()
        elif timer is None:
            # everything that finishes within the window goes back in one frame
            timer = loop.call_later(window, flush_results)

    async def run(job_id: int, key: str) -> None:
        nonlocal going
        try:
            result = await state.run(key)
        finally:
            going -= 1
        report(job_id, result)

    def handle(messages: list[Any]) -> None:
        nonlocal going
        for message in messages:
            kind = message[0]
            if kind == "runs":
                going += len(message[1])
                for job_id, key in message[1]:
                    task = loop.create_task(run(job_id, key))
                    running.add(task)
                    task.add_done_callback(running.discard)
            elif kind in ("load", "add"):
                state.take(message)
                if kind == "load":
                    # unpickling a megabyte frame of checks leaves freed memory the C
                    # allocator would keep mapped: handed back, a few MB of RSS
                    release_free_memory()
            elif kind == "stop":
                stopped.set()
                return

    class StdinProtocol(asyncio.Protocol):
        """Frames from the daemon, read on the event loop: every frame that arrived in one
        read is handled in one go."""

        def __init__(self) -> None:
            self.buffer = bytearray()

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            messages = split_frames(self.buffer)
            if messages:
                handle(messages)

        def connection_lost(self, exc: BaseException | None) -> None:
            handle([("stop",)])

    def reader() -> None:
        # stdin that is not a pipe (a file, in a test) is read on a thread instead
        fd = sys.stdin.fileno()
        buffer = bytearray()
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                data = b""
            if not data:
                messages: list[Any] = [("stop",)]
            else:
                buffer += data
                messages = split_frames(buffer)
                if not messages:
                    continue
            try:
                loop.call_soon_threadsafe(handle, messages)
            except RuntimeError:
                return  # the loop is gone
            if not data or any(m[0] == "stop" for m in messages):
                return

    try:
        stdin = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
        await loop.connect_read_pipe(StdinProtocol, stdin)
    except (ValueError, OSError):
        threading.Thread(target=reader, name="worker-stdin", daemon=True).start()
    write(("ready", os.getpid()))
    try:
        await stopped.wait()
    finally:
        for task in list(running):
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        flush_results()
        await state.executor.close()


def _picklable(packed: tuple) -> tuple:
    try:
        pickle.dumps(packed, protocol=pickle.HIGHEST_PROTOCOL)
        return packed
    except Exception as exc:
        ok, message, metrics, samples, duration, _ = packed
        details = {"error": f"result details could not be sent: {type(exc).__name__}"}
        return (ok, message, metrics, samples, duration, details)


def main() -> None:
    """Entry point of `python -m watchkeeper.engine.run.worker BASE_DIR`."""
    import signal

    from watchkeeper.engine.observe import logs

    # Ctrl-C reaches the whole process group: the daemon decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the daemon's business
    logs.setup(
        os.environ.get("WATCHKEEPER_LOG_LEVEL", "info"),
        os.environ.get("WATCHKEEPER_LOG_FORMAT", "text"),
    )
    base_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    anyio.run(serve, base_dir)


if __name__ == "__main__":
    main()
