"""Where probes run: in this process, or in worker processes that a blocked probe cannot stall.

Both executors take a check instance and return its Result with the timeout enforced from
outside the probe. The process executor adds a second, outer guard: a worker that does not
answer within the timeout plus a grace period is killed and replaced, so a probe that
blocks its event loop costs one worker for a moment, never the daemon.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from watchkeeper.engine.run.probe import OpenContext, Probe, ProbeContext, Result, run_probe
from watchkeeper.engine.run.sharing import Interner

if TYPE_CHECKING:  # not imported at run time: a worker process needs neither
    from watchkeeper.engine.config.instances import Instance
    from watchkeeper.engine.plugins import Registry

RUN_WINDOW = 0.0
"""Seconds a run may wait for others to share its frame to a worker: none, as the
scheduler releases runs due close together at once (`scheduler.TICK`), and every run
queued before the sender wakes goes in its frame."""

CHECKS_PER_TURN = 500
"""Checks packed for a worker between two turns of the event loop (some 5 ms)."""

log = logging.getLogger("watchkeeper.executor")


class LocalExecutor:
    """Run probes on this process's event loop; one probe object per type, opened once."""

    def __init__(self, reg: Registry, base_dir: Path):
        self.reg = reg
        self.base_dir = base_dir
        self.probes: dict[str, Probe] = {}
        self._opening: dict[str, anyio.Event] = {}
        self._logs: dict[str, logging.Logger] = {}

    async def probe(self, probe_type: str) -> Probe:
        """Return the opened probe for a type, opening it on first use."""
        probe = self.probes.get(probe_type)
        if probe is not None:
            return probe
        event = self._opening.get(probe_type)
        if event is not None:
            await event.wait()
            return self.probes[probe_type]
        self._opening[probe_type] = event = anyio.Event()
        try:
            probe = self.reg.get("probe", probe_type)()
            await probe.open(
                OpenContext(
                    base_dir=self.base_dir, log=logging.getLogger(f"watchkeeper.probe.{probe_type}")
                )
            )
            self.probes[probe_type] = probe
        finally:
            event.set()
            del self._opening[probe_type]
        return probe

    async def run(self, instance: Instance) -> Result:
        """Run one check of an instance now."""
        try:
            probe = await self.probe(instance.probe_type)
        except Exception as exc:  # a probe that cannot open fails its checks, not the daemon
            return Result(
                ok=False,
                message=f"probe {instance.probe_type!r} failed to start: "
                f"{type(exc).__name__}: {exc}",
            )
        log = self._logs.get(instance.probe_type)
        if log is None:
            log = self._logs[instance.probe_type] = logging.getLogger(
                f"watchkeeper.probe.{instance.probe_type}"
            )
        ctx = ProbeContext(
            instance.check,
            instance.environment,
            instance.timeout,
            self.base_dir,
            log,
            instance.labels,
        )
        return await run_probe(probe, instance.options, ctx)

    async def load(self, instances: dict[str, Instance]) -> None:
        """Take a new set of instances (nothing to prepare in-process)."""

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for probe_type, probe in list(self.probes.items()):
                try:
                    with anyio.move_on_after(5):
                        await probe.close()
                except Exception:
                    log.warning("probe close failed", exc_info=True, extra={"probe": probe_type})
            self.probes.clear()


def _worker_environment() -> dict[str, str]:
    """Pass this process's log level and format on to a worker."""
    root = logging.getLogger("watchkeeper")
    formatter = root.handlers[0].formatter if root.handlers else None
    fmt = "json" if type(formatter).__name__ == "JsonFormatter" else "text"
    if type(formatter).__name__ == "JournalFormatter":
        fmt = "journal"
    return {
        **os.environ,
        "WATCHKEEPER_LOG_LEVEL": logging.getLevelName(root.level).lower(),
        "WATCHKEEPER_LOG_FORMAT": fmt,
    }


class _SameFirst(Interner):
    """An Interner that knows the objects it has been handed: the checks of an accepted
    config share their values already (`config.child.write_answer`), so most values
    are found by identity without working out their key."""

    __slots__ = ("by_id",)

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[int, tuple[Any, Any]] = {}

    def __call__(self, value: Any) -> Any:
        found = self.by_id.get(id(value))
        if found is None:
            # the value kept beside its answer: its id stays its own while this lives
            found = self.by_id[id(value)] = (value, Interner.__call__(self, value))
        return found[1]


