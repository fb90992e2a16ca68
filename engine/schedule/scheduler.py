"""The scheduler: one heap of next fire times, a pool of runners, nothing started twice.

Each job owns one series from `timetable` (built once, advanced on every fire). The loop
sleeps until the earliest fire time (or until the job set changes), queues the run and
moves the job to its next time. With a `tick` (`TICK`, 100 ms, by default), the runs due
within one tick of the earliest are released together when the last of them falls due,
so they share one wake-up here and one frame to a probe worker: a run starts at most a
tick late (the lateness counted includes it), and a run with no other due within the
tick after it starts on time. Runner tasks take queued runs in order; there are never
more runners than the concurrency limit, and a runner takes the next queued run when it
finishes one, so a busy daemon does not pay for a task per run (a quiet one starts a
runner per run, which ends when the queue is empty). A run whose previous run is still
going is skipped and counted.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup

from watchkeeper.engine.schedule import timetable
from watchkeeper.engine.schedule.clock import Clock

log = logging.getLogger("watchkeeper.scheduler")

TICK = 0.1
"""Seconds a due run may wait for others falling due after it, to be released with them.

Each release costs a wake-up of the daemon and of a worker and a frame each way, whatever
it carries: at a steady 67 runs/s, runs released in 100 ms batches cost a third less CPU
than in 25 ms ones (with or without workers), and the worker's share then costs little
more than running the probes in the daemon. A check every minute does not notice a start
100 ms late; the wait is counted in lateness."""


@dataclass(eq=False)
class Job:
    """Something that runs on a schedule: a check instance, a backup, a drill, a task."""

    key: str
    kind: str
    series: Any  # timetable.CronSeries | timetable.EverySeries
    target: Any = None
    next_at: float = 0.0
    running: bool = False
    runs: int = 0
    skipped: int = 0
    last_started: float | None = None
    cancelled: bool = False


@dataclass
class Lateness:
    """How late runs started: a bounded reservoir of recent samples, and the worst."""

    samples: list[float] = field(default_factory=list)
    worst: float = 0.0
    count: int = 0
    total: float = 0.0  # of every run since start, for a Prometheus summary's _sum
    limit: int = 20000

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.worst = max(self.worst, seconds)
        if len(self.samples) >= self.limit:
            self.samples[self.count % self.limit] = seconds
        else:
            self.samples.append(seconds)

    def quantile(self, q: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


STALE_FLOOR = 64
"""Heap entries of removed jobs kept before they are sifted out, however small the heap."""


RunFn = Callable[[Job, float], Awaitable[None]]
GateFn = Callable[[Job, float], bool]


class Scheduler:
    """Fire jobs at their times; `run(job, scheduled_at)` does the work."""

    def __init__(
        self,
        clock: Clock,
        run: RunFn,
        *,
        concurrency: int = 256,
        gate: GateFn | None = None,
        tick: float = TICK,
    ):
        self.clock = clock
        self.tick = tick
        self.run_job = run
        self.gate = gate
        self.concurrency = concurrency
        self._queue: deque[tuple[Job, float]] = deque()  # runs waiting for a runner
        self._runners = 0
        self.jobs: dict[str, Job] = {}
        self.heap: list[tuple[float, int, Job]] = []
        self._stale = 0  # heap entries of removed jobs
        self.counter = itertools.count()
        self.lateness = Lateness()
        self.running_count = 0
        self._wake: anyio.CancelScope | None = None
        self._stopping = False
        self._grace = 10.0
        self.active = 0  # runs started and not finished (waiting for the limiter included)
        self._idle = anyio.Event()
        self.finished = anyio.Event()
        self._tg: TaskGroup | None = None

    # -- job set ----------------------------------------------------------------------------

    def add(
        self,
        key: str,
        kind: str,
        schedule: Any,
        *,
        target: Any = None,
        default_tz: str = "UTC",
        series_key: str | None = None,
    ) -> Job:
        """Schedule a job from a schedule model (`every` or `cron`); replaces one of that key.

        A replaced job's run that fell due and was not yet released (a run waits up to a
        tick to share its batch, and a reload's switch takes the loop's turns) is kept:
        the new job runs it, then goes on with its own series. Otherwise a changed check
        would lose the run due while it was being replaced.
        """
        old = self.jobs.get(key)
        self.remove(key)
        now = self.clock.now()
        start = datetime.fromtimestamp(now, UTC)
        series = timetable.series_for(
            schedule, key=series_key or key, start=start, default_tz=default_tz
        )
        first = next(series)
        job = Job(key=key, kind=kind, series=series, target=target)
        if old is not None and old.next_at <= now and old.next_at < first.timestamp():
            job.series = itertools.chain([first], series)
            self._push(job, old.next_at)
        else:
            self._push(job, first.timestamp())
        self.jobs[key] = job
        return job

    def remove(self, key: str) -> None:
        job = self.jobs.pop(key, None)
        if job is not None:
            job.cancelled = True  # its heap entry is dropped when it comes up
            self._stale += 1
            # ...which for an hourly or daily job may be long after it was replaced: each
            # reload would leave its replaced jobs (and their instances) in the heap. Past
            # a bound proportional to the heap, sifting them out costs O(1) per removal
            if self._stale > max(STALE_FLOOR, len(self.heap) // 2):
                self._drop_stale()

    def _drop_stale(self) -> None:
        self.heap = [entry for entry in self.heap if not entry[2].cancelled]
        heapq.heapify(self.heap)
        self._stale = 0

    def _push(self, job: Job, at: float) -> None:
        job.next_at = at
        heapq.heappush(self.heap, (at, next(self.counter), job))
        if self._wake is not None and self.heap[0][2] is job:
            self._wake.cancel()  # the earliest time moved: re-arm the sleep

    # -- loop -------------------------------------------------------------------------------

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Fire jobs until stopped (cancel the surrounding scope to stop)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            while not self._stopping:
                if not self.heap:
                    await self._sleep(None)
                    continue
                at, _, job = self.heap[0]
                if job.cancelled:
                    heapq.heappop(self.heap)
                    self._stale -= 1
                    continue
                now = self.clock.now()
                if at > now:
                    await self._sleep(self._release_at(at))
                    continue
                heapq.heappop(self.heap)
                self._fire(tg, job, at, now)
                self._push(job, next(job.series).timestamp())
            # stopping: let runs that are going finish, up to the grace period
            with anyio.move_on_after(self._grace):
                if self.active:
                    await self._idle.wait()
            tg.cancel_scope.cancel()
        for job, _ in self._queue:  # runs the grace period left unstarted
            job.running = False
            self.active -= 1
        self._queue.clear()
        self.finished.set()

    def _release_at(self, at: float) -> float:
        """When to release the earliest run, due at `at`: with the last of the runs due
        within a tick of it, so they all go at once (at `at` when none is)."""
        if self.tick <= 0:
            return at
        heap = self.heap
        bound = at + self.tick
        last = at
        # the entries due by `bound` are a subtree at the top of the heap (a child is never
        # due before its parent): walk only that, a few entries at a time
        stack = [0]
        while stack:
            index = stack.pop()
            if index < len(heap) and heap[index][0] <= bound:
                last = max(last, heap[index][0])
                stack += (2 * index + 1, 2 * index + 2)
        return last

    async def _sleep(self, until: float | None) -> None:
        with anyio.CancelScope() as scope:
            self._wake = scope
            if until is None:
                await anyio.sleep_forever()
            else:
                await self.clock.sleep_until(until)
        self._wake = None

    def _fire(self, tg: TaskGroup, job: Job, scheduled: float, now: float) -> None:
        if self.gate is not None and not self.gate(job, scheduled):
            return
        if job.running:
            job.skipped += 1
            log.warning(
                "run skipped: the previous run is still going",
                extra={"job": job.key, "kind": job.kind, "skipped": job.skipped},
            )
            return
        job.running = True
        self.lateness.add(max(0.0, now - scheduled))
        self._enqueue(tg, job, scheduled)

    def _enqueue(self, tg: TaskGroup, job: Job, scheduled: float) -> None:
        self.active += 1
        self._queue.append((job, scheduled))
        if self._runners < self.concurrency:
            self._runners += 1
            tg.start_soon(self._runner, name="scheduler runner")

    async def _runner(self) -> None:
        """Run queued runs one after the other until the queue is empty."""
        queue = self._queue
        try:
            while queue:
                job, scheduled = queue.popleft()
                await self._run(job, scheduled)
        finally:
            self._runners -= 1

    async def _run(self, job: Job, scheduled: float) -> None:
        try:
            self.running_count += 1
            job.last_started = self.clock.now()
            job.runs += 1
            try:
                await self.run_job(job, scheduled)
            finally:
                self.running_count -= 1
        except Exception:
            log.exception("run failed", extra={"job": job.key, "kind": job.kind})
        finally:
            job.running = False
            self.active -= 1
            if self.active == 0 and self._stopping:
                self._idle.set()

    def start_now(self, job: Job) -> bool:
        """Run a job at once, outside its schedule (pause catch-up, manual runs)."""
        if self._tg is None or job.running:
            return False
        job.running = True
        self._enqueue(self._tg, job, self.clock.now())
        return True

    def stop(self, grace: float = 10.0) -> None:
        """Stop firing new runs; runs already going get `grace` seconds to finish."""
        self._stopping = True
        self._grace = grace
        if self._wake is not None:
            self._wake.cancel()
