"""The rich consoles commands print through: every rendered line has secrets masked.

Kept apart from engine/cli/root.py so that a command line answered without typer
(engine/cli/validate_cmd.py) can print as the commands do.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

from watchkeeper.engine.observe.redaction import REDACTOR


class _RedactingConsole(Console):
    """A rich console whose every rendered line has secrets masked."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # masked before rich lays them out too: wrapping, tab expansion and splitting a
        # cell into lines would leave a secret in pieces the rendered-line mask cannot see
        super().print(*(_masked(o) for o in objects), **kwargs)

    def _render_buffer(self, buffer):  # type: ignore[override]
        return REDACTOR.redact(super()._render_buffer(buffer))


def _masked(renderable: Any) -> Any:
    """Return a renderable with secrets masked in its text (a table's cells included)."""
    from rich.text import Text

    # no table was drawn unless rich.table was imported (it is not for most commands)
    tables = sys.modules.get("rich.table")
    table_type = tables.Table if tables is not None else ()

    if isinstance(renderable, str):
        return REDACTOR.redact(renderable)
    if isinstance(renderable, Text):
        plain = REDACTOR.redact(renderable.plain)
        return renderable if plain == renderable.plain else Text(plain, style=renderable.style)
    if isinstance(renderable, table_type):
        for column in renderable.columns:
            column._cells = [_masked(cell) for cell in column._cells]
    return renderable


console = _RedactingConsole(highlight=False, soft_wrap=True)
err_console = _RedactingConsole(stderr=True, highlight=False, soft_wrap=True)
