"""`watchkeeper backup ...`: run backups now, list the catalog, apply retention, verify,
restore and drill — the seed's `backup:*` npm scripts.

Every subcommand opens the state store as a client, so it works beside a running daemon.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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

T = TypeVar("T")

backup_app = typer.Typer(
    help="""Run, list, clean up, verify and restore backups; run restore drills.

    Jobs, destinations, retention and drills are declared under `backups:` in monitor.yaml.

    Examples:

        watchkeeper backup run --all
        watchkeeper backup list --format json
        watchkeeper backup restore database-20261205T020000Z --to postgresql://localhost/app_restored
    """,
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(backup_app, name="backup")

PLAIN_PROGRESS_EVERY = 5.0  # seconds between progress lines when not on a terminal


def _with_backups(ctx: typer.Context, work: Callable[[Any], Awaitable[T]]) -> T:
    """Validate the config, open the store as a client, run `work(backups)`, close."""
    from watchkeeper.engine.backups import Backups
    from watchkeeper.engine.daemon import create_store
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.state.store import StoreError

    validation = load_or_exit(ctx)
    reg = registry()
    store = create_store(validation.config, reg, validation.base_dir)

    async def main() -> T:
        await store.open(role="client")
        try:
            backups = Backups(
                config=validation.config, store=store, base_dir=validation.base_dir, reg=reg
            )
            return await work(backups)
        finally:
            await store.close()

    try:
        return anyio.run(main)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)


def _backup_error(exc: Exception) -> None:
    from watchkeeper.engine.backups.pipeline import describe_error

    fail(describe_error(exc), EXIT_FAILED)


def _size(n: int | None) -> str:
    from watchkeeper.schema.units import format_size

    return format_size(n or 0)


def _when(value: Any) -> str:
    from datetime import UTC, datetime

    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value).timestamp()
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%MZ")


# -- run ----------------------------------------------------------------------------------


class _Progress:
    """Progress of backups: rich bars on a terminal, a plain line every few seconds else."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and console.is_terminal
        self.bar: Any = None
        self.tasks: dict[tuple[str, str], Any] = {}
        self.started: dict[tuple[str, str], float] = {}
        self.last_line: dict[tuple[str, str], float] = {}

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, report: Any) -> None:
        if not self.enabled:
            return
        key = (report.job, report.file)
        now = time.monotonic()
        self.started.setdefault(key, now)
        if self.bar is not None:
            task = self.tasks.get(key)
            if task is None:
                task = self.tasks[key] = self.bar.add_task(
                    f"{report.job}: {report.file}", total=None
                )
            self.bar.update(
                task, completed=report.done, total=report.done if report.finished else None
            )
            return
        if (
            report.finished
            or now - self.last_line.get(key, self.started[key]) >= PLAIN_PROGRESS_EVERY
        ):
            self.last_line[key] = now
            elapsed = max(now - self.started[key], 1e-6)
            state = "done" if report.finished else "so far"
            echo(
                f"{report.job}: {report.file} {_size(report.done)} {state} "
                f"({_size(int(report.done / elapsed))}/s)",
                err=True,
            )


