"""`watchkeeper route`: who a hypothetical alert or event would reach, offline."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape

from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutputFormat,
    app,
    console,
    echo,
    echo_json,
    err_console,
    fail,
    state,
)


def parse_instant(value: str, option: str, default_tz: str = "UTC") -> float:
    """Read an ISO-8601 time for an option; without an offset it is in `default_tz`."""
    from watchkeeper.engine.schedule.timetable import zone

    text = value.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        fail(
            f"{option}: expected an ISO-8601 time such as 2026-12-06T03:00:00Z or "
            f"2026-12-06T04:00+01:00, got {value!r}",
            EXIT_USAGE,
        )
    if dt.tzinfo is None or dt.utcoffset() is None:
        dt = dt.replace(tzinfo=zone(default_tz))
    return dt.timestamp()


def parse_labels(items: list[str] | None, option: str = "--label") -> dict[str, str]:
    """Read repeated `k=v` options into a dict."""
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{option} expects key=value, got {item!r}", EXIT_USAGE)
        labels[key.strip()] = value.strip()
    return labels


def load_offline(ctx: typer.Context) -> Any:
    """Validate monitor.yaml as `validate` does (unset variables only warn); exit on errors."""
    from watchkeeper.engine.config.validation import validate
    from watchkeeper.engine.plugins import PluginError

    path = state(ctx).config
    try:
        result = validate(path)
    except PluginError as exc:
        fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        fail(str(exc), EXIT_USAGE)
    if not result.valid:
        for problem in result.problems:
            echo(problem.text(), err=True)
        fail(f"{path} is not valid ({len(result.errors)} error(s))", EXIT_FAILED)
    return result.config


@app.command()
def route(
    ctx: typer.Context,
    severity: str = typer.Option(
        None, "--severity", "-s", help="The alert's severity (required unless --event)."
    ),
    check: str = typer.Option(None, "--check", help="Its check, or `check@environment`."),
    env: str = typer.Option(None, "--env", "-e", help="Its environment."),
    label: list[str] = typer.Option(
        None, "--label", "-l", help="A label k=v (besides the check's own); repeatable."
    ),
    rule: str = typer.Option(None, "--rule", help="Its rule id (`up`, `slow`, ...)."),
    event: str = typer.Option(
        None, "--event", help="Route an event of this kind (deploy, rollback) instead of an alert."
    ),
    at: str = typer.Option(
        None,
        "--at",
        metavar="ISO-8601",
        help="Judge maintenance windows at this time [default: now]; without an offset it "
        "is read in defaults.timezone.",
        show_default=False,
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Show which routes, notifiers, escalation and maintenance windows an alert meets.

    Offline: only monitor.yaml is read, so CI can test its routing. A check named with
    --check brings its configured labels (defaults.labels merged with its own); --label
    adds to or overrides them. `muted_by` lists the maintenance windows (mute or pause)
    covering that check instance at --at; ad hoc silences live in the state store and are
    not consulted. An alert no route matches notifies no one: that is said, `dropped` is
    true, and the exit code is still 0.

    Exit 0 routed (or dropped), 1 invalid config, 2 bad option.

    Examples:

        watchkeeper route --severity critical --check api-health
        watchkeeper route --severity high --check database --at 2026-12-06T03:00:00Z
        watchkeeper route --severity medium --label team=data --format json
        watchkeeper route --event deploy --env production
    """
    from watchkeeper.engine.alerting.maintenance import Maintenance
    from watchkeeper.engine.alerting.routing import Subject, matching_routes
    from watchkeeper.engine.config.instances import split_key

    if severity is None and event is None:
        fail("give --severity (an alert) or --event (an event)", EXIT_USAGE)
    config = load_offline(ctx)
    if severity is not None and severity not in config.severities:
        fail(
            f"--severity: unknown severity {severity!r}; expected one of "
            + ", ".join(config.severities),
            EXIT_USAGE,
        )
    environment = env
    if check and "@" in check:
        check, environment = split_key(check)
        if env and env != environment:
            fail(f"--check names environment {environment!r} but --env says {env!r}", EXIT_USAGE)
    labels: dict[str, str] = {}
    notes = []
    if check:
        known = config.checks.get(check)
        if known is None:
            notes.append(f"{check!r} is not a check in this config; routing it anyway")
        else:
            labels = {**config.defaults.labels, **known.labels}
            if environment and known.environments and environment not in known.environments:
                notes.append(f"{check!r} does not run in environment {environment!r}")
    labels.update(parse_labels(label))
    default_tz = config.defaults.timezone or "UTC"
    when = parse_instant(at, "--at", default_tz) if at else time.time()

    subject = Subject(
        kind="event" if event else "alert",
        severity=severity,
        check=check,
        environment=environment,
        labels=labels,
        event=event,
        rule=rule,
    )
    indexes = matching_routes(config.routes, subject, config.severities)
    routes = [config.routes[i] for i in indexes]
    notifiers: list[str] = []
    for r in routes:
        notifiers += [n for n in r.notify if n not in notifiers]
    escalation = next((r.escalate for r in routes if r.escalate), None)
    windows = []
    if not event:
        windows = Maintenance(config).covering_check(when, check, environment, labels)
    data = {
        "routes": indexes,
        "notifiers": notifiers,
        "escalation": escalation,
        "muted_by": [w.name for w in windows],
        "dropped": not indexes,
        "escalation_levels": [
            {
                "after": level.after,
                "name": level.name,
                "notify": list(level.notify),
                "actions": list(level.actions),
                "repeat": level.repeat,
            }
            for level in config.escalation.get(escalation or "", [])
        ],
        "matched": [_route_json(i, r) for i, r in zip(indexes, routes, strict=True)],
        "windows": [w.public() for w in windows],
        "subject": {
            "kind": subject.kind,
            "severity": severity,
            "check": check,
            "environment": environment,
            "labels": labels,
            "rule": rule,
            "event": event,
        },
        "at": _iso(when),
    }
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", markup=True)
    if fmt is OutputFormat.json:
        echo_json(data)
    else:
        _print(data)


