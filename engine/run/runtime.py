"""The running state of the daemon: instances, their evaluators, alerts, and how a result flows.

`Runtime` is what the scheduler, the heartbeat timer, the HTTP API and the CLI's `--once`
pass all talk to: `ingest()` takes one result through evaluation, the state writer, the
event hooks and alerting, in that order.
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
from watchkeeper.engine.config.instances import Instance, expand, split_key
from watchkeeper.engine.plugins import Registry
from watchkeeper.engine.run.evaluate import UP, AlertBook, Evaluator, Point
from watchkeeper.engine.run.probe import Result
from watchkeeper.engine.run.writer import StateWriter
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.state.store import Row, StateStore

log = logging.getLogger("watchkeeper.runtime")

ChangeHandler = Callable[[list[AlertChange]], Awaitable[None]]


def result_row(instance: Instance, result: Result, at: float) -> Row:
    """Return the stored form of a result."""
    data: dict[str, Any] = {
        "ok": result.ok,
        "duration": round(result.duration, 6),
        "metrics": result.flat_metrics(),
    }
    if result.message:
        data["message"] = result.message[:2000]
    return Row(key=instance.key, at=at, data=data)


class Runtime:
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

    # -- set-up -----------------------------------------------------------------------------

    async def load(self) -> None:
        """Build instances and restore counters, open alerts and history from the store."""
        self.all_instances = expand(self.config, self.reg, replica=self.replica)
        self.instances = {k: i for k, i in self.all_instances.items() if self.mine(k)}
        self.book = AlertBook()
        await self._adopt(set(self.instances))
        self._index_composites()
        if self.replica is None:
            # alerts of checks that no longer exist (removed while the daemon was down)
            await self._resolve_orphans("check removed from monitor.yaml")

    def mine(self, key: str) -> bool:
        """True when this daemon runs (and alerts for) an instance or internal condition.

        A `key~replica` instance (a host-scoped check, a replica's own notifier alert)
        belongs to that replica; every other key to its rendezvous owner.
        """
        if "~" in key:
            return self.replica is not None and key.endswith("~" + self.replica)
        return self.owns(key)

    async def _adopt(self, keys: set[str]) -> None:
        """Take over instances: their counters, open alerts and recent history."""
        if not keys and self.replica is not None:
            return  # standing down, or nothing moved here: nothing to read
        states = await self.store.get_all("check_state")
        alerts = await self.store.get_all("alerts")
        for doc in alerts.values():
            if doc.get("status") == "resolved":
                continue
            alert = Alert.from_doc(doc)
            # a check's alerts go with its instance; the daemon's own (a failing notifier,
            # a backup, an SLO) with whoever owns their key
            ours = (
                alert.instance in keys
                if alert.source == "check"
                else (self.mine(alert.instance) and alert.instance not in self.instances)
            )
            if ours and alert.id not in self.book.by_id:
                self.book.add(alert)
        span = max((self.instances[k].window_needed() for k in keys), default=0.0)
        history = await self._history(keys, span)
        for key in keys:
            instance = self.instances[key]
            state = states.get(key) or {}
            self.evaluators[key] = Evaluator(
                instance, self.severities, self.book, state, history.get(key, ())
            )
            if state.get("last_at") is not None:
                self.latest[key] = {"at": state["last_at"], "ok": state.get("last_ok")}

    async def _history(self, keys: set[str], span: float) -> dict[str, list[Point]]:
        """Read the stored results of these instances over the last `span` seconds."""
        history: dict[str, list[Point]] = {}
        if span:
            since = self.clock.now() - span
            for row in await self.store.read("results", since=since):
                if row.key in keys:
                    history.setdefault(row.key, []).append(
                        Point(row.at, bool(row.data.get("ok")), row.data.get("metrics") or {})
                    )
        return history

    def _release(self, keys: set[str]) -> None:
        """Let go of instances another replica now owns (their alerts stay as they are)."""
        for key in keys:
            self.evaluators.pop(key, None)
            self.latest.pop(key, None)
            self.instances.pop(key, None)
            for alert in self.book.open_for(key):
                self.book.close(alert)
                self.book.by_id.pop(alert.id, None)

    async def rebalance(self) -> tuple[set[str], set[str]]:
        """Re-split instances after a membership change; return (gained, lost)."""
        owned = {k for k in self.all_instances if self.mine(k)}
        gained, lost = owned - set(self.instances), set(self.instances) - owned
        self._release(lost)
        for alert in list(self.book.open.values()):
            if alert.source != "check" and not self.mine(alert.instance):
                self.book.close(alert)  # another replica answers for it now
                self.book.by_id.pop(alert.id, None)
        for key in gained:
            self.instances[key] = self.all_instances[key]
        await self._adopt(gained)
        self._index_composites()
        return gained, lost

    async def refresh_remote(self) -> None:
        """Read the `up` state of parents and composite members another replica owns."""
        wanted = set()
        for instance in self.instances.values():
            wanted.update(p for p in instance.depends_on if p not in self.instances)
            if instance.probe_type == "composite":
                wanted.update(
                    m for m in self.composite_members(instance) if m not in self.instances
                )
        down = {}
        for key in wanted:
            doc = await self.store.get("check_state", key) or {}
            down[key] = bool(((doc.get("rules") or {}).get(UP) or {}).get("active"))
        self.remote_down = down

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
        self.latest[instance.key] = {
            "at": at,
            "ok": result.ok,
            "message": result.message,
            "duration": result.duration,
            "metrics": result.flat_metrics(),
        }
        self.writer.append("results", result_row(instance, result, at))
        for handler in self.result_handlers:
            handler(instance, result, at)
        self.writer.put("check_state", instance.key, evaluator.state_doc())
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
        return changes

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

    async def condition(
        self,
        rule: str,
        *,
        active: bool,
        severity: str,
        summary: str,
        check: str = "watchkeeper",
        environment: str | None = None,
        labels: dict[str, str] | None = None,
        runbook: str | None = None,
        replica: str | None = None,
    ) -> Alert | None:
        """Raise or clear an alert that no probe produces (a failing notifier, a backup...).

        It goes through the same holds, routes and escalation as a check's alerts.
        """
        from watchkeeper.engine.alerting.alerts import new_alert_id
        from watchkeeper.engine.config.instances import instance_key

        now = self.clock.now()
        key = instance_key(check, environment) + (f"~{replica}" if replica else "")
        if not self.mine(key):
            # another replica answers for this condition: hand it over through the store
            self.writer.put(
                "conditions",
                f"{key}|{rule}",
                {
                    "rule": rule,
                    "active": active,
                    "severity": severity,
                    "summary": summary,
                    "check": check,
                    "environment": environment,
                    "labels": labels or {},
                    "runbook": runbook,
                    "at": now,
                },
            )
            return None
        alert = self.book.get_open(key, rule)
        changes: list[AlertChange] = []
        if active and alert is None:
            alert = Alert(
                id=new_alert_id(),
                check=check,
                environment=environment,
                rule=rule,
                severity=severity,
                status="firing",
                summary=summary,
                started_at=now,
                updated_at=now,
                fired_at=now,
                labels=dict(labels or {}),
                runbook=runbook,
                severity_history=[[now, severity]],
                source="internal",
                replica=replica,
            )
            self.book.add(alert)
            changes.append(AlertChange(alert, "firing"))
        elif active and alert is not None:
            alert.summary, alert.updated_at = summary, now
            if alert.severity != severity:
                previous, alert.severity = alert.severity, severity
                changes.append(AlertChange(alert, "severity", previous))
            else:
                self.save_alert(alert)
        elif not active and alert is not None:
            alert.status, alert.resolved_at, alert.updated_at = "resolved", now, now
            alert.resolve_reason = summary
            self.book.close(alert)
            changes.append(AlertChange(alert, "resolved"))
        await self._changed(changes)
        return alert

    async def _resolve_orphans(self, reason: str) -> None:
        now = self.clock.now()
        orphans = [
            a
            for a in list(self.book.open.values())
            if a.source == "check" and a.instance not in self.instances
        ]
        changes = []
        for alert in orphans:
            alert.status, alert.resolved_at, alert.updated_at = "resolved", now, now
            alert.resolve_reason = reason
            self.book.close(alert)
            changes.append(AlertChange(alert, "resolved" if alert.fired_at else "discarded"))
        await self._changed(changes)

    # -- reload -----------------------------------------------------------------------------

    async def apply(self, config: Any) -> tuple[list[str], list[str], list[str]]:
        """Switch to a new configuration; return (added, removed, changed) instance keys.

        Instances whose definition did not change keep their evaluator (counters, history);
        changed ones keep their alerts and counters where the rules still exist; removed
        ones have their open alerts resolved with the reason.
        """
        self.all_instances = expand(config, self.reg, replica=self.replica)
        new_instances = {k: i for k, i in self.all_instances.items() if self.mine(k)}
        added = [k for k in new_instances if k not in self.instances]
        removed = [k for k in self.instances if k not in self.all_instances]
        for key in [
            k for k in self.instances if k not in new_instances and k in self.all_instances
        ]:
            self._release({key})
        changed = [
            k
            for k, i in new_instances.items()
            if k in self.instances and self.instances[k].fingerprint != i.fingerprint
        ]
        now = self.clock.now()
        changes: list[AlertChange] = []
        for key in removed:
            changes += self.evaluators[key].resolve_all(now, "check removed from monitor.yaml")
            del self.evaluators[key]
            self.latest.pop(key, None)
            self.writer.delete("check_state", key)
        self.config = config
        self.severities = list(config.severities)
        # a changed check whose rules now look further back than its history reaches:
        # the older part comes from the store, as it would after a restart
        longer = {
            k: new_instances[k].window_needed()
            for k in changed
            if k in self.evaluators and new_instances[k].window_needed() > self.evaluators[k].span
        }
        stored = await self._history(set(longer), max(longer.values(), default=0.0))
        for key, instance in new_instances.items():
            old = self.evaluators.get(key)
            if old is not None and key not in changed:
                old.instance = instance
                continue
            state = old.state_doc() if old is not None else None
            history: Any = old.history if old is not None else ()
            if key in longer:
                kept = list(history)
                first = kept[0].at if kept else float("inf")
                history = [p for p in stored.get(key, ()) if p.at < first] + kept
            evaluator = Evaluator(instance, self.severities, self.book, state, history)
            if old is not None:
                # rules that no longer exist resolve; the rest keep counting
                for rid in set(old.rules) - set(evaluator.rules):
                    alert = self.book.get_open(key, rid)
                    if alert is not None:
                        old.rules[rid].active = False
                        changes.append(
                            old._resolve(
                                alert, old.rules[rid], now, "rule removed from monitor.yaml"
                            )
                        )
            self.evaluators[key] = evaluator
        self.instances = new_instances
        self._index_composites()
        await self._changed(changes)
        return added, removed, changed

    # -- views ------------------------------------------------------------------------------

    def check_status(self) -> list[dict[str, Any]]:
        """Return each instance's current state for `status`, /health and the status page."""
        rows = []
        for key, instance in sorted(self.instances.items()):
            latest = self.latest.get(key, {})
            open_alerts = self.book.open_for(key)
            firing = [a for a in open_alerts if a.status == "firing"]
            status = (
                "unknown"
                if not latest
                else ("down" if self.instance_down(key) else ("degraded" if firing else "up"))
            )
            check, environment = split_key(key)
            rows.append(
                {
                    "check": check,
                    "environment": environment,
                    "status": status,
                    "probe": instance.probe_type,
                    "last_run": latest.get("at"),
                    "ok": latest.get("ok"),
                    "message": latest.get("message"),
                    "alerts": [a.public() for a in open_alerts],
                    "labels": instance.labels,
                }
            )
        return rows
