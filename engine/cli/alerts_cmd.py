"""`watchkeeper alerts`: list and acknowledge alerts, silence them ad hoc, beside the daemon.

Every subcommand opens the configured state store as a client (the daemon may be
running): acknowledgements are requests in the `acks` collection that the daemon applies;
silences are documents in `silences` that the daemon reads.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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
    load_or_exit,
)
from watchkeeper.engine.cli.route_cmd import parse_instant, parse_labels

T = TypeVar("T")
MIN_PREFIX = 4
"""Characters of an id that are enough when they name exactly one alert or silence."""

alerts_app = typer.Typer(
    help="""List, acknowledge and silence alerts (without a subcommand: list).

    They read and write the state store, so they work while the daemon runs.

    Examples:

        watchkeeper alerts
        watchkeeper alerts ack 3f9c --comment "rolling back"
        watchkeeper alerts silence --check api-health --for 2h --reason "hotfix"
    """,
    no_args_is_help=False,
    rich_markup_mode="rich",
)
app.add_typer(alerts_app, name="alerts")


def say(text: str) -> None:
    """Print a line for a person: no markup, so ids and names print as they are."""
    console.print(text, markup=False)


AUTHOR_HELP = "Who does this, for the audit log [default: $USER@hostname]."


def default_author() -> str:
    """Return `$USER@hostname`."""
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _in_store(validation: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the configured store as a client, run `work(store)`, close it."""
    from watchkeeper.engine.daemon import create_store
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.state.store import StoreError

    store = create_store(validation.config, registry(), validation.base_dir)

    async def main() -> T:
        await store.open(role="client")
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return anyio.run(main)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)


async def _audit(store: Any, action: str, data: dict[str, Any]) -> None:
    from watchkeeper.engine.state.store import Row

    await store.append("audit", [Row(key=action, at=time.time(), data={**data, "source": "cli"})])


def resolve_id(given: str, known: list[str], what: str, hint: str) -> str:
    """Return the id `given` names: exact, or a unique prefix of 4+ characters (exit 2 else)."""
    given = given.strip()
    if given in known:
        return given
    if len(given) >= MIN_PREFIX:
        found = [k for k in known if k.startswith(given)]
        if len(found) == 1:
            return found[0]
        if found:
            fail(f"{what} id {given!r} is ambiguous: " + ", ".join(sorted(found)), EXIT_USAGE)
    close = difflib.get_close_matches(given, known, n=3, cutoff=0.6)
    tip = f"; did you mean {' or '.join(close)}?" if close else f"; {hint}"
    short = " (give at least 4 characters of it)" if len(given) < MIN_PREFIX else ""
    fail(f"no {what} with id {given!r}{short}{tip}", EXIT_USAGE)


def _table(*columns: str) -> Table:
    """Return a table whose id and time columns never shrink: a cut id cannot be typed."""
    table = Table(box=None)
    for name in columns:
        whole = name in ("id", "since", "until", "severity")
        table.add_column(name, no_wrap=whole, overflow="fold", min_width=min(len(name), 8))
    return table


