"""The `watchkeeper` group: its global options, and the modules that register its commands.

A command line that names one command imports only the module registering it
(`watchkeeper validate` never loads the daemon, the store or the backup commands); help,
completion and anything unrecognised get every command.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

from watchkeeper.engine.cli.grammar import LogFormat, LogLevel, panel_of
from watchkeeper.engine.cli.root import CliState, app

# command (or command group) -> the module under watchkeeper.engine.cli that registers it
COMMAND_MODULES: dict[str, str] = {
    "alerts": "alerts_cmd",
    "audit": "audit_cmd",
    "backup": "backup_cmd",
    "validate": "config_cmds",
    "schema": "config_cmds",
    "plugins": "config_cmds",
    "event": "event_cmd",
    "import": "import_cmd",
    "notify": "notify_cmd",
    "plan": "plan_cmd",
    "report": "report_cmd",
    "route": "route_cmd",
    "run": "run_cmds",
    "check": "run_cmds",
    "heartbeat": "run_cmds",
    "exec": "run_cmds",
    "status": "run_cmds",
}


def commands(name: str | None = None) -> typer.Typer:
    """Return the app with the module of command `name` imported (every module when
    `name` is None or unknown), each command listed under its help panel."""
    modules = sorted(set(COMMAND_MODULES.values()))
    if name in COMMAND_MODULES:
        modules = [COMMAND_MODULES[name]]
    for module in modules:  # each registers its commands on `app` as it is imported
        importlib.import_module(f"watchkeeper.engine.cli.{module}")
    # every command listed under what people do with it
    for command in app.registered_commands:
        command_name = command.name or command.callback.__name__.replace("_", "-")
        command.rich_help_panel = panel_of(command_name)
    for group in app.registered_groups:
        group.rich_help_panel = panel_of(group.name)
    return app


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
