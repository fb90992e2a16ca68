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

Each job has its module: holds.py (why an alert is held), groups.py (routes and groups),
sending.py (what a group says, to whom), alert_notices.py (the notices' words),
escalation.py (levels, policies, acknowledgements), deliveries.py (the outbox's reports),
announce.py (events, tasks, maintenance announcements), inbox.py (requests left in the
store), timeline.py (an alert's events). `Alerting`, here, puts the parts together, takes
the alert changes and runs the timers they set.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any

import anyio

from watchkeeper.engine.alerting.alert_notices import AlertNotices, notice_alert
from watchkeeper.engine.alerting.alerts import Alert, AlertChange
from watchkeeper.engine.alerting.announce import Announcements, event_notice
from watchkeeper.engine.alerting.deliveries import Deliveries
from watchkeeper.engine.alerting.escalation import Escalation
from watchkeeper.engine.alerting.groups import Group, Grouping
from watchkeeper.engine.alerting.holds import INTERNAL_CHECK, RELEASE_INTERVAL, Holds
from watchkeeper.engine.alerting.inbox import Inbox
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.alerting.sending import GroupSender
from watchkeeper.engine.alerting.timeline import alert_event
from watchkeeper.engine.run.evaluate import UP

__all__ = [
    "INTERNAL_CHECK",
    "NOTIFIED_KINDS",
    "POLL_INTERVAL",
    "RELEASE_INTERVAL",
    "Alerting",
    "Group",
    "event_notice",
    "notice_alert",
]

log = logging.getLogger("watchkeeper.alerting")

NOTIFIED_KINDS = {"firing", "severity", "resolved", "flapping", "stable"}
POLL_INTERVAL = 2.0


class Alerting:
    """Decide who hears about which alert, when; feed the outbox; run escalation levels.

    The parts each do one job (the module docstring lists them); this puts them together,
    hands them alert changes, and runs the timers they set. The daemon sets `replica`,
    `maintenance` and `started_at` after construction; the properties below pass them on
    to the parts that use them.
    """

    def __init__(
        self, runtime: Any, outbox: Outbox, *, maintenance: Any = None, actions: Any = None
    ):
        self.runtime = runtime
        self.outbox = outbox
        self.clock = runtime.clock
        self.timers: list[tuple[float, int, str, str]] = []
        self.counter = itertools.count()
        self._wake = anyio.Event()
        self.holds = Holds(runtime, maintenance)
        self.notices = AlertNotices(runtime, outbox)
        self.grouping = Grouping(runtime, outbox, self._timer)
        self.sender = GroupSender(
            runtime, outbox, self.grouping, self.holds, self.notices, self._timer
        )
        self.escalation = Escalation(
            runtime, outbox, self.grouping, self.holds, self.notices, self._timer, actions=actions
        )
        self.deliveries = Deliveries(runtime, self.escalation)
        self.inbox = Inbox(runtime, self.holds, self.escalation)
        self.last_boundary = self.clock.now()
        self.announcements = Announcements(runtime, outbox, maintenance)
        self.last_announce = self.started_at - 3600  # catch an announcement just missed
        self.boundary_handlers: list[Any] = []  # async (at) -> None, when a window starts/ends
        outbox.on_sent.append(self.deliveries.delivered)
        outbox.on_gave_up.append(self.deliveries.gave_up)
        runtime.change_handlers.append(self.on_changes)

    @property
    def config(self) -> Any:
        return self.runtime.config

    @property
    def replica(self) -> str | None:
        """This daemon's name when daemons share the store, else None."""
        return self.grouping.replica

    @replica.setter
    def replica(self, name: str | None) -> None:
        self.grouping.replica = self.deliveries.replica = self.inbox.replica = name

    @property
    def maintenance(self) -> Any:
        return self.holds.maintenance

    @maintenance.setter
    def maintenance(self, maintenance: Any) -> None:
        self.holds.maintenance = self.announcements.maintenance = maintenance

    @property
    def started_at(self) -> float:
        return self.announcements.started_at

    @started_at.setter
    def started_at(self, at: float) -> None:
        self.announcements.started_at = at

    @property
    def groups(self) -> dict[str, Group]:
        return self.grouping.groups

    @property
    def silences(self) -> dict[str, Any]:
        return self.holds.silences

    # -- start-up ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Restore groups, silences and escalation timers from the store."""
        await self.grouping.restore()
        await self.inbox.poll()
        now = self.clock.now()
        for alert in list(self.runtime.book.open.values()):
            esc = alert.escalation
            if esc.get("next_at") is not None and not esc.get("stopped"):
                self._timer(esc["next_at"], "escalate", alert.id)
            if alert.status == "firing" and alert.held:
                self.holds.held.add(alert.id)
        self._timer(now + RELEASE_INTERVAL, "release", "")

    def _timer(self, at: float, kind: str, key: str) -> None:
        heapq.heappush(self.timers, (at, next(self.counter), kind, key))
        self._wake.set()

    # -- alert changes ----------------------------------------------------------------------

    async def on_changes(self, changes: list[AlertChange]) -> None:
        now = self.clock.now()
        release = False
        for change in changes:
            alert = change.alert
            if change.kind in ("resolved", "discarded") and alert.source == "check":
                self.holds.check_resolved(alert.instance, now)
            if change.kind == "discarded":
                self.grouping.drop_unsent(alert)
                self.holds.held.discard(alert.id)
                continue
            if change.kind not in NOTIFIED_KINDS:
                continue
            await self.consider(alert, change.kind, now)
            if change.kind == "resolved":
                await self.escalation.resolve(alert, now)
                if alert.rule == UP:
                    release = True  # its children and its threshold alerts may be released
        if release:
            await self.release(now)
        self._wake.set()

    async def consider(self, alert: Alert, kind: str, now: float) -> None:
        """Route one alert change into its groups, unless it is held."""
        reason = self.holds.hold_reason(alert, now) if alert.status == "firing" else None
        if reason != alert.held:
            alert.held = reason
            self.runtime.save_alert(alert)
        if alert.status == "firing" and reason is not None:
            if alert.id not in self.holds.held:
                self.holds.held.add(alert.id)
                alert_event(self.runtime, alert, "held", reason)
            return
        self.holds.held.discard(alert.id)
        if alert.status == "resolved" and not self.grouping.notified(alert):
            self.grouping.drop_unsent(alert)
            return
        routes = self.grouping.routes_for(alert)
        self.grouping.enter(alert, routes, now)
        if kind == "severity" and not routes and alert.status == "firing":
            # settled at this severity: a later change back finds its policy to resume
            alert.escalation["severity"] = alert.severity
            self.escalation.stop(alert, f"severity {alert.severity}: no route matches it")

    async def release(self, now: float) -> None:
        """Notify held alerts whose hold has ended and that still fire."""
        for alert_id in list(self.holds.held):
            alert = self.runtime.book.by_id.get(alert_id)
            if alert is None or alert.status != "firing":
                self.holds.held.discard(alert_id)
                continue
            if self.holds.hold_reason(alert, now) is None:
                alert_event(self.runtime, alert, "released", alert.held or "")
                await self.consider(alert, "firing", now)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Fire timers (group flushes, repeats, escalations, releases) until cancelled."""
        await self.load()
        task_status.started()
        next_poll = self.clock.now() + POLL_INTERVAL
        while True:
            now = self.clock.now()
            if now >= next_poll:
                await self.inbox.poll()
                next_poll = now + POLL_INTERVAL
            await self.fire_due(now)
            if self.maintenance is not None:
                boundary = self.maintenance.next_boundary(self.last_boundary)
                if boundary is not None and boundary <= now:
                    self.last_boundary = now
                    await self.release(now)
                    await self.holds.rehold(now)
                    for handler in self.boundary_handlers:
                        await handler(now)
                await self.announcements.announce(self.last_announce, now)
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
                        await self.sender.flush(group, now)
                elif kind == "repeat":
                    group = self.groups.get(key)
                    if group is not None and group.repeat_at is not None and group.repeat_at <= now:
                        await self.sender.flush(group, now, repeat=True)
                elif kind == "escalate":
                    await self.escalation.escalate(key, now)
                elif kind == "release":
                    await self.release(now)
                    self._timer(now + RELEASE_INTERVAL, "release", "")
            except Exception:
                log.exception("alerting timer failed", extra={"timer": kind, "key": key})

    # -- the parts' methods others call -----------------------------------------------------

    def alert_fields(self, alert: Alert) -> dict[str, Any]:
        return self.holds.alert_fields(alert)

    def hold_reason(self, alert: Alert, at: float) -> str | None:
        return self.holds.hold_reason(alert, at)

    async def rehold(self, now: float) -> None:
        await self.holds.rehold(now)

    def routes_for(self, alert: Alert) -> list[int]:
        return self.grouping.routes_for(alert)

    async def flush(self, group: Group, now: float, *, repeat: bool = False) -> None:
        await self.sender.flush(group, now, repeat=repeat)

    async def escalate(self, alert_id: str, now: float) -> None:
        await self.escalation.escalate(alert_id, now)

    async def run_action(self, name: str, alert: Alert, now: float) -> dict[str, Any]:
        return await self.escalation.run_action(name, alert, now)

    async def acknowledge(
        self, alert_id: str, by: str, comment: str | None = None, at: float | None = None
    ) -> Alert | None:
        return await self.escalation.acknowledge(alert_id, by, comment, at)

    async def poll_requests(self) -> None:
        await self.inbox.poll()

    async def post_event(self, event: dict[str, Any]) -> list[str]:
        return await self.announcements.post_event(event)

    async def post_task(self, name: str, report: dict[str, Any] | None = None) -> None:
        await self.announcements.post_task(name, report)

    async def announce(self, since: float, until: float) -> None:
        await self.announcements.announce(since, until)
