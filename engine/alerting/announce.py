"""Notices that are not about alerts: maintenance announcements, tasks, and events."""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting import events
from watchkeeper.engine.alerting.notice import Notice, new_notice_id
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.alerting.routing import Subject, matching_routes
from watchkeeper.engine.state.store import Row


class Announcements:
    """Post events, tasks' checklists and maintenance windows' announcements.

    `started_at` is when this daemon started (or reloaded its maintenance windows):
    announcements that fell due before it still go out, once.
    """

    def __init__(self, runtime: Any, outbox: Outbox, maintenance: Any = None):
        self.runtime = runtime
        self.outbox = outbox
        self.maintenance = maintenance
        self.clock = runtime.clock
        self.started_at = self.clock.now()

    @property
    def config(self) -> Any:
        return self.runtime.config

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