class _Worker:
    """One worker process, the runs queued for it and the runs it has in flight."""

    def __init__(self, index: int, process: Any):
        self.index = index
        self.process = process
        self.inflight: dict[int, list[Any]] = {}  # job id -> [event, result]
        self.queued: list[tuple[int, str]] = []  # runs not yet sent
        self.wake = anyio.Event()  # set when `queued` gets its first run
        self.send_lock = anyio.Lock()
        self.alive = True
        # set once the worker has been sent its checks (or is gone): no run or `add`
        # frame may reach it before the `load` frame, which replaces all it knows
        self.has_checks = anyio.Event()
        # checks sent to this worker one by one since its last full load: key -> the
        # options object it was sent
        self.added: dict[str, Any] = {}

    async def send(self, message: Any) -> None:
        from watchkeeper.engine.run.worker import frame

        await self.send_frame(frame(message))

    async def send_frame(self, data: bytes) -> None:
        async with self.send_lock:
            await self.process.stdin.send(data)

    def queue(self, job_id: int, key: str) -> None:
        self.queued.append((job_id, key))
        if len(self.queued) == 1:
            self.wake.set()


class ProcessExecutor:
    """Run probes in worker processes; replace a worker that stops answering."""

    def __init__(
        self,
        reg: Registry,
        base_dir: Path,
        count: int | Callable[[], int],
        *,
        grace: float = 5.0,
        window: float = RUN_WINDOW,
    ):
        self.reg = reg
        self.base_dir = base_dir
        # a callable is asked when the workers start (the daemon's checks are known by then)
        self.count = count
        self.grace = grace
        self.window = window
        self.workers: list[_Worker] = []
        # the instances of the last full load (the runtime's own mapping, not a copy): a
        # worker started later is sent them
        self._instances: dict[str, Instance] | None = None
        # what the last full load held: key -> the instance's options object (the daemon
        # keeps those alive anyway), so a run can tell whether its worker knows its check
        self.loaded: dict[str, Any] = {}
        self._records: dict[str, tuple[str, ...] | None] = {}
        self.replaced = 0
        self._ids = 0
        self._tg: Any = None
        self._closing = False
        self._early: Any = None  # the first worker's process, started by `prestart`
        self._after: anyio.Event | None = None  # see `serve`
        self._loads = 0  # full loads so far: a frame built across one is built again

    async def serve(
        self, *, after: anyio.Event | None = None, task_status=anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the workers and keep them running until cancelled.

        Reports itself started once every worker has been sent its checks; with `after`,
        as soon as their processes are starting, and the checks are sent once `after` is
        set (the daemon's start-up, which building them would slow, is over). Runs asked
        for meanwhile are queued and sent after the checks.
        """
        self._after = after
        try:
            if callable(self.count):
                self.count = self.count()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                workers = [self._spawn(index) for index in range(self.count)]
                if after is None:
                    for worker in workers:
                        await worker.has_checks.wait()
                task_status.started()
                await anyio.sleep_forever()
        finally:
            await self.close()

    async def prestart(self) -> None:
        """Start the first worker's process now, before `serve`: it imports itself while
        the daemon builds its checks, and `serve` takes it on."""
        if self._early is None and not self.workers:
            self._early = await self._open()

    async def _open(self) -> Any:
        import subprocess
        import sys

        return await anyio.open_process(
            [sys.executable, "-m", "watchkeeper.engine.run.worker", str(self.base_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=_worker_environment(),
        )

    def _spawn(self, index: int) -> _Worker:
        """Take on a worker at `index`: its process starts (or the early one is taken), and
        `_hand_over` sends it its checks once it is up; runs queue for it meanwhile."""
        process, self._early = self._early, None
        if index != 0 and process is not None:
            process.kill()
            process = None
        worker = _Worker(index, process)
        if index < len(self.workers):
            self.workers[index] = worker
        else:
            self.workers.append(worker)
        self._tg.start_soon(self._hand_over, worker, name=f"worker {index} start")
        return worker

    async def _hand_over(self, worker: _Worker) -> None:
        """Start a worker's process if need be, send it its checks once it reports ready,
        then its runs."""
        try:
            if worker.process is None:
                worker.process = await self._open()
                if not worker.alive:  # given up on while it opened: another takes over
                    worker.process.kill()
                    self._tg.start_soon(
                        self._respawn, worker, name=f"respawn worker {worker.index}"
                    )
                    return
            ready = anyio.Event()
            self._tg.start_soon(self._read, worker, ready, name=f"worker {worker.index} reader")
            if self._after is not None:
                await self._after.wait()
            await ready.wait()
            data = None
            while worker.alive and self._instances is not None:
                loads = self._loads
                # built for each worker rather than kept (the frame of ten thousand checks
                # is a megabyte), in turns; a `load` meanwhile means building it again
                data = await self._load_frame_in_turns(self._instances)
                if self._loads == loads:
                    break
            if not worker.alive:
                return
            # from here on `load` sends this worker the checks of a reload itself, and
            # `_introduce` the checks a run needs, after these (frames go in order)
            worker.added.clear()
            worker.has_checks.set()
            if data is not None:
                await worker.send_frame(data)
            self._tg.start_soon(self._send_runs, worker, name=f"worker {worker.index} sender")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the worker is gone: its reader reports that and starts another
        finally:
            worker.has_checks.set()  # nothing waits on a worker that never took its checks

    async def _send_runs(self, worker: _Worker) -> None:
        """Send queued runs: those queued by the time this wakes (or within `window` of the
        first) in one frame."""
        while worker.alive:
            await worker.wake.wait()
            if self.window > 0:
                await anyio.sleep(self.window)
            worker.wake = anyio.Event()
            batch, worker.queued = worker.queued, []
            if not batch:
                continue
            try:
                await worker.send(("runs", batch))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                gone = Result(
                    ok=False,
                    message="probe worker is gone; the check runs again on its next schedule",
                )
                for job_id, _ in batch:
                    slot = worker.inflight.pop(job_id, None)
                    if slot is not None:
                        slot[1] = gone
                        slot[0].set()

    async def _read(self, worker: _Worker, ready: anyio.Event) -> None:
        from watchkeeper.engine.run.worker import split_frames, unpack_result

        stream = worker.process.stdout
        buffer = bytearray()
        inflight = worker.inflight
        try:
            while True:
                buffer += await stream.receive(1 << 16)
                for message in split_frames(buffer):
                    kind = message[0]
                    if kind == "results":
                        for job_id, packed in message[1]:
                            slot = inflight.pop(job_id, None)
                            if slot is not None:
                                slot[1] = unpack_result(packed)
                                slot[0].set()
                    elif kind == "ready":
                        ready.set()
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ):
            if not self._closing:
                log.error(
                    "probe worker exited; starting a new one",
                    extra={"worker": worker.index, "returncode": worker.process.returncode},
                )
                self._tg.start_soon(self._respawn, worker, name=f"respawn worker {worker.index}")
        finally:
            ready.set()
            worker.alive = False
            worker.wake.set()  # its sender stops
            for event, _ in worker.inflight.values():
                event.set()  # their runs report the worker's exit

    async def _respawn(self, worker: _Worker) -> None:
        if self.workers[worker.index] is worker and not self._closing:
            self.replaced += 1
            self._spawn(worker.index)

    def _record(self, instance: Instance) -> tuple[str, ...] | None:
        """The option fields a probe's options are sent as (None: send the model)."""
        probe_type = instance.probe_type
        if probe_type not in self._records:
            names = None
            # built-in probes only read their options' attributes; a third-party probe's
            # check() may call methods its model defines, so it gets the model
            if self.reg.is_builtin("probe", probe_type):
                names = tuple(instance.probe_class.Options.model_fields)
            self._records[probe_type] = names
        return self._records[probe_type]

    def _load_frame(self, kind: str, instances: dict[str, Instance]) -> bytes:
        """A `load` or `add` frame for these instances, equal values sent once."""
        checks: dict[str, Any] = {}
        records: dict[str, tuple[str, ...] | None] = {}
        for _ in self._packing(instances.items(), checks, records):
            pass
        return self._frame(kind, records, checks)

    async def _load_frame_in_turns(self, instances: dict[str, Instance]) -> bytes:
        """`_load_frame("load", instances)`, letting the event loop run every
        `CHECKS_PER_TURN` checks (ten thousand take some 0.1 s)."""
        checks: dict[str, Any] = {}
        records: dict[str, tuple[str, ...] | None] = {}
        packing = self._packing(list(instances.items()), checks, records)
        for done, _ in enumerate(packing, 1):
            if done % CHECKS_PER_TURN == 0:
                await anyio.lowlevel.checkpoint()
        return self._frame("load", records, checks)

    def _packing(
        self,
        instances: Iterable[tuple[str, Instance]],
        checks: dict[str, Any],
        records: dict[str, tuple[str, ...] | None],
    ) -> Iterator[None]:
        """Pack instances into `checks` (their probes' records into `records`), yielding
        after each."""
        from watchkeeper.engine.run.runspec import pack

        intern = _SameFirst()
        for key, instance in instances:
            if not instance.passive:
                record = records[instance.probe_type] = self._record(instance)
                checks[key] = pack(instance, record, intern)
            yield

    def _frame(self, kind: str, records: dict, checks: dict[str, Any]) -> bytes:
        # the checks' secrets are registered already, where their options were made: the
        # config as it was accepted (`accept`, `load_config`), an environment's copy in
        # `expand`
        from watchkeeper.engine.observe.redaction import REDACTOR
        from watchkeeper.engine.run.worker import frame

        return frame((kind, records, checks, REDACTOR.values()))

    async def load(self, instances: dict[str, Instance]) -> None:
        """Send every worker the checks it may be asked to run."""
        self._instances = instances
        self._loads += 1
        self.loaded = {key: i.options for key, i in instances.items() if not i.passive}
        if not any(worker.alive for worker in self.workers):
            return  # workers started from now on are sent these
        data = self._load_frame("load", instances)
        for worker in self.workers:
            # a worker still starting is sent these by `_hand_over`
            if worker.alive and worker.has_checks.is_set():
                await worker.send_frame(data)
                worker.added.clear()

    async def _introduce(self, worker: _Worker, instance: Instance) -> None:
        """Send a worker a check it does not know yet (or knows with other options).

        Checks normally reach workers in a full `load`; this covers a run that comes first
        (a check taken over from a departed replica, or added by a reload, that is due at
        once). Frames reach a worker in order, so the run sent next finds its check.
        """
        await worker.has_checks.wait()  # after the `load` frame, which would replace it
        worker.added[instance.key] = instance.options
        await worker.send_frame(self._load_frame("add", {instance.key: instance}))

    def _pick(self) -> _Worker | None:
        workers = self.workers
        if len(workers) == 1:
            return workers[0] if workers[0].alive else None
        alive = [w for w in workers if w.alive]
        return min(alive, key=lambda w: len(w.inflight)) if alive else None

    async def run(self, instance: Instance) -> Result:
        """Run one check in the least busy worker; a silent worker is replaced."""
        worker = self._pick()
        if worker is None:
            return Result(ok=False, message="no probe worker is running")
        key = instance.key
        known = worker.added.get(key)
        if known is None:
            known = self.loaded.get(key)
        if known is not instance.options:
            try:
                await self._introduce(worker, instance)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return Result(
                    ok=False,
                    message="probe worker is gone; the check runs again on its next schedule",
                )
        self._ids += 1
        job_id = self._ids
        slot: list[Any] = [anyio.Event(), None]
        worker.inflight[job_id] = slot
        worker.queue(job_id, key)
        with anyio.move_on_after(instance.timeout + self.grace):
            await slot[0].wait()
        if slot[1] is not None:
            return slot[1]
        worker.inflight.pop(job_id, None)
        if not slot[0].is_set():
            # the worker did not even report a timeout: its event loop is blocked
            log.error(
                "probe worker stopped answering; replacing it",
                extra={"worker": worker.index, "check": instance.key},
            )
            self._kill(worker)
            return Result(
                ok=False,
                message=f"timed out after {instance.timeout:g}s (the probe "
                "blocked its worker, which was replaced)",
                details={"timeout": True},
            )
        return Result(ok=False, message="probe worker exited during the check")

    def _kill(self, worker: _Worker) -> None:
        if worker.alive:
            worker.alive = False
            try:
                if worker.process is not None:  # else `_hand_over` stops the one it opens
                    worker.process.kill()
            except ProcessLookupError:
                pass

    async def close(self) -> None:
        self._closing = True
        early, self._early = self._early, None
        with anyio.CancelScope(shield=True):
            if early is not None:  # started, never served (the daemon failed to start)
                early.kill()
                await early.wait()
            started = [w for w in self.workers if w.process is not None]
            for worker in started:
                # not `alive`: its reader has been cancelled by now, which clears that
                if worker.process.returncode is None:
                    try:
                        with anyio.move_on_after(2):
                            await worker.send(("stop",))
                    except Exception:
                        pass
            with anyio.move_on_after(5):
                for worker in started:
                    await worker.process.wait()
            for worker in started:
                if worker.process.returncode is None:
                    worker.process.kill()
