"""What each notifier's messages say, kept readable by snapshots a person has read.

Three incidents go the whole way a real one goes — monitor.yaml, a probe's result, the
evaluator, the alert, the notice the alerting stage builds — and each built-in notifier
renders a firing, a changed (severity or escalation) and a resolved notice of each:

- api-health@production answering 503 with a 300-character JSON body;
- app-metrics@production over a size threshold (memory_rss, in bytes);
- database over a duration threshold (query_time), by 4 ms.

The expected text is in tests/snapshots/notices/<notifier>.txt. A difference fails with a
diff; `UPDATE_SNAPSHOTS=1 pytest tests/test_notice_snapshots.py` writes what is rendered
now — read it as the person paged would before committing it.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from watchkeeper.engine.alerting.alert_notices import AlertNotices, notice_alert
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.config.instances import expand
from watchkeeper.engine.config.validation import validate
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run import evaluate
from watchkeeper.engine.run.evaluate import AlertBook, Evaluator
from watchkeeper.engine.run.probe import Result

SNAPSHOTS = Path(__file__).parent / "snapshots" / "notices"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
SEVERITIES = ["critical", "high", "medium", "warning", "low", "info"]
START = 1_795_725_840.0  # 2026-11-26 20:44 UTC

CONFIG = """\
version: 1
environments:
  production: {base_url: https://desenyon-infinite-idea.vercel.app}
checks:
  api-health:
    probe: http
    url: ${env.base_url}/api/health
    environments: [production]
    severity: critical
    description: the app's own health endpoint
    runbook: https://wiki.example.com/runbooks/api-health
    labels: {team: web}
  app-metrics:
    probe: http
    url: ${env.base_url}/api/admin/monitoring
    environments: [production]
    extract:
      memory_rss: {path: $.system.memory.rss, unit: bytes}
    thresholds:
      - {name: app-memory, metric: memory_rss, above: 819MiB, severity: warning}
      - {name: app-memory, metric: memory_rss, above: 870MiB, severity: high,
         description: 85% of the 1024 MB limit in vercel.json}
  database:
    probe: postgres
    dsn: postgres://monitor@db.example.com/app
    thresholds:
      - {name: query-time, metric: query_time, above: 2s, severity: medium}
      - {name: query-time, metric: query_time, above: 5s, severity: high}
    runbook: |
      Find the slow queries with pg_stat_statements;
      restore the latest backup with `watchkeeper backup restore`.
notifiers:
  dev-team: {type: email, to: [dev@example.com], smtp_url: "smtp://mail.example.com"}
escalation:
  standard:
    - {after: 0s, name: automated, notify: [dev-team]}
    - {after: 15m, name: development, notify: [dev-team]}
"""

BODY = json.dumps(
    {
        "status": "unhealthy",
        "timestamp": "2026-11-26T20:44:03.512Z",
        "checks": {
            "database": {"status": "unhealthy", "responseTime": "5012ms", "error": "timeout"},
            "redis": {"status": "healthy", "responseTime": "3ms"},
            "ai_services": {"status": "degraded", "openai": "ok", "anthropic": "rate_limited"},
        },
        "version": "1.3.0",
    },
    separators=(",", ":"),
)
HTTP_503 = (
    "HTTP 503 from https://desenyon-infinite-idea.vercel.app/api/health (expected 200): " + BODY
)

OPTIONS = {
    "slack": {"webhook_url": "https://hooks.slack.com/services/T0/B0/x", "channel": "#alerts"},
    "email": {"to": ["dev@example.com"], "smtp_url": "smtp://mail.example.com"},
    "pagerduty": {"routing_key": "r0utingkey"},
    "webhook": {"url": "https://ops.example.com/hooks/watchkeeper"},
    "log": {},
    "sentry": {"dsn": "https://k3y@o1.ingest.sentry.io/1"},
}


def check_snapshot(name: str, text: str) -> None:
    """Compare text with tests/snapshots/notices/<name>.txt (UPDATE_SNAPSHOTS=1 writes it)."""
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8") if path.exists() else ""
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{path} (committed)",
                f"{path} (rendered now)",
            )
        )
        pytest.fail(
            f"the rendered {name} messages differ from the snapshot; if the change is meant, "
            f"run UPDATE_SNAPSHOTS=1 and read the result:\n{diff}",
            pytrace=False,
        )


class Incident:
    """One check instance fed results at fixed times, and the notices it makes."""

    def __init__(self, config: Any, instance: Any, alerting: AlertNotices, name: str):
        self.ev = Evaluator(instance, SEVERITIES, alerting.runtime.book)
        self.alerting = alerting
        self.name = name
        self.at = START
        self.count = itertools.count(1)

    def feed(self, result: Result, minutes: float = 1.0) -> list[Any]:
        self.at += minutes * 60
        return self.ev.evaluate(result, self.at)

    def notice(self, change: Any, word: str, escalation: str | None = None) -> Notice:
        item = notice_alert(change.alert, word, escalation)
        notice = self.alerting.make([item], None, self.at, escalation=escalation)
        notice.id = f"wk-{self.name}-{next(self.count)}"
        notice.created_at = self.at
        return notice


def _last(changes: list[Any], kind: str) -> Any:
    (change,) = [c for c in changes if c.kind == kind]
    return change


@pytest.fixture
def notices(tmp_path, monkeypatch) -> list[tuple[str, Notice]]:
    """Return (what it is, notice) for each incident's firing, changed and resolved notice."""
    ids = itertools.count(1)
    monkeypatch.setattr(evaluate, "new_alert_id", lambda: f"al-{next(ids):06d}")
    path = tmp_path / "monitor.yaml"
    path.write_text(CONFIG)
    checked = validate(path)
    assert checked.valid, [p.text() for p in checked.problems]
    instances = expand(checked.config, registry())
    alerting = AlertNotices.__new__(AlertNotices)  # only its notice building is used
    alerting.runtime = SimpleNamespace(config=checked.config, book=AlertBook())
    alerting.outbox = SimpleNamespace(dry_run=False)
    out: list[tuple[str, Notice]] = []

    api = Incident(checked.config, instances["api-health@production"], alerting, "api")
    fired = _last(api.feed(Result(ok=False, message=HTTP_503)), "firing")
    out.append(("api-health down: firing", api.notice(fired, "firing")))
    fired.alert.escalation = {"policy": "standard", "next": 1, "started_at": api.at}
    api.at += 15 * 60
    out.append(("api-health down: escalated", api.notice(fired, "escalation", "development")))
    ok = Result(
        ok=True, message="HTTP 200 from https://desenyon-infinite-idea.vercel.app/api/health"
    )
    resolved = _last(api.feed(ok, minutes=5), "resolved")
    out.append(("api-health down: resolved", api.notice(resolved, "resolved")))

    mem = Incident(checked.config, instances["app-metrics@production"], alerting, "mem")
    metrics = {"response_time": 0.212, "memory_rss": 880_000_000.0}
    fired = _last(mem.feed(Result(ok=True, metrics=metrics)), "firing")
    out.append(("app-metrics memory: firing", mem.notice(fired, "firing")))
    metrics["memory_rss"] = 943_718_400.0
    changed = _last(mem.feed(Result(ok=True, metrics=metrics), 5), "severity")
    out.append(("app-metrics memory: severity change", mem.notice(changed, "severity")))
    metrics["memory_rss"] = 610_000_000.0
    resolved = _last(mem.feed(Result(ok=True, metrics=metrics), 7), "resolved")
    out.append(("app-metrics memory: resolved", mem.notice(resolved, "resolved")))

    db = Incident(checked.config, instances["database"], alerting, "db")
    fired = _last(db.feed(Result(ok=True, metrics={"query_time": 2.004})), "firing")
    out.append(("database query time: firing", db.notice(fired, "firing")))
    changed = _last(db.feed(Result(ok=True, metrics={"query_time": 5.3}), 2), "severity")
    out.append(("database query time: severity change", db.notice(changed, "severity")))
    resolved = _last(db.feed(Result(ok=True, metrics={"query_time": 0.8124}), 10), "resolved")
    out.append(("database query time: resolved", db.notice(resolved, "resolved")))
    return out


def _slack(plugin: Any, notice: Notice, options: Any) -> str:
    """The Slack message as a person sees it: header, section, then the attachment."""
    from watchkeeper.plugins.notifiers.slack import payload

    body = payload(notice, options, "alerts")
    lines = [f"notification: {body['text']}"]
    for block in body["blocks"] + body["attachments"][0]["blocks"]:
        if block["type"] == "header":
            lines.append(f"[header] {block['text']['text']}")
        if block["type"] == "section":
            if "text" in block:
                lines.append("[section] " + block["text"]["text"].strip())
            for item in block.get("fields", []):
                lines.append("  · " + item["text"].replace("\n", ": ", 1))
        if block["type"] == "context":
            lines += ["[context] " + e["text"] for e in block["elements"]]
    return "\n".join(lines)


def _email(plugin: Any, notice: Notice, options: Any) -> str:
    """The mail as sent (its encoded Subject line included), then its plain-text part."""
    from aiosmtplib.email import flatten_message

    from watchkeeper.plugins.notifiers.email import build_message

    raw = flatten_message(build_message(notice, options, "dev-team"))
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    subject = head[head.index("Subject:") :].split("\r\nFrom:", 1)[0]
    mail = message_from_bytes(raw, policy=policy.default)
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    return f"{subject.replace(chr(13), '')}\n\n{text.rstrip()}"


def _sentry(plugin: Any, notice: Notice, options: Any) -> str:
    """Each event's message, level and tags, and the context the detail goes to."""
    from watchkeeper.plugins.notifiers.sentry import describe

    if not notice.firing:
        return plugin.preview(notice, options)
    spec = describe(notice, notice.firing[0], options, "alerts")
    context = json.dumps(spec["context"], indent=2, ensure_ascii=False)
    return f"{plugin.preview(notice, options)}\n  context {spec['context_name']}: {context}"


RENDER = {"slack": _slack, "email": _email, "sentry": _sentry}


def rendered(name: str, notices: list[tuple[str, Notice]]) -> str:
    cls = registry().get("notifier", name)
    plugin = cls()
    options = cls.Options.model_validate(OPTIONS[name])
    parts = []
    for what, notice in notices:
        shown = RENDER[name](plugin, notice, options) if name in RENDER else None
        if shown is None:
            shown = plugin.preview(notice, options)
        parts.append(f"===== {what} =====\n{shown.rstrip()}\n")
    return "\n".join(parts)


@pytest.mark.parametrize("name", ["slack", "email", "pagerduty", "webhook", "log", "sentry"])
def test_messages_read_as_the_snapshot(name, notices):
    check_snapshot(name, rendered(name, notices))


def test_headlines_say_what_is_wrong_once_without_the_body(notices):
    headlines = {what: notice.title for what, notice in notices}
    assert headlines == {
        "api-health down: firing": "api-health@production is down: HTTP 503 (critical)",
        "api-health down: escalated": "api-health@production is down: HTTP 503 (critical)"
        " · escalated to level 2 of standard (development): dev-team",
        "api-health down: resolved": "api-health@production recovered after 20m (was: HTTP 503)",
        "app-metrics memory: firing": "app-metrics@production: memory_rss 880MB above"
        " 858.8MB (warning)",
        "app-metrics memory: severity change": "app-metrics@production: memory_rss 943.7MB"
        " above 912.3MB (high, was warning)",
        "app-metrics memory: resolved": "app-metrics@production recovered after 12m"
        " (was: memory_rss 943.7MB above 912.3MB)",
        "database query time: firing": "database: query_time 2.004s above 2s (medium)",
        "database query time: severity change": "database: query_time 5.3s above 5s"
        " (high, was medium)",
        "database query time: resolved": "database recovered after 12m"
        " (was: query_time 5.3s above 5s)",
    }
    for what, notice in notices:
        assert notice.title == notice.headline, what
        assert "{" not in notice.title, what
        assert "FIRING" not in notice.title, what


def test_the_body_excerpt_is_detail_cut_to_300_characters(notices):
    firing = notices[0][1].alerts[0]
    assert firing.detail is not None
    assert len(firing.detail) <= 300
    assert firing.detail.startswith("HTTP 503 from https://desenyon-infinite-idea.vercel.app")
    assert firing.detail.endswith("…")
    assert '{"status":"unhealthy"' in firing.detail
