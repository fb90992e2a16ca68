"""Heartbeat checks: passive, timer-driven; something must report in on schedule.

A heartbeat's deadline is the first `expect_every` time after its last `ok` beat, plus
`grace`; a check that never beat is due at its first deadline after it was first seen.
A `start` beat opens a run that must see `ok` within `max_runtime`; `fail` or a non-zero
exit code is down at once. Each missed deadline is one failed run, so `failure_threshold`
counts missed deadlines.

A check holds at most `MAX_OPEN_RUNS` open runs (starts not yet ended): past that the
oldest is dropped, so a job that never ends its runs, or a token holder starting runs
with ever new `rid`s, cannot grow the state document written on every beat. A drop is
logged once, counted in the state (`runs_dropped`) and told in the next result's message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import anyio

from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.run.probe import Result
from watchkeeper.engine.schedule import timetable
from watchkeeper.engine.state.store import Row
from watchkeeper.schema.units import format_duration

log = logging.getLogger("watchkeeper.heartbeats")

BeatStatus = Literal["start", "ok", "fail"]
NO_RUN = "-"
MAX_OPEN_RUNS = 100


@dataclass
class Beat:
    """One report from a job: started, finished ok, or failed."""

    status: BeatStatus
    at: float
    rid: str | None = None
    exit_code: int | None = None
    metrics: dict[str, float] | None = None
    log: str | None = None
    source: str = "api"

    def to_data(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in {
                "status": self.status,
                "rid": self.rid,
                "exit": self.exit_code,
                "metrics": self.metrics,
                "log": self.log,
                "source": self.source,
            }.items()
            if v is not None
        }

    @classmethod
    def from_row(cls, row: Row) -> Beat:
        d = row.data
        return cls(
            status=d.get("status", "ok"),
            at=row.at,
            rid=d.get("rid"),
            exit_code=d.get("exit"),
            metrics=d.get("metrics"),
            log=d.get("log"),
            source=d.get("source", "cli"),
        )


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Heartbeats:
    """Track beats and deadlines of every heartbeat instance; feed results to the runtime."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.state: dict[str, dict[str, Any]] = {}
        self.paused_until: dict[str, float] = {}
        self._wake = anyio.Event()
        self._seen_until = 0.0
        self._seen_at_edge: set[tuple] = set()
        self.paused = lambda key, at: False  # is the instance in a pause window at `at`?

    def instances(self) -> dict[str, Instance]:
        return {k: i for k, i in self.runtime.instances.items() if i.probe_type == "heartbeat"}

    async def load(self) -> None:
        """Restore beat state from the store; new heartbeat checks start their clock now."""
        stored = await self.runtime.store.get_all("heartbeats")
        now = self.runtime.clock.now()
        self.state = {}
        for key in self.instances():
            doc = stored.get(key) or {
                "first_seen": now,
                "last_ok": None,
                "runs": {},
                "missed": None,
            }
            self.state[key] = doc
            self._save(key)
        # beats recorded while no daemon ran (`watchkeeper heartbeat` from cron) count too
        seen = await self.runtime.store.get("meta", "beats_seen") or {}
        self._seen_until = seen.get("until", now - 86400.0)

    def _save(self, key: str) -> None:
        self.runtime.writer.put("heartbeats", key, self.state[key])

    # -- deadlines --------------------------------------------------------------------------

    def deadline(self, key: str) -> tuple[float, str] | None:
        """Return (when, why) of the next deadline of an instance."""
        instance = self.runtime.instances.get(key)
        state = self.state.get(key)
        if instance is None or state is None:
            return None
        opts = instance.options
        candidates = []
        if opts.max_runtime is not None:
            for rid, started in state.get("runs", {}).items():
                candidates.append(
                    (
                        started + opts.max_runtime,
                        f"run started {_iso(started)} "
                        f"{'(rid ' + rid + ') ' if rid != NO_RUN else ''}"
                        f"did not finish within {format_duration(opts.max_runtime)}",
                    )
                )
        base = max(
            x
            for x in (state.get("last_ok"), state.get("missed"), state.get("first_seen"))
            if x is not None
        )
        due = self._next_due(instance, base)
        candidates.append(
            (
                due + opts.grace,
                f"no beat since {_iso(state['last_ok'])}"
                if state.get("last_ok")
                else "no beat received yet",
            )
        )
        when, why = min(candidates)
        return when + self.paused_extra(key), why

    def _next_due(self, instance: Instance, after: float) -> float:
        expect = instance.options.expect_every
        if expect.every:
            return after + expect.every
        start = datetime.fromtimestamp(after, UTC)
        series = timetable.CronSeries(
            expect.cron, expect.timezone or instance.timezone, start=start
        )
        return next(series).timestamp()

    def paused_extra(self, key: str) -> float:
        """Seconds a pause window added to this instance's deadline (maintenance: pause)."""
        return self.state.get(key, {}).get("paused_for", 0.0)

    def extend(self, key: str, seconds: float) -> None:
        """Push an instance's deadlines back (the time a pause window held it)."""
        state = self.state.get(key)
        if state is not None:
            state["paused_for"] = state.get("paused_for", 0.0) + seconds
            self._save(key)
            self._wake.set()

    def credit_pauses(self, maintenance: Any, at: float) -> None:
        """Extend deadlines by the pause windows that covered an instance and have ended."""
        for key, state in self.state.items():
            instance = self.runtime.instances.get(key)
            if instance is None:
                continue
            credited = set(state.get("credited", []))
            for occurrence in maintenance.occurrences(at - 7 * 86400, at):
                if (
                    occurrence.effect != "pause"
                    or occurrence.end > at
                    or occurrence.key in credited
                    or not occurrence.covers_check(
                        instance.check, instance.environment, instance.labels
                    )
                ):
                    continue
                base = state.get("last_ok") or state.get("first_seen") or occurrence.start
                paused_for = occurrence.end - max(occurrence.start, base)
                if paused_for > 0:
                    state["paused_for"] = state.get("paused_for", 0.0) + paused_for
                credited.add(occurrence.key)
            state["credited"] = sorted(credited)[-20:]
            self._save(key)
        self._wake.set()

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Fire missed deadlines, and pick up beats recorded by other processes."""
        task_status.started()
        while True:
            now = self.runtime.clock.now()
            await self.poll_store()
            await self.check_deadlines(now)
            upcoming = [d[0] for k in self.state if (d := self.deadline(k)) is not None]
            wake_at = min([*upcoming, now + 1.0])  # beats from the CLI arrive via the store
            with anyio.move_on_after(max(0.0, wake_at - self.runtime.clock.now()) + 0.001):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def check_deadlines(self, now: float) -> None:
        for key in list(self.state):
            deadline = self.deadline(key)
            if deadline is None or deadline[0] > now or self.paused(key, now):
                continue
            when, why = deadline
            state = self.state[key]
            if "did not finish" in why:
                state["runs"] = {
                    r: s
                    for r, s in state.get("runs", {}).items()
                    if s + (self.runtime.instances[key].options.max_runtime or 0) > now
                }
            else:
                # the missed due time: the next deadline is the due time after it
                grace = self.runtime.instances[key].options.grace
                state["missed"] = when - self.paused_extra(key) - grace
            state["paused_for"] = 0.0
            self._save(key)
            await self.runtime.ingest(
                self.runtime.instances[key], Result(ok=False, message=why), now
            )

    # -- beats ------------------------------------------------------------------------------

    async def beat(self, key: str, beat: Beat) -> int:
        """Take one beat for an instance: start a run, or judge it ok or failed; return how
        many open runs a start dropped (the oldest, past `MAX_OPEN_RUNS`)."""
        instance = self.runtime.instances.get(key)
        if instance is None or instance.probe_type != "heartbeat":
            raise KeyError(key)
        state = self.state.setdefault(
            key, {"first_seen": beat.at, "last_ok": None, "runs": {}, "missed": None}
        )
        rid = beat.rid or NO_RUN
        if beat.status == "start":
            runs = state.setdefault("runs", {})
            runs.pop(rid, None)
            runs[rid] = beat.at
            dropped = self._drop_oldest(key, state)
            self._save(key)
            self._wake.set()
            return dropped
        started = state.setdefault("runs", {}).pop(rid, None)
        metrics = dict(beat.metrics or {})
        if started is not None:
            metrics["runtime"] = max(0.0, beat.at - started)
        failed = beat.status == "fail" or (beat.exit_code not in (None, 0))
        if failed:
            message = "reported failure" + (
                f" (exit code {beat.exit_code})" if beat.exit_code not in (None, 0) else ""
            )
            if beat.log:
                message += ": " + beat.log.strip().splitlines()[-1][:300]
        else:
            state["last_ok"], state["missed"] = beat.at, None
            message = "beat received" + (
                f" after {format_duration(metrics['runtime'])}" if "runtime" in metrics else ""
            )
        untold = state.pop("runs_dropped_untold", 0)
        if untold:
            message += (
                f"; {untold} open run{'s' if untold != 1 else ''} dropped "
                f"(more than {MAX_OPEN_RUNS} at once)"
            )
        state["paused_for"] = 0.0
        self._save(key)
        self._wake.set()
        result = Result(
            ok=not failed,
            message=message,
            metrics=metrics,
            details={"log": beat.log} if beat.log else {},
        )
        await self.runtime.ingest(instance, result, beat.at)
        return 0

    def _drop_oldest(self, key: str, state: dict[str, Any]) -> int:
        """Keep at most MAX_OPEN_RUNS open runs; return how many of the oldest went."""
        runs = state["runs"]
        dropped = 0
        while len(runs) > MAX_OPEN_RUNS:
            del runs[min(runs, key=runs.__getitem__)]
            dropped += 1
        if dropped:
            if not state.get("runs_dropped_untold"):  # once until a result tells of it
                log.warning(
                    f"open runs dropped (more than {MAX_OPEN_RUNS} at once): the oldest go; "
                    "do its runs end with the `rid` they started with?",
                    extra={"check": key},
                )
            state["runs_dropped"] = state.get("runs_dropped", 0) + dropped
            state["runs_dropped_untold"] = state.get("runs_dropped_untold", 0) + dropped
        return dropped

    async def record(self, key: str, beat: Beat) -> int:
        """Take a beat that arrived at this daemon (HTTP API): keep it and judge it; return
        how many open runs it dropped."""
        self.runtime.writer.append("beats", Row(key=key, at=beat.at, data=beat.to_data()))
        self._seen_at_edge.add((key, beat.at))
        return await self.beat(key, beat)

    async def poll_store(self) -> None:
        """Judge beats written to the store by `watchkeeper heartbeat` / `exec`."""
        try:
            rows = await self.runtime.store.read("beats", since=self._seen_until)
        except Exception:  # the store may be down: beats wait there until it is back
            return
        for row in rows:
            marker = (row.key, row.at)
            if marker in self._seen_at_edge:
                continue
            self._seen_at_edge.add(marker)
            if row.key in self.state:
                try:
                    await self.beat(row.key, Beat.from_row(row))
                except KeyError:
                    pass
        if rows:
            newest = max(r.at for r in rows)
            if newest > self._seen_until:
                self._seen_until = newest
                self.runtime.writer.put("meta", "beats_seen", {"until": newest})
                self._seen_at_edge = {m for m in self._seen_at_edge if m[1] >= newest}