def _route_json(index: int, r: Any) -> dict[str, Any]:
    return {
        "index": index,
        "match": r.match.model_dump(exclude_defaults=True),
        "notify": list(r.notify),
        "escalate": r.escalate,
        "repeat": r.repeat,
        "group_by": list(r.group_by),
        "group_wait": r.group_wait,
        "group_interval": r.group_interval,
        "continue": r.continue_,
    }


def _iso(at: float) -> str:
    from datetime import UTC

    from watchkeeper.engine.schedule.timetable import format_instant

    return format_instant(datetime.fromtimestamp(at, UTC)).replace("+00:00", "Z")


def _print(data: dict[str, Any]) -> None:
    from watchkeeper.schema.units import format_duration

    def say(text: str) -> None:
        console.print(text, markup=False)

    subject = data["subject"]
    what = (
        f"event {subject['event']}"
        if subject["kind"] == "event"
        else f"a {subject['severity']} alert"
    )
    if subject["rule"]:
        what += f" ({subject['rule']})"
    if subject["check"]:
        what += f" of {subject['check']}"
    if subject["environment"]:
        what += f"@{subject['environment']}"
    if subject["labels"]:
        what += " {" + ", ".join(f"{k}={v}" for k, v in subject["labels"].items()) + "}"
    if data["dropped"]:
        say(f"{what}: no route matches; nobody would be notified")
        return
    say(f"{what}:")
    for r in data["matched"]:
        match = ", ".join(f"{k}: {v}" for k, v in r["match"].items()) or "everything"
        extra = []
        if r["escalate"]:
            extra.append(f"escalate {r['escalate']}")
        if r["repeat"]:
            extra.append(f"repeat every {format_duration(r['repeat'])}")
        if r["continue"]:
            extra.append("continue")
        tail = f" ({', '.join(extra)})" if extra else ""
        say(f"  route #{r['index']} [{match}] → {', '.join(r['notify']) or '—'}{tail}")
    say(f"notifiers: {', '.join(data['notifiers']) or 'none'}")
    if data["escalation"]:
        say(f"escalation: {data['escalation']}")
        for level in data["escalation_levels"]:
            parts = []
            if level["notify"]:
                parts.append("notify " + ", ".join(level["notify"]))
            if level["actions"]:
                parts.append("run " + ", ".join(level["actions"]))
            if level["repeat"]:
                parts.append(f"repeat every {format_duration(level['repeat'])}")
            name = f" {level['name']}" if level["name"] else ""
            say(f"  after {format_duration(level['after'])}{name}: {'; '.join(parts) or '—'}")
    if data["windows"]:
        for w in data["windows"]:
            say(
                f"held by maintenance {w['name']} ({w['effect']}) from {w['start']} until "
                f"{w['end']}, as of {data['at']}"
            )
    elif subject["kind"] == "alert":
        say(f"no maintenance window covers it at {data['at']}")
