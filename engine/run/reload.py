"""Switching the running daemon to a reloaded configuration without losing what it knows.

Part of `Runtime` (runtime.py).
"""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.alerts import AlertChange
from watchkeeper.engine.config.instances import expand
from watchkeeper.engine.run.evaluate import AlertBook, Evaluator


class RuntimeReload:
    """A new configuration applied: instances added, changed and removed, counters kept.

    A part of `Runtime`, which supplies the instances, evaluators, alert book, state
    writer and ownership used here.
    """

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
            # a location's run never raises alerts of its own (locations.py)
            book = self.book if instance.parent is None else AlertBook()
            evaluator = Evaluator(instance, self.severities, book, state, history)
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
        self._judged.clear()  # located checks are judged afresh on their next result
        self._index_composites()
        await self._changed(changes)
        return added, removed, changed
