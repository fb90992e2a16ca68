"""Commands about the configuration itself: validate, schema, plugins."""

from __future__ import annotations

import json
from enum import StrEnum
from importlib import resources
from pathlib import Path

import typer

from watchkeeper.engine.cli import root
from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    OutputFormat,
    app,
    console,
    echo,
    echo_json,
    fail,
    state,
)


class ValidateFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@app.command()
def validate(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(
        None,
        help="Config files (default: the --config file).",
        show_default=False,
        metavar="FILE",
    ),
    fmt: ValidateFormat = typer.Option(
        ValidateFormat.text,
        "--format",
        "-f",
        help="text for people, json for scripts, github for pull-request annotations.",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Treat warnings (unset variables, rules one run can trip) as errors.",
    ),
) -> None:
    """Check monitor.yaml offline: schema, references, cron, timezones (the CI dry run).

    Every problem is reported in one pass as `file:line:col: key.path: message`.
    Nothing is contacted: no network, no database. Exit 0 valid, 1 invalid, 2 unreadable.

    Examples:

        watchkeeper validate
        watchkeeper validate --format github --strict
        watchkeeper -c examples/infinite-idea.yaml validate --format json
    """
    from watchkeeper.engine.cli.validate_cmd import run

    code = run(files or [state(ctx).config], fmt.value, strict, fail, _say)
    root.fast_exit = True
    raise typer.Exit(code)


def _say(markup: str) -> None:
    console.print(markup, markup=True)


SCHEMA_FILE = "monitor.schema.json"
REFRESH = "watchkeeper schema --write"


def committed_schema_path() -> Path:
    """Return where the committed monitor.schema.json lives (inside the schema package)."""
    return Path(str(resources.files("watchkeeper.schema") / SCHEMA_FILE))


def schema_text() -> str:
    """Return monitor.schema.json for the installed plugins, byte-for-byte stable."""
    from watchkeeper.engine.config.validation import config_model
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.run.declared_metrics import offer_metric_names

    schema = config_model().model_json_schema(by_alias=True)
    offer_metric_names(schema, registry().types["probe"])
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://watchkeeper.dev/monitor.schema.json",
        **schema,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@app.command()
def schema(
    check: bool = typer.Option(False, "--check", help="Fail if the committed copy is stale."),
    write: bool = typer.Option(False, "--write", help="Refresh the committed copy."),
) -> None:
    """Print monitor.schema.json (the JSON Schema of monitor.yaml for editors and CI).

    The schema includes the options of every installed plugin.

    Examples:

        watchkeeper schema > monitor.schema.json
        watchkeeper schema --check
    """
    from watchkeeper.engine.plugins import PluginError

    try:
        text = schema_text()
    except PluginError as exc:
        fail(str(exc), EXIT_FAILED)
    target = committed_schema_path()
    if write:
        target.write_text(text)
        console.print(f"wrote {target}")
        return
    if check:
        try:
            current = target.read_text()
        except OSError:
            current = ""
        if current != text:
            echo(
                f"{target} is stale: the models (or the installed plugins) changed. "
                f"Refresh it with: {REFRESH}",
                err=True,
            )
            raise typer.Exit(EXIT_FAILED)
        console.print(f"[green]✓[/] {target} is up to date", markup=True)
        return
    echo(text.rstrip("\n"))


@app.command()
def plugins(
    show_all: bool = typer.Option(True, "--all/--third-party", help="Include the built-ins."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """List installed plugins, where each came from and the types it provides.

    Examples:

        watchkeeper plugins
        watchkeeper plugins --third-party --format json
    """
    from rich.table import Table

    from watchkeeper.engine.plugins import PluginError, registry

    try:
        reg = registry()
    except PluginError as exc:
        fail(str(exc), EXIT_FAILED)
    rows = [p for p in reg.plugins if show_all or not p.builtin]
    if fmt is OutputFormat.json:
        echo_json([{"name": p.name, "origin": p.origin, "types": p.types} for p in rows])
        return
    table = Table("plugin", "from", "provides", box=None, pad_edge=False)
    for p in rows:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p.types.items())
        table.add_row(p.name, p.origin, provides or "(event hooks only)")
    console.print(table)
