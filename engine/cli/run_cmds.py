"""Commands that run things: the daemon, checks now, heartbeats, and status from the store."""

from __future__ import annotations

import re
import subprocess
import sys
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
    echo,
    echo_json,
    err_console,
    fail,
    load_or_exit,
)
from watchkeeper.schema.base import NAME_PATTERN


@app.command()
def run(
    ctx: typer.Context,
    once: bool = typer.Option(
        False,
        "--once",
        help="Run every check once, keep state, exit "
        "(1 if any check fails): for a CI-scheduled uptime job.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Do everything but notify: print each message that would be sent."
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output of --once."),
    replica: str = typer.Option(
        None,
        "--replica",
        envvar="WATCHKEEPER_REPLICA",
        help="This daemon's name among replicas sharing a postgres or redis store "
        "(default: the host name).",
    ),
    location: str = typer.Option(
        None,
        "--location",
        envvar="WATCHKEEPER_LOCATION",
        help="Where this daemon stands (eu, us-east...): it runs the checks that list "
        "this location in `locations.from`.",
    ),
) -> None:
    """Run the daemon on monitor.yaml (or one pass of every check with --once).

    SIGTERM/SIGINT stop it cleanly; SIGHUP, or saving the config file, reloads it after
    validation (an invalid file is rejected and the running config kept).

    Examples:

        watchkeeper run
        watchkeeper -c /etc/watchkeeper/monitor.yaml --log-format json run
        watchkeeper run --once --format json
    """
    from watchkeeper.engine.config.process import ConfigLimitError

    def load_the_daemon() -> None:
        # the daemon, and what it loads as it starts: anyio's event loop (what `anyio.run`
        # imports), the arena limit, Sentry's set-up, the workers' frames
        import anyio._backends._asyncio  # noqa: F401

        import watchkeeper.engine.api
        import watchkeeper.engine.daemon
        import watchkeeper.engine.observe.memory
        import watchkeeper.engine.observe.sentry
        import watchkeeper.engine.run.worker  # noqa: F401

    # the config is read in a child process under a time and a memory limit: a hostile
    # file costs the child, and the daemon keeps nothing of the parse but the result;
    # meanwhile the daemon loads the rest of itself
    try:
        validation = load_or_exit(ctx, isolated=True, meanwhile=load_the_daemon)
    except ConfigLimitError as exc:
        fail(f"{exc.path}: {exc.reason}; nothing was started", EXIT_FAILED)
    from watchkeeper.engine.api import ServerError
    from watchkeeper.engine.daemon import Daemon
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.run.executor import LocalExecutor
    from watchkeeper.engine.state.replicas import ReplicaError
    from watchkeeper.engine.state.store import StoreError

    # one pass runs in-process: starting worker processes would cost more than it saves
    executor = LocalExecutor(registry(), validation.base_dir) if once else None
    # previews go where they do not spoil the machine-readable output
    printer = (lambda text: echo(text, err=True)) if fmt is OutputFormat.json else echo
    if location is not None and not re.fullmatch(NAME_PATTERN, location):
        fail(
            f"--location {location!r}: expected a name of letters, digits and `_ . : -`",
            EXIT_USAGE,
        )
    daemon = Daemon(
        validation,
        dry_run=dry_run,
        executor=executor,
        replica=replica,
        location=location,
        printer=printer,
    )
    try:
        if once:
            results = anyio.run(daemon.run_once)
        else:
            anyio.run(daemon.serve)
            return
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)
    except ReplicaError as exc:
        fail(str(exc), EXIT_FAILED)
    except ServerError as exc:
        fail(str(exc), EXIT_FAILED)
    rows = [_result_row(instance, result) for instance, result in results]
    rows.sort(key=lambda r: (r["check"], r.get("environment") or ""))
    _print_results(rows, fmt, {instance.key: instance for instance, _ in results})
    raise typer.Exit(0 if all(r["ok"] for r in rows) else EXIT_FAILED)


