"""Base classes every model of monitor.yaml builds on, plugin options included."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
"""Names of checks, notifiers, jobs...: letters, digits and `_ . : -`; never `@` (instances)."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="a name defined in this file")]

Secret = SecretStr
"""A credential: shown as `**********`, never logged, rendered or sent to Sentry."""


class ConfigModel(BaseModel):
    """A section of monitor.yaml: unknown keys are errors, `for`/`continue` may be written as is."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        hide_input_in_errors=True,
        validate_default=False,
        # a model's validator is built when first used: the monitor.yaml model builds every
        # plugin's options inside its unions, so building each on its own at import would
        # be done twice
        defer_build=True,
    )


class PluginOptions(ConfigModel):
    """The options a plugin type accepts; joins the config schema as one branch of a union.

    Subclasses describe every field with `Field(description=...)`: those descriptions are
    what `watchkeeper schema`, editors and docs/configuration.md show.
    """

    plugin_kind: ClassVar[str] = ""
