"""The `command` action: run a program (no shell) to heal something."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.action import Action
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.alerting import ActionOptions


class CommandActionOptions(ActionOptions):
    """Run argv without a shell; exit code 0 is success."""

    argv: list[str] = Field(min_length=1, description="Program and arguments; no shell.")
    cwd: str | None = Field(None, description="Working directory.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables (the alert's fields arrive as WATCHKEEPER_*).",
    )


class CommandAction(Action):
    type = "command"
    Options = CommandActionOptions


@hookimpl
def watchkeeper_actions():
    return [CommandAction]
