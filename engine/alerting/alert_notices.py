"""The notices that tell of alerts: how each alert is shown, and the notice around them."""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.alerting.groups import Group
from watchkeeper.engine.alerting.notice import (
    DETAIL_LIMIT,
    Notice,
    NoticeAlert,
    cut,
    new_notice_id,
    one_line,
)
from watchkeeper.engine.alerting.outbox import Outbox
from watchkeeper.engine.run.evaluate import render_value


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
        source_url=alert.external.get("generator_url"),
        locations=alert.locations,
    )


class AlertNotices:
    """Build alert notices, worded as the checks' config knows them."""

    def __init__(self, runtime: Any, outbox: Outbox):
        self.runtime = runtime
        self.outbox = outbox

    @property
    def config(self) -> Any:
        return self.runtime.config

    def make(
        self,
        items: list[NoticeAlert],
        group: Group | None,
        now: float,
        escalation: str | None = None,
    ) -> Notice:
        """Return the notice of these alerts: from a group, or from an escalation level."""
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
