"""`watchkeeper report`: uptime, latency, error rate, metrics, incidents and SLO budgets."""

from __future__ import annotations

import time
from typing import Any

import anyio
import typer
from rich.table import Table

from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutputFormat,
    app,
    console,
    echo_json,
    fail,
    load_or_exit,
)

INCIDENTS_SHOWN = 20


def _parse_since(value: str) -> float:
    from watchkeeper.schema.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = None
    if not seconds:
        raise typer.BadParameter(
            f"expected a duration longer than 0s such as 7d or 30d, got {value!r}"
        )
    return seconds


@app.command()
def report(
    ctx: typer.Context,
    since: str = typer.Option(
        "30d", "--since", callback=_parse_since, metavar="DURATION", help="Period covered."
    ),
    checks: list[str] = typer.Option(
        None, "--check", metavar="NAME", help="Only this check (`name` or `name@env`); repeatable."
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Show uptime, latency percentiles, error rate, metrics, incidents and SLO budgets.

    Read from the state store (works while the daemon runs). Runs inside `mute`
    maintenance windows are left out of every figure, as they are for SLOs.

    Examples:

        watchkeeper report
        watchkeeper report --since 7d --check api-health@production
        watchkeeper report --format json
    """
    from watchkeeper.engine.alerting.maintenance import Maintenance
    from watchkeeper.engine.cli.run_cmds import _open_client_store
    from watchkeeper.engine.config.instances import expand
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.reports.report import build_report, select_instances
    from watchkeeper.engine.state.store import StoreError

    validation = load_or_exit(ctx)
    config = validation.config
    instances = expand(config, registry())
    try:
        instances = select_instances(instances, checks or [])
    except KeyError as exc:
        fail(f"unknown check(s): {exc.args[0]}", EXIT_USAGE)
    store = _open_client_store(validation)
    until = time.time()

    async def main() -> dict[str, Any]:
        await store.open(role="client")
        try:
            return await build_report(
                config,
                store,
                since=until - since,
                until=until,
                maintenance=Maintenance(config),
                instances=instances,
            )
        finally:
            await store.close()

    try:
        data = anyio.run(main)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)
    if fmt is OutputFormat.json:
        echo_json(data)
        return
    _print_report(data)


def _print_report(data: dict[str, Any]) -> None:
    from watchkeeper.engine.reports.report import burn, metric_text, name_of, percent, seconds
    from watchkeeper.engine.reports.slo import budget_left

    totals = data["totals"]
    console.print(
        f"[bold]Report[/] {data['since']} → {data['until']} ({data['period_text']}): "
        f"uptime {percent(totals['uptime'])}, {totals['runs']} runs, "
        f"{totals['incidents']} incident(s), MTTR {seconds(totals['mttr'])}"
    )
    table = Table(
        "check", "uptime", "error rate", "p50", "p95", "p99", "runs", "muted", "incidents",
        "MTTR", box=None, pad_edge=False, title_justify="left",
    )  # fmt: skip
    for row in data["checks"]:
        latency = row["latency"] or {}
        approx = "" if latency.get("exact", True) else "~"
        table.add_row(
            name_of(row),
            _uptime(row["uptime"]),
            percent(row["error_rate"]),
            approx + seconds(latency.get("p50")),
            approx + seconds(latency.get("p95")),
            approx + seconds(latency.get("p99")),
            str(row["runs"]),
            str(row["muted_runs"]),
            str(row["incidents"]),
            seconds(row["mttr"]),
        )
    console.print()
    console.print(table)
    metrics = Table("check", "metric", "avg", "min", "max", "samples", box=None, pad_edge=False)
    for row in data["checks"]:
        for metric, stat in row["metrics"].items():
            metrics.add_row(
                name_of(row),
                metric,
                metric_text(metric, stat["avg"]),
                metric_text(metric, stat["min"]),
                metric_text(metric, stat["max"]),
                str(stat["samples"]),
            )
    if metrics.row_count:
        console.print()
        console.print(metrics)
    if data["slos"]:
        slos = Table(
            "slo", "check", "objective", "window", "SLI", "budget left", "burn 1h", "burn 6h",
            "status", box=None, pad_edge=False,
        )  # fmt: skip
        colour = {"ok": "green", "at-risk": "yellow", "breached": "red", "no-data": "dim"}
        for slo in data["slos"]:
            slos.add_row(
                slo["slo"],
                name_of(slo),
                percent(slo["objective"], 2),
                slo["window_text"],
                percent(slo["sli"]),
                budget_left(slo["budget_remaining"]),
                burn(slo["burn_rates"].get("1h")),
                burn(slo["burn_rates"].get("6h")),
                f"[{colour.get(slo['status'], 'white')}]{slo['status']}[/]",
            )
        console.print()
        console.print(slos)
    incidents = data["incidents"]
    if incidents:
        shown = incidents[-INCIDENTS_SHOWN:]
        table = Table("fired", "check", "rule", "severity", "lasted", box=None, pad_edge=False)
        for incident in shown:
            table.add_row(
                incident["fired_at"],
                name_of(incident),
                incident["rule"],
                incident["severity"],
                seconds(incident["duration"]) if incident["duration"] is not None else "open",
            )
        console.print()
        more = f" (latest {len(shown)} of {len(incidents)})" if len(incidents) > len(shown) else ""
        console.print(f"Incidents{more}")
        console.print(table)


def _uptime(value: float | None) -> str:
    from watchkeeper.engine.reports.report import percent

    if value is None:
        return "[dim]n/a[/]"
    colour = "green" if value >= 0.999 else ("yellow" if value >= 0.99 else "red")
    return f"[{colour}]{percent(value)}[/]"
