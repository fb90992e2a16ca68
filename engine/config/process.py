"""Read and check monitor.yaml in a short-lived child process, for the daemon.

Checking a large config needs libyaml's node tree (kept for line numbers), the parsed data
and the models at once: some 90 MB at 10,000 checks, which a long-running process keeps as
its high-water mark after freeing them. The daemon instead has a child process read and
check the file and hand back the accepted configuration: the checks as the models the
child validated, the rest as plain data the daemon validates again (quickly: no YAML, no
line numbers). Problems come back as they are, so a rejected file reads exactly as
`watchkeeper validate` prints it.

The child is also the daemon's shield against a hostile or broken file (an alias bomb, a
`${file:}` that never ends, a huge include set): it runs under a time limit and a memory
limit, and a child past either is killed and the file refused with one problem, while the
daemon's event loop never reads a byte of YAML.

This module is the daemon's side: it starts the child (`child.py`, which writes the
answer), takes the answer in as it arrives, and refuses a child past a limit.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# what checks a config is imported where it is used: the daemon starts the child first and
# loads the rest of itself while the child reads the file (see `Reading`)
if TYPE_CHECKING:
    from watchkeeper.engine.config.check_digests import CheckDigests
    from watchkeeper.engine.config.problems import Problem
    from watchkeeper.engine.config.validation import Validation
    from watchkeeper.engine.plugins import Registry

TIME_LIMIT = 30.0
"""Seconds the child may take (`WATCHKEEPER_CONFIG_TIMEOUT` overrides)."""
MEMORY_LIMIT = 2 * 1024**3
"""Bytes of address space the child may use (`WATCHKEEPER_CONFIG_MEMORY` overrides)."""
EXIT_MEMORY = 3
"""The child's exit status when it ran out of memory."""
KEEPS_RUNNING = "the previous configuration keeps running"


@dataclass(frozen=True)
class Limits:
    """How long, and with how much memory, the child may read a config."""

    seconds: float = TIME_LIMIT
    memory: int = MEMORY_LIMIT  # 0 = no limit

    @classmethod
    def from_env(cls) -> Limits:
        """Read `WATCHKEEPER_CONFIG_TIMEOUT` (seconds) and `WATCHKEEPER_CONFIG_MEMORY`."""
        from watchkeeper.schema.units import parse_duration, parse_size

        seconds, memory = TIME_LIMIT, MEMORY_LIMIT
        text = os.environ.get("WATCHKEEPER_CONFIG_TIMEOUT", "").strip()
        if text:
            seconds = parse_duration(float(text) if _number(text) else text)
        text = os.environ.get("WATCHKEEPER_CONFIG_MEMORY", "").strip()
        if text:
            memory = parse_size(int(text) if text.isdigit() else text)
        return cls(seconds=seconds, memory=memory)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ConfigLimitError(Exception):
    """The child reading the config went past a limit (or died); the file is refused."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        self.message = f"{reason}; {KEEPS_RUNNING}"  # what a refused reload says
        super().__init__(self.message)

    @property
    def problems(self) -> list[Problem]:
        """Return the refusal as the one problem an API answer lists."""
        from watchkeeper.engine.config.problems import Problem

        return [Problem.at(None, "", self.message)]


def _seconds(value: float) -> str:
    return f"{value:g} s"


CHECKS_AT_ONCE = 50
"""Checks validated, or unpickled, in one call: a call holds the GIL, so a reload's thread
taking in ten thousand lets the daemon's event loop run between parts of a few ms."""

PART = pickle.dumps(True, protocol=pickle.HIGHEST_PROTOCOL)
"""Written before each part of the checks: a part, as models, follows."""
AS_DATA = pickle.dumps(False, protocol=pickle.HIGHEST_PROTOCOL)
"""Written instead: every check follows as plain data (one of them could not be pickled)."""


_UNPICKLING = threading.local()


def _check_class(probe: str) -> type:
    """The daemon's model of a probe type's checks (while `_unpickled` unpickles)."""
    return _UNPICKLING.classes[probe]


