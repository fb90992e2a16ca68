"""One grammar for every command: where `-c` may stand, the choices global options take,
and help that lists commands by what people do with them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import typer.core

# options of the `watchkeeper` group itself that take a value (the value is not a command)
_GLOBAL_VALUED = {"-c", "--config", "--log-format", "--log-level"}
_CONFIG = ("-c", "--config")
# commands with a `-c` (and a FILE argument) of their own, which tell two files apart
OWN_CONFIG = {"plan"}


class LogFormat(StrEnum):
    text = "text"
    json = "json"
    journal = "journal"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def config_first(args: list[str]) -> list[str]:
    """Move a `-c FILE` given after the subcommand in front of it.

    People type `watchkeeper check -c monitor.yaml` as often as `watchkeeper -c
    monitor.yaml check`; both mean the same (DESIGN.md ► CLI), and the one typed after the
    command wins over one before it, as the last of a repeated option does. Nothing after
    `--` moves: that is a command `exec` runs, with options of its own.
    """
    before: list[str] = []  # the group's own options
    moved: list[str] = []
    after: list[str] = []  # the command and its arguments
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            after.extend(args[i:])
            break
        if not after:
            if arg in _GLOBAL_VALUED and i + 1 < len(args):
                before += [arg, args[i + 1]]
                i += 1
            elif arg.startswith("-"):
                before.append(arg)
            else:
                after.append(arg)
        elif after[0] in OWN_CONFIG:
            after.append(arg)
        elif arg in _CONFIG and i + 1 < len(args):
            moved += [arg, args[i + 1]]
            i += 1
        elif arg.startswith("--config="):
            moved.append(arg)
        else:
            after.append(arg)
        i += 1
    return before + moved + after


def command_named(args: list[str]) -> str | None:
    """Return the command a command line (as `config_first` leaves it) runs, or None when
    none is named or an option before it asks the group itself for something (`--help`,
    `--version`, completion) or is not one `watchkeeper` takes."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_VALUED:
            i += 2
        elif arg.split("=", 1)[0] in _GLOBAL_VALUED and arg.startswith("--"):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


# commands in the order a person meets them: write the file, run it, operate what runs
PANELS: dict[str, tuple[str, ...]] = {
    "Write monitor.yaml": ("validate", "plan", "route", "schema", "plugins", "import"),
    "Run": ("run", "check", "status", "heartbeat", "exec"),
    "Operate": ("alerts", "backup", "report", "audit", "event", "notify"),
}
ORDER = [name for names in PANELS.values() for name in names]


class OrderedGroup(typer.core.TyperGroup):
    """Lists commands in workflow order (PANELS), not in the order modules registered them."""

    def list_commands(self, ctx: Any) -> list[str]:
        known = super().list_commands(ctx)
        return [n for n in ORDER if n in known] + [n for n in known if n not in ORDER]


def panel_of(name: str) -> str:
    """Return the help panel a command is listed under."""
    return next((panel for panel, names in PANELS.items() if name in names), "Other")


def _type_shown(self: typer.core.TyperOption, ctx: Any) -> str | None:
    # a flag takes no value, so it has no type to show (`--strict`, not `--strict <bool>`)
    if self.is_flag:
        return None
    return _typed(self, ctx)


_typed = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _type_shown  # type: ignore[method-assign]
