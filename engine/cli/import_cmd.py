"""`watchkeeper import gatus FILE`: print a monitor.yaml carrying another tool's
configuration over, with a comment wherever something had no equivalent."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import typer
import yaml

from watchkeeper.engine.cli.root import EXIT_USAGE, app, echo, fail

import_app = typer.Typer(
    help="""Carry another monitor's configuration over to a monitor.yaml.

    Examples:

        watchkeeper import gatus config.yaml
        watchkeeper import gatus config.yaml -o monitor.yaml
    """,
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(import_app, name="import")


@import_app.command("gatus")
def gatus(
    file: Path = typer.Argument(
        ..., help="The Gatus configuration (config.yaml).", show_default=False
    ),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Write monitor.yaml here instead of printing it.",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite the --output file if it exists."),
) -> None:
    """Print a monitor.yaml carrying a Gatus configuration over: endpoints, conditions,
    alerts, maintenance. What has no equivalent is a comment in it and listed on stderr;
    secrets written out in the Gatus file become ${VAR} references to set.

    Examples:

        watchkeeper import gatus config/config.yaml
        watchkeeper import gatus config.yaml -o monitor.yaml && watchkeeper validate
    """
    from watchkeeper.engine.config.gatus import GatusInputError, read_gatus_file
    from watchkeeper.engine.config.gatus_convert import convert

    try:
        conversion = convert(read_gatus_file(file))
    except GatusInputError as exc:
        fail(str(exc), EXIT_USAGE)
    text = render(conversion, source=file.name)
    if output is None:
        typer.echo(text, nl=False)
    else:
        if output.exists() and not force:
            fail(f"{output} exists; give --force to overwrite it", EXIT_USAGE)
        temporary = output.with_name(f".{output.name}.tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, output)
        except OSError as exc:
            fail(f"{output}: cannot write: {exc.strerror or exc}", EXIT_USAGE)
    _summary(conversion, output)


def _summary(conversion: Any, output: Path | None) -> None:
    checks = len(conversion.data.get("checks", {}))
    notifiers = len(conversion.data.get("notifiers", {}))
    where = f"written to {output}" if output else "printed"
    echo(f"{checks} check(s), {notifiers} notifier(s) {where}", err=True)
    if conversion.notes or conversion.commented:
        echo(
            f"{len(conversion.notes)} thing(s) had no equivalent (comments in the file):", err=True
        )
        for note in conversion.notes:
            echo(f"  {_dotted(note.path) or '(file)'}: {note.text}", err=True)
    if conversion.variables:
        echo(
            "set these environment variables (the Gatus file had the values written out):", err=True
        )
        for name, source in conversion.variables.items():
            echo(f"  {name}  ({source})", err=True)


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


# --- YAML with comments ------------------------------------------------------------------


def render(conversion: Any, source: str) -> str:
    """Write the conversion as YAML, each note as a comment above the key it concerns."""
    notes: dict[tuple, list[str]] = {}
    for note in conversion.notes:
        notes.setdefault(tuple(note.path), []).append(note.text)
    lines = [
        "# yaml-language-server: $schema=schema/monitor.schema.json",
        f"# Carried over from the Gatus configuration {source} by `watchkeeper import gatus`.",
        "# Comments starting with `gatus:` mark what had no equivalent.",
    ]
    if conversion.variables:
        lines.append("# Set these environment variables (values the Gatus file had written out):")
        lines += [f"#   {name}  ({where})" for name, where in conversion.variables.items()]
    lines += _comments(notes.pop((), []), 0)
    data = conversion.data
    for key, value in data.items():
        lines.append("")
        lines += _comments(notes.pop((key,), []), 0)
        if key == "checks":
            lines += _checks(value, conversion.commented, notes)
        else:
            lines += _entry(key, value, 0, (key,), notes)
    for path, texts in notes.items():  # notes about keys that were left out
        lines += _comments([f"{_dotted(path)}: {t}" for t in texts], 0)
    return "\n".join(lines) + "\n"


def _checks(checks: dict, commented: dict, notes: dict) -> list[str]:
    lines = ["checks:"] if checks else ["checks: {}"]
    for name, check in checks.items():
        lines += _entry(name, check, 2, ("checks", name), notes)
    for name, check in commented.items():
        lines += _comments(notes.pop(("checks", name), []), 2)
        lines += ["  # " + line[2:] for line in _entry(name, check, 2, ("",), {})]
    return lines


def _comments(texts: list[str], indent: int) -> list[str]:
    out = []
    for text in texts:
        wrapped = textwrap.wrap(text, width=max(40, 88 - indent), break_long_words=False)
        out.append(" " * indent + "# gatus: " + wrapped[0])
        out += [" " * indent + "#   " + more for more in wrapped[1:]]
    return out


def _entry(key: Any, value: Any, indent: int, path: tuple, notes: dict) -> list[str]:
    pad = " " * indent
    lines = _comments(notes.pop(path, []), indent)
    head = f"{pad}{_scalar(key)}:"
    section = indent == 0 and isinstance(value, dict | list) and len(value) > 0
    if _flat(value) and not (section and key != "defaults"):
        return [*lines, f"{head} {_flow(value)}"]
    if isinstance(value, dict):
        lines.append(head)
        for k, v in value.items():
            lines += _entry(k, v, indent + 2, (*path, k), notes)
        return lines
    lines.append(head)
    for index, item in enumerate(value):
        lines += _item(item, indent + 2, (*path, index), notes)
    return lines


def _item(value: Any, indent: int, path: tuple, notes: dict) -> list[str]:
    pad = " " * indent
    lines = _comments(notes.pop(path, []), indent)
    if _flat(value) or not isinstance(value, dict):
        return [*lines, f"{pad}- {_flow(value)}"]
    inner = []
    for k, v in value.items():
        inner += _entry(k, v, indent + 2, (*path, k), notes)
    first = inner[0]
    return [*lines, f"{pad}- {first[indent + 2 :]}", *inner[1:]]


def _flat(value: Any) -> bool:
    """Whether a value is written on one line: scalars, and short lists and mappings of them."""
    if not isinstance(value, dict | list):
        return True
    items = value.values() if isinstance(value, dict) else value
    if any(isinstance(v, dict | list) and not _flat(v) for v in items):
        return False
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return True  # status codes: a long line is easier to read than a hundred
    return len(_flow(value)) <= 72


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    # dumped inside a flow list, so the quoting is right inside `{...}` and `[...]` too
    text = yaml.safe_dump([value], default_flow_style=True, width=1 << 30, allow_unicode=True)
    return text.strip()[1:-1]
