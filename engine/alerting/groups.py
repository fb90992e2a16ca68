"""Routes and groups: which routes an alert meets and the group of each that holds it.

An alert enters the group of each route it matches (`group_by`, default check and
environment). A new group is sent after `group_wait`; a changed group at most every
`group_interval`. A group that told an alert remembers what it told, so that it hears the
alert's change (a new severity, its resolution) after the alert has moved on to another
route or group (DESIGN.md Semantics ► Notification).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.alerting.routing import Subject, matching_routes


@dataclass
class Group:
    """Alerts one route sends together; `members` remembers what each was last sent as."""

    key: str
    route: int
    fields: dict[str, Any]
    created_at: float
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    due_at: float | None = None
    repeat_at: float | None = None

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Group:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


class Grouping:
    """The groups of this replica: which alerts each holds, and when each is due."""

    def _groups_of(self, alert: Alert) -> list[Group]:
        """Return the groups of this replica that hold an alert."""
        return [g for g in self.groups.values() if alert.id in g.members]

    def _told(self, group: Group, member: dict[str, Any]) -> bool:
        """True when the group's notifiers may have heard of this member: its notice went
        out, or the group was restored after a crash and its notice may be queued."""
        return member.get("status") is not None or group.key in self._restored

    def _left(self, group: Group, alert: Alert, routes: list[int] | None = None) -> bool:
        """True when an alert no longer belongs to a group it is in: its route no longer
        matches it (its severity changed), or the group was for its former severity."""
        if group.route not in (self.routes_for(alert) if routes is None else routes):
            return True
        return "severity" in group.fields and group.fields["severity"] != alert.severity

    def routes_for(self, alert: Alert) -> list[int]:
        subject = Subject(
            kind="alert",
            severity=alert.severity,
            check=alert.check,
            environment=alert.environment,
            labels=alert.labels,
            rule=alert.rule,
        )
        return matching_routes(self.config.routes, subject, self.config.severities)

    def _notified(self, alert: Alert) -> bool:
        if alert.announced_at is not None or alert.notified_at is not None:
            return True
        if self.outbox.has_pending(alert.id):
            return True
        return any(g.members.get(alert.id, {}).get("status") for g in self.groups.values())

    def _drop_unsent(self, alert: Alert) -> None:
        for group in list(self.groups.values()):
            member = group.members.get(alert.id)
            if member is not None and member.get("status") is None:
                del group.members[alert.id]
                self._save_group(group)
        self.held.discard(alert.id)

    def _group_values(self, index: int, alert: Alert) -> dict[str, Any]:
        values = {}
        for name in self.config.routes[index].group_by:
            if name.startswith("labels."):
                values[name] = alert.labels.get(name[7:])
            elif name == "route":
                values[name] = index
            else:
                values[name] = getattr(alert, name, None)
        return values

    def _group_key(self, index: int, alert: Alert) -> str:
        values = self._group_values(index, alert)
        key = f"{index}|" + "|".join(f"{k}={v}" for k, v in sorted(values.items()))
        return f"{self.replica}|{key}" if self.replica else key

    def _group_for(self, index: int, alert: Alert, now: float) -> Group:
        key = self._group_key(index, alert)
        group = self.groups.get(key)
        if group is None:
            values = self._group_values(index, alert)
            group = self.groups[key] = Group(key=key, route=index, fields=values, created_at=now)
        return group

    def _schedule(self, group: Group, now: float) -> None:
        route = self.config.routes[group.route]
        if group.first_sent_at is None:
            due = group.created_at + route.group_wait
        else:
            due = max(now, (group.last_sent_at or now) + route.group_interval)
        if group.due_at is None or due < group.due_at:
            group.due_at = due
            self._timer(due, "group", group.key)
        self._save_group(group)

    def _save_group(self, group: Group) -> None:
        if group.members:
            self.runtime.writer.put("groups", group.key, group.to_doc())
        else:
            self.groups.pop(group.key, None)
            self.runtime.writer.delete("groups", group.key)

    def _flushed_since_start(self, group: Group) -> None:
        if self._restored.pop(group.key, False) is not False and not self._restored:
            self.outbox.forget_found_at_start()  # every restored group has been checked

    def _told_by_routes(self, alert: Alert) -> dict[str, Group | None]:
        """The route notifiers told of an alert, with the group that told them (None for
        one another replica's group told: this one took the check over)."""
        told: dict[str, Group | None] = {}
        groups = self._groups_of(alert)
        for group in groups:
            if not self._told(group, group.members[alert.id]):
                continue
            if group.route < len(self.config.routes):
                for name in self.config.routes[group.route].notify:
                    told.setdefault(name, group)
        if not groups and self._notified(alert):
            # another replica grouped and told it: the routes it meets stand for theirs
            for index in self.routes_for(alert):
                for name in self.config.routes[index].notify:
                    told.setdefault(name, None)
        return told
