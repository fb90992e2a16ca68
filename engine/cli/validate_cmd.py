"""`watchkeeper validate`: what it checks and prints, and a way in that loads no typer.

CI runs `validate` on every push, where starting the interpreter and its libraries costs
more than checking a small file. `direct` runs a command line it understands in full
(the global `-c/--config`, `--log-format` and `--log-level`; validate's FILE arguments,
`-f/--format` and `--strict`, each written as `--help` shows it) without typer or rich;
any other (help, a typo, an option written another way) returns None and goes to typer,
which explains it. Both ways print through `report`: the same bytes on every path. The
summary line of the text format is rich markup; it goes through rich when rich would
colour it or change it (a terminal, FORCE_COLOR, a name with `[`, `:`, `\\` or a tab),
else it is written as the plain text rich would write.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

FORMATS = ("text", "json", "github")
LOG_FORMATS = ("text", "json", "journal")  # engine/cli/grammar.py's LogFormat
LOG_LEVELS = ("debug", "info", "warning", "error")  # and LogLevel
CONFIG_ENV = "WATCHKEEPER_CONFIG"

EXIT_FAILED = 1  # as engine/cli/root.py
EXIT_USAGE = 2

Fail = Callable[[str, int], NoReturn]
Say = Callable[[str], None]


def run(paths: list[Path], fmt: str, strict: bool, fail: Fail, say: Say) -> int:
    """Validate each file and print what was found; return the exit code (0 valid, 1 not).

    `fail(message, code)` reports a file that cannot be read or a plugin that cannot load
    and does not return; `say(markup)` prints the text format's summary line.
    """
    from watchkeeper.engine.config.validation import validate
    from watchkeeper.engine.plugins import PluginError

    problems = []
    valid = True
    for path in paths:
        try:
            result = validate(path, strict=strict)
        except PluginError as exc:
            fail(str(exc), EXIT_FAILED)
        except OSError as exc:
            fail(str(exc), EXIT_USAGE)
        problems.extend(result.problems)
        valid = valid and result.valid
    report(problems, paths, valid, fmt, say)
    return 0 if valid else EXIT_FAILED


def report(problems: list[Any], paths: list[Path], valid: bool, fmt: str, say: Say) -> None:
    """Print the problems in a format, and for `text` the line that sums them up."""
    from watchkeeper.engine.config.problems import render

    if fmt == "json" or problems:
        echo(render(problems, fmt))
    if fmt != "text":
        return
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    names = ", ".join(str(p) for p in paths)
    if valid:
        note = f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""
        say(f"[green]✓[/] {names} is valid{note}")
    else:
        say(
            f"[red]✗[/] {names}: {errors} error{'s' * (errors != 1)}"
            + (f", {warnings} warning{'s' * (warnings != 1)}" if warnings else "")
        )


def echo(text: str) -> None:
    """Print plain text, secrets masked (engine/cli/root.py's `echo`)."""
    from watchkeeper.engine.observe.redaction import REDACTOR

    sys.stdout.write(REDACTOR.redact(text) + "\n")


# --- without typer ---------------------------------------------------------------------------


def direct(argv: list[str]) -> int | None:
    """Run `watchkeeper validate` for a command line (sys.argv[1:]) and return its exit
    code, or None when the line is not one this module reads in full."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    config, log_format, log_level, files, fmt, strict = parsed
    # the process leaves at once when done (engine/cli/__init__.py): collecting garbage
    # while pydantic, the schema and the plugins are imported costs more than it frees
    gc.disable()
    from watchkeeper.engine.observe import logs

    logs.setup(log_level, log_format)
    try:
        return run(files or [config], fmt, strict, _fail, _say)
    except _Exit as done:
        return done.code


def _parse(argv: list[str]) -> tuple[Path, str, str, list[Path], str, bool] | None:
    """Read `[global options] validate [its arguments]`; None for anything else."""
    config = os.environ.get(CONFIG_ENV) or None  # an empty variable is no file, as click has it
    log_format, log_level = "text", "info"
    files: list[Path] = []
    fmt, strict = "text", False
    command = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, given, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        valued = {"-c": "config", "--config": "config", "-f": "format", "--format": "format"}
        if not command:
            valued = {**valued, "--log-format": "log-format", "--log-level": "log-level"}
            valued.pop("-f"), valued.pop("--format")
        if name in valued:
            if not given:
                if i + 1 == len(argv):
                    return None
                i += 1
                value = argv[i]
            if value.startswith("-") or not value:
                return None
            option = valued[name]
            if option == "config":
                config = value
            elif option == "log-format" and value in LOG_FORMATS:
                log_format = value
            elif option == "log-level" and value in LOG_LEVELS:
                log_level = value
            elif option == "format" and value in FORMATS:
                fmt = value
            else:
                return None
        elif command and arg == "--strict":
            strict = True
        elif arg.startswith("-"):
            return None  # help, `--`, `-fjson`, a typo: typer's to read or explain
        elif not command:
            if arg != "validate":
                return None
            command = True
        else:
            files.append(Path(arg))
        i += 1
    if not command:
        return None
    return Path(config or "monitor.yaml"), log_format, log_level, files, fmt, strict


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    """Report an error as the typer command does (rich markup on stderr)."""
    import typer

    from watchkeeper.engine.cli import root

    try:
        root.fail(message, code)
    except typer.Exit as exc:
        raise _Exit(exc.exit_code) from None


# rich markup of the summary line -> the text rich writes for it where it adds no colour
_TAGS = {"[green]✓[/] ": "✓ ", "[red]✗[/] ": "✗ "}


def _say(markup: str) -> None:
    """Print the summary line as engine/cli/root.py's `console` prints it."""
    from watchkeeper.engine.observe.redaction import REDACTOR

    masked = REDACTOR.redact(markup)
    tag = masked[: masked.find(" ") + 1]
    rest = masked[len(tag) :]
    if tag not in _TAGS or _styled(rest) or _would_colour(sys.stdout):
        from watchkeeper.engine.cli.console import console

        console.print(markup, markup=True)
        return
    sys.stdout.write(REDACTOR.redact(_TAGS[tag] + rest) + "\n")


def _styled(text: str) -> bool:
    """True when rich would change the text: markup, emoji codes, escapes, tabs, controls."""
    return any(c in "[:\\\t\x7f" or c < " " for c in text)


def _would_colour(stream: Any) -> bool:
    """True when rich writes escape codes to a stream, or may (rich.console's rules)."""
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
    if encoding != "utf8":
        return True  # rich's message on a character the stream cannot take
    environ = os.environ
    if {"TTY_COMPATIBLE", "FORCE_COLOR", "JUPYTER_COLUMNS", "JUPYTER_LINES"} & environ.keys():
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
