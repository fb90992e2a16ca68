"""The `watchkeeper` command line.

`main` imports no more than the command line asks for: `--version` alone is answered
before typer, rich or pydantic are loaded, and a command imports only the module that
registers it (engine/cli/group.py). `app` is the typer application with every command.
"""

from __future__ import annotations

import os
import sys
from typing import Any

COMPLETE_ENV = "_WATCHKEEPER_COMPLETE"
"""Set by the shell completion typer installs: it needs every command."""


def __getattr__(name: str) -> Any:
    if name == "app":
        from watchkeeper.engine.cli.group import commands

        return commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Run the command line (the `watchkeeper` console script)."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        from importlib.metadata import version

        sys.stdout.write(f"watchkeeper {version('watchkeeper')}\n")
        return
    if "validate" in argv and not os.environ.get(COMPLETE_ENV):
        from watchkeeper.engine.cli.validate_cmd import direct

        code = direct(argv)  # None: a line typer reads (help, a typo)
        if code is not None:
            _leave(code)
    from watchkeeper.engine.cli import root
    from watchkeeper.engine.cli.grammar import command_named, config_first
    from watchkeeper.engine.cli.group import commands

    args = config_first(argv)
    app = commands(None if os.environ.get(COMPLETE_ENV) else command_named(args))
    try:
        app(prog_name="watchkeeper", args=args)
    except SystemExit as exc:
        if root.fast_exit:
            _leave(exc.code if isinstance(exc.code, int) else 1)
        raise


def _leave(code: int) -> None:
    """Exit at once: freeing a large validated config object by object takes longer than
    validating it, and nothing is left to clean up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
