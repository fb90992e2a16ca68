"""The `command` probe: run a program (no shell) and judge its exit code and output."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.checks import Extraction, ProbeOptions


class CommandOptions(ProbeOptions):
    """Run argv without a shell; exit code 0 (or one of expect_exit) is good."""

    argv: list[str] = Field(min_length=1, description="Program and arguments; no shell.")
    cwd: str | None = Field(None, description="Working directory.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    expect_exit: list[int] = Field(
        default_factory=lambda: [0], description="Exit codes that count as good."
    )
    extract: dict[str, Extraction] = Field(
        default_factory=dict,
        description="Metrics read from stdout (regex, or path when it is JSON).",
    )


class CommandProbe(Probe):
    """Metrics: exit_code, run_time, and any extracted from stdout."""

    type = "command"
    Options = CommandOptions
    scope = "host"


@hookimpl
def watchkeeper_probes():
    return [CommandProbe]
