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
from watchkeeper.engine.alerting.timeline import Timeline
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


class Alerting(
    Holds,
    Grouping,
    GroupSender,
    AlertNotices,
    Escalation,
    Deliveries,
    Announcements,
    Inbox,
    Timeline,
):
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
