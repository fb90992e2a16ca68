"""A probe worker process: runs checks the daemon sends it, returns their results.

The daemon talks to each worker over its stdin/stdout with length-prefixed pickled frames:

    daemon -> worker   ("load", {key: RunSpec}, [secret values])   the checks it may run
                       ("run", job_id, key)                         run one now
                       ("stop",)                                    finish and exit
    worker -> daemon   ("ready", pid)                               after start-up
                       ("result", job_id, Result)                   one per run

Probes run on the worker's own event loop with the engine's usual timeout handling; the
daemon adds the outer guard (a worker that stops answering is killed and replaced).
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


async def serve(base_dir: Path) -> None:
    """Run checks until stdin closes or a stop message arrives."""
    from watchkeeper.engine.executor import LocalExecutor
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.redaction import REDACTOR

    executor = LocalExecutor(registry(), base_dir)
    specs: dict[str, RunSpec] = {}
    out = sys.stdout.buffer
    write_lock = threading.Lock()
    send, receive = anyio.create_memory_object_stream[Any](10_000)
    portal_token = anyio.lowlevel.current_token()

    def write(message: Any) -> None:
        data = frame(message)
        with write_lock:
            out.write(data)
            out.flush()

    def reader() -> None:
        # stdin is read on a thread: the event loop is left to the probes
        stream = sys.stdin.buffer
        while True:
            message = read_frame(stream)
            try:
                anyio.from_thread.run_sync(
                    send.send_nowait, message or ("stop",), token=portal_token
                )
            except Exception:
                return
            if message is None or message[0] == "stop":
                return

    async def run(job_id: int, key: str) -> None:
        spec = specs.get(key)
        if spec is None:
            from watchkeeper.engine.probe import Result

            result = Result(ok=False, message=f"worker does not know check {key!r}")
        else:
            result = await executor.run(spec)  # type: ignore[arg-type]
        write(("result", job_id, result))

    threading.Thread(target=reader, name="worker-stdin", daemon=True).start()
    write(("ready", os.getpid()))
    try:
        async with anyio.create_task_group() as tg:
            async for message in receive:
                kind = message[0]
                if kind == "run":
                    tg.start_soon(run, message[1], message[2])
                elif kind == "load":
                    specs = message[1]
                    for secret in message[2]:
                        REDACTOR.add(secret)
                    for spec in specs.values():
                        REDACTOR.add_from(spec.options)
                elif kind == "stop":
                    break
            tg.cancel_scope.cancel()
    finally:
        await executor.close()


def main() -> None:
    """Entry point of `python -m watchkeeper.engine.worker BASE_DIR`."""
    import signal

    from watchkeeper.engine import logs

    # Ctrl-C reaches the whole process group: the daemon decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.setup(
        os.environ.get("WATCHKEEPER_LOG_LEVEL", "info"),
        os.environ.get("WATCHKEEPER_LOG_FORMAT", "text"),
    )
    base_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    anyio.run(serve, base_dir)


if __name__ == "__main__":
    main()
