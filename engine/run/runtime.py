"""The running state of the daemon: instances, their evaluators, alerts, and how a result flows.

`Runtime` is what the scheduler, the heartbeat timer, the HTTP API and the CLI's `--once`
pass all talk to: `ingest()` takes one result through evaluation, the state writer, the
event hooks and alerting, in that order, then re-judges the composites its check is in.

Its other jobs have modules of their own: `ownership.py` (which instances this daemon
runs, taken over from the store), `conditions.py` (alerts no probe produces) and
`reload.py` (a new configuration applied).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from watchkeeper.engine.alerting import events
from watchkeeper.engine.alerting.alerts import Alert, AlertChange
from watchkeeper.engine.config.instances import Instance
from watchkeeper.engine.plugins import Registry
from watchkeeper.engine.run.conditions import RuntimeConditions
from watchkeeper.engine.run.evaluate import UP, AlertBook, Evaluator
from watchkeeper.engine.run.ownership import RuntimeOwnership
from watchkeeper.engine.run.probe import Result
from watchkeeper.engine.run.reload import RuntimeReload
from watchkeeper.engine.run.writer import StateWriter
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.state.store import Row, StateStore

log = logging.getLogger("watchkeeper.runtime")

ChangeHandler = Callable[[list[AlertChange]], Awaitable[None]]


def result_row(
    instance: Instance, result: Result, at: float, flat: dict[str, float] | None = None
) -> Row:
    """Return the stored form of a result (`flat`: its `flat_metrics()`, if at hand)."""
    data: dict[str, Any] = {
        "ok": result.ok,
        "duration": round(result.duration, 6),
        "metrics": result.flat_metrics() if flat is None else flat,
    }
    if result.message:
        data["message"] = result.message[:2000]
    return Row(key=instance.key, at=at, data=data)


class Runtime(RuntimeOwnership, RuntimeConditions, RuntimeReload):
    """Everything the daemon knows while it runs, and the path of a result through it."""

    def __init__(
        self,
        config: Any,
        reg: Registry,
        store: StateStore,
        clock: Clock,
        *,
        base_dir: Path,
        writer: StateWriter | None = None,
    ):
        self.config = config
        self.reg = reg
        self.store = store
        self.clock = clock
        self.base_dir = base_dir
        self.writer = writer or StateWriter(store)
        self.book = AlertBook()
        self.instances: dict[str, Instance] = {}
        self.evaluators: dict[str, Evaluator] = {}
        self.latest: dict[str, dict[str, Any]] = {}  # instance -> last result summary
        self.change_handlers: list[ChangeHandler] = []
        # in-process listeners of every result (metrics): plain functions, called inline
        self.result_handlers: list[Callable[[Instance, Result, float], None]] = []
        self.started_at = time.time()
        self.severities = list(config.severities)
        self.composites: dict[str, list[str]] = {}  # member instance -> composite instances
        self.replica: str | None = None  # set when daemons share the store
        self.owns: Callable[[str], bool] = lambda key: True
        self.all_instances: dict[str, Instance] = {}
        self.remote_down: dict[str, bool] = {}  # up state of instances other replicas own
        # checks run from several locations (locations.py)
        self.location: str | None = None  # where this daemon stands (`run --location`)
        self.owns_at: Callable[[str, str], bool] = lambda key, loc: loc == self.location
        self.live_locations: Callable[[], set[str]] = lambda: {self.location} - {None}
        self.remote_states: dict[str, dict[str, Any]] = {}  # other replicas' location runs
        self.where: dict[str, dict[str, Any]] = {}  # located check -> who sees what
        self._judged: dict[str, tuple] = {}  # located check -> the states last judged
        self._missing: set[str] = set()  # locations already reported as having no replica

    # -- composites -------------------------------------------------------------------------

    def _index_composites(self) -> None:
        self.composites = {}
        for key, instance in self.instances.items():
            if instance.probe_type != "composite":
                continue
            for member in self.composite_members(instance):
                self.composites.setdefault(member, []).append(key)

    def composite_members(self, instance: Instance) -> list[str]:
        """Return the member instance keys a composite instance watches."""
        from watchkeeper.engine.run.composite import members_of

        return members_of(instance, self.all_instances or self.instances)

    # -- the path of a result ---------------------------------------------------------------

    async def ingest(
        self, instance: Instance, result: Result, at: float | None = None
    ) -> list[AlertChange]:
        """Evaluate a result, queue its writes, tell listeners and alerting; return changes."""
        at = self.clock.now() if at is None else at
        # NaN and infinities have no JSON form and compare as nothing: a probe's odd value
        # is dropped here once, rather than breaking a store batch later
        if not all(math.isfinite(v) for v in result.metrics.values()):
            result.metrics = {k: v for k, v in result.metrics.items() if math.isfinite(v)}
        if not all(math.isfinite(s.value) for s in result.samples):
            result.samples = [s for s in result.samples if math.isfinite(s.value)]
        evaluator = self.evaluators.get(instance.key)
        if evaluator is None or self.instances.get(instance.key) is not instance:
            return []  # the check was removed or replaced by a reload while it ran
        was_down = evaluator.down
        changes = evaluator.evaluate(result, at)
        changes += evaluator.settle(at)
        flat = result.flat_metrics()  # one copy, for the stored row and `latest`
        latest = self.latest[instance.key] = {
            "at": at,
            "ok": result.ok,
            "message": result.message,
            "duration": result.duration,
            "metrics": flat,
        }
        self.writer.append("results", result_row(instance, result, at, flat))
        for handler in self.result_handlers:
            handler(instance, result, at)
        doc = evaluator.state_doc()
        if instance.parent is not None:
            # a location's run: what it saw goes to its check's judge, wherever that runs;
            # its own verdicts are never alerts
            doc["latest"] = {**latest, "message": (result.message or "")[:500]}
            changes = []
        elif instance.locations is not None:
            where = self.where.get(instance.key)
            for alert in [c.alert for c in changes] + self.book.open_for(instance.key):
                alert.locations = where
        self.writer.put("check_state", instance.key, doc)
        await self._changed(changes)
        await events.emit(
            self.reg.manager,
            "watchkeeper_result",
            check=instance.check,
            environment=instance.environment,
            result=result,
        )
        for composite in self.composites.get(instance.key, ()):
            # judged when a member goes down or comes back, and once at the first result
            # of any member, so a healthy composite shows up rather than never having run
            if evaluator.down != was_down or composite not in self.latest:
                await self.evaluate_composite(composite, at)
        if instance.parent is not None and instance.parent in self.instances:
            await self.judge_located(instance.parent, at)
        return changes

    async def judge_located(self, key: str, at: float) -> None:
        """Judge a check run from several locations on what they last saw; nothing is
        ingested when no location has anything new to say."""
        from watchkeeper.engine.run.locations import verdict

        instance = self.instances.get(key)
        if instance is None or instance.locations is None:
            return
        seen = self.location_states(instance, announce=True)
        signature = tuple((s.location, s.status, s.at) for s in seen)
        if self._judged.get(key) == signature:
            return
        self._judged[key] = signature
        if all(s.at is None for s in seen):
            return  # nothing has run anywhere yet: the check stays unknown
        result, self.where[key] = verdict(instance, seen)
        await self.ingest(instance, result, at)

    def location_states(
        self,
        instance: Instance,
        docs: dict[str, dict[str, Any]] | None = None,
        *,
        announce: bool = False,
    ) -> list[Any]:
        """What each location of a located check last saw (unknown without a replica);
        runs another replica made are read from `docs` (stored states), by default from
        those this daemon last read. Judging `announce`s a location losing or regaining
        its last replica in the log; pages and the API only read."""
        from watchkeeper.engine.run.locations import seen_of

        live = self.live_locations()
        seen = []
        for location, key in zip(instance.locations.from_, instance.location_keys, strict=True):
            evaluator = self.evaluators.get(key)
            if evaluator is not None:
                doc = {**evaluator.state_doc(), "latest": self.latest.get(key)}
            else:
                doc = (self.remote_states if docs is None else docs).get(key)
            seen.append(seen_of(location, doc, live=location in live))
            if not announce:
                continue
            if location not in live and location not in self._missing:
                self._missing.add(location)
                log.warning(
                    f"no replica in {location}",
                    extra={"location": location, "check": instance.key},
                )
            elif location in live and location in self._missing:
                self._missing.discard(location)
                log.info(f"a replica is in {location} again", extra={"location": location})
        return seen

    async def _changed(self, changes: list[AlertChange]) -> None:
        if not changes:
            return
        for change in changes:
            self.writer.put("alerts", change.alert.id, change.alert.to_doc())
            log.log(
                logging.WARNING if change.kind in ("firing", "flapping") else logging.INFO,
                f"alert {change.kind}",
                extra={
                    "alert": change.alert.id,
                    "check": change.alert.instance,
                    "rule": change.alert.rule,
                    "severity": change.alert.severity,
                    "summary": change.alert.summary,
                },
            )
            await events.emit(self.reg.manager, "watchkeeper_alert_changed", alert=change.alert)
        for handler in self.change_handlers:
            await handler(changes)

    async def evaluate_composite(self, key: str, at: float) -> None:
        """Re-judge a composite check from its members' current `up` state."""
        instance = self.instances.get(key)
        if instance is None:
            return
        from watchkeeper.engine.run.composite import judge

        members = self.composite_members(instance)
        down = [m for m in members if self.instance_down(m)]
        heard = self.latest.keys() | self.remote_down.keys()
        unknown = [m for m in members if m not in heard and m not in down]
        status, message = judge(instance.options, members, down, unknown)
        result = Result(
            ok=status != "down",
            message=message,
            metrics={
                "failing": float(len(down)),
                "failing_ratio": len(down) / len(members) if members else 0.0,
            },
        )
        await self.ingest(instance, result, at)

    # -- alerts -----------------------------------------------------------------------------

    def save_alert(self, alert: Alert) -> None:
        """Queue an alert's current state for the store (after an ack, a note...)."""
        self.writer.put("alerts", alert.id, alert.to_doc())

    def instance_down(self, key: str) -> bool:
        evaluator = self.evaluators.get(key)
        if evaluator is None:
            return self.remote_down.get(key, False)
        return evaluator.down

    def rule_alert(self, key: str, rule: str = UP) -> Alert | None:
        return self.book.get_open(key, rule)
