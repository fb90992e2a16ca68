"""A probe worker process: runs checks the daemon sends it, returns their results.

The daemon talks to each worker over its stdin/stdout with length-prefixed pickled frames:

    daemon -> worker   ("load", {key: RunSpec}, [secret values])   the checks it may run
                       ("add", {key: RunSpec}, [secret values])    one more check (or new
                                                                    options for one it has)
                       ("runs", [(job_id, key), ...])               run these now
                       ("run", job_id, key)                         run one now
                       ("stop",)                                    finish and exit
    worker -> daemon   ("ready", pid)                               after start-up
                       ("results", [(job_id, packed Result), ...])  as runs finish

Runs and results travel in batches: whatever became due (or finished) in one turn of an
event loop goes in one frame, so a busy daemon pays a pipe write and a pickle per batch,
not per run. Probes run on the worker's own event loop with the engine's usual timeout
handling, many at once; the daemon adds the outer guard (a worker that stops answering is
killed and replaced).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio

HEADER = struct.Struct(">I")


@dataclass
class RunSpec:
    """What a worker needs to run one check instance (the picklable part of an Instance)."""

    key: str
    probe_type: str
    check: str
    environment: str | None
    timeout: float
    labels: dict[str, str]
    options: Any  # the probe's own Options model


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


async def serve(base_dir: Path) -> None:
    """Run checks until stdin closes or a stop message arrives."""
    import asyncio

    from watchkeeper.engine.observe.redaction import REDACTOR
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.run.executor import LocalExecutor
    from watchkeeper.engine.run.probe import Result

    loop = asyncio.get_running_loop()
    executor = LocalExecutor(registry(), base_dir)
    specs: dict[str, RunSpec] = {}
    out = sys.stdout.buffer
    finished: list[tuple[int, tuple]] = []
    running: set[asyncio.Task] = set()
    stopped = asyncio.Event()

    def write(message: Any) -> None:
        out.write(frame(message))
        out.flush()

    def flush_results() -> None:
        nonlocal finished
        batch, finished = finished, []
        try:
            data = frame(("results", batch))
        except Exception:  # a probe put something unpicklable in its result
            batch = [(job_id, _picklable(packed)) for job_id, packed in batch]
            data = frame(("results", batch))
        out.write(data)
        out.flush()

    def report(job_id: int, result: Any) -> None:
        if not finished:
            loop.call_soon(flush_results)  # everything that finishes this turn: one frame
        finished.append((job_id, pack_result(result)))

    async def run(job_id: int, key: str) -> None:
        spec = specs.get(key)
        if spec is None:
            result = Result(ok=False, message=f"worker does not know check {key!r}")
        else:
            result = await executor.run(spec)  # type: ignore[arg-type]
        report(job_id, result)

    def start(job_id: int, key: str) -> None:
        task = loop.create_task(run(job_id, key))
        running.add(task)
        task.add_done_callback(running.discard)

    def handle(messages: list[Any]) -> None:
        nonlocal specs
        for message in messages:
            kind = message[0]
            if kind == "runs":
                for job_id, key in message[1]:
                    start(job_id, key)
            elif kind == "run":
                start(message[1], message[2])
            elif kind in ("load", "add"):
                if kind == "load":
                    specs = message[1]  # every check this worker may run
                else:
                    specs.update(message[1])  # one more, or new options for one it has
                for secret in message[2]:
                    REDACTOR.add(secret)
                for spec in message[1].values():
                    REDACTOR.add_from(spec.options)
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
        if finished:
            flush_results()
        await executor.close()


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