@backup_app.command("run")
def run_backups(
    ctx: typer.Context,
    jobs: list[str] = typer.Argument(None, help="Jobs to run.", show_default=False),
    run_all: bool = typer.Option(False, "--all", help="Run every job."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
) -> None:
    """Run backup jobs now, with progress; exit 1 if any failed.

    Examples:

        watchkeeper backup run --all          # npm run backup:full
        watchkeeper backup run database       # npm run backup:database
    """
    validation = load_or_exit(ctx)
    known = list(validation.config.backups.jobs)
    if run_all and jobs:
        fail("give job names or --all, not both", EXIT_USAGE)
    if not run_all and not jobs:
        fail(f"name the jobs to run, or --all (jobs: {', '.join(known) or 'none'})", EXIT_USAGE)
    chosen = known if run_all else list(dict.fromkeys(jobs))
    unknown = [j for j in chosen if j not in known]
    if unknown:
        fail(
            f"unknown backup job(s): {', '.join(unknown)} (jobs: {', '.join(known) or 'none'})",
            EXIT_USAGE,
        )
    if not chosen:
        fail("the configuration has no backup jobs", EXIT_USAGE)

    async def work(backups: Any) -> list[dict[str, Any]]:
        entries = []
        with _Progress(fmt is OutputFormat.text) as progress:
            for name in chosen:
                entries.append(await backups.run_job(name, progress=progress))
        return entries

    entries = _with_backups(ctx, work)
    from watchkeeper.engine.backups.catalog import public

    if fmt is OutputFormat.json:
        echo_json([public(e) for e in entries])
    else:
        for e in entries:
            took = (e["finished_at"] or e["started_at"]) - e["started_at"]
            if e["status"] == "ok":
                console.print(
                    f"[green]✓[/] {e['job']}: {e['id']} {_size(e['size_bytes'])} in {took:.1f}s "
                    f"→ {', '.join(e['destinations'])}"
                )
            elif e["status"] == "partial":
                console.print(
                    f"[yellow]✗ partial[/] {e['job']}: {e['id']} kept at "
                    f"{', '.join(e['destinations'])}; {e['error']}"
                )
            else:
                console.print(f"[red]✗ failed[/] {e['job']}: {e['error']}")
    raise typer.Exit(0 if all(e["status"] == "ok" for e in entries) else EXIT_FAILED)


# -- list ---------------------------------------------------------------------------------


@backup_app.command("list")
def list_backups(
    ctx: typer.Context,
    jobs: list[str] = typer.Argument(None, help="Only these jobs.", show_default=False),
    job_option: list[str] = typer.Option(None, "--job", "-j", hidden=True),
    from_destination: str = typer.Option(
        None,
        "--from-destination",
        help="Read the backups a destination holds from their manifests instead of the "
        "catalog (works without the state store).",
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
) -> None:
    """List backups, newest first: the catalog, or what a destination holds.

    Examples:

        watchkeeper backup list
        watchkeeper backup list database --format json
        watchkeeper backup list --from-destination cloud
    """
    from watchkeeper.engine.backups.catalog import public
    from watchkeeper.engine.backups.plugin import BackupError

    wanted = set((jobs or []) + (job_option or []))
    if from_destination is not None:
        validation = load_or_exit(ctx)
        if from_destination not in validation.config.backups.destinations:
            fail(f"unknown destination {from_destination!r}", EXIT_USAGE)
        entries = _from_destination(validation, from_destination)
    else:

        async def work(backups: Any) -> list[dict[str, Any]]:
            return await backups.catalog.entries()

        try:
            entries = _with_backups(ctx, work)
        except BackupError as exc:
            _backup_error(exc)
    entries = [e for e in entries if not wanted or e["job"] in wanted]
    rows = [public(e) for e in entries]
    if fmt is OutputFormat.json:
        echo_json(rows)
        return
    if not rows:
        console.print("no backups")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("id", no_wrap=True)
    for column in ("job", "status", "started", "took", "size", "destinations"):
        table.add_column(column, no_wrap=column != "destinations")
    colour = {"ok": "green", "partial": "yellow", "failed": "red", "running": "cyan"}
    for e, row in zip(entries, rows, strict=True):
        took = (
            f"{e['finished_at'] - e['started_at']:.0f}s"
            if e.get("finished_at") and e.get("started_at")
            else "-"
        )
        table.add_row(
            row["id"],
            row["job"],
            f"[{colour.get(row['status'], 'white')}]{row['status']}[/]",
            _when(e.get("started_at")),
            took,
            _size(row["size_bytes"]) + (" 🔒" if row["encrypted"] else ""),
            ", ".join(row["destinations"]) or (row["error"] or "")[:60],
        )
    console.print(table)


def _from_destination(validation: Any, name: str) -> list[dict[str, Any]]:
    """List a destination's backups without opening the state store."""
    from watchkeeper.engine.backups import Backups
    from watchkeeper.engine.backups.plugin import BackupError
    from watchkeeper.engine.plugins import registry

    backups = Backups(
        config=validation.config, store=None, base_dir=validation.base_dir, reg=registry()
    )  # type: ignore[arg-type]
    try:
        return anyio.run(backups.list_destination, name)
    except BackupError as exc:
        _backup_error(exc)
    except Exception as exc:
        _backup_error(exc)
    return []


# -- cleanup ------------------------------------------------------------------------------


@backup_app.command("cleanup")
def cleanup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; delete nothing."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
) -> None:
    """Apply each job's retention; the newest good backup of a job is never deleted.

    Examples:

        watchkeeper backup cleanup --dry-run
        watchkeeper backup cleanup            # npm run backup:cleanup
    """

    async def work(backups: Any) -> list[dict[str, Any]]:
        return await backups.cleanup(dry_run=dry_run)

    rows = _with_backups(ctx, work)
    if fmt is OutputFormat.json:
        echo_json(rows)
    elif not rows:
        console.print("nothing to delete")
    else:
        for row in rows:
            if dry_run:
                console.print(
                    f"would delete {row['id']} ({row['status']}, {_when(row['started_at'])})"
                )
            elif row["deleted"]:
                console.print(f"deleted {row['id']}")
            else:
                console.print(f"[red]✗[/] {row['id']}: {row['error']}")
        if dry_run:
            console.print(f"{len(rows)} backup(s) would be deleted")
    raise typer.Exit(EXIT_FAILED if any(r["error"] for r in rows) else 0)


# -- verify -------------------------------------------------------------------------------


@backup_app.command("verify")
def verify(
    ctx: typer.Context,
    backup_id: str = typer.Argument(..., metavar="ID", help="Backup id (from `backup list`)."),
    identity: str = typer.Option(
        None,
        "--identity",
        "-i",
        help="age identity file: also decrypt encrypted files and check their content.",
    ),
    only: str = typer.Option(None, "--from", help="Check this destination only."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
) -> None:
    """Re-read a backup from each destination and check every checksum; exit 1 on a mismatch.

    Examples:

        watchkeeper backup verify database-20261205T020000Z
        watchkeeper backup verify database-20261205T020000Z --identity ~/backup-key.txt
    """
    from watchkeeper.engine.backups.plugin import BackupError

    async def work(backups: Any) -> Any:
        return await backups.verify(backup_id, identity=identity, only=only)

    try:
        reference, findings = _with_backups(ctx, work)
    except BackupError as exc:
        _backup_error(exc)
    bad = [f for f in findings if not f.ok]
    if fmt is OutputFormat.json:
        echo_json(
            {"id": reference.id, "job": reference.job, "ok": not bad,
             "files": [f.public() for f in findings]}
        )  # fmt: skip
    else:
        for finding in findings:
            mark = "[green]✓[/]" if finding.ok else "[red]✗[/]"
            console.print(
                f"{mark} {finding.destination}: {finding.file}"
                + (f" — {finding.problem}" if finding.problem else "")
            )
        destinations = sorted({f.destination for f in findings})
        if bad:
            err_console.print(
                f"[bold red]{reference.id}: {len(bad)} problem(s)[/] at "
                f"{', '.join(sorted({f.destination for f in bad}))}"
            )
        else:
            console.print(
                f"{reference.id}: every file intact at {', '.join(destinations)}"
                + ("" if identity or not reference.encrypted else " (stored bytes; add "
                   "--identity to check the decrypted content)")
            )  # fmt: skip
    raise typer.Exit(EXIT_FAILED if bad else 0)


# -- restore ------------------------------------------------------------------------------


@backup_app.command("restore")
def restore(
    ctx: typer.Context,
    backup_id: str = typer.Argument(..., metavar="ID", help="Backup id (from `backup list`)."),
    to: str = typer.Option(
        ...,
        "--to",
        help="A database DSN (dumps and exports; created when missing) or a directory "
        "(file backups).",
    ),
    identity: str = typer.Option(
        None, "--identity", "-i", help="age identity file, for encrypted backups."
    ),
    only: str = typer.Option(None, "--from", help="Read the backup from this destination."),
    clean: bool = typer.Option(
        False,
        "--clean",
        help="Replace what the target holds (drop dumped objects, truncate exported "
        "tables, overwrite files) instead of refusing a non-empty target.",
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
) -> None:
    """Restore a backup into a database or directory, after checking its checksums.

    Examples:

        watchkeeper backup restore database-20261205T020000Z --to postgresql://localhost/app_restored
        watchkeeper backup restore config-20261205T020000Z --to ./restored
    """
    from watchkeeper.engine.backups.plugin import BackupError
    from watchkeeper.engine.observe.redaction import REDACTOR
    from watchkeeper.engine.state.store import Row

    _register_password(to)

    async def work(backups: Any) -> dict[str, Any]:
        by = _user()
        try:
            result = await backups.restore(backup_id, to, identity=identity, only=only, clean=clean)
        except BackupError as exc:
            await backups.store.append(
                "audit",
                [Row(key="restore", at=time.time(), data={
                    "by": by, "backup": backup_id, "target": REDACTOR.redact(to),
                    "ok": False, "error": str(exc), "source": "cli"})],
            )  # fmt: skip
            raise
        await backups.store.append(
            "audit",
            [Row(key="restore", at=time.time(), data={
                "by": by, "backup": result["id"], "target": REDACTOR.redact(to), "ok": True,
                "from": result["from"], "source": "cli"})],
        )  # fmt: skip
        return result

    try:
        result = _with_backups(ctx, work)
    except BackupError as exc:
        _backup_error(exc)
    if fmt is OutputFormat.json:
        echo_json(result)
        return
    for line in result.get("skipped") or []:
        err_console.print(f"[yellow]skipped a copy:[/] {line}")
    for note in result.get("notes") or []:
        console.print(note)
    facts = ", ".join(
        f"{k} {v}" for k, v in result.items()
        if k in ("tables", "rows", "files") and v is not None
    )  # fmt: skip
    console.print(
        f"[green]✓[/] restored {result['id']} from {result['from']} into {REDACTOR.redact(to)}"
        + (f" ({facts})" if facts else "")
    )


def _register_password(target: str) -> None:
    """Mask the password of a DSN given on the command line wherever it is shown."""
    from watchkeeper.engine.observe.redaction import REDACTOR

    if "://" not in target and "=" not in target:
        return  # a directory
    try:
        from psycopg.conninfo import conninfo_to_dict

        REDACTOR.add(conninfo_to_dict(target).get("password"))
    except Exception:
        REDACTOR.add(target)  # unparseable: mask it whole


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


# -- drill --------------------------------------------------------------------------------


@backup_app.command("drill")
def drill(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Drill name (backups.drills)."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output format."),
) -> None:
    """Run a restore drill now: restore into scratch, verify, drop; exit 1 if it fails.

    Examples:

        watchkeeper backup drill weekly-restore
    """
    validation = load_or_exit(ctx)
    known = list(validation.config.backups.drills)
    if name not in known:
        fail(f"unknown drill {name!r} (drills: {', '.join(known) or 'none'})", EXIT_USAGE)

    async def work(backups: Any) -> dict[str, Any]:
        return await backups.run_drill(name)

    record = _with_backups(ctx, work)
    if fmt is OutputFormat.json:
        echo_json(record)
    else:
        for check in record.get("checks") or []:
            mark = "[green]✓[/]" if check["ok"] else "[red]✗[/]"
            where = "on the copy" if check["pointed_at_copy"] else "as configured"
            console.print(f"{mark} {check['check']} ({where}): {check['message']}")
        if record["status"] == "ok":
            rows = f", {record['rows']} rows" if record.get("rows") is not None else ""
            console.print(f"[green]✓[/] drill {name} passed: restored {record['backup']}{rows}")
        else:
            err_console.print(f"[bold red]✗ drill {name} failed:[/] {record['error']}")
    raise typer.Exit(0 if record["status"] == "ok" else EXIT_FAILED)
