"""The `watchkeeper` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from watchkeeper.engine.cli import (
    alerts_cmd,  # noqa: F401
    audit_cmd,  # noqa: F401
    backup_cmd,  # noqa: F401
    config_cmds,  # noqa: F401  (registers its commands)
    event_cmd,  # noqa: F401
    notify_cmd,  # noqa: F401
    plan_cmd,  # noqa: F401
    report_cmd,  # noqa: F401
    root,
    route_cmd,  # noqa: F401
    run_cmds,  # noqa: F401
)
from watchkeeper.engine.cli.root import CliState, app


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"watchkeeper {version('watchkeeper')}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        envvar="WATCHKEEPER_CONFIG",
        help="Config file (default: ./monitor.yaml).",
        show_default=False,
    ),
    log_format: str = typer.Option(
        "text", "--log-format", help="Log lines as text, json or journal (systemd)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Declarative monitoring and maintenance runner."""
    from watchkeeper.engine.observe import logs

    ctx.obj = CliState(
        config=config or Path("monitor.yaml"), log_format=log_format, log_level=log_level
    )
    logs.setup(log_level, log_format)


def main() -> None:
    """Run the command line (the `watchkeeper` console script)."""
    try:
        app(prog_name="watchkeeper")
    except SystemExit as exc:
        if root.fast_exit:
            # freeing a large validated config object by object takes longer than
            # validating it; nothing is left to clean up, so leave at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        raise
