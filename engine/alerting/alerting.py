"""From alert changes to notices: holds, routes, groups, repeats, escalation, acks.

Exactly as DESIGN.md Semantics ► Notification and ► Escalation say:

- An alert is *held* (not notified) while a parent it depends on is down, while a mute
  window or a silence covers it, or (threshold alerts) while its own check is down. Held
  alerts are notified when the hold ends if they still fire.
- An alert enters the group of each route it matches (`group_by`, default check and
  environment). A new group is sent after `group_wait`; a changed group at most every
  `group_interval`; an unchanged firing group again every `repeat`. An alert that resolves
  before its group is first sent sends nothing.
- A policy's clock starts when an alert's first notice is actually delivered; a level runs
  when the clock reaches its `after` while the alert fires unacknowledged.
- A severity change routes the alert again: routes it meets now take it in (their policy
  starts with its first notice at that severity, or a running one stops when they have
  none); groups that told it before hear the change and the resolution, and no more.
- Whoever was told of an alert (a route's group or an escalation level) hears its
  resolution; those tracking incidents themselves (PagerDuty) hear its acknowledgement.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import anyio

from watchkeeper.engine.alerting import events
from watchkeeper.engine.alerting.alerts import Alert, AlertChange
from watchkeeper.engine.alerting.notice import (
    DETAIL_LIMIT,
    Notice,
    NoticeAlert,
    cut,
    new_notice_id,
    one_line,
)
from watchkeeper.engine.alerting.outbox import Delivery, Outbox
from watchkeeper.engine.alerting.routing import Subject, matching_routes
from watchkeeper.engine.run.evaluate import UP, render_value
from watchkeeper.engine.state.store import Row

log = logging.getLogger("watchkeeper.alerting")

NOTIFIED_KINDS = {"firing", "severity", "resolved", "flapping", "stable"}
RELEASE_INTERVAL = 30.0
POLL_INTERVAL = 2.0
INTERNAL_CHECK = "watchkeeper"


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


def notice_alert(
    alert: Alert, change: str | None = None, escalation: str | None = None
) -> NoticeAlert:
    """Return how a notice shows an alert."""
    public = alert.public()
    return NoticeAlert(
        id=alert.id,
        check=alert.check,
        environment=alert.environment,
        rule=alert.rule,
        severity=alert.severity,
        status="firing" if alert.status != "resolved" else "resolved",
        summary=alert.summary,
        started_at=public["started_at"],
        resolved_at=public["resolved_at"],
        duration=alert.duration,
        metric=alert.metric,
        value=alert.value,
        value_text=render_value(alert.metric, alert.value) if alert.value is not None else None,
        threshold=alert.threshold,
        threshold_text=render_value(alert.metric, alert.threshold)
        if alert.threshold is not None
        else None,
        direction=alert.direction,
        labels=dict(alert.labels),
        runbook=alert.runbook,
        description=alert.description,
        flapping=alert.flapping,
        acknowledged=alert.acked_at is not None,
        escalation=escalation,
        actions=list(alert.actions),
        change=change,
        reason=alert.resolve_reason if alert.status == "resolved" else None,
        # a threshold's value says what crossed; the probe's own words say about what
        detail=cut(one_line(alert.said), DETAIL_LIMIT) if alert.said and alert.metric else None,
    )


class Alerting:
    """Decide who hears about which alert, when; feed the outbox; run escalation levels."""

    def __init__(
        self, runtime: Any, outbox: Outbox, *, maintenance: Any = None, actions: Any = None
    ):
        self.runtime = runtime
        self.outbox = outbox
        self.maintenance = maintenance
        self.actions = actions
        self.clock = runtime.clock
        self.groups: dict[str, Group] = {}
        # groups read from the store that have not flushed since: key -> their stored
        # last_sent_at (see `_queued_before_restart`)
        self._restored: dict[str, float | None] = {}
        self.held: set[str] = set()
        # alert id -> notifiers a group has told of its resolution, while another group
        # that told it before still holds it (so a shared notifier hears it once)
        self._resolution_said: dict[str, set[str]] = {}
        # check instance -> when its last alert resolved (or was discarded): SLO burn-rate
        # alerts about it stay covered a while after (`_slo_cover`)
        self._check_resolved: dict[str, float] = {}
        self.silences: dict[str, Any] = {}
        self.timers: list[tuple[float, int, str, str]] = []
        self.counter = itertools.count()
        self._wake = anyio.Event()
        self._acks_seen: set[str] = set()
        self.last_boundary = self.clock.now()
        self.started_at = self.clock.now()
        self.last_announce = self.started_at - 3600  # catch an announcement just missed
        self.boundary_handlers: list[Any] = []  # async (at) -> None, when a window starts/ends
        self.replica: str | None = None  # set when daemons share the store
        outbox.on_sent.append(self._delivered)
        outbox.on_gave_up.append(self._gave_up)
        runtime.change_handlers.append(self.on_changes)

    @property
    def config(self) -> Any:
        return self.runtime.config

    # -- start-up ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Restore groups, silences and escalation timers from the store."""
        store = self.runtime.store
        prefix = f"{self.replica}|" if self.replica else ""
        for key, doc in (await store.get_all("groups")).items():
            # with replicas, each keeps its own groups (keyed by its name)
            if key.startswith(prefix) and key not in self.groups:
                group = self.groups[key] = Group.from_doc(doc)
                if group.due_at is not None:
                    # it was about to send: until it next flushes, notices queued after its
                    # last stored send may be ones it sent without storing that it did
                    self._restored[key] = group.last_sent_at
        if not self._restored:
            self.outbox.forget_found_at_start()  # nothing to check them against
        for group in self.groups.values():
            for alert_id in group.members:
                if alert_id not in self.runtime.book.by_id:
                    # e.g. a resolution still waiting for its group when the daemon stopped
                    doc = await store.get("alerts", alert_id)
                    if doc is not None:
                        self.runtime.book.by_id[alert_id] = Alert.from_doc(doc)
            if group.due_at is not None:
                self._timer(group.due_at, "group", group.key)
            if group.repeat_at is not None:
                self._timer(group.repeat_at, "repeat", group.key)
        await self.poll_requests()
        now = self.clock.now()
        for alert in list(self.runtime.book.open.values()):
            esc = alert.escalation
            if esc.get("next_at") is not None and not esc.get("stopped"):
                self._timer(esc["next_at"], "escalate", alert.id)
            if alert.status == "firing" and alert.held:
                self.held.add(alert.id)
        self._timer(now + RELEASE_INTERVAL, "release", "")

    def _timer(self, at: float, kind: str, key: str) -> None:
        heapq.heappush(self.timers, (at, next(self.counter), kind, key))
        self._wake.set()

    # -- holds ------------------------------------------------------------------------------

    def alert_fields(self, alert: Alert) -> dict[str, Any]:
        return {
            "check": alert.check,
            "environment": alert.environment,
            "rule": alert.rule,
            "severity": alert.severity,
            "instance": alert.instance,
            "labels": alert.labels,
        }

    def hold_reason(self, alert: Alert, at: float) -> str | None:
        """Return why an alert must not be notified now, or None."""
        instance = self.runtime.instances.get(alert.instance)
        if instance is not None:
            for parent in instance.depends_on:
                if self.runtime.instance_down(parent):
                    return f"blocked by {parent}"
            if alert.rule != UP and self.runtime.instance_down(alert.instance):
                return f"{alert.instance} is down"
        covered = self._slo_cover(alert)
        if covered is not None:
            return covered
        if self.maintenance is not None and alert.check != INTERNAL_CHECK:
            window = self.maintenance.muted(at, alert.check, alert.environment, alert.labels)
            if window is not None:
                return f"maintenance {window.name}"
        if self.silences:
            from watchkeeper.engine.alerting.silences import silenced_by

            silence = silenced_by(self.silences.values(), self.alert_fields(alert), at)
            if silence is not None:
                return f"silenced ({silence.id}: {silence.reason})"
        return None

    def _slo_cover(self, alert: Alert) -> str | None:
        """Hold an SLO burn-rate alert behind its check's own alerts: one outage, one page.

        It is held like a dependent while an alert of that check instance is open (pending
        or firing), and after the last one resolves until an SLO evaluation made more than
        COVER_WINDOW later still finds the budget burning; only then is it notified.
        """
        if alert.source != "internal" or not alert.check.startswith("slo:"):
            return None
        from watchkeeper.engine.reports.slo import COVER_WINDOW, covered_instance

        key = covered_instance(self.config, alert)
        if key is None:
            return None
        for other in self.runtime.book.open_for(key):
            if other.source == "check":
                return f"covered by {key}'s alert"
        resolved = self._check_resolved.get(key)
        if resolved is not None and alert.updated_at <= resolved + COVER_WINDOW:
            return f"covered by {key}'s alert (resolved; the burn must outlast it)"
        return None

    # -- alert changes ----------------------------------------------------------------------

    async def on_changes(self, changes: list[AlertChange]) -> None:
        now = self.clock.now()
        release = False
        for change in changes:
            alert = change.alert
            if change.kind in ("resolved", "discarded") and alert.source == "check":
                self._check_resolved[alert.instance] = now
            if change.kind == "discarded":
                self._drop_unsent(alert)
                continue
            if change.kind not in NOTIFIED_KINDS:
                continue
            await self.consider(alert, change.kind, now)
            if change.kind == "resolved":
                await self._resolve_escalation(alert, now)
                if alert.rule == UP:
                    release = True  # its children and its threshold alerts may be released
        if release:
            await self.release(now)
        self._wake.set()

    async def consider(self, alert: Alert, kind: str, now: float) -> None:
        """Route one alert change into its groups, unless it is held."""
        reason = self.hold_reason(alert, now) if alert.status == "firing" else None
        if reason != alert.held:
            alert.held = reason
            self.runtime.save_alert(alert)
        if alert.status == "firing" and reason is not None:
            if alert.id not in self.held:
                self.held.add(alert.id)
                self._event(alert, "held", reason)
            return
        self.held.discard(alert.id)
        if alert.status == "resolved" and not self._notified(alert):
            self._drop_unsent(alert)
            return
        routes = self.routes_for(alert)
        keys = {self._group_key(index, alert): index for index in routes}
        # an alert this replica never grouped was told by another one (which died, or
        # handed the check over): the routes it meets now stand for those that heard it
        tracked = bool(self._groups_of(alert))
        for group in list(self.groups.values()):
            member = group.members.get(alert.id)
            if member is None or group.key in keys or group.route >= len(self.config.routes):
                continue  # (a group of a route a reload removed goes at its next flush)
            if not self._left(group, alert, routes) and alert.status != "resolved":
                continue  # (a group a reload re-keyed still owes the resolution it told)
            if self._told(group, member):
                # it was told here: it hears the change (the alert's new severity, its
                # resolution) though the alert now belongs to another route or group
                self._schedule(group, now)
            else:
                del group.members[alert.id]  # never told here: it leaves quietly
                self._save_group(group)
        for key, index in keys.items():
            group = self.groups.get(key)
            member = group.members.get(alert.id) if group is not None else None
            if (
                alert.status == "resolved"
                and tracked
                and (group is None or member is None or not self._told(group, member))
            ):
                # a route it reached only now, or whose group had not spoken yet: nobody
                # there heard it fire, so nobody there hears it resolve
                if group is not None and member is not None:
                    del group.members[alert.id]
                    self._save_group(group)
                continue
            group = self._group_for(index, alert, now)
            group.members.setdefault(
                alert.id, {"status": None, "severity": None, "flapping": False}
            )
            self._schedule(group, now)
        if kind == "severity" and not routes and alert.status == "firing":
            # settled at this severity: a later change back finds its policy to resume
            alert.escalation["severity"] = alert.severity
            self._stop_escalation(alert, f"severity {alert.severity}: no route matches it")

    def _said_elsewhere(self, alert: Alert, group: Group, name: str, moved: set[str]) -> bool:
        """True when notifier `name` hears of this alert's change through another group."""
        if alert.status == "resolved" and name in self._resolution_said.get(alert.id, ()):
            return True  # another group has told it the resolution already
        if alert.id in moved or (alert.status == "resolved" and self._left(group, alert)):
            return self._said_by(alert, group, name)
        return False

    def _said_by(self, alert: Alert, moved_from: Group, name: str) -> bool:
        """True when a group the alert now belongs to speaks to notifier `name` about it:
        while it fires, that group's notice carries it; once resolved, only if that group
        told it (else it resolves there silently, and the old group must say it)."""
        for other in self._groups_of(alert):
            if other is moved_from or other.route >= len(self.config.routes):
                continue
            if self._left(other, alert) or name not in self.config.routes[other.route].notify:
                continue
            if alert.status == "firing" or self._told(other, other.members[alert.id]):
                return True
        return alert.status == "resolved" and name in self._resolution_said.get(alert.id, ())

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

    # -- sending ----------------------------------------------------------------------------

    async def flush(self, group: Group, now: float, *, repeat: bool = False) -> None:
        """Send what changed in a group (or, for a repeat, what still fires unacknowledged)."""
        if group.route >= len(self.config.routes):
            self.groups.pop(group.key, None)
            self.runtime.writer.delete("groups", group.key)
            return
        route = self.config.routes[group.route]
        book = self.runtime.book
        members: list[tuple[Alert, dict[str, Any], bool]] = []
        moved: set[str] = set()  # told here, now another route's or group's alert
        for alert_id, sent in list(group.members.items()):
            alert = book.by_id.get(alert_id)
            if alert is None:
                del group.members[alert_id]
                continue
            if alert.status == "firing" and self._left(group, alert):
                if not self._told(group, sent):
                    del group.members[alert_id]  # it belongs elsewhere and was never said here
                    continue
                moved.add(alert_id)
            reason = self.hold_reason(alert, now) if alert.status == "firing" else None
            if reason is not None:
                # held since it joined (a parent went down meanwhile): it waits for release
                if alert.id not in self.held:
                    alert.held = reason
                    self.held.add(alert.id)
                    self.runtime.save_alert(alert)
                    self._event(alert, "held", reason)
                continue
            changed = (
                sent.get("status") != _public_status(alert)
                or sent.get("severity") != alert.severity
                or bool(sent.get("flapping")) != alert.flapping
            )
            members.append((alert, sent, changed))
        # an alert that moved on is said here only when it changes (its new severity, its
        # resolution): its repeats and its place among the firing belong to its new group
        if repeat:
            chosen = [
                (a, s, True)
                for a, s, _ in members
                if a.status == "firing" and a.acked_at is None and a.id not in moved
            ]
        else:
            chosen = [
                m for m in members if m[2] or (m[0].status == "firing" and m[0].id not in moved)
            ]
        if not chosen or not any(c for _, _, c in chosen):
            group.due_at = None
            self._save_group(group)
            self._flushed_since_start(group)
            return
        # the alerts' state reaches the store before anyone hears about them: a replica
        # that takes over after a crash then knows what was announced
        for alert, _sent, _changed in chosen:
            if alert.status == "firing" and alert.announced_at is None:
                alert.announced_at = now
                self.runtime.save_alert(alert)
        await self.runtime.writer.flush()
        for name in route.notify:
            # an alert that moved on is said by its new group to a notifier both routes
            # share: #monitoring hears "high, was warning" once, and its resolution once
            told = [m for m in chosen if not self._said_elsewhere(m[0], group, name, moved)]
            if any(changed for _, _, changed in told):
                await self._send_group(name, group, route, told, now, repeat)
                for alert, _, _ in told:
                    if alert.status == "resolved":
                        self._resolution_said.setdefault(alert.id, set()).add(name)
        for alert, sent, _ in chosen:
            sent.update(_as_told(alert))
            if alert.status == "resolved":
                group.members.pop(alert.id, None)
                if not self._groups_of(alert):
                    self._resolution_said.pop(alert.id, None)  # every group has said it
        group.first_sent_at = group.first_sent_at or now
        group.last_sent_at, group.due_at = now, None
        unacked = [
            a
            for a, _, _ in chosen
            if a.status == "firing" and a.acked_at is None and a.id not in moved
        ]
        if route.repeat and unacked:
            group.repeat_at = now + route.repeat
            self._timer(group.repeat_at, "repeat", group.key)
        else:
            group.repeat_at = None
        self._save_group(group)
        self._flushed_since_start(group)
        if self.runtime.writer.degraded is None:
            # the group's record of what it said is stored now, not with the next batch, so
            # that a crash seldom finds notices sent and the record of them lost (a crash
            # that finds them still queued is mended by `_queued_before_restart`)
            await self.runtime.writer.flush()

    def _flushed_since_start(self, group: Group) -> None:
        if self._restored.pop(group.key, False) is not False and not self._restored:
            self.outbox.forget_found_at_start()  # every restored group has been checked

    def _queued_before_restart(
        self, name: str, group: Group, wanted: list[tuple[Alert, dict[str, Any], bool]]
    ) -> list[tuple[Alert, dict[str, Any], bool]]:
        """Leave out the changes a notice to `name`, queued by the previous run, already says.

        That run stored its notices and died before storing the group's record of them, so
        the group found them unsent. The outbox sends the queued notices (once more at
        most, Semantics ► Outbox); another notice about the same change, under a new key,
        would announce it twice.
        """
        queued = self.outbox.queued(group.key, name, since=self._restored[group.key])
        out = []
        for alert, sent, changed in wanted:
            if changed and queued.get(alert.id) == _as_told(alert):
                if alert.status == "resolved":
                    # a firing notice its run had collapsed may still be in the store
                    self.outbox.collapse(name, {alert.id})
                    continue
                changed = False  # still shown among the group's firing alerts, as before
            out.append((alert, sent, changed))
        return out

    def _tells(self, name: str, alert: Alert) -> bool:
        """True when notifier `name` hears about this alert as it is now."""
        options = self.config.notifiers.get(name)
        return (
            options is not None
            and (alert.status == "firing" or options.send_resolved)
            and alert.labels.get("failing_notifier") != name
        )

    async def _send_group(
        self,
        name: str,
        group: Group,
        route: Any,
        chosen: list[tuple[Alert, dict[str, Any], bool]],
        now: float,
        repeat: bool,
    ) -> None:
        options = self.config.notifiers.get(name)
        if options is None:
            return
        plugin = self.runtime.reg.types["notifier"].get(options.type)
        wanted = [(a, s, c) for a, s, c in chosen if self._tells(name, a)]
        if not repeat and group.key in self._restored:
            wanted = self._queued_before_restart(name, group, wanted)
        if not wanted or not any(c for _, _, c in wanted):
            return
        if plugin is not None and not getattr(plugin, "groups", True):
            # receivers that track incidents themselves get one event per changed alert
            for alert, sent, changed in wanted:
                if changed:
                    change = "repeat" if repeat else _change_word(alert, sent)
                    notice = self._notice([notice_alert(alert, change)], group, now)
                    await self.outbox.enqueue(name, notice, group=group.key)
            return
        collapsed = False
        if all(a.status == "resolved" for a, _, _ in wanted):
            collapsed = self.outbox.collapse(name, {a.id for a, _, _ in wanted})
        items = [notice_alert(a, "repeat" if repeat else _change_word(a, s)) for a, s, _ in wanted]
        notice = self._notice(items, group, now)
        notice.collapsed = collapsed
        await self.outbox.enqueue(name, notice, group=group.key)

    def _notice(
        self,
        items: list[NoticeAlert],
        group: Group | None,
        now: float,
        escalation: str | None = None,
    ) -> Notice:
        firing = [a for a in items if a.status == "firing"]
        rank = {s: i for i, s in enumerate(self.config.severities)}
        severity = min(
            (a.severity for a in (firing or items)), key=lambda s: rank.get(s, 99), default=None
        )
        from watchkeeper.engine.alerting.notice import headline_of

        for item in items:
            self._describe(item)
        level = self._escalation_level(items[0], escalation) if escalation and items else None
        return Notice(
            id=new_notice_id(),
            kind="alert",
            status="firing" if firing else "resolved",
            title=headline_of(items, severity, level or escalation)[:300],
            severity=severity,
            alerts=items,
            group=group.fields if group else {},
            created_at=now,
            route=group.route if group else None,
            escalation=escalation,
            escalation_level=level,
            dry_run=self.outbox.dry_run,
        )

    def _describe(self, item: NoticeAlert) -> None:
        """Word an alert as its check's config knows it: the metric in its unit (the
        check's `extract` says which), what the rule judges, the severity it came from."""
        from watchkeeper.engine.alerting.notice import DETAIL_LIMIT, cut
        from watchkeeper.engine.run.evaluate import measure_of, render_against

        check = self.config.checks.get(item.check)
        if item.crossed:
            tiers = [t for t in getattr(check, "thresholds", None) or [] if t.rule_id == item.rule]
            tier = next((t for t in tiers if t.severity == item.severity), None) or next(
                iter(tiers), None
            )
            item.value_text, item.threshold_text = render_against(
                item.metric,
                item.value,  # type: ignore[arg-type]
                item.threshold,  # type: ignore[arg-type]
                item.direction,
                getattr(check, "extract", None),
            )
            if tier is not None:
                item.measure = measure_of(tier)
                if tier.description:
                    item.detail = cut(tier.description, DETAIL_LIMIT)
        alert = self.runtime.book.by_id.get(item.id)
        if item.change == "severity" and alert is not None and len(alert.severity_history) > 1:
            item.previous_severity = alert.severity_history[-2][1]
        item.refresh()

    def _escalation_level(self, item: NoticeAlert, name: str) -> str | None:
        """Return the escalation step an alert is at, in words:
        `level 2 of standard (development): dev-team`."""
        alert = self.runtime.book.by_id.get(item.id)
        esc = alert.escalation if alert is not None else {}
        policy = esc.get("policy")
        levels = list(self.config.escalation.get(policy) or [])
        names = [level.name or f"level {i + 1}" for i, level in enumerate(levels)]
        index = esc.get("next", 0)
        if not (index < len(levels) and names[index] == name):
            if name not in names:
                return None
            index = names.index(name)
        level = levels[index]
        text = f"level {index + 1} of {policy}" + (f" ({level.name})" if level.name else "")
        return text + (f": {', '.join(level.notify)}" if level.notify else "")

    async def _delivered(self, delivery: Delivery, notice: Notice) -> None:
        """Start escalation clocks when an alert's first notice is actually delivered, and
        move them to another policy when its first notice at a new severity is."""
        if notice.kind != "alert" or notice.escalation is not None:
            return
        now = self.clock.now()
        for item in notice.alerts:
            alert = self.runtime.book.by_id.get(item.id)
            if alert is None or alert.status != "firing" or item.status != "firing":
                continue
            if item.change == "acknowledged":
                continue  # says nothing new about the alert
            changed = False
            if alert.notified_at is None:
                alert.notified_at = now
                self._event(alert, "notified", delivery.notifier)
                changed = True
            if self._follow_route(alert, notice.route, item.severity, now):
                changed = True
            if changed:
                self.runtime.save_alert(alert)
        key = INTERNAL_CHECK + (f"~{self.replica}" if self.replica else "")
        internal = self.runtime.book.get_open(key, f"notifier:{delivery.notifier}")
        if internal is not None:
            await self.runtime.condition(
                f"notifier:{delivery.notifier}",
                active=False,
                severity=internal.severity,
                summary="delivering again",
                replica=self.replica,
            )

    async def _gave_up(self, delivery: Delivery) -> None:
        """A receiver kept failing: alert through the other routes."""
        await self.runtime.condition(
            f"notifier:{delivery.notifier}",
            active=True,
            severity=self.config.severities[0],
            summary=f"notifier {delivery.notifier} failed to deliver a notice for "
            f"{delivery.attempts} attempts: {delivery.last_error}",
            labels={"failing_notifier": delivery.notifier},
            replica=self.replica,  # each replica reports its own failed deliveries
        )

    # -- escalation -------------------------------------------------------------------------

    async def escalate(self, alert_id: str, now: float) -> None:
        alert = self.runtime.book.by_id.get(alert_id)
        if alert is None or alert.status != "firing":
            return
        esc = alert.escalation
        if not esc or esc.get("stopped") or esc.get("next_at") is None or esc["next_at"] > now:
            return
        if alert.acked_at is not None:
            esc["stopped"] = "acknowledged"
            self.runtime.save_alert(alert)
            return
        levels = self.config.escalation.get(esc["policy"]) or []
        index = esc.get("next", 0)
        if index >= len(levels):
            return
        if self.hold_reason(alert, now):
            self._timer(now + RELEASE_INTERVAL, "escalate", alert.id)  # wait for the release
            return
        level = levels[index]
        name = level.name or f"level {index + 1}"
        self._event(alert, "escalated", name)
        log.warning(
            "alert escalated",
            extra={
                "alert": alert.id,
                "check": alert.instance,
                "policy": esc["policy"],
                "level": name,
            },
        )
        for action_name in level.actions:
            outcome = await self.run_action(action_name, alert, now)
            alert.actions.append(outcome)
        if level.notify:
            notice = self._notice(
                [notice_alert(alert, "escalation", name)], None, now, escalation=name
            )
            for notifier in level.notify:
                await self.outbox.enqueue(notifier, notice, group=f"escalation|{alert.id}")
            told = esc.setdefault("told", [])
            told += [n for n in level.notify if n not in told]
        if index + 1 < len(levels):
            esc["next"] = index + 1
            start = esc.get("started_at", alert.notified_at)
            esc["next_at"] = start + levels[index + 1].after  # type: ignore[operator]
        elif level.repeat:
            esc["next_at"] = now + level.repeat
        else:
            esc["next"], esc["next_at"] = index + 1, None
        if esc.get("next_at") is not None:
            self._timer(esc["next_at"], "escalate", alert.id)
        self.runtime.save_alert(alert)

    def _follow_route(self, alert: Alert, route: int | None, severity: str, now: float) -> bool:
        """Give the alert the escalation policy of the routes it meets now, when a notice
        at its current severity has reached one of them for the first time: start it
        (the first notice), switch to it (a severity change to a route with another
        policy), or stop the one running (its route has none). True when it changed.

        A policy's clock starts with that notice; its levels already run for this
        incident are not run again, and the levels other policies ran stay run (their
        notifiers hear the acknowledgement and the resolution).
        """
        esc = alert.escalation
        if severity != alert.severity or esc.get("severity") == alert.severity:
            return False  # a notice of a former severity, or this severity is settled
        routes = self.routes_for(alert)
        if route not in routes:
            return False  # a route it left, hearing the change: not its route now
        esc["severity"] = alert.severity
        if alert.acked_at is not None:
            return True  # acknowledged: nothing starts again for this incident
        policy = next(
            (
                self.config.routes[i].escalate
                for i in routes
                if self.config.routes[i].escalate in self.config.escalation
            ),
            None,
        )
        current = esc.get("policy")
        if policy is None:
            self._stop_escalation(
                alert, f"severity {alert.severity}: its route has no escalation policy"
            )
            return True
        if policy == current and not esc.get("stopped"):
            return True  # the same policy goes on, on its clock
        done = esc.setdefault("done", {})
        if current is not None and current in self.config.escalation:
            done[current] = max(done.get(current, 0), esc.get("next", 0))
        levels = self.config.escalation[policy]
        index = done.get(policy, 0)
        esc.pop("stopped", None)
        esc.update(policy=policy, started_at=now, next=index)
        esc["next_at"] = now + levels[index].after if index < len(levels) else None
        if esc["next_at"] is not None:
            self._timer(esc["next_at"], "escalate", alert.id)
        if current is not None:
            self._event(alert, "escalation policy", f"{policy} (severity {alert.severity})")
            log.warning(
                "escalation policy changed",
                extra={
                    "alert": alert.id,
                    "check": alert.instance,
                    "severity": alert.severity,
                    "policy": policy,
                    "previous": current,
                    "next_level": index + 1,
                },
            )
        return True

    def _stop_escalation(self, alert: Alert, reason: str) -> None:
        """Stop a running escalation for a reason other than acknowledgement; say so."""
        esc = alert.escalation
        policy = esc.get("policy")
        if policy is None or esc.get("stopped") or esc.get("next_at") is None:
            return  # nothing is running
        done = esc.setdefault("done", {})
        done[policy] = max(done.get(policy, 0), esc.get("next", 0))
        esc["stopped"], esc["next_at"] = reason, None
        self.runtime.save_alert(alert)
        self._event(alert, "escalation stopped", reason)
        log.warning(
            "escalation stopped",
            extra={"alert": alert.id, "check": alert.instance, "policy": policy, "reason": reason},
        )

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

    async def _resolve_escalation(self, alert: Alert, now: float) -> None:
        """Tell the notifiers an escalation level paged that the incident is over (a
        PagerDuty incident opened at level 3 must close too)."""
        routed = self._told_by_routes(alert)  # they hear it through their group
        for name in (alert.escalation or {}).get("told", []):
            options = self.config.notifiers.get(name)
            if name in routed or options is None or not options.send_resolved:
                continue
            notice = self._notice(
                [notice_alert(alert, "resolved")],
                None,
                now,
                escalation=alert.escalation.get("policy"),
            )
            await self.outbox.enqueue(name, notice, group=f"escalation|{alert.id}")

    async def run_action(self, name: str, alert: Alert, now: float) -> dict[str, Any]:
        if self.outbox.dry_run:
            log.info("dry run: action not run", extra={"action": name, "alert": alert.id})
            return {"name": name, "ok": True, "message": "dry run: not run", "at": now}
        if self.actions is None:
            return {"name": name, "ok": False, "message": "actions are not available", "at": now}
        outcome = await self.actions.run(name, alert, now)
        self._event(alert, "action", f"{name}: {'ok' if outcome['ok'] else 'failed'}")
        return outcome

    # -- acknowledgements and releases ------------------------------------------------------

    async def acknowledge(
        self, alert_id: str, by: str, comment: str | None = None, at: float | None = None
    ) -> Alert | None:
        """Acknowledge an incident: escalation and repeats stop; resolution still notifies."""
        alert = self.runtime.book.by_id.get(alert_id)
        if alert is None or not alert.open or alert.acked_at is not None:
            return alert
        alert.acked_by, alert.acked_at = by, at or self.clock.now()
        alert.ack_comment = comment
        if alert.escalation:
            alert.escalation["stopped"] = "acknowledged"
        self.runtime.save_alert(alert)
        self._event(alert, "acknowledged", by)
        log.info("alert acknowledged", extra={"alert": alert.id, "check": alert.instance, "by": by})
        # whoever was paged about it and tracks incidents itself (PagerDuty, Sentry) hears
        # of the acknowledgement: route notifiers and escalation levels' alike
        told: dict[str, Group | None] = dict(self._told_by_routes(alert))
        for name in (alert.escalation or {}).get("told", []):
            told.setdefault(name, None)
        for name, group in told.items():
            options = self.config.notifiers.get(name)
            plugin = options and self.runtime.reg.types["notifier"].get(options.type)
            if plugin is None or getattr(plugin, "groups", True):
                continue
            if alert.labels.get("failing_notifier") == name:
                continue
            item = notice_alert(alert, "acknowledged")
            if group is not None:
                notice = self._notice([item], group, alert.acked_at)
                await self.outbox.enqueue(name, notice, group=group.key)
            else:
                policy = alert.escalation.get("policy")
                notice = self._notice([item], None, alert.acked_at, escalation=policy)
                await self.outbox.enqueue(name, notice, group=f"escalation|{alert.id}")
        return alert

    async def release(self, now: float) -> None:
        """Notify held alerts whose hold has ended and that still fire."""
        for alert_id in list(self.held):
            alert = self.runtime.book.by_id.get(alert_id)
            if alert is None or alert.status != "firing":
                self.held.discard(alert_id)
                continue
            if self.hold_reason(alert, now) is None:
                self._event(alert, "released", alert.held or "")
                await self.consider(alert, "firing", now)

    async def poll_requests(self) -> None:
        """Apply acks and silences written to the store by the CLI (or another replica)."""
        store = self.runtime.store
        try:
            acks = await store.get_all("acks")
            from watchkeeper.engine.alerting.silences import load_silences

            self.silences = await load_silences(store)
        except Exception:
            return
        for alert_id, doc in acks.items():
            if alert_id in self._acks_seen:
                continue
            self._acks_seen.add(alert_id)
            alert = self.runtime.book.by_id.get(alert_id)
            if alert is not None and alert.acked_at is None and alert.open:
                await self.acknowledge(
                    alert_id, doc.get("by", "unknown"), doc.get("comment"), doc.get("at")
                )
        if self.replica is not None:
            await self._take_conditions(store)

    async def _take_conditions(self, store: Any) -> None:
        """Raise or clear the conditions other replicas handed to this one."""
        try:
            requests = await store.get_all("conditions")
        except Exception:
            return
        done = []
        for key, doc in sorted(requests.items(), key=lambda item: item[1].get("at", 0)):
            instance = key.rsplit("|", 1)[0]
            if not self.runtime.mine(instance):
                continue
            await self.runtime.condition(
                doc["rule"],
                active=doc["active"],
                severity=doc["severity"],
                summary=doc["summary"],
                check=doc["check"],
                environment=doc.get("environment"),
                labels=doc.get("labels"),
                runbook=doc.get("runbook"),
            )
            done.append(key)
        if done:
            await store.delete("conditions", done)

    # -- events, tasks, announcements -------------------------------------------------------

    async def post_event(self, event: dict[str, Any]) -> list[str]:
        """Route an event (deploy, rollback...) like an alert; return the notifiers told."""
        notice, targets = event_notice(
            self.config, event, self.clock.now(), dry_run=self.outbox.dry_run
        )
        for name in targets:
            await self.outbox.enqueue(name, notice, group=f"event|{notice.id}")
        await events.emit(self.runtime.reg.manager, "watchkeeper_event", event=dict(event))
        self.runtime.writer.append(
            "events", Row(key=notice.event["event"], at=notice.created_at, data=dict(event))
        )
        return targets

    async def post_task(self, name: str, report: dict[str, Any] | None = None) -> None:
        """Post a recurring checklist to its notifiers."""
        task = self.config.tasks.get(name)
        if task is None:
            return
        notice = Notice(
            id=new_notice_id(),
            kind="task",
            status="info",
            title=f"Task: {name}",
            checklist=list(task.checklist),
            text=task.description,
            report=report,
            created_at=self.clock.now(),
            dry_run=self.outbox.dry_run,
        )
        for notifier in task.notify:
            await self.outbox.enqueue(notifier, notice, group=f"task|{name}")

    async def announce(self, since: float, until: float) -> None:
        """Post the notices of maintenance windows whose announcement time has come."""
        if self.maintenance is None:
            return
        from datetime import UTC, datetime

        from watchkeeper.engine.schedule.timetable import format_instant

        due = self.maintenance.announcements(since, until)
        if since <= self.started_at:
            # announcements that fell due while no daemon ran (or before a reload added the
            # window) still go out, once, as long as the window has not started
            due = [*due, *self.maintenance.announcements_due(until)]
        for occurrence, _at in due:
            window = occurrence.window
            key = f"{occurrence.name}|{occurrence.start}"
            if not await self.runtime.store.insert_once(
                "claims", f"announce|{key}", {"at": self.clock.now()}
            ):
                continue  # already announced (before a restart, or by another replica)
            start = format_instant(datetime.fromtimestamp(occurrence.start, UTC))
            end = format_instant(datetime.fromtimestamp(occurrence.end, UTC))
            scope = (
                ", ".join(
                    window.checks
                    + window.backups
                    + window.environments
                    + [f"{k}={v}" for k, v in window.labels.items()]
                )
                or "everything"
            )
            text = (
                f"Maintenance {occurrence.name} from {start} to {end} "
                f"({occurrence.effect}: {scope})."
                + (f" {occurrence.reason}" if occurrence.reason else "")
            )
            notice = Notice(
                id=new_notice_id(),
                kind="announcement",
                status="info",
                title=f"Scheduled maintenance: {occurrence.name}",
                text=text,
                created_at=self.clock.now(),
                dry_run=self.outbox.dry_run,
            )
            for notifier in window.announce.notify:
                await self.outbox.enqueue(notifier, notice, group=f"announce|{key}")

    # -- timeline ---------------------------------------------------------------------------

    def _event(self, alert: Alert, what: str, detail: str = "") -> None:
        self.runtime.writer.append(
            "alert_events",
            Row(key=alert.id, at=self.clock.now(), data={"event": what, "detail": detail}),
        )

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Fire timers (group flushes, repeats, escalations, releases) until cancelled."""
        await self.load()
        task_status.started()
        next_poll = self.clock.now() + POLL_INTERVAL
        while True:
            now = self.clock.now()
            if now >= next_poll:
                await self.poll_requests()
                next_poll = now + POLL_INTERVAL
            await self.fire_due(now)
            if self.maintenance is not None:
                boundary = self.maintenance.next_boundary(self.last_boundary)
                if boundary is not None and boundary <= now:
                    self.last_boundary = now
                    await self.release(now)
                    await self.rehold(now)
                    for handler in self.boundary_handlers:
                        await handler(now)
                await self.announce(self.last_announce, now)
                self.last_announce = now
            upcoming = [self.timers[0][0]] if self.timers else []
            if self.maintenance is not None:
                boundary = self.maintenance.next_boundary(self.last_boundary)
                if boundary is not None:
                    upcoming.append(boundary)
            wait = min([*upcoming, next_poll]) - self.clock.now()
            with anyio.move_on_after(max(0.0, wait)):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def fire_due(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            _at, _, kind, key = heapq.heappop(self.timers)
            try:
                if kind == "group":
                    group = self.groups.get(key)
                    if group is not None and group.due_at is not None and group.due_at <= now:
                        await self.flush(group, now)
                elif kind == "repeat":
                    group = self.groups.get(key)
                    if group is not None and group.repeat_at is not None and group.repeat_at <= now:
                        await self.flush(group, now, repeat=True)
                elif kind == "escalate":
                    await self.escalate(key, now)
                elif kind == "release":
                    await self.release(now)
                    self._timer(now + RELEASE_INTERVAL, "release", "")
            except Exception:
                log.exception("alerting timer failed", extra={"timer": kind, "key": key})

    async def rehold(self, now: float) -> None:
        """Mark firing alerts that a window starting now covers as held (shown as muted)."""
        for alert in list(self.runtime.book.open.values()):
            if alert.status != "firing" or alert.id in self.held:
                continue
            reason = self.hold_reason(alert, now)
            if reason is not None:
                alert.held = reason
                self.held.add(alert.id)
                self.runtime.save_alert(alert)


def event_notice(
    config: Any, event: dict[str, Any], now: float, *, dry_run: bool = False
) -> tuple[Notice, list[str]]:
    """Return the notice for an event and the notifiers its matching routes name."""
    kind = str(event.get("event", "event"))
    event = {**event, "event": kind}
    subject = Subject(
        kind="event",
        event=kind,
        environment=event.get("environment"),
        check=event.get("check"),
        severity=event.get("severity"),
        labels={k: str(v) for k, v in (event.get("labels") or {}).items()},
    )
    details = ", ".join(
        f"{k} {v}"
        for k, v in event.items()
        if k not in ("event", "labels", "message") and v not in (None, "")
    )
    notice = Notice(
        id=new_notice_id(),
        kind="event",
        status="info",
        title=f"{kind}: {details}" if details else kind,
        event=event,
        text=event.get("message"),
        created_at=now,
        dry_run=dry_run,
    )
    targets: list[str] = []
    for index in matching_routes(config.routes, subject, config.severities):
        notice.route = index if notice.route is None else notice.route
        for name in config.routes[index].notify:
            if name not in targets:
                targets.append(name)
    return notice, targets


def _public_status(alert: Alert) -> str:
    return "resolved" if alert.status == "resolved" else "firing"


def _as_told(alert: Alert) -> dict[str, Any]:
    """What a notice tells of an alert, as a group remembers it and `Outbox.queued` reads
    it back from a stored notice."""
    return {
        "status": _public_status(alert),
        "severity": alert.severity,
        "flapping": alert.flapping,
    }


def _change_word(alert: Alert, sent: dict[str, Any]) -> str:
    if alert.status == "resolved":
        return "resolved"
    if alert.flapping and not sent.get("flapping"):
        return "flapping"
    if sent.get("flapping") and not alert.flapping:
        return "stable"
    if sent.get("status") == "firing" and sent.get("severity") != alert.severity:
        return "severity"
    return "firing"
