"""Rules across sections: every name referenced exists, severities are declared, no cycles.

These run after schema validation, on the validated model, and point each problem at
the value in the file that is wrong. This module holds the checker, its reporting
helpers and the order the rules run in; the rules themselves are by section:
`crossref_checks.py`, `crossref_alerting.py` and `crossref_backups.py`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from watchkeeper.engine.config import loader
from watchkeeper.engine.config.crossref_alerting import AlertingRules
from watchkeeper.engine.config.crossref_backups import BackupRules
from watchkeeper.engine.config.crossref_checks import CheckRules, _walk_or_none
from watchkeeper.engine.config.local_paths import local_path_problems
from watchkeeper.engine.config.problems import Problem
from watchkeeper.engine.config.validation import mark_at
from watchkeeper.engine.plugins import Registry


class _Checker(CheckRules, AlertingRules, BackupRules):
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
        self.ping_ids: dict[str, str] = {}  # a heartbeat's ping_id -> the check that has it
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
        self.severity(c.server.intake_severity, ("server", "intake_severity"))
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


def _raw_names(data: Any, path: tuple) -> set[str]:
    node = _walk_or_none(data, path)
    return {str(k) for k in node} if isinstance(node, dict) else set()


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
