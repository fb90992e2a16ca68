"""`watchkeeper plan`: what runs when, offline, from monitor.yaml alone."""

from __future__ import annotations

import gc
import itertools
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.text import Text

from watchkeeper.engine.cli import root
from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutputFormat,
    app,
    config_option,
    config_path,
    console,
    echo,
    err_console,
    fail,
)
from watchkeeper.engine.observe.redaction import REDACTOR

TEXT_LIMIT = 1000
"""Rows a person sees by default; JSON output is complete unless --limit says otherwise."""
CALENDAR = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))
"""The years a plan may cover."""
NAME_WIDTH = 40
"""Names up to this long are never broken across lines; longer ones fold."""


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


def _parse_kinds(values: list[str] | None) -> list[str] | None:
    from watchkeeper.engine.schedule.plan import KINDS

    if not values:
        return None
    kinds = [k.strip() for value in values for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise typer.BadParameter(
            f"expected {', '.join(KINDS)} (repeated or comma-separated), got "
            + ", ".join(repr(k) for k in unknown or values)
        )
    return kinds


@app.command()
def plan(
    ctx: typer.Context,
    file: Path = typer.Argument(
        None,
        metavar="FILE",
        help="Config file (default: the --config file).",
        show_default=False,
    ),
    config: Path = config_option(),
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
    kinds: list[str] = typer.Option(
        None,
        "--kind",
        "-k",
        callback=_parse_kinds,
        metavar="KIND",
        help="Only these: check, backup, drill, task, maintenance (repeat or comma-separate).",
        show_default=False,
    ),
    checks: list[str] = typer.Option(
        None,
        "--check",
        metavar="NAME",
        help="Only this check (NAME or NAME@ENV; repeatable), with the maintenance "
        "windows covering it.",
        show_default=False,
    ),
    expand: bool = typer.Option(
        False,
        "--all",
        "--expand",
        help="List every run of cron items that repeat more than daily (text shows one "
        "row each, with its rate).",
    ),
    fmt: OutputFormat = typer.Option(
        OutputFormat.text, "--format", "-f", help="text for people, json for scripts."
    ),
) -> None:
    """Show what runs when: checks, backups, drills, tasks and maintenance windows.

    Offline: only monitor.yaml is read. Cron schedules get a row per run, in the item's
    own timezone with Unix cron's DST rules; an `every` schedule gets one row (its first
    run) with its interval. In text, a cron item repeating more than daily is one row
    too, with its rate (--all lists each run). A run a `pause` maintenance window covers
    is shown held, with when it runs instead (once, as the window ends; `held_until` in
    JSON). Maintenance windows show their end, including one already under way. Disabled
    checks and passive ones (heartbeat, composite) are not listed. Unset environment
    variables are only warnings, as in `validate`.

    Exit 0 listed, 1 invalid config, 2 bad option or unreadable file.

    Examples:

        watchkeeper plan
        watchkeeper plan --next 24h
        watchkeeper plan examples/infinite-idea.yaml --kind backup,drill
        watchkeeper plan -c monitor.yaml --check clock --all
        watchkeeper plan --from 2026-10-25T00:00:00Z --next 2h --format json
        watchkeeper plan --next 30d --limit 0
    """
    from watchkeeper.engine.config.validation import validate
    from watchkeeper.engine.plugins import PluginError
    from watchkeeper.engine.schedule.plan import plan as build_plan
    from watchkeeper.engine.schedule.timetable import zone

    path = config_path(ctx, file, config)
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
    settings = result.config
    if checks:
        known = set(settings.checks) | {
            f"{name}@{env}" for name, c in settings.checks.items() for env in c.environments or []
        }
        unknown = [name for name in checks if name not in known]
        if unknown:
            fail(f"unknown check {', '.join(map(repr, unknown))} in {path}", EXIT_USAGE)
    # the validated config lives until exit: keep the collector from re-scanning it
    gc.freeze()
    begin: datetime = start or datetime.now(UTC)  # type: ignore[assignment]
    if begin.tzinfo is None or begin.utcoffset() is None:
        begin = begin.replace(tzinfo=zone(settings.defaults.timezone or "UTC"))
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
    chosen = {"checks": checks or None}
    if kinds:
        chosen["kinds"] = kinds
    elif checks:
        chosen["kinds"] = ("check", "maintenance")
    if fmt is OutputFormat.json:
        items = build_plan(settings, start=begin, end=end, **chosen)
        _write_json(itertools.islice(items, limit or None))
    else:
        items = build_plan(
            settings, start=begin, end=end, collapse=not expand, stretches=True, **chosen
        )
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


def _when(dt: datetime, *, seconds: bool, zone: bool = True) -> str:
    return dt.strftime("%H:%M:%S" if seconds else "%H:%M") + (f" {dt.tzname()}" if zone else "")


def _day(dt: datetime) -> str:
    return dt.strftime("%a %Y-%m-%d")


def _then(dt: datetime, day: str, zone: bool) -> str:
    """Return a later instant as short as the row's day allows: `04:00 UTC`, else with
    its date."""
    shown = _when(dt, seconds=bool(dt.second), zone=zone)
    return shown if _day(dt) == day else f"{dt.strftime('%a %m-%d')} {shown}"


def _rate(item) -> tuple[str, ...]:
    """Return how often a summarised item runs, longest first: `every 5m · 288 runs a
    day`, then `every 5m` for a narrow terminal."""
    from watchkeeper.engine.config.problems import about
    from watchkeeper.schema.units import format_duration

    how = f"every {format_duration(item.every)}" if item.every else f"cron {item.cron}"
    if item.per_day is None:
        return (how,)
    count = about(item.per_day)
    near = abs(item.per_day - round(item.per_day)) < 0.05
    runs = f"{'' if near else 'about '}{count} run{'s' * (count != '1')} a day"
    return (f"{how} · {runs}", how)


def _what(item, day: str, seen: set, zone: bool) -> str | tuple[str, ...]:
    """Return the last column of a row: what happens at that time (or ways to say it,
    longest first)."""
    if item.kind == "maintenance":
        return f"{item.effect or 'mute'} until {_then(item.local_until, day, zone)}"
    if item.held_runs is not None:
        runs = f"{item.held_runs:,}{'+' * (item.held_runs >= 10_000)}"
        count = f"{runs} run{'s' * (item.held_runs != 1)} held"
        return f"{count}; runs once at {_then(item.local_held_until, day, zone)}"
    if item.held_until is not None:
        # every held run of one stretch says when it ends; the first also that the item
        # runs then (once, not once per held run)
        stretch = (item.kind, item.name, item.environment, item.location, item.held_until)
        if stretch in seen:
            return f"held until {_then(item.local_held_until, day, zone)}"
        seen.add(stretch)
        return f"held; runs once at {_then(item.local_held_until, day, zone)}"
    if item.summary:
        return _rate(item)
    return ""


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
    # one zone for every row (the usual case) is said once, in the heading
    zones = {i.local_at.tzname() for i in rows} | {
        t.tzname() for i in rows for t in (i.local_until, i.local_held_until) if t is not None
    }
    zone = len(zones) != 1
    headings = ["when" if zone else f"when ({next(iter(zones))})", "kind", "name"]
    environments = any(i.environment for i in rows)
    if environments:
        headings.append("env")
    headings.append("what happens")
    lines: list[tuple[str, list[str]]] = []  # (day, cells)
    seen: set = set()
    summarised = False
    for item in rows:
        day = _day(item.local_at)
        summarised = summarised or (item.cron is not None and item.held_runs is None)
        name = f"{item.name} from {item.location}" if item.location else item.name
        cells = ["  " + _when(item.local_at, seconds=seconds, zone=zone), item.kind, name]
        if environments:
            cells.append(item.environment or "")
        cells.append(_what(item, day, seen, zone))
        lines.append((day, cells))
    console.print(f"Plan from {span}:")
    table = _Columns(headings, [cells for _, cells in lines], console.width)
    console.print(Text(table.line(headings), style="bold"))
    day = None
    for row_day, cells in lines:
        if row_day != day:
            day = row_day
            console.print(Text(day, style="bold"))
        for line in table.lines(cells):
            console.print(Text(line))
    if more:
        console.print(
            f"[dim]Showing the first {limit} rows: --limit 0 for all, or a shorter --next.[/]",
            markup=True,
        )
    if summarised:
        console.print(
            "[dim]Repeating items show their first run and rate; --all lists each cron run.[/]",
            markup=True,
        )


class _Columns:
    """Lay rows out in columns within `width`: the names keep their width (up to
    NAME_WIDTH), and the last column wraps between words in what is left.

    Names are what people look for, so they are never broken while they fit; a longer
    one folds onto the next line, never cut to "…" (a cut name could be another item's).
    """

    GAP = 2
    LAST_MIN = 12
    FOLDED_MIN = 20

    def __init__(self, headings: list[str], rows: list[list], width: int):
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headings[:-1])]
        # name (and env): folded past NAME_WIDTH; the last column takes what is left
        names = range(2, len(widths))
        for index in names:
            widths[index] = max(len(headings[index]), min(widths[index], NAME_WIDTH))
        short = self.LAST_MIN - (width - sum(widths) - self.GAP * len(widths))
        while short > 0:
            # too narrow for the last column: fold the widest name column, down to a point
            index = max(names, key=lambda i: widths[i])
            if widths[index] <= self.FOLDED_MIN:
                break
            widths[index] -= 1
            short -= 1
        widths.append(max(self.LAST_MIN, width - sum(widths) - self.GAP * len(widths)))
        self.widths = widths

    def line(self, cells: list[str]) -> str:
        gap = " " * self.GAP
        return gap.join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def lines(self, cells: list) -> list[str]:
        """Return the lines of one row: names folded, the last column wrapped (the
        longest of its ways to say it that fits)."""
        import textwrap

        parts = [[c[i : i + w] for i in range(0, len(c), w)] or [""] for c, w in
                 zip(cells[:-1], self.widths, strict=False)]  # fmt: skip
        last = cells[-1] if isinstance(cells[-1], tuple) else (cells[-1],)
        said = next((text for text in last if len(text) <= self.widths[-1]), last[0])
        parts.append(textwrap.wrap(said, self.widths[-1], break_on_hyphens=False) or [""])
        height = max(len(p) for p in parts)
        return [self.line([p[i] if i < len(p) else "" for p in parts]) for i in range(height)]
