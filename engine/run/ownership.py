"""Which check instances this daemon runs, and taking them over: at start-up, and when
replicas come or go.

Taking an instance over restores its counters, open alerts and recent history from the
store, so it goes on as it was under the daemon that ran it before. Part of `Runtime`
(runtime.py).
"""

from __future__ import annotations

from watchkeeper.engine.alerting.alerts import Alert, AlertChange
from watchkeeper.engine.config.instances import expand, location_of
from watchkeeper.engine.run.evaluate import UP, AlertBook, Evaluator, Point


class RuntimeOwnership:
    """The instances this daemon owns: loaded, adopted from the store, released, rebalanced.

    A part of `Runtime`, which supplies the configuration, store, clock, instances,
    evaluators and alert book used here.
    """

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
        location = location_of(key)
        if location is not None:
            # a check's run from a location: one replica there runs it
            return self.owns_at(key, location)
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
            # a location's run judges only its own `up`, for its check's judging
            # instance: its verdicts are never alerts, so they go to a book of their own
            book = self.book if instance.parent is None else AlertBook()
            evaluator = self.evaluators[key] = Evaluator(
                instance, self.severities, book, state, history.get(key, ())
            )
            # a replica killed between storing a firing alert and its rule's counters
            # leaves the alert open with a rule state that says inactive: the alert is
            # the truth, or its recovery would never resolve it
            for alert in book.open_for(key):
                if alert.status != "firing":
                    continue
                if alert.rule != UP and alert.rule not in evaluator.tiers:
                    continue
                rule = evaluator.rule(alert.rule)
                if not rule.active:
                    rule.active, rule.severity, rule.alert_id = True, alert.severity, alert.id
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
        located = {
            run
            for instance in self.instances.values()
            for run in instance.location_keys
            if run not in self.instances
        }
        down, states = {}, {}
        for key in wanted | located:
            doc = await self.store.get("check_state", key) or {}
            down[key] = bool(((doc.get("rules") or {}).get(UP) or {}).get("active"))
            if key in located:
                states[key] = doc
        self.remote_down = down
        self.remote_states = states

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