def _short_time(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%MZ")


# -- list --------------------------------------------------------------------------------------


@alerts_app.callback(invoke_without_command=True)
def alerts(ctx: typer.Context) -> None:
    """List, acknowledge and silence alerts; without a subcommand: `list`."""
    if ctx.invoked_subcommand is None:
        _list(ctx, show_all=False, fmt=OutputFormat.text)


@alerts_app.command("list")
def list_alerts(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", "-a", help="Also recently resolved alerts."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """List open alerts (pending, firing, held), most severe first.

    Examples:

        watchkeeper alerts list
        watchkeeper alerts list --all --format json
    """
    _list(ctx, show_all=show_all, fmt=fmt)


def _list(ctx: typer.Context, *, show_all: bool, fmt: OutputFormat) -> None:
    from watchkeeper.engine.alerting.alerts import Alert

    validation = load_or_exit(ctx)

    async def read(store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return await store.get_all("alerts"), await store.get_all("acks")

    docs, acks = _in_store(validation, read)
    alerts = [Alert.from_doc(d) for d in docs.values()]
    rank = {name: i for i, name in enumerate(validation.config.severities)}
    if show_all:
        alerts.sort(key=lambda a: (not a.open, -a.started_at))
    else:
        alerts = [a for a in alerts if a.open]
        alerts.sort(key=lambda a: (rank.get(a.severity, len(rank)), a.started_at))
    if fmt is OutputFormat.json:
        echo_json([a.public() for a in alerts])
        return
    if not alerts:
        console.print("no alerts" if show_all else "no open alerts")
        return
    table = _table("id", "severity", "status", "check", "since", "summary")
    for a in alerts:
        status = a.status
        if a.acked_at is not None:
            status += f" (acked by {a.acked_by})"
        elif a.id in acks and a.open:
            status += " (ack requested)"
        if a.held and a.open:
            status += f" (held: {a.held})"
        cells = (
            a.id,
            a.severity,
            status,
            a.instance,
            _short_time(a.fired_at or a.started_at),
            a.summary,
        )
        table.add_row(*map(Text, cells))
    console.print(table)


# -- ack ---------------------------------------------------------------------------------------


@alerts_app.command("ack")
def ack(
    ctx: typer.Context,
    alert_id: str = typer.Argument(..., metavar="ID", help="Alert id, or 4+ leading characters."),
    comment: str = typer.Option(
        None, "--comment", "--reason", "-m", help="Why, shown in the alert's timeline."
    ),
    author: str = typer.Option(None, "--author", help=AUTHOR_HELP, show_default=False),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Acknowledge an alert: its escalation and `repeat` stop; it still resolves normally.

    The request is written to the state store and the daemon applies it (at once when
    it runs, else when it starts). Exit 2 when no alert has that id.

    Examples:

        watchkeeper alerts ack 3f9c0a12b7de
        watchkeeper alerts ack 3f9c --comment "rolling back"
    """
    from watchkeeper.engine.alerting.alerts import Alert

    validation = load_or_exit(ctx)
    by = author or default_author()

    async def read(store: Any) -> dict[str, Any]:
        return await store.get_all("alerts")

    docs = _in_store(validation, read)
    found = resolve_id(alert_id, list(docs), "alert", "`watchkeeper alerts list` shows them")
    alert = Alert.from_doc(docs[found])
    at = time.time()
    request = {"alert": found, "by": by, "at": at, "comment": comment}
    if not alert.open:
        outcome = "resolved"
    elif alert.acked_at is not None:
        outcome = "already"
    else:
        outcome = "requested"

        async def write(store: Any) -> None:
            await store.put("acks", {found: request})
            await _audit(store, "ack", {"by": by, "alert": found, "comment": comment})

        _in_store(validation, write)
    if fmt is OutputFormat.json:
        echo_json({**request, "status": outcome, "alert": alert.public()})
        return
    if outcome == "resolved":
        say(f"alert {found} ({alert.instance}) already resolved; nothing to acknowledge")
    elif outcome == "already":
        say(f"alert {found} ({alert.instance}) was already acknowledged by {alert.acked_by}")
    else:
        say(f"acknowledged {found} ({alert.instance} {alert.rule}) as {by}")


# -- silences ----------------------------------------------------------------------------------


def _glob_regex(pattern: str) -> str:
    def one(c: str) -> str:
        if c in "*?":
            return ".*" if c == "*" else "."
        return c if c.isalnum() or c in "-_@/" else re.escape(c)

    return "".join(map(one, pattern))


def _one_of(name: str, values: list[str]) -> Any:
    """Return a matcher for `name` equal to one of `values` (shell patterns allowed)."""
    from watchkeeper.engine.alerting.silences import Matcher

    if len(values) == 1 and not any(c in values[0] for c in "*?"):
        return Matcher(name, values[0])
    return Matcher(name, "|".join(_glob_regex(v) for v in values), regex=True)


def _severity_matcher(text: str, order: list[str]) -> Any:
    from watchkeeper.engine.alerting.routing import severity_matches
    from watchkeeper.engine.alerting.silences import Matcher

    wanted = [s.strip() for s in text.split(",") if s.strip()]
    chosen = [s for s in order if severity_matches(wanted, s, order)]
    if not chosen:
        fail(
            f"--severity {text!r} names no severity; expected one of {', '.join(order)}, "
            "a list, or >=high / <=low",
            EXIT_USAGE,
        )
    if len(chosen) == 1:
        return Matcher("severity", chosen[0])
    return Matcher("severity", "|".join(re.escape(s) for s in chosen), regex=True)


def build_matchers(
    checks: list[str], envs: list[str], severity: str | None, labels: dict[str, str],
    exprs: list[str], order: list[str],
) -> list[Any]:  # fmt: skip
    """Turn the `alerts silence` options into matchers (exit 2 on a bad one)."""
    from watchkeeper.engine.alerting.silences import Matcher, parse_matcher

    matchers = []
    if checks:
        # `check@env` names an instance; plain names match the check in every environment
        field = "instance" if any("@" in c for c in checks) else "check"
        matchers.append(_one_of(field, checks))
    if envs:
        matchers.append(_one_of("environment", envs))
    if severity:
        matchers.append(_severity_matcher(severity, order))
    matchers += [Matcher(f"label:{k}", v) for k, v in labels.items()]
    for expr in exprs:
        try:
            matchers.append(parse_matcher(expr))
        except ValueError as exc:
            fail(f"--match: {exc}", EXIT_USAGE)
    return matchers


@alerts_app.command("silence")
def silence(
    ctx: typer.Context,
    check: list[str] = typer.Option(
        None, "--check", help="Check (`api-*` patterns, or `check@env`); repeatable."
    ),
    env: list[str] = typer.Option(None, "--env", "-e", help="Environment; repeatable."),
    severity: str = typer.Option(
        None, "--severity", "-s", help="Severity, a comma list, or >=high / <=low."
    ),
    label: list[str] = typer.Option(None, "--label", "-l", help="Label k=v; repeatable."),
    match: list[str] = typer.Option(
        None,
        "--match",
        help="A matcher: name=value, name!=value, name=~regex, name!~regex; name is check, "
        "environment, rule, severity, instance or label:<name>. Repeatable.",
    ),
    duration: str = typer.Option(None, "--for", metavar="DURATION", help="How long, e.g. 2h."),
    until: str = typer.Option(None, "--until", metavar="ISO-8601", help="Or: until when."),
    start: str = typer.Option(
        None, "--from", metavar="ISO-8601", help="Start later [default: now].", show_default=False
    ),
    reason: str = typer.Option(..., "--reason", "-r", help="Why; shown wherever it is listed."),
    author: str = typer.Option(None, "--author", help=AUTHOR_HELP, show_default=False),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Silence matching alerts for a while, like a `mute` window; print the new silence's id.

    Every given option must match (AND); values of one repeated option are alternatives
    (OR). Regex matchers must match the whole value. The id goes to stdout, a summary to
    stderr, so `ID=$(watchkeeper alerts silence ...)` works.

    Examples:

        watchkeeper alerts silence --check api-health --for 2h --reason "hotfix"
        watchkeeper alerts silence --env staging --severity "<=medium" --until 2026-12-10T18:00Z --reason "load test"
        watchkeeper alerts silence --match "check=~api-.*" --label team=web --for 30m --reason "deploy"
    """  # noqa: E501
    from watchkeeper.engine.alerting.silences import Silence, add_silence, new_silence_id
    from watchkeeper.schema.units import format_duration, parse_duration

    if (duration is None) == (until is None):
        fail("give one of --for DURATION or --until TIME", EXIT_USAGE)
    if not reason.strip():
        fail("--reason must say why", EXIT_USAGE)
    validation = load_or_exit(ctx)
    config = validation.config
    tz = config.defaults.timezone or "UTC"
    matchers = build_matchers(
        check or [], env or [], severity, parse_labels(label), match or [], config.severities
    )
    if not matchers:
        fail("give at least one of --check, --env, --severity, --label or --match", EXIT_USAGE)
    now = time.time()
    starts = parse_instant(start, "--from", tz) if start else now
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError:
            seconds = 0.0
        if not seconds:
            fail(f"--for: expected a duration longer than 0s such as 30m or 2h, got {duration!r}")
        ends = starts + seconds
    else:
        ends = parse_instant(until, "--until", tz)
        if ends <= max(starts, now):
            fail("--until must lie in the future and after --from", EXIT_USAGE)
    for name in check or []:
        bare = name.partition("@")[0]
        if not any(c in bare for c in "*?") and bare not in config.checks:
            err_console.print(
                f"[yellow]note:[/] no check named {escape(repr(bare))} in the config", markup=True
            )
    item = Silence(
        id=new_silence_id(),
        matchers=matchers,
        starts_at=starts,
        ends_at=ends,
        created_by=author or default_author(),
        created_at=now,
        reason=reason.strip(),
    )
    try:
        item.validate()
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)

    async def write(store: Any) -> int:
        from watchkeeper.engine.alerting.alerts import Alert

        await add_silence(store, item)
        await _audit(
            store,
            "silence",
            {"by": item.created_by, "silence": item.id, "reason": item.reason,
             "matchers": [str(m) for m in matchers], "ends_at": ends},
        )  # fmt: skip
        alerts = [Alert.from_doc(d) for d in (await store.get_all("alerts")).values()]
        return sum(a.open and item.matches(_fields(a)) for a in alerts)

    hits = _in_store(validation, write)
    if fmt is OutputFormat.json:
        echo_json({**item.public(now), "open_alerts_matched": hits})
        return
    echo(item.id)
    public = item.public(now)
    err_console.print(
        f"silenced {', '.join(public['matchers'])} until {public['ends_at']} "
        f"({format_duration(ends - starts)}) as {item.created_by}; "
        f"matches {hits} open alert{'s' * (hits != 1)} now",
        markup=False,
    )


def _fields(alert: Any) -> dict[str, Any]:
    return {
        "check": alert.check,
        "environment": alert.environment,
        "rule": alert.rule,
        "severity": alert.severity,
        "instance": alert.instance,
        "labels": alert.labels,
    }


@alerts_app.command("silences")
def silences(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", "-a", help="Also expired silences."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """List active and pending silences (expired ones too with --all).

    Examples:

        watchkeeper alerts silences
        watchkeeper alerts silences --all --format json
    """
    from watchkeeper.engine.alerting.silences import load_silences

    validation = load_or_exit(ctx)
    found = _in_store(validation, load_silences)
    now = time.time()
    items = sorted(found.values(), key=lambda s: (s.starts_at, s.id))
    if not show_all:
        items = [s for s in items if s.state(now) != "expired"]
    rows = [s.public(now) for s in items]
    if fmt is OutputFormat.json:
        echo_json(rows)
        return
    if not rows:
        console.print("no silences" if show_all else "no active or pending silences")
        return
    table = _table("id", "status", "until", "matchers", "by", "reason")
    for s, r in zip(items, rows, strict=True):
        status = r["status"]
        if status == "pending":
            status += f" from {_short_time(s.starts_at)}"
        elif r["expired_by"]:
            status += f" by {r['expired_by']}"
        cells = (r["id"], status, _short_time(s.ends_at), ", ".join(r["matchers"]),
                 r["created_by"], r["reason"])  # fmt: skip
        table.add_row(*map(Text, cells))
    console.print(table)


@alerts_app.command("expire")
def expire(
    ctx: typer.Context,
    silence_id: str = typer.Argument(
        ..., metavar="ID", help="Silence id, or 4+ leading characters."
    ),
    author: str = typer.Option(None, "--author", help=AUTHOR_HELP, show_default=False),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """End a silence now (a pending one never starts). Exit 2 when no silence has that id.

    Examples:

        watchkeeper alerts expire 7be1c2d09a44
    """
    from watchkeeper.engine.alerting.silences import expire_silence, load_silences

    validation = load_or_exit(ctx)
    by = author or default_author()
    found = _in_store(validation, load_silences)
    sid = resolve_id(
        silence_id, list(found), "silence", "`watchkeeper alerts silences --all` lists them"
    )
    now = time.time()
    was = found[sid].state(now)

    async def write(store: Any) -> Any:
        item = await expire_silence(store, sid, by, now)
        if was != "expired":
            await _audit(store, "expire", {"by": by, "silence": sid})
        return item

    item = _in_store(validation, write)
    if fmt is OutputFormat.json:
        echo_json(item.public(now))
    elif was == "expired":
        say(f"silence {sid} had already expired at {item.public(now)['ends_at']}")
    else:
        say(f"expired silence {sid} as {by}")
