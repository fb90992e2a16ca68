"""Encryption at rest in the age format (pyrage), streamed through a worker thread.

The files written are plain age files: in a disaster, `age -d -i key.txt FILE` decrypts
them with no watchkeeper installed. pyrage's `encrypt_io`/`decrypt_io` read and write
file-like objects in 8 KiB steps, so they run in a worker thread whose reads and writes
hop back to the event loop (`ThreadPipe`); memory stays at a few buffers whatever the
size of the backup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from watchkeeper.engine.backups.plugin import BackupError

SUFFIX = ".age"
WRITE_BUFFER = 1 << 20  # bytes the thread gathers before handing them back to the loop


def recipient(text: str) -> Any:
    """Parse one recipient: an age public key (age1...) or an SSH public key."""
    from pyrage import ssh, x25519

    text = text.strip()
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return ssh.Recipient.from_str(text)
    except Exception as exc:
        raise BackupError(f"invalid age recipient {text[:20]}...: {exc}") from None
    raise BackupError(
        f"invalid age recipient {text[:20]!r}: expected an age public key (age1...) "
        "or an SSH public key (ssh-ed25519 ..., ssh-rsa ...)"
    )


def recipients(texts: list[str]) -> list[Any]:
    """Parse every recipient of a job's `encrypt`."""
    return [recipient(t) for t in texts]


def load_identities(path: str | Path) -> list[Any]:
    """Read an age identity file (`age-keygen` output) or an SSH private key."""
    from pyrage import ssh, x25519

    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read identity file {path}: {exc.strerror or exc}") from None
    text = data.decode("utf-8", "replace")
    keys = [
        line.strip() for line in text.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")
    ]
    if keys:
        try:
            return [x25519.Identity.from_str(k) for k in keys]
        except Exception as exc:
            raise BackupError(f"identity file {path}: {exc}") from None
    if "PRIVATE KEY" in text:
        try:
            return [ssh.Identity.from_buffer(data)]
        except Exception as exc:
            raise BackupError(f"identity file {path}: not a usable SSH key ({exc})") from None
    raise BackupError(
        f"identity file {path} holds no age identity (AGE-SECRET-KEY-...) or SSH private key"
    )


class _Reader:
    """A blocking file-like reader, fed from the event loop (runs in the worker thread)."""

    def __init__(self, receive: MemoryObjectReceiveStream[bytes]):
        self.receive = receive
        self.buffer = memoryview(b"")
        self.done = False

    def read(self, size: int = -1) -> bytes:
        while not self.buffer and not self.done:
            try:
                self.buffer = memoryview(anyio.from_thread.run(self.receive.receive))
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self.done = True
        if size is None or size < 0:
            size = len(self.buffer)
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return bytes(taken)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


class _Writer:
    """A blocking file-like writer handing gathered bytes back to the event loop."""

    def __init__(self, emit: Callable[[bytes], Awaitable[None]]):
        self.emit = emit
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.pending.append(data)
        self.size += len(data)
        if self.size >= WRITE_BUFFER:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.pending:
            data, self.pending, self.size = b"".join(self.pending), [], 0
            anyio.from_thread.run(self.emit, data)


class ThreadPipe:
    """Run a blocking `fn(reader, writer)` (pyrage) between async code on both sides.

    `send()` feeds the reader; everything `fn` writes reaches `emit`. `finish()` ends the
    input, waits for `fn` and raises what it raised. Start it in a task group with
    `tg.start_soon(pipe.run)`.
    """

    def __init__(self, fn: Callable[[Any, Any], None], emit: Callable[[bytes], Awaitable[None]]):
        self.fn = fn
        self.emit = emit
        self._send: MemoryObjectSendStream[bytes]
        self._send, self._receive = anyio.create_memory_object_stream[bytes](2)
        self.done = anyio.Event()
        self.error: BaseException | None = None

    async def run(self) -> None:
        writer = _Writer(self.emit)

        def work() -> None:
            self.fn(_Reader(self._receive), writer)
            writer.flush()

        try:
            await anyio.to_thread.run_sync(work)
        except Exception as exc:
            self.error = exc
        finally:
            self._receive.close()
            self.done.set()

    async def send(self, data: bytes) -> None:
        try:
            await self._send.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.done.wait()
            raise self.error or BackupError("the encryption thread stopped") from None

    def close(self) -> None:
        """End the input without waiting (on abort)."""
        self._send.close()

    async def finish(self) -> None:
        self._send.close()
        await self.done.wait()
        if self.error is not None:
            raise self.error


def encrypter(recipient_keys: list[Any], emit: Callable[[bytes], Awaitable[None]]) -> ThreadPipe:
    """Return a pipe that age-encrypts what is sent to it for the recipients."""
    import pyrage

    return ThreadPipe(lambda r, w: pyrage.encrypt_io(r, w, recipient_keys), emit)


def decrypter(identities: list[Any], emit: Callable[[bytes], Awaitable[None]]) -> ThreadPipe:
    """Return a pipe that decrypts an age stream sent to it with the identities."""
    import pyrage

    def work(reader: Any, writer: Any) -> None:
        try:
            pyrage.decrypt_io(reader, writer, identities)
        except pyrage.DecryptError as exc:
            raise BackupError(f"cannot decrypt: {exc} (wrong identity?)") from None

    return ThreadPipe(work, emit)


def decrypt_file(source: Path, target: Path, identities: list[Any]) -> None:
    """Decrypt one local file into another (blocking: run it in a worker thread)."""
    import pyrage

    with open(source, "rb") as reader, open(target, "wb") as writer:
        try:
            pyrage.decrypt_io(reader, writer, identities)
        except pyrage.DecryptError as exc:
            raise BackupError(f"cannot decrypt {source.name}: {exc} (wrong identity?)") from None
