"""Rules across sections: every name referenced exists, severities are declared, no cycles.

These run after schema validation, on the validated model, and point each problem at
the value in the file that is wrong.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from watchkeeper.engine.config import loader
from watchkeeper.engine.config.local_paths import local_path_problems
from watchkeeper.engine.config.problems import Problem
from watchkeeper.engine.config.validation import mark_at
from watchkeeper.engine.plugins import Registry
from watchkeeper.engine.run.declared_metrics import rule_problems
from watchkeeper.engine.schedule.timetable import runs_per_week

GROUP_FIELDS = {"check", "environment", "severity", "rule", "route"}


class _Checker:
    def __init__(self, config: Any, loaded: loader.Loaded, reg: Registry):
        self.config = config
        self.loaded = loaded
        self.reg = reg
        self.problems: list[Problem] = []
        # about a plugin rather than the file: `--strict` leaves them warnings
        self.notes: list[Problem] = []
        # about the machine or the alert's behaviour rather than the file's meaning (a
        # local path missing on this host, a burn alert on a seldom check): `validate
        # --strict` refuses them, a daemon or command running the file does not
        self.advice: list[Problem] = []
        self.unchecked: set[str] = set()
        self.severities = list(config.severities)
        self.checks = config.checks
        self.instances = {
            f"{name}@{env}" for name, c in self.checks.items() for env in (c.environments or [])
        }
        # names defined in the file, including entries dropped for their own schema errors
        # (so that a reference to them is not reported a second time)
        self.names = {
            section: set(getattr(config, section) or {}) | _raw_names(loaded.data, (section,))
            for section in ("checks", "notifiers", "actions", "escalation", "environments")
        }
        for group in ("jobs", "destinations"):
            self.names[group] = set(getattr(config.backups, group)) | _raw_names(
                loaded.data, ("backups", group)
            )

    # -- helpers ---------------------------------------------------------------------------

    def error(self, path: tuple, message: str, *, level: str = "error", key: bool = False):
        self.problems.append(
            Problem.at(
                mark_at(self.loaded, path, value=not key), loader.dotted(path), message, level
            )
        )  # type: ignore[arg-type]

    def warn(self, path: tuple, message: str):
        self.error(path, message, level="warning")

    def refs(self, names: Iterable[str], known: Iterable[str], what: str, path: tuple):
        known = list(known)
        for index, name in enumerate(names):
            self.ref(name, known, what, (*path, index))

    def ref(self, name: str, known: Iterable[str], what: str, path: tuple):
        known = list(known)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(sorted(known)) or "none defined"
            self.error(path, f"unknown {what} {name!r}{hint} (defined: {listing})")

    def severity(self, value: str | None, path: tuple):
        if value is None or value in self.severities:
            return
        close = difflib.get_close_matches(value, self.severities, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.error(
            path,
            f"severity {value!r} is not declared{hint} (severities: {', '.join(self.severities)})",
        )

    def check_ref(self, name: str, path: tuple, what: str = "check"):
        if name in self.names["checks"] or name in self.instances:
            return
        if "@" in name and name.split("@")[0] in self.names["checks"] - set(self.checks):
            return
        known = list(self.names["checks"])
        close = difflib.get_close_matches(name.split("@")[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.error(path, f"unknown {what} {name!r}{hint}")

    # -- rules -----------------------------------------------------------------------------

    def run(self) -> list[Problem]:
        c = self.config
        self.severity(c.defaults.severity, ("defaults", "severity"))
        if len(set(self.severities)) != len(self.severities):
            self.error(("severities",), "severities must be unique")
        for name, check in self.checks.items():
            self.check(name, check)
        self.dependency_cycles()
        self.env_references()
        self.routes()
        for name, levels in c.escalation.items():
            self.escalation(name, levels)
        for index, window in enumerate(c.maintenance):
            self.maintenance(index, window)
        for name, task in c.tasks.items():
            self.refs(task.notify, self.names["notifiers"], "notifier", ("tasks", name, "notify"))
        self.backups()
        self.advice += local_path_problems(c, self.loaded)
        for name, slo in c.slos.items():
            path = ("slos", name)
            self.check_ref(slo.check, (*path, "check"))
            self.slo_metric(slo, path)
            if slo.alert:
                self.severity(slo.alert.severity, (*path, "alert", "severity"))
        if c.slos:
            from watchkeeper.engine.reports.slo import (
                slo_warnings,  # only files with SLOs pay for it
            )

            self.advice += slo_warnings(c, self.loaded)
        for name, notifier in c.notifiers.items():
            self.notifier(name, notifier)
        return self.problems

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

    def routes(self):
        c = self.config
        for index, route in enumerate(c.routes):
            path = ("routes", index)
            self.refs(route.notify, self.names["notifiers"], "notifier", (*path, "notify"))
            if route.escalate is not None:
                self.ref(
                    route.escalate,
                    self.names["escalation"],
                    "escalation policy",
                    (*path, "escalate"),
                )
            match = route.match
            severities = (
                match.severity
                if isinstance(match.severity, list)
                else ([match.severity] if match.severity else [])
            )
            for s in severities:
                self.severity(
                    s.removeprefix(">=").removeprefix("<=").strip(), (*path, "match", "severity")
                )
            envs = (
                match.environment
                if isinstance(match.environment, list)
                else ([match.environment] if match.environment else [])
            )
            for e in envs:
                if e not in self.names["environments"]:
                    self.error((*path, "match", "environment"), f"unknown environment {e!r}")
            checks = (
                match.check
                if isinstance(match.check, list)
                else ([match.check] if match.check else [])
            )
            for pattern in checks:
                if not any(
                    fnmatch.fnmatchcase(n, pattern) for n in [*self.checks, *self.instances]
                ):
                    self.warn((*path, "match", "check"), f"no check matches {pattern!r}")
            for g_index, g in enumerate(route.group_by):
                if g not in GROUP_FIELDS and not g.startswith("labels."):
                    self.error(
                        (*path, "group_by", g_index),
                        f"cannot group by {g!r}; expected "
                        f"{', '.join(sorted(GROUP_FIELDS))} or labels.<name>",
                    )
            if not route.notify and not route.escalate:
                self.warn(
                    path,
                    "this route notifies no one (no `notify`, no `escalate`): "
                    "what it matches is dropped",
                )

    def escalation(self, name: str, levels: list[Any]):
        path = ("escalation", name)
        if not levels:
            self.error(path, "an escalation policy needs at least one level")
        previous = -1.0
        for index, level in enumerate(levels):
            lpath = (*path, index)
            self.refs(level.notify, self.names["notifiers"], "notifier", (*lpath, "notify"))
            self.refs(level.actions, self.names["actions"], "action", (*lpath, "actions"))
            if level.after < previous:
                self.error((*lpath, "after"), "levels must be in order of `after`")
            previous = level.after
            if level.repeat is not None and index != len(levels) - 1:
                self.error((*lpath, "repeat"), "only the last level may `repeat`")
            if not level.notify and not level.actions:
                self.warn(lpath, "this level neither notifies nor runs an action")

    def maintenance(self, index: int, window: Any):
        path = ("maintenance", index)
        c = self.config
        if window.start is not None and window.end is not None and window.end <= window.start:
            self.error((*path, "end"), "the window must end after it starts")
        if window.duration is not None and window.duration <= 0:
            self.error((*path, "duration"), "the duration must be longer than 0s")
        for c_index, name in enumerate(window.checks):
            self.check_ref(name, (*path, "checks", c_index))
        self.refs(
            window.environments, self.names["environments"], "environment", (*path, "environments")
        )
        self.refs(window.backups, self.names["jobs"], "backup job", (*path, "backups"))
        if window.announce:
            self.refs(
                window.announce.notify,
                self.names["notifiers"],
                "notifier",
                (*path, "announce", "notify"),
            )
        names = [w.name for w in c.maintenance]
        if names.count(window.name) > 1 and names.index(window.name) != index:
            self.error((*path, "name"), f"window name {window.name!r} is used twice")

    def backups(self):
        b = self.config.backups
        for name, job in b.jobs.items():
            path = ("backups", "jobs", name)
            self.refs(job.to, self.names["destinations"], "destination", (*path, "to"))
            self.severity(job.severity, (*path, "severity"))
            if job.encrypt:
                for r_index, recipient in enumerate(job.encrypt.recipients):
                    if not recipient.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
                        self.error(
                            (*path, "encrypt", "recipients", r_index),
                            "expected an age public key (age1...) or an SSH public key",
                        )
        for name, drill in b.drills.items():
            path = ("backups", "drills", name)
            self.severity(drill.severity, (*path, "severity"))
            job = b.jobs.get(drill.job)
            if job is None:
                self.ref(drill.job, self.names["jobs"], "backup job", (*path, "job"))
                continue
            source = self.reg.types["backup source"].get(job.source.type)
            restores_to = getattr(source, "restores_to", "database")
            if restores_to == "database" and drill.scratch_dsn is None:
                self.error(
                    path,
                    f"drill of {job.source.type} job {drill.job!r} needs "
                    "`scratch_dsn`: the server the copy is restored into",
                )
            if restores_to == "directory" and drill.scratch_dir is None and drill.verify:
                self.warn(
                    path,
                    "drills of file backups restore into a temporary directory; "
                    "`verify` checks cannot be pointed at it",
                )
            for v_index, check in enumerate(drill.verify):
                self.check_ref(check, (*path, "verify", v_index))

    def notifier(self, name: str, notifier: Any):
        allowed = getattr(type(notifier), "template_names", ())
        if not notifier.templates:
            return
        from jinja2 import TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment()
        for key, text in notifier.templates.items():
            path = ("notifiers", name, "templates", key)
            if key not in allowed:
                self.error(
                    path,
                    f"notifier type {notifier.type!r} has no template {key!r} "
                    f"(templates: {', '.join(allowed) or 'none'})",
                    key=True,
                )
                continue
            try:
                env.parse(text)
            except TemplateSyntaxError as exc:
                self.error(path, f"template syntax error on its line {exc.lineno}: {exc.message}")


WEEK = 7 * 86400.0


def _raw_names(data: Any, path: tuple) -> set[str]:
    node = _walk_or_none(data, path)
    return {str(k) for k in node} if isinstance(node, dict) else set()


def _walk_or_none(data: Any, path: tuple) -> Any:
    try:
        for part in path:
            data = data[part]
    except (KeyError, IndexError, TypeError):
        return None
    return data


def cross_check(
    config: Any,
    loaded: loader.Loaded,
    reg: Registry,
    notes: list[Problem] | None = None,
    advice: list[Problem] | None = None,
) -> list[Problem]:
    """Return every cross-reference problem of a schema-valid configuration.

    Warnings about a plugin rather than the file (a probe that declares no metrics) go to
    `notes` when given, which `--strict` does not turn into errors; warnings about this
    host or an alert's behaviour (a missing local path) go to `advice` when given, which
    only `validate --strict` turns into errors; else either joins the rest.
    """
    checker = _Checker(config, loaded, reg)
    problems = checker.run()
    for kept, found in ((notes, checker.notes), (advice, checker.advice)):
        if kept is None:
            problems += found
        else:
            kept.extend(found)
    return problems
