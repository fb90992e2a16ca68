"""Sending a group: what changed in it since it last spoke, to each notifier of its route.

A changed group says its changes (and its firing alerts with them); an unchanged firing
group says them again every `repeat` until acknowledged. An alert that moved on to another
route or group is said here only when it changes, and a notifier both groups share hears
the change once. After a crash, a notice the previous run queued is not said twice
(DESIGN.md Semantics ► Notification and ► Outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from watchkeeper.engine.alerting.alert_notices import AlertNotices, notice_alert
from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.alerting.groups import Group, Grouping
from watchkeeper.engine.alerting.holds import Holds
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.alerting.timeline import alert_event


class GroupSender:
    """Flush groups: decide what each says, to whom, and hand it to the outbox."""

    def __init__(
        self,
        runtime: Any,
        outbox: Outbox,
        grouping: Grouping,
        holds: Holds,
        notices: AlertNotices,
        timer: Callable[[float, str, str], None],
    ):
        self.runtime = runtime
        self.outbox = outbox
        self.grouping = grouping
        self.holds = holds
        self.notices = notices
        self.timer = timer
        # alert id -> notifiers a group has told of its resolution, while another group
        # that told it before still holds it (so a shared notifier hears it once)
        self._resolution_said: dict[str, set[str]] = {}

    @property
    def config(self) -> Any:
        return self.runtime.config

    async def flush(self, group: Group, now: float, *, repeat: bool = False) -> None:
        """Send what changed in a group (or, for a repeat, what still fires unacknowledged)."""
        if group.route >= len(self.config.routes):
            self.grouping.groups.pop(group.key, None)
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
            if alert.status == "firing" and self.grouping.left(group, alert):
                if not self.grouping.told(group, sent):
                    del group.members[alert_id]  # it belongs elsewhere and was never said here
                    continue
                moved.add(alert_id)
            reason = self.holds.hold_reason(alert, now) if alert.status == "firing" else None
            if reason is not None:
                # held since it joined (a parent went down meanwhile): it waits for release
                if alert.id not in self.holds.held:
                    alert.held = reason
                    self.holds.held.add(alert.id)
                    self.runtime.save_alert(alert)
                    alert_event(self.runtime, alert, "held", reason)
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
            self.grouping.save(group)
            self.grouping.flushed_since_start(group)
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
                if not self.grouping.groups_of(alert):
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
            self.timer(group.repeat_at, "repeat", group.key)
        else:
            group.repeat_at = None
        self.grouping.save(group)
        self.grouping.flushed_since_start(group)
        if self.runtime.writer.degraded is None:
            # the group's record of what it said is stored now, not with the next batch, so
            # that a crash seldom finds notices sent and the record of them lost (a crash
            # that finds them still queued is mended by `_queued_before_restart`)
            await self.runtime.writer.flush()

    def _said_elsewhere(self, alert: Alert, group: Group, name: str, moved: set[str]) -> bool:
        """True when notifier `name` hears of this alert's change through another group."""
        if alert.status == "resolved" and name in self._resolution_said.get(alert.id, ()):
            return True  # another group has told it the resolution already
        if alert.id in moved or (alert.status == "resolved" and self.grouping.left(group, alert)):
            return self._said_by(alert, group, name)
        return False

    def _said_by(self, alert: Alert, moved_from: Group, name: str) -> bool:
        """True when a group the alert now belongs to speaks to notifier `name` about it:
        while it fires, that group's notice carries it; once resolved, only if that group
        told it (else it resolves there silently, and the old group must say it)."""
        for other in self.grouping.groups_of(alert):
            if other is moved_from or other.route >= len(self.config.routes):
                continue
            if (
                self.grouping.left(other, alert)
                or name not in self.config.routes[other.route].notify
            ):
                continue
            if alert.status == "firing" or self.grouping.told(other, other.members[alert.id]):
                return True
        return alert.status == "resolved" and name in self._resolution_said.get(alert.id, ())

    def _queued_before_restart(
        self, name: str, group: Group, wanted: list[tuple[Alert, dict[str, Any], bool]]
    ) -> list[tuple[Alert, dict[str, Any], bool]]:
        """Leave out the changes a notice to `name`, queued by the previous run, already says.

        That run stored its notices and died before storing the group's record of them, so
        the group found them unsent. The outbox sends the queued notices (once more at
        most, Semantics ► Outbox); another notice about the same change, under a new key,
        would announce it twice.
        """
        queued = self.outbox.queued(group.key, name, since=self.grouping.restored[group.key])
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
        if not repeat and group.key in self.grouping.restored:
            wanted = self._queued_before_restart(name, group, wanted)
        if not wanted or not any(c for _, _, c in wanted):
            return
        if plugin is not None and not getattr(plugin, "groups", True):
            # receivers that track incidents themselves get one event per changed alert
            for alert, sent, changed in wanted:
                if changed:
                    change = "repeat" if repeat else _change_word(alert, sent)
                    notice = self.notices.make([notice_alert(alert, change)], group, now)
                    await self.outbox.enqueue(name, notice, group=group.key)
            return
        collapsed = False
        if all(a.status == "resolved" for a, _, _ in wanted):
            collapsed = self.outbox.collapse(name, {a.id for a, _, _ in wanted})
        items = [notice_alert(a, "repeat" if repeat else _change_word(a, s)) for a, s, _ in wanted]
        notice = self.notices.make(items, group, now)
        notice.collapsed = collapsed
        await self.outbox.enqueue(name, notice, group=group.key)


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
