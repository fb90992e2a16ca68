"""Switching the running daemon to a reloaded configuration without losing what it knows.

Part of `Runtime` (runtime.py). A reload of ten thousand checks is long work for the event
loop, which goes on probing and answering meanwhile: the work is done in slices, each
ending at a `Slices.checkpoint()` that lets the loop run, and the switch itself (new
evaluators, instances and composites in place) is one step that never waits, so a result
arriving during a reload meets either the old configuration or the new one, never a mix.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel

from watchkeeper.engine.alerting.alerts import AlertChange
from watchkeeper.engine.config.instances import Instance, expand
from watchkeeper.engine.run.evaluate import AlertBook, Evaluator

SLICE = 0.01
"""Seconds of work a reload does before it lets the event loop run."""


class Slices:
    """Cut long work on the event loop into slices of about `budget` seconds."""

    def __init__(self, budget: float = SLICE):
        self.budget = budget
        self.started = time.perf_counter()
        self.yields = 0  # how many times the work let the loop run

    async def checkpoint(self) -> None:
        """Let the event loop run if this slice has taken its time."""
        if time.perf_counter() - self.started >= self.budget:
            await anyio.lowlevel.checkpoint()
            self.yields += 1
            self.started = time.perf_counter()


def same(old: Instance, new: Instance) -> bool:
    """Whether a check instance runs and is judged exactly as before. The fingerprint
    masks secrets (a changed password dumps as the same stars), hence the options too."""
    return old.fingerprint == new.fingerprint and (
        old.options is new.options or old.options == new.options
    )


class RuntimeReload:
    """A new configuration applied: instances added, changed and removed, counters kept.

    A part of `Runtime`, which supplies the instances, evaluators, alert book, state
    writer and ownership used here.
    """

    async def apply(
        self,
        config: Any,
        instances: dict[str, Instance] | None = None,
        slices: Slices | None = None,
    ) -> tuple[list[str], list[str], list[str]]:
        """Switch to a new configuration; return (added, removed, changed) instance keys.

        `instances` are the config's, already expanded (a reload builds them off the event
        loop). An instance that did not change stays the very object it was (its job, its
        evaluator and the probe workers keep it; the new copy is let go), changed ones
        keep their alerts and counters where the rules still exist; removed ones have
        their open alerts resolved with the reason.
        """
        slices = slices or Slices()
        if instances is None:
            instances = expand(config, self.reg, replica=self.replica)
        # one pass over ten thousand checks, in slices: each a look-up or two per check
        new_instances: dict[str, Instance] = {}
        added: list[str] = []
        changed: list[str] = []
        for key, instance in instances.items():
            old = self.all_instances.get(key) or self.instances.get(key)
            if old is not None and same(old, instance):
                instance = instances[key] = old
            if self.mine(key):
                new_instances[key] = instance
                running = self.instances.get(key)
                if running is None:
                    added.append(key)
                elif running.fingerprint != instance.fingerprint:
                    changed.append(key)
            await slices.checkpoint()
        removed, given_up = [], []  # gone from the config; still in it, another's now
        for key in list(self.instances):
            if key not in instances:
                removed.append(key)
            elif key not in new_instances:
                given_up.append(key)
            await slices.checkpoint()
        # a changed check whose rules now look further back than its history reaches:
        # the older part comes from the store, as it would after a restart
        longer = {
            k: new_instances[k].window_needed()
            for k in changed
            if k in self.evaluators and new_instances[k].window_needed() > self.evaluators[k].span
        }
        stored = await self._history(set(longer), max(longer.values(), default=0.0))
        severities = list(config.severities)
        fresh: dict[str, Evaluator] = {}
        for key in (*added, *changed):
            old = self.evaluators.get(key)
            fresh[key] = self._evaluator(key, new_instances[key], old, severities, stored)
            await slices.checkpoint()
        # found before the switch (in slices): kept evaluators whose instance is replaced
        retarget = []
        for key, instance in new_instances.items():
            evaluator = self.evaluators.get(key)
            if key not in fresh and evaluator is not None and evaluator.instance is not instance:
                retarget.append(key)
            await slices.checkpoint()
        # the switch: one step, no waiting
        now = self.clock.now()
        changes: list[AlertChange] = []
        for key in given_up:
            self._release({key})
        for key in removed:
            changes += self.evaluators[key].resolve_all(now, "check removed from monitor.yaml")
            del self.evaluators[key]
            self.latest.pop(key, None)
            self.writer.delete("check_state", key)
        for key, evaluator in fresh.items():
            old = self.evaluators.get(key)
            if old is not None:
                changes += self._resolve_dropped(key, old, evaluator, now)
            self.evaluators[key] = evaluator
        for key in retarget:
            # kept evaluators of checks whose secrets alone changed run the new instance
            evaluator = self.evaluators.get(key)
            if evaluator is not None:
                evaluator.instance = new_instances[key]
        self.config = config
        self.severities = severities
        self.all_instances = instances
        self.instances = new_instances
        self._judged.clear()  # located checks are judged afresh on their next result
        self._index_composites()
        await self._changed(changes)
        return added, removed, changed

    def _evaluator(
        self,
        key: str,
        instance: Instance,
        old: Evaluator | None,
        severities: list[str],
        stored: dict[str, Any],
    ) -> Evaluator:
        state = old.state_doc() if old is not None else None
        history: Any = old.history if old is not None else ()
        if key in stored:
            kept = list(history)
            first = kept[0].at if kept else float("inf")
            history = [p for p in stored.get(key, ()) if p.at < first] + kept
        # a location's run never raises alerts of its own (locations.py)
        book = self.book if instance.parent is None else AlertBook()
        return Evaluator(instance, severities, book, state, history)

    def _resolve_dropped(
        self, key: str, old: Evaluator, new: Evaluator, now: float
    ) -> list[AlertChange]:
        """Resolve the alerts of rules that no longer exist; the rest keep counting."""
        changes = []
        for rid in set(old.rules) - set(new.rules):
            alert = self.book.get_open(key, rid)
            if alert is not None:
                old.rules[rid].active = False
                changes.append(
                    old._resolve(alert, old.rules[rid], now, "rule removed from monitor.yaml")
                )
        return changes