def _check_classes(model: Any) -> dict[str, type]:
    """Probe type -> check model class of a config model."""
    from typing import get_args

    from pydantic import BaseModel

    found: dict[str, type] = {}

    def walk(kind: Any) -> None:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if "probe" in kind.model_fields:
                for name in get_args(kind.model_fields["probe"].annotation):
                    found[name] = kind
            return
        for arg in get_args(kind):
            walk(arg)

    walk(model.model_fields["checks"].annotation)
    return found


def _layout(place: Any, classes: dict[str, type]) -> tuple[str, ...] | None:
    if place[0] == "probe":
        cls = classes.get(place[1])
    else:
        import importlib

        cls = importlib.import_module(place[0])
        for part in place[1].split("."):
            cls = getattr(cls, part, None)
    fields = getattr(cls, "__pydantic_fields__", None)
    return None if fields is None else tuple(fields)


def command(
    path: str | os.PathLike[str], limits: Limits | None = None, *, known: bool = False
) -> list[str]:
    """Return the argv of the child that checks a config; with `known`, it reads the
    daemon's digests of its running checks on its stdin (`check_digests`)."""
    memory = (limits or Limits()).memory
    argv = [
        sys.executable,
        "-m",
        "watchkeeper.engine.config.child",
        os.fspath(path),
        str(memory),
    ]
    return [*argv, "--known"] if known else argv


def _refusal(
    path: str | os.PathLike[str], returncode: int | None, stderr: bytes
) -> ConfigLimitError | None:
    """Return the refusal for a child that died or ran out of memory, else None."""
    if returncode == EXIT_MEMORY or b"MemoryError" in stderr:
        return ConfigLimitError(path, "reading the config ran out of memory")
    if returncode is not None and returncode < 0:
        return ConfigLimitError(path, f"reading the config was stopped by signal {-returncode}")
    return None


def _timeout(path: str | os.PathLike[str], limits: Limits) -> ConfigLimitError:
    return ConfigLimitError(path, f"reading the config took longer than {_seconds(limits.seconds)}")


class _Unreadable(Exception):
    """The child's answer broke off or is not one (the child died, or was killed)."""


def _load(stream: Any) -> Any:
    """The next pickle of an answer (`stream` a file, or an Unpickler that reads one)."""
    try:
        return stream.load() if isinstance(stream, pickle.Unpickler) else pickle.load(stream)
    except Exception:
        raise _Unreadable from None


def _unreadable(path: str | os.PathLike[str], stderr: bytes) -> OSError:
    detail = stderr.decode("utf-8", "replace").strip().splitlines()
    return OSError(
        f"{path}: the config could not be checked" + (f": {detail[-1]}" if detail else "")
    )


def accept(
    path: str | os.PathLike[str],
    output: bytes,
    reg: Registry | None = None,
    stderr: bytes = b"",
    running: dict[str, Any] | None = None,
) -> Validation:
    """Turn the child's answer into a Validation (raise ConfigError or OSError if refused).

    `running`: the checks the daemon runs, by name, for the checks the child left out as
    unchanged."""
    try:
        return _take(path, io.BytesIO(output), reg, running)
    except _Unreadable:
        raise _unreadable(path, stderr) from None


def _take(
    path: str | os.PathLike[str],
    stream: Any,
    reg: Registry | None,
    running: dict[str, Any] | None = None,
) -> Validation:
    """`accept` reading the answer from a stream as it arrives; raise _Unreadable when it
    breaks off."""
    from watchkeeper.engine.config import loader
    from watchkeeper.engine.config.problems import ConfigError, Problem
    from watchkeeper.engine.config.validation import Validation, config_model
    from watchkeeper.engine.observe.redaction import REDACTOR

    answer = _load(stream)
    if not isinstance(answer, dict):
        raise _Unreadable
    if "oserror" in answer:
        raise OSError(answer["oserror"])
    for secret in answer.get("secrets", ()):
        REDACTOR.add(secret)
    problems = [Problem(**p) for p in answer["problems"]]
    if not answer["ok"]:
        raise ConfigError(problems)
    # no collector passes over the models while they are built: at 10,000 checks they
    # would cost more than building them (not frozen after, as `validate` does: a reload
    # must leave the configuration it replaces collectable)
    enabled = gc.isenabled()
    gc.disable()
    try:
        data = answer["data"]
        sent = None
        if "parts" in answer:
            config, sent = _unpickled(path, stream, answer, reg, running or {})
        else:
            config = _validated(config_model(reg, data), data)
    finally:
        if enabled:
            gc.enable()
    accepted = loader.Loaded(
        data={},
        files=answer["files"],
        secrets=set(answer["secrets"]),
    )
    loader.register_secrets(accepted)
    if "parts" in answer:
        # the checks' secrets were registered part by part as they arrived
        for name in type(config).model_fields:
            if name != "checks":
                REDACTOR.add_from(getattr(config, name))
    else:
        REDACTOR.add_from(config)
    return Validation(
        path=str(path), config=config, loaded=accepted, problems=problems, checks_sent=sent
    )


