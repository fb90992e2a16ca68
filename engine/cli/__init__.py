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
    import_cmd,  # noqa: F401
    notify_cmd,  # noqa: F401
    plan_cmd,  # noqa: F401
    report_cmd,  # noqa: F401
    root,
    route_cmd,  # noqa: F401
    run_cmds,  # noqa: F401
)
from watchkeeper.engine.cli.grammar import LogFormat, LogLevel, config_first, panel_of
from watchkeeper.engine.cli.root import CliState, app

# every command listed under what people do with it (the modules above registered them)
for _command in app.registered_commands:
    _name = _command.name or _command.callback.__name__.replace("_", "-")
    _command.rich_help_panel = panel_of(_name)
for _group in app.registered_groups:
    _group.rich_help_panel = panel_of(_group.name)


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
    log_format: LogFormat = typer.Option(
        LogFormat.text,
        "--log-format",
        metavar="FORMAT",
        help="Log lines as text, json or journal (systemd).",
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.info,
        "--log-level",
        metavar="LEVEL",
        help="The least to log: debug, info, warning or error.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Declarative monitoring and maintenance runner."""
    from watchkeeper.engine.observe import logs

    ctx.obj = CliState(
        config=config or Path("monitor.yaml"),
        log_format=log_format.value,
        log_level=log_level.value,
    )
    logs.setup(log_level.value, log_format.value)


def main() -> None:
    """Run the command line (the `watchkeeper` console script)."""
    try:
        app(prog_name="watchkeeper", args=config_first(sys.argv[1:]))
    except SystemExit as exc:
        if root.fast_exit:
            # freeing a large validated config object by object takes longer than
            # validating it; nothing is left to clean up, so leave at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        raise
