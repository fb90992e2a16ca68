"""Cross-section rules of alerting: routes, escalation policies, maintenance windows and
notifier templates.

Part of `cross_check` (crossref.py).
"""

from __future__ import annotations

import fnmatch
from typing import Any

GROUP_FIELDS = {"check", "environment", "severity", "rule", "route"}


class AlertingRules:
    """The rules of `routes`, `escalation`, `maintenance` and notifiers' `templates`.

    A part of the checker in crossref.py, which supplies the configuration, the names
    defined in the file and the helpers that report problems: `error`, `warn`, `ref`,
    `refs`, `severity` and `check_ref`.
    """

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