def _unpickled(
    path: Any, stream: Any, answer: dict[str, Any], reg: Any, running: dict[str, Any]
) -> tuple[Any, int]:
    """The config of an answer whose checks come as models (`child.write_answer`): the rest is
    validated (while the child still sends the checks), the checks are taken as the child
    checked them, a part at a time; a check left out as unchanged is the running one.
    Return the config and how many checks were sent."""
    from watchkeeper.engine.config.validation import config_model
    from watchkeeper.engine.observe.redaction import REDACTOR

    data = answer["data"]
    probes = answer["probes"]
    # the model for the types the file names: its checks' types are in `probes`
    model = config_model(reg, {**data, "checks": {p: {"probe": p} for p in probes}})
    classes = _check_classes(model)
    config = model.model_validate({**data, "checks": {}})
    checks = config.checks
    unpickler = pickle.Unpickler(stream)
    _UNPICKLING.classes = classes
    count = 0
    # the running checks' names: the new config is keyed by the same strings, rather than
    # ten thousand new ones per reload outliving it
    names = {name: name for name in running}
    try:
        for _ in range(answer["parts"]):
            if not _load(stream):
                # the child could not pickle a check's models: all of them come as data
                data = {**data, "checks": _load(stream)}
                config = _validated(config_model(reg, data), data)
                REDACTOR.add_from(config.checks)
                return config, len(config.checks)
            part = _load(unpickler)
            sent = {}
            for name, check in part.items():
                name = names.get(name, name)
                if check is None:
                    check = running.get(name)
                    if check is None:  # not asked for: the answer is not this daemon's
                        raise _Unreadable
                else:
                    sent[name] = check
                checks[name] = check
            count += len(sent)
            REDACTOR.add_from(sent)  # while the child makes the next part
        layouts = _load(unpickler)
    finally:
        del _UNPICKLING.classes
    for place, fields in layouts.items():
        if _layout(place, classes) != fields:
            # the installed watchkeeper changed under this process: its models would not
            # be what the child's were
            raise OSError(
                f"{path}: the config was checked by another version of watchkeeper than "
                "the one running (restart it to load this file)"
            )
    return config, count


def _validated(model: Any, data: dict[str, Any]) -> Any:
    """`model.model_validate(data)`, the checks a part at a time (no validator of the
    whole file looks at them: the child has checked how they fit together)."""
    checks = data.get("checks")
    if not isinstance(checks, dict) or len(checks) <= CHECKS_AT_ONCE:
        return model.model_validate(data)
    config = model.model_validate({**data, "checks": {}})
    names = list(checks)
    for i in range(0, len(names), CHECKS_AT_ONCE):
        part = {name: checks[name] for name in names[i : i + CHECKS_AT_ONCE]}
        config.checks.update(model.model_validate({"version": 1, "checks": part}).checks)
    return config


def load_config_isolated(
    path: str | os.PathLike[str], *, reg: Registry | None = None, limits: Limits | None = None
) -> Validation:
    """`load_config` done in a child process under the limits (starting the daemon).

    Raise ConfigError or OSError as `load_config` does, ConfigLimitError past a limit.
    """
    return Reading(path, reg=reg, limits=limits).result()