@app.command()
def check(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        None, help="Checks to run (`name` or `name@env`); default: all.", show_default=False
    ),
    env: str = typer.Option(None, "--env", "-e", help="Only this environment's instances."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Run checks now and print their results; exit 1 if any fails.

    Nothing is stored and nobody is notified: a one-off health check, for a terminal or CI.
    Heartbeat and composite checks are passive and are not run here.

    Examples:

        watchkeeper check
        watchkeeper check api-health --env production
        watchkeeper check database cache --format json
    """
    from watchkeeper.engine.config.instances import expand
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.run.executor import LocalExecutor

    validation = load_or_exit(ctx)
    reg = registry()
    instances = expand(validation.config, reg)
    selected = _select(instances, names or [], env)
    # a check with `locations` runs once, from here: its runs per location are the
    # daemon's replicas' business
    runnable = [i for i in selected if not i.passive and i.parent is None]
    if not runnable:
        fail("no runnable checks selected (heartbeat and composite checks are passive)", EXIT_USAGE)
    executor = LocalExecutor(reg, validation.base_dir)
    results: list[tuple[Any, Any]] = []

    async def main() -> None:
        try:
            async with anyio.create_task_group() as tg:
                limiter = anyio.CapacityLimiter(validation.config.engine.concurrency)
                for instance in runnable:
                    tg.start_soon(_run_one, executor, instance, limiter, results)
        finally:
            await executor.close()

    anyio.run(main)
    rows = sorted(
        (_result_row(i, r) for i, r in results),
        key=lambda r: (r["check"], r.get("environment") or ""),
    )
    _print_results(rows, fmt, {i.key: i for i, _ in results})
    raise typer.Exit(0 if all(r["ok"] for r in rows) else EXIT_FAILED)


async def _run_one(executor, instance, limiter, results) -> None:
    async with limiter:
        results.append((instance, await executor.run(instance)))


def _select(instances: dict[str, Any], names: list[str], env: str | None) -> list[Any]:
    chosen = []
    for key, instance in instances.items():
        if env and instance.environment != env:
            continue
        if names and key not in names and instance.check not in names:
            continue
        chosen.append(instance)
    unknown = [
        n for n in names if n not in instances and not any(i.check == n for i in instances.values())
    ]
    if unknown:
        fail(f"unknown check(s): {', '.join(unknown)}", EXIT_USAGE)
    return chosen


def _result_row(instance: Any, result: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"check": instance.check}
    if instance.environment:
        row["environment"] = instance.environment
    row["ok"] = result.ok
    if not result.ok:
        row["severity"] = instance.severity
    row["metrics"] = result.flat_metrics()
    row["message"] = result.message
    row["duration_ms"] = round(result.duration * 1000, 1)
    return row


def _print_results(
    rows: list[dict[str, Any]], fmt: OutputFormat, instances: dict[str, Any] | None = None
) -> None:
    if fmt is OutputFormat.json:
        echo_json(rows)
        return
    # (the console masks a table's cells before laying them out: engine/cli/root.py)
    table = Table("", "check", "time", "message", "metrics", box=None, pad_edge=False)
    for r in rows:
        name = r["check"] + (f"@{r['environment']}" if r.get("environment") else "")
        instance = (instances or {}).get(name)
        metrics = ", ".join(
            f"{k}={_metric_text(instance, k, v)}" for k, v in list(r["metrics"].items())[:6]
        )
        table.add_row(
            "[green]✓[/]" if r["ok"] else f"[red]✗ {r.get('severity', '')}[/]",
            name,
            f"{r['duration_ms']:.0f}ms",
            r["message"] or "",
            metrics,
        )
    console.print(table)
    failed = sum(not r["ok"] for r in rows)
    console.print(f"{len(rows) - failed} ok, {failed} failing" if rows else "no checks ran")


def _metric_text(instance: Any, name: str, value: float) -> str:
    """Show a metric in the unit its probe declares (24.3GB, 812ms), else as a number."""
    from watchkeeper.engine.run.declared_metrics import metric_kind, quantity_kind
    from watchkeeper.engine.run.evaluate import render_value
    from watchkeeper.schema.units import format_quantity

    kind = metric_kind(instance.probe_type, name, instance.options) if instance else None
    if kind is None or kind == "any":  # undeclared: the name's suffix is the best guess
        return render_value(name, value)
    return format_quantity(value, quantity_kind(kind))


# -- heartbeats from the command line ---------------------------------------------------------


def _open_client_store(validation: Any):
    from watchkeeper.engine.daemon import create_store
    from watchkeeper.engine.plugins import registry

    return create_store(validation.config, registry(), validation.base_dir)


def _heartbeat_key(validation: Any, name: str) -> str:
    from watchkeeper.engine.config.instances import expand
    from watchkeeper.engine.plugins import registry

    instances = expand(validation.config, registry())
    instance = instances.get(name)
    if instance is None:
        matches = [i for i in instances.values() if i.check == name]
        if len(matches) > 1:
            fail(
                f"{name} has several environments; name one: " + ", ".join(i.key for i in matches),
                EXIT_USAGE,
            )
        instance = matches[0] if matches else None
    if instance is None:
        fail(f"unknown check {name!r}", EXIT_USAGE)
    if instance.probe_type != "heartbeat":
        fail(f"{name!r} is a {instance.probe_type} check, not a heartbeat", EXIT_USAGE)
    return instance.key


def _write_beat(validation: Any, key: str, data: dict[str, Any]) -> None:
    from watchkeeper.engine.state.store import Row, StoreError

    store = _open_client_store(validation)

    async def main() -> None:
        await store.open(role="client")
        try:
            await store.append("beats", [Row(key=key, at=time.time(), data=data)])
        finally:
            await store.close()

    try:
        anyio.run(main)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)


@app.command()
def heartbeat(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Heartbeat check (`name` or `name@env`)."),
    status: str = typer.Option("ok", "--status", "-s", help="start, ok or fail."),
    exit_code: int = typer.Option(None, "--exit", help="Exit code of the job (non-zero = fail)."),
    rid: str = typer.Option(
        None, "--rid", help="Run id, to pair start and ok of overlapping runs."
    ),
    metric: list[str] = typer.Option(None, "--metric", "-m", help="name=value, repeatable."),
) -> None:
    """Record a heartbeat through the state store (a cron job on the daemon's host).

    Examples:

        watchkeeper heartbeat nightly-backup-ran
        watchkeeper heartbeat nightly-backup-ran --status start --rid $$
        watchkeeper heartbeat nightly-backup-ran --exit 3
    """
    if status not in ("start", "ok", "fail"):
        fail("--status must be start, ok or fail", EXIT_USAGE)
    validation = load_or_exit(ctx)
    key = _heartbeat_key(validation, name)
    data: dict[str, Any] = {"status": status, "source": "cli"}
    if exit_code is not None:
        data["exit"] = exit_code
    if rid:
        data["rid"] = rid
    if metric:
        data["metrics"] = _parse_metrics(metric)
    _write_beat(validation, key, data)
    console.print(f"recorded {status} beat for {key}")


def _parse_metrics(items: list[str]) -> dict[str, float]:
    from watchkeeper.schema.units import parse_quantity

    metrics = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            fail(f"--metric expects name=value, got {item!r}", EXIT_USAGE)
        try:
            metrics[name.strip()] = parse_quantity(value.strip())
        except Exception:
            fail(
                f"--metric {name}: expected a number or a value with a unit, got {value!r}",
                EXIT_USAGE,
            )
    return metrics


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Heartbeat check the command reports to."),
    command: list[str] = typer.Argument(..., help="The command and its arguments (after --)."),
) -> None:
    """Run a command as a heartbeat check: start beat, run, then ok or fail.

    The ok/fail beat carries the exit code, the run time and the tail of the output;
    watchkeeper exits with the command's own exit code.

    Examples:

        watchkeeper exec nightly-backup-ran -- /usr/local/bin/backup.sh --full
    """
    import uuid

    if command and command[0] == "--":
        command = command[1:]  # `exec NAME -- CMD...`: the separator is not the command
    if not command:
        fail("give the command to run after the check's name: exec NAME -- CMD...", EXIT_USAGE)
    validation = load_or_exit(ctx)
    key = _heartbeat_key(validation, name)
    rid = uuid.uuid4().hex[:12]
    _write_beat(validation, key, {"status": "start", "rid": rid, "source": "exec"})
    started = time.monotonic()
    tail = bytearray()
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        _write_beat(
            validation,
            key,
            {"status": "fail", "rid": rid, "exit": 127, "log": str(exc), "source": "exec"},
        )
        fail(f"cannot run {command[0]!r}: {exc.strerror or exc}", 127)
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        tail += chunk
        del tail[:-4000]
    code = proc.wait()
    elapsed = time.monotonic() - started
    _write_beat(
        validation,
        key,
        {
            "status": "ok" if code == 0 else "fail",
            "rid": rid,
            "exit": code,
            "metrics": {"exec_time": round(elapsed, 3)},
            "log": tail.decode("utf-8", "replace")[-2000:],
            "source": "exec",
        },
    )
    if code != 0:
        err_console.print(f"{key}: command exited {code}; failure recorded")
    raise typer.Exit(code)


# -- status ------------------------------------------------------------------------------------


@app.command()
def status(
    ctx: typer.Context,
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Show the current state of checks and alerts, from the state store.

    Works while the daemon runs (it reads what the daemon wrote).

    Examples:

        watchkeeper status
        watchkeeper status --format json
    """
    from watchkeeper.engine.observe.status import read_status
    from watchkeeper.engine.state.store import StoreError

    validation = load_or_exit(ctx)
    try:
        data = anyio.run(read_status, validation)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)
    if fmt is OutputFormat.json:
        echo_json(data)
        return
    _print_status(data)


def _print_status(data: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    def when(at: float | None) -> str:
        if at is None:
            return "never"
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    table = Table("check", "status", "last run", "message", box=None, pad_edge=False)
    colour = {"up": "green", "down": "red", "degraded": "yellow", "unknown": "dim"}
    for c in data["checks"]:
        name = c["check"] + (f"@{c['environment']}" if c.get("environment") else "")
        if c.get("replica"):
            name += f" ({c['replica']})"
        table.add_row(
            name,
            f"[{colour.get(c['status'], 'white')}]{c['status']}[/]",
            when(c.get("last_run")),
            (c.get("message") or "")[:80],
        )
        for seen in c.get("locations") or ():
            table.add_row(
                f"  from {seen['location']}",
                f"[{colour.get(seen['status'], 'white')}]{seen['status']}[/]",
                when(seen.get("last_run")),
                seen.get("why") or "",
            )
    console.print(table)
    if data.get("replicas"):
        console.print()
        replicas = Table(
            "replica", "location", "host", "pid", "checks", "lease until", box=None, pad_edge=False
        )
        for r in data["replicas"]:
            replicas.add_row(
                r["name"],
                r.get("location") or "-",
                str(r.get("host", "")),
                str(r.get("pid", "")),
                str(r.get("instances", "")),
                r["expires_at"],
            )
        console.print(replicas)
    alerts = data["alerts"]
    if alerts:
        console.print()
        at = Table(
            "alert", "severity", "status", "check", "since", "summary", box=None, pad_edge=False
        )
        for a in alerts:
            name = a["check"] + (f"@{a['environment']}" if a.get("environment") else "")
            at.add_row(
                a["id"],
                a["severity"],
                a["status"] + (" (acked)" if a.get("acknowledged") else ""),
                name,
                a.get("started_at") or "",
                a["summary"][:70],
            )
        console.print(at)
    else:
        console.print("\nno open alerts")
