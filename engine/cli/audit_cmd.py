"""`watchkeeper audit`: who acknowledged, silenced, reloaded, restored, and every admin call."""

from __future__ import annotations

import time
from typing import Any

import anyio
import typer
from rich.table import Table
from rich.text import Text

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

SKIPPED = {"at", "action", "by", "source"}


@app.command("audit")
def audit_log(
    ctx: typer.Context,
    since: str = typer.Option("7d", "--since", metavar="DURATION", help="How far back."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Show the audit log, newest first, from the state store (the daemon may be running).

    Acknowledgements, silences, reloads, restores, events and every admin API call.

    Examples:

        watchkeeper audit
        watchkeeper audit --since 30d --format json
    """
    from watchkeeper.engine.daemon import create_store
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.state import audit
    from watchkeeper.engine.state.store import StoreError
    from watchkeeper.schema.units import parse_duration

    try:
        seconds = float(parse_duration(since))
    except (ValueError, TypeError):
        seconds = 0.0
    if seconds <= 0:
        fail(f"--since: expected a duration such as 7d or 12h, got {since!r}", EXIT_USAGE)
    validation = load_or_exit(ctx)
    store = create_store(validation.config, registry(), validation.base_dir)

    async def main() -> list[dict[str, Any]]:
        await store.open(role="client")
        try:
            return await audit.read(store, time.time() - seconds)
        finally:
            await store.close()

    try:
        entries = anyio.run(main)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)
    if fmt is OutputFormat.json:
        echo_json(entries)
        return
    if not entries:
        console.print(f"no audit entries in the last {since}", markup=False)
        return
    table = Table("time", "action", "by", "source", "details", box=None, pad_edge=False)
    for item in entries:
        details = " ".join(
            f"{k}={v}" for k, v in item.items() if k not in SKIPPED and v not in (None, "", [])
        )
        cells = (item["at"], item["action"], item.get("by") or "", item.get("source") or "")
        table.add_row(*(Text(str(c)) for c in (*cells, details)))
    console.print(table, markup=False)
