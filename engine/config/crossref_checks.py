"""Cross-section rules of checks: severities, environments, dependencies and their cycles,
composite members, `${env.…}` references, and thresholds on metrics the check reports.

Part of `cross_check` (crossref.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from watchkeeper.engine.config import loader
from watchkeeper.engine.config.problems import Problem
from watchkeeper.engine.config.validation import mark_at
from watchkeeper.engine.observe.redaction import secret_value
from watchkeeper.engine.run.declared_metrics import rule_problems
from watchkeeper.engine.schedule.timetable import runs_per_week


class CheckRules:
    """The rules of `checks` (and of an SLO's metric, which is its check's).

    A part of the checker in crossref.py, which supplies the configuration, the names
    defined in the file and the helpers that report problems: `error`, `warn`, `ref`,
    `refs`, `severity` and `check_ref`.
    """

    def check(self, name: str, check: Any):
        path = ("checks", name)
        probe = self.reg.types["probe"].get(check.probe)
        self.severity(check.severity, (*path, "severity"))
        if check.environments:
            self.refs(
                check.environments,
                self.names["environments"],
                "environment",
                (*path, "environments"),
            )
        if check.locations is not None:
            self.locations(check, probe, (*path, "locations"))
        if getattr(probe, "passive", False) and check.schedule is not None:
            self.error(
                (*path, "schedule"),
                f"a {check.probe} check has no `schedule`: it is "
                "evaluated when its inputs change"
                + (
                    " (use `expect_every` for when beats are due)"
                    if check.probe == "heartbeat"
                    else ""
                ),
                key=True,
            )
        for index, dep in enumerate(check.depends_on):
            if dep == name:
                self.error((*path, "depends_on", index), "a check cannot depend on itself")
            else:
                self.check_ref(dep, (*path, "depends_on", index))
        if check.probe == "composite":
            for index, member in enumerate(check.of):
                if member.split("@")[0] == name:
                    self.error((*path, "of", index), "a composite check cannot include itself")
                else:
                    self.check_ref(member, (*path, "of", index))
        tiers: dict[str, tuple[int, Any]] = {}
        written = _walk_or_none(self.loaded.data, (*path, "thresholds")) if probe else None
        for index, rule in enumerate(check.thresholds):
            rpath = (*path, "thresholds", index)
            self.severity(rule.severity, (*rpath, "severity"))
            rid = rule.rule_id
            if rid == "up":
                self.error(
                    (*rpath, "name"),
                    "`up` is the implicit rule of every check; choose another name",
                )
            first = tiers.get(rid)
            if first is None:
                tiers[rid] = (index, rule)
            elif (first[1].metric, first[1].direction) != (rule.metric, rule.direction):
                self.error(
                    rpath,
                    f"tiers of rule {rid!r} must share one metric and one "
                    f"direction: thresholds[{first[0]}] is {first[1].metric} "
                    f"{first[1].direction}, this is {rule.metric} {rule.direction}",
                )
            elif first[1].severity == rule.severity:
                self.warn(rpath, f"rule {rid!r} has two tiers of severity {rule.severity!r}")
            if rule.metric in ("error_rate", "uptime"):
                self.rate_rule(check, rule, rpath)
            if probe is not None:
                raw = written[index] if type(written) is list and index < len(written) else None
                self.declared_metric(check, probe, rule, rpath, raw)
        if check.probe == "heartbeat":
            self.ping_id(name, check)

    def locations(self, check: Any, probe: Any, path: tuple):
        """A located check needs a quorum its locations can reach, and a probe that runs
        on a schedule from anywhere (not a passive or host-scoped one)."""
        spec = check.locations
        seen: set[str] = set()
        for index, location in enumerate(spec.from_):
            if location in seen:
                self.error((*path, "from", index), f"location {location!r} is listed twice")
            seen.add(location)
        if spec.quorum is not None and spec.quorum > len(spec.from_):
            self.error(
                (*path, "quorum"),
                f"quorum {spec.quorum} is more than the {len(spec.from_)} location(s) in "
                "`from`: the check could never alert",
            )
        if probe is not None and getattr(probe, "passive", False):
            self.error(
                path,
                f"a {check.probe} check is not run from anywhere: it has no `locations`",
                key=True,
            )
        elif probe is not None and getattr(probe, "scope", "global") == "host":
            self.error(
                path,
                f"a {check.probe} check watches the host of each replica: it has no `locations`",
                key=True,
            )

    def ping_id(self, name: str, check: Any):
        """A `ping_id` names one instance: not another check's, not the project's
        `server.ping_key`, not shared by the instances of several environments."""
        value = secret_value(getattr(check, "ping_id", None))
        if not value or "${env." in value:
            return
        path = ("checks", name, "ping_id")
        seen = self.ping_ids
        # messages name checks, never the value: it is a secret
        if len(check.environments or []) > 1:
            self.error(
                path,
                "a check with several environments needs a ping_id per instance: "
                "take it from the environment with ${env.…}",
            )
        if value in seen:
            self.error(path, f"check {seen[value]!r} has the same ping_id: each needs its own")
        else:
            seen[value] = name
        if value == secret_value(self.config.server.ping_key):
            self.error(path, "ping_id is the same as server.ping_key: choose another")

    def declared_metric(self, check: Any, probe: type, rule: Any, path: tuple, raw: Any):
        """A rule must name a metric the check reports, in a unit and with labels it has.

        `raw` is the rule as written, which tells the unit its value was written in."""
        found = rule_problems(check.probe, probe, check, rule, raw)
        if found is None:
            if check.probe not in self.unchecked:
                self.unchecked.add(check.probe)
                where = (*path, "metric")
                self.notes.append(
                    Problem.at(
                        mark_at(self.loaded, where),
                        loader.dotted(where),
                        f"probe {check.probe!r} declares no metrics; thresholds on it are "
                        "not checked",
                        "warning",
                    )
                )
            return
        for sub, message, key in found:
            self.error((*path, *sub), message, key=key)

    def slo_metric(self, slo: Any, path: tuple):
        check = self.checks.get(slo.check.partition("@")[0])
        probe = self.reg.types["probe"].get(check.probe) if check is not None else None
        if slo.metric is None or probe is None:
            return
        rule = SimpleNamespace(
            metric=slo.metric,
            where={},
            agg=None,
            window=None,
            above=slo.above,
            below=slo.below,
        )
        found = rule_problems(
            check.probe, probe, check, rule, _walk_or_none(self.loaded.data, path)
        )
        for sub, message, key in found or ():
            self.error((*path, *sub), message, key=key)

    def rate_rule(self, check: Any, rule: Any, path: tuple):
        if rule.window is None:
            self.error(path, f"{rule.metric} is computed over a `window`; add e.g. window: 15m")
            return
        runs = self.runs_in(check, rule.window)
        if runs is None or runs <= 0:
            return
        weight = 1.0 / runs
        limit = rule.above if rule.metric == "error_rate" and rule.above is not None else None
        if limit is None and rule.below is not None:
            limit = 1.0 - rule.below if rule.metric == "uptime" else None
        # runs are an average (a cron's runs over a week): said to people as a round number
        from watchkeeper.engine.config.problems import about

        if limit is not None and weight > limit:
            from watchkeeper.schema.units import format_duration

            self.warn(
                path,
                f"one failed run moves {rule.metric} by {weight:.0%} over "
                f"{format_duration(rule.window)} (about {about(runs)} runs), more than the "
                f"{limit:.1%} threshold: a single failure fires it; lengthen the window "
                "or run the check more often",
            )
        minimum = rule.min_samples or check.min_samples or self.config.defaults.min_samples or 5
        if runs < minimum:
            # 4.7 runs is not "about 5 runs, fewer than 5": keep the decimals that say why
            count = about(runs) if int(runs + 0.5) < minimum else f"{int(runs * 100) / 100:g}"
            self.warn(
                path,
                f"the window holds about {count} runs, fewer than min_samples "
                f"({minimum}): this rule can never change the alert",
            )

    def runs_in(self, check: Any, window: float) -> float | None:
        schedule = check.schedule or self.config.defaults.schedule
        if schedule is None:
            return window / 300.0  # the built-in default: every 5m
        if schedule.every:
            return window / schedule.every
        return runs_per_week(schedule.cron, schedule.timezone or "UTC") * window / WEEK

    def env_references(self):
        for path, key in self.loaded.env_refs:
            if len(path) < 2 or path[0] != "checks" or path[1] not in self.checks:
                self.error(
                    path,
                    f"${{env.{key}}} is only available in the fields of a check "
                    "that lists `environments`",
                )
                continue
            environments = self.checks[path[1]].environments or []
            if not environments:
                self.error(path, f"${{env.{key}}} needs the check to list `environments`")
            for env in environments:
                values = self.config.environments.get(env)
                if values is not None and key not in values:
                    self.error(
                        path,
                        f"environment {env!r} has no key {key!r} "
                        f"(it has: {', '.join(sorted(values)) or 'none'})",
                    )

    def dependency_cycles(self):
        checks = self.checks
        graph = {}
        for name, check in checks.items():
            parents = (dep.partition("@")[0] for dep in check.depends_on)
            graph[name] = [parent for parent in parents if parent in checks]
        state: dict[str, int] = {}  # 1: on the path being walked, 2: done
        reported: set[frozenset] = set()
        for root in graph:
            if root in state:
                continue
            # depth first without recursion: a chain of thousands of checks is fine
            path, pending = [root], [iter(graph[root])]
            state[root] = 1
            while pending:
                dep = next(pending[-1], None)
                if dep is None:
                    state[path.pop()] = 2
                    pending.pop()
                elif state.get(dep) == 1:
                    self.cycle(path, dep, reported)
                elif dep not in state:
                    state[dep] = 1
                    path.append(dep)
                    pending.append(iter(graph[dep]))

    def cycle(self, path: list[str], dep: str, reported: set[frozenset]):
        cycle = [*path[path.index(dep) :], dep]
        key = frozenset(cycle)
        if key in reported:
            return
        reported.add(key)
        node = path[-1]
        written = self.checks[node].depends_on
        index = written.index(next(d for d in written if d.partition("@")[0] == dep))
        self.error(
            ("checks", node, "depends_on", index),
            "depends_on forms a cycle: " + " -> ".join(cycle),
        )


WEEK = 7 * 86400.0


def _walk_or_none(data: Any, path: tuple) -> Any:
    try:
        for part in path:
            data = data[part]
    except (KeyError, IndexError, TypeError):
        return None
    return data
