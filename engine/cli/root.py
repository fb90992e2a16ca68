"""The typer application, its global options and what every command shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer

# commands print through these consoles
from watchkeeper.engine.cli.console import console, err_console  # noqa: F401
from watchkeeper.engine.cli.grammar import OrderedGroup
from watchkeeper.engine.observe.redaction import REDACTOR

EXIT_OK = 0
EXIT_FAILED = 1  # something checked is wrong: invalid config, failing check, failed backup
EXIT_USAGE = 2  # a usage error or a file that cannot be read

app = typer.Typer(
    name="watchkeeper",
    help="""Declarative monitoring and maintenance runner: one monitor.yaml for checks,
    alerts, maintenance windows, escalation and backups.

    `watchkeeper COMMAND --help` describes a command, with examples.

    Shell completion (bash, zsh, fish, PowerShell): `watchkeeper --install-completion`.

    Examples:

        watchkeeper validate --format github --strict
        watchkeeper plan --next 7d
        watchkeeper -c /etc/watchkeeper/monitor.yaml run
        watchkeeper --version
    """,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    cls=OrderedGroup,
)


fast_exit = False
"""Set by commands that leave nothing to clean up, so `main` may skip interpreter teardown."""


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass
class CliState:
    config: Path
    log_format: str = "text"
    log_level: str = "info"


def state(ctx: typer.Context) -> CliState:
    """Return the global options of this invocation."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        from watchkeeper.engine.config.validation import default_path

        root.obj = CliState(config=Path(default_path()))
    return root.obj


def config_option() -> Any:
    """Return the `-c/--config` option of a command, for the file given after its name
    (`watchkeeper plan -c FILE` means `watchkeeper -c FILE plan`, as DESIGN.md says)."""
    return typer.Option(
        None,
        "--config",
        "-c",
        help="Config file, as the global -c (which it overrides).",
        show_default=False,
    )


def config_path(ctx: typer.Context, *given: Path | None) -> Path:
    """Return the config file a command reads: one given after the command's name (`-c`
    or a FILE argument), else the global `-c`, WATCHKEEPER_CONFIG or ./monitor.yaml."""
    chosen = {path for path in given if path is not None}
    if len(chosen) > 1:
        fail(
            "two config files given (" + " and ".join(sorted(map(str, chosen))) + "); give one",
            EXIT_USAGE,
        )
    return chosen.pop() if chosen else state(ctx).config


def echo_json(data: Any) -> None:
    """Print machine-readable output, secrets masked."""
    text = json.dumps(REDACTOR.redact_obj(data), indent=2, default=str)
    sys.stdout.write(text + "\n")


def echo(text: str = "", *, err: bool = False) -> None:
    """Print plain text, secrets masked (no rich markup interpretation)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(REDACTOR.redact(text) + "\n")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an error for a person and exit with the given code."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


def load_or_exit(
    ctx: typer.Context,
    *,
    strict: bool = True,
    path: Path | None = None,
    isolated: bool = False,
    meanwhile: Callable[[], object] | None = None,
):
    """Validate the configuration for use; on problems print them and exit 1 (2 if unreadable).

    `isolated` reads it in a child process (the daemon: see engine/config/process.py), and
    calls `meanwhile` while the child reads.
    """
    from watchkeeper.engine.config.problems import ConfigError
    from watchkeeper.engine.config.validation import load_config
    from watchkeeper.engine.plugins import PluginError

    config_path = path or state(ctx).config
    try:
        if isolated:
            from watchkeeper.engine.config.process import Reading

            reading = Reading(config_path)
            if meanwhile is not None:
                meanwhile()
            return reading.result()
        return load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            echo(problem.text(), err=True)
        err_console.print(
            f"[bold red]error:[/] {config_path} is not valid "
            f"({len(exc.problems)} problem(s)); nothing was done",
            markup=True,
        )
        raise typer.Exit(EXIT_FAILED) from None
    except PluginError as exc:
        fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        fail(str(exc), EXIT_USAGE)
