"""Routes and groups: which routes an alert meets and the group of each that holds it.

An alert enters the group of each route it matches (`group_by`, default check and
environment). A new group is sent after `group_wait`; a changed group at most every
`group_interval`. A group that told an alert remembers what it told, so that it hears the
alert's change (a new severity, its resolution) after the alert has moved on to another
route or group (DESIGN.md Semantics ► Notification).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.alerting.outbox import Outbox
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
    """The groups of this replica: which alerts each holds, and when each is due.

    `timer(at, kind, key)` asks the alerting loop to wake then: a group is due to send
    (`group`) or to repeat (`repeat`); `GroupSender` sends it.
    """

    def __init__(self, runtime: Any, outbox: Outbox, timer: Callable[[float, str, str], None]):
        self.runtime = runtime
        self.outbox = outbox
        self.timer = timer
        self.groups: dict[str, Group] = {}
        # groups read from the store that have not flushed since: key -> their stored
        # last_sent_at (see `GroupSender._queued_before_restart`)
        self.restored: dict[str, float | None] = {}
        self.replica: str | None = None  # set when daemons share the store

    @property
    def config(self) -> Any:
        return self.runtime.config

    async def restore(self) -> None:
        """Read this replica's groups from the store, and the alerts they still hold."""
        store = self.runtime.store
        prefix = f"{self.replica}|" if self.replica else ""
        for key, doc in (await store.get_all("groups")).items():
            # with replicas, each keeps its own groups (keyed by its name)
            if key.startswith(prefix) and key not in self.groups:
                group = self.groups[key] = Group.from_doc(doc)
                if group.due_at is not None:
                    # it was about to send: until it next flushes, notices queued after its
                    # last stored send may be ones it sent without storing that it did
                    self.restored[key] = group.last_sent_at
        if not self.restored:
            self.outbox.forget_found_at_start()  # nothing to check them against
        for group in self.groups.values():
            for alert_id in group.members:
                if alert_id not in self.runtime.book.by_id:
                    # e.g. a resolution still waiting for its group when the daemon stopped
                    doc = await store.get("alerts", alert_id)
                    if doc is not None:
                        self.runtime.book.by_id[alert_id] = Alert.from_doc(doc)
            if group.due_at is not None:
                self.timer(group.due_at, "group", group.key)
            if group.repeat_at is not None:
                self.timer(group.repeat_at, "repeat", group.key)

    def enter(self, alert: Alert, routes: list[int], now: float) -> None:
        """Put an alert in the groups of the routes it meets (`routes`), and have the
        groups it left say its change if they told it before."""
        keys = {self._group_key(index, alert): index for index in routes}
        # an alert this replica never grouped was told by another one (which died, or
        # handed the check over): the routes it meets now stand for those that heard it
        tracked = bool(self.groups_of(alert))
        for group in list(self.groups.values()):
            member = group.members.get(alert.id)
            if member is None or group.key in keys or group.route >= len(self.config.routes):
                continue  # (a group of a route a reload removed goes at its next flush)
            if not self.left(group, alert, routes) and alert.status != "resolved":
                continue  # (a group a reload re-keyed still owes the resolution it told)
            if self.told(group, member):
                # it was told here: it hears the change (the alert's new severity, its
                # resolution) though the alert now belongs to another route or group
                self._schedule(group, now)
            else:
                del group.members[alert.id]  # never told here: it leaves quietly
                self.save(group)
        for key, index in keys.items():
            group = self.groups.get(key)
            member = group.members.get(alert.id) if group is not None else None
            if (
                alert.status == "resolved"
                and tracked
                and (group is None or member is None or not self.told(group, member))
            ):
                # a route it reached only now, or whose group had not spoken yet: nobody
                # there heard it fire, so nobody there hears it resolve
                if group is not None and member is not None:
                    del group.members[alert.id]
                    self.save(group)
                continue
            group = self._group_for(index, alert, now)
            group.members.setdefault(
                alert.id, {"status": None, "severity": None, "flapping": False}
            )
            self._schedule(group, now)

    def groups_of(self, alert: Alert) -> list[Group]:
        """Return the groups of this replica that hold an alert."""
        return [g for g in self.groups.values() if alert.id in g.members]

    def told(self, group: Group, member: dict[str, Any]) -> bool:
        """True when the group's notifiers may have heard of this member: its notice went
        out, or the group was restored after a crash and its notice may be queued."""
        return member.get("status") is not None or group.key in self.restored

    def left(self, group: Group, alert: Alert, routes: list[int] | None = None) -> bool:
        """True when an alert no longer belongs to a group it is in: its route no longer
        matches it (its severity changed), or the group was for its former severity."""
        if group.route not in (self.routes_for(alert) if routes is None else routes):
            return True
        return "severity" in group.fields and group.fields["severity"] != alert.severity

    def routes_for(self, alert: Alert) -> list[int]:
        """Return the indexes of the routes an alert meets, as it is now."""
        subject = Subject(
            kind="alert",
            severity=alert.severity,
            check=alert.check,
            environment=alert.environment,
            labels=alert.labels,
            rule=alert.rule,
        )
        return matching_routes(self.config.routes, subject, self.config.severities)

    def notified(self, alert: Alert) -> bool:
        """True when anyone may have heard of the alert (or is about to)."""
        if alert.announced_at is not None or alert.notified_at is not None:
            return True
        if self.outbox.has_pending(alert.id):
            return True
        return any(g.members.get(alert.id, {}).get("status") for g in self.groups.values())

    def drop_unsent(self, alert: Alert) -> None:
        """Take an alert out of the groups that have not told it yet."""
        for group in list(self.groups.values()):
            member = group.members.get(alert.id)
            if member is not None and member.get("status") is None:
                del group.members[alert.id]
                self.save(group)

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
            self.timer(due, "group", group.key)
        self.save(group)

    def save(self, group: Group) -> None:
        """Store a group, or forget it when it holds no alert."""
        if group.members:
            self.runtime.writer.put("groups", group.key, group.to_doc())
        else:
            self.groups.pop(group.key, None)
            self.runtime.writer.delete("groups", group.key)

    def flushed_since_start(self, group: Group) -> None:
        """A group has flushed: a restored one no longer needs the notices found queued."""
        if self.restored.pop(group.key, False) is not False and not self.restored:
            self.outbox.forget_found_at_start()  # every restored group has been checked

    def told_by_routes(self, alert: Alert) -> dict[str, Group | None]:
        """The route notifiers told of an alert, with the group that told them (None for
        one another replica's group told: this one took the check over)."""
        told: dict[str, Group | None] = {}
        groups = self.groups_of(alert)
        for group in groups:
            if not self.told(group, group.members[alert.id]):
                continue
            if group.route < len(self.config.routes):
                for name in self.config.routes[group.route].notify:
                    told.setdefault(name, group)
        if not groups and self.notified(alert):
            # another replica grouped and told it: the routes it meets stand for theirs
            for index in self.routes_for(alert):
                for name in self.config.routes[index].notify:
                    told.setdefault(name, None)
        return told
