"""`watchkeeper plan`: what runs when, offline, from monitor.yaml alone."""

from __future__ import annotations

import gc
import itertools
import json
import sys
from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table

from watchkeeper.engine.cli import root
from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutputFormat,
    app,
    console,
    echo,
    err_console,
    fail,
    state,
)
from watchkeeper.engine.redaction import REDACTOR

TEXT_LIMIT = 1000
"""Rows a person sees by default; JSON output is complete unless --limit says otherwise."""
CALENDAR = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
"""The years a plan may cover."""


def _parse_from(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO-8601 time such as 2026-10-25T00:00:00Z or "
            f"2026-10-25T02:00+02:00, got {value!r}"
        ) from None


def _parse_next(value: str) -> float:
    from watchkeeper.schema.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = None
    if not seconds:
        raise typer.BadParameter(
            f"expected a duration longer than 0s such as 12h, 7d or 2w, got {value!r}"
        )
    return seconds


@app.command()
def plan(
    ctx: typer.Context,
    start: str = typer.Option(
        None,
        "--from",
        callback=_parse_from,
        metavar="ISO-8601",
        help="Start of the period (default: now); without an offset it is read in "
        "defaults.timezone.",
        show_default=False,
    ),
    period: str = typer.Option(
        "7d",
        "--next",
        callback=_parse_next,
        metavar="DURATION",
        help="Length of the period: 12h, 7d, 2w.",
    ),
    limit: int = typer.Option(
        None,
        "--limit",
        min=0,
        help=f"Show at most this many rows, 0 for all (default: {TEXT_LIMIT} for text, "
        "all for json).",
        show_default=False,
    ),
    fmt: OutputFormat = typer.Option(
        OutputFormat.text, "--format", "-f", help="text for people, json for scripts."
    ),
) -> None:
    """Show what runs when: checks, backups, drills, tasks and maintenance windows.

    Offline: only monitor.yaml is read. Cron schedules get a row per run, in the item's
    own timezone with Unix cron's DST rules; an `every` schedule gets one row (its first
    run) with its interval. Maintenance windows show their end, including one already
    under way. Disabled checks and passive ones (heartbeat, composite) are not listed.
    Unset environment variables are only warnings, as in `validate`.

    Exit 0 listed, 1 invalid config, 2 bad option or unreadable file.

    Examples:

        watchkeeper plan
        watchkeeper plan --next 24h
        watchkeeper plan --from 2026-10-25T00:00:00Z --next 2h --format json
        watchkeeper plan --next 30d --limit 0
    """
    from watchkeeper.engine.config import validate
    from watchkeeper.engine.plan import plan as build_plan
    from watchkeeper.engine.plugins import PluginError
    from watchkeeper.engine.timetable import zone

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
        fail(f"{path} is not valid ({len(result.errors)} error(s)); nothing planned", EXIT_FAILED)
    if result.warnings and fmt is OutputFormat.text:
        count = len(result.warnings)
        err_console.print(
            f"[yellow]note:[/] {count} warning{'s' * (count != 1)} in {path} "
            "(`watchkeeper validate` lists them)",
            markup=True,
        )
    config = result.config
    # the validated config lives until exit: keep the collector from re-scanning it
    gc.freeze()
    begin: datetime = start or datetime.now(UTC)  # type: ignore[assignment]
    if begin.tzinfo is None or begin.utcoffset() is None:
        begin = begin.replace(tzinfo=zone(config.defaults.timezone or "UTC"))
    try:
        end = begin + timedelta(seconds=period)  # type: ignore[arg-type]
    except OverflowError:
        end = CALENDAR[1]
    # cron searches look years ahead (Feb 29 on a Monday): keep clear of the calendar's ends
    if begin < CALENDAR[0] or end >= CALENDAR[1]:
        fail(
            f"the period must lie between {CALENDAR[0].year} and {CALENDAR[1].year}; "
            "check --from and --next",
            EXIT_USAGE,
        )
    if limit is None:
        limit = TEXT_LIMIT if fmt is OutputFormat.text else 0
    items = build_plan(config, start=begin, end=end)
    if fmt is OutputFormat.json:
        _write_json(itertools.islice(items, limit or None))
    else:
        _print_table(items, begin, end, limit or None)
    root.fast_exit = True


def _write_json(items) -> None:
    """Stream the JSON list one row per line, so a long plan never sits in memory at once."""
    out = sys.stdout
    first = True
    for item in items:
        out.write(("[\n  " if first else ",\n  ") + REDACTOR.redact(json.dumps(item.to_json())))
        first = False
    out.write("[]\n" if first else "\n]\n")


def _when(dt: datetime, *, seconds: bool) -> str:
    return dt.strftime("%H:%M:%S" if seconds else "%H:%M") + f" {dt.tzname()}"


def _day(dt: datetime) -> str:
    return dt.strftime("%a %Y-%m-%d")


def _print_table(items, begin: datetime, end: datetime, limit: int | None) -> None:
    head = list(itertools.islice(items, None if limit is None else limit + 1))
    more = limit is not None and len(head) > limit
    rows = head[:limit] if more else head
    span = f"{_day(begin)} {_when(begin, seconds=False)} to {_day(end)} {_when(end, seconds=False)}"
    if not rows:
        console.print(f"Nothing runs from {span}.")
        return
    # jitter puts runs between whole minutes; show seconds only when some row needs them
    seconds = any(i.at.second or i.at.microsecond for i in rows)
    table = Table(box=None)
    table.add_column("when", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    # names fold rather than end in "…": a cut name could be another item's
    table.add_column("name", overflow="fold", min_width=12)
    table.add_column("environment", overflow="fold", min_width=7)
    table.add_column("until / every")
    day = None
    for item in rows:
        at = item.local_at
        if _day(at) != day:
            day = _day(at)
            table.add_row(f"[bold]{day}[/]")
        extra = ""
        if item.until is not None:
            until = item.local_until
            shown = _when(until, seconds=seconds)  # type: ignore[arg-type]
            extra = f"until {shown}" if _day(until) == day else f"until {_day(until)} {shown}"  # type: ignore[arg-type]
        elif item.every is not None:
            from watchkeeper.schema.units import format_duration

            extra = f"every {format_duration(item.every)}"
        table.add_row(
            "  " + _when(at, seconds=seconds),
            item.kind,
            item.name,
            item.environment or "",
            extra,
        )
    console.print(f"Plan from {span}:")
    console.print(table)
    if more:
        console.print(
            f"[dim]Showing the first {limit} rows; more follow. Pass --limit 0 for all, "
            "or a shorter --next.[/]",
            markup=True,
        )
