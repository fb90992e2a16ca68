"""Base classes every model of monitor.yaml builds on, plugin options included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, TypeVar

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


# `default_factory=list` (or `dict`) makes pydantic read the builtin's signature, which
# inspect gets by tokenizing its text signature: a Python function is read directly
def empty_list() -> list:
    """Return a new empty list (a field's default)."""
    return []


def empty_dict() -> dict:
    """Return a new empty dict (a field's default)."""
    return {}


M = TypeVar("M", bound=BaseModel)


def defaults_of(model: type[M]) -> Callable[[], M]:
    """Return a default factory for a section of `model`, every field of which has a
    default and no model validator: it makes the instance `model()` would.

    `model()` would first build `model`'s own validator (its build is deferred), though
    the monitor.yaml model validates the section within its own and a missing section's
    defaults are not validated (`validate_default=False`): a cost of every start-up.
    """

    def factory() -> M:
        return model.model_construct()

    return factory