class Reading:
    """`load_config_isolated` in two steps: the child starts reading the file at once, and
    `result()` waits for it, so that the caller can get on with its own start meanwhile."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reg: Registry | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.path, self.reg = path, reg
        self.limits = limits or Limits.from_env()
        self.deadline = time.monotonic() + self.limits.seconds
        self.proc = subprocess.Popen(
            command(path, self.limits),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def result(self) -> Validation:
        """Wait for the child; raise ConfigError, OSError or ConfigLimitError as
        `load_config_isolated` does.

        The answer is taken in as the child writes it: the daemon validates the rest of
        the config and unpickles the checks while the child still pickles the next ones.
        """
        from watchkeeper.engine.config.problems import ConfigError
        from watchkeeper.engine.observe.memory import limit_arenas

        limit_arenas()  # as the daemon does, before the threads below allocate
        proc = self.proc
        stderr = bytearray()
        drain = threading.Thread(target=_drain, args=(proc.stderr, stderr), daemon=True)
        drain.start()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        failed: BaseException | None = None
        try:
            taken = _take(self.path, proc.stdout, self.reg)
        except (_Unreadable, ConfigError, OSError) as exc:
            failed = exc
        except BaseException:
            proc.kill()
            _reap(proc, drain, timer)
            raise
        # an answer, or its end, that came past the time is refused as `communicate` with
        # a timeout would: the child is past its limit whatever it says
        late = expired.is_set() or time.monotonic() > self.deadline
        if failed is None and not late:
            # the whole answer is in and the child ends by itself (handing its memory back
            # takes the system some 10 ms): reaped beside, not waited for
            threading.Thread(target=_reap, args=(proc, drain, timer), daemon=True).start()
            return taken
        if late:
            proc.kill()
        _reap(proc, drain, timer)
        if late:
            raise _timeout(self.path, self.limits)
        refused = _refusal(self.path, proc.returncode, bytes(stderr))
        if refused is not None:
            raise refused
        if isinstance(failed, _Unreadable):
            raise _unreadable(self.path, bytes(stderr))
        raise failed  # type: ignore[misc]


def _reap(proc: subprocess.Popen, drain: threading.Thread, timer: threading.Timer) -> None:
    """Wait for the child to end (or its time to run out) and close its pipes."""
    proc.wait()
    timer.cancel()
    drain.join()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]


def _drain(stream: Any, into: bytearray) -> None:
    try:
        for chunk in iter(lambda: stream.read1(65536), b""):
            into += chunk
    except (OSError, ValueError):
        pass  # closed under it: the answer could not be taken in, and that is raised


async def aload_config_isolated(
    path: str | os.PathLike[str],
    *,
    reg: Registry | None = None,
    limits: Limits | None = None,
    running: dict[str, Any] | None = None,
    digests: CheckDigests | None = None,
) -> Validation:
    """`load_config` done in a child process under the limits, without blocking the event
    loop (reloads); a child past its time is killed, as is one whose caller is cancelled.

    With `running` (the checks the daemon runs) and `digests` (its `CheckDigests`), the
    child sends only the checks that are not the running ones; the others are taken as
    they are, the very objects of `running`.
    """
    import anyio

    limits = limits or Limits.from_env()
    out, err = bytearray(), bytearray()
    known = running is not None and digests is not None
    argv = command(path, limits, known=known)
    stdin = subprocess.PIPE if known else subprocess.DEVNULL
    async with await anyio.open_process(argv, stdin=stdin) as proc:

        async def drain(stream: Any, into: bytearray) -> None:
            async for chunk in stream:
                into += chunk

        async def feed() -> None:
            # digested while the child reads and checks the file (in a thread: a tenth of
            # a second at 10,000 checks the first time, the new checks only afterwards)
            payload = await anyio.to_thread.run_sync(digests.payload, running)  # type: ignore[union-attr]
            try:
                await proc.stdin.send(payload)  # type: ignore[union-attr]
                await proc.stdin.aclose()  # type: ignore[union-attr]
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # a refused file: the child says so without reading them

        try:
            with anyio.move_on_after(limits.seconds) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain, proc.stdout, out)
                    tg.start_soon(drain, proc.stderr, err)
                    if known:
                        tg.start_soon(feed)
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                with anyio.CancelScope(shield=True):
                    await proc.wait()
        if scope.cancelled_caught:
            raise _timeout(path, limits)
    refused = _refusal(path, proc.returncode, bytes(err))
    if refused is not None:
        raise refused
    # checking the accepted data into models takes a while for a large file: not on the
    # event loop, which keeps probing and answering meanwhile
    return await anyio.to_thread.run_sync(accept, path, bytes(out), reg, bytes(err), running)
