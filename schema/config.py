"""The whole of monitor.yaml, assembled from the core sections and the installed plugins.

The fixed sections are declared here; every plugin-typed place (checks by `probe`,
notifiers, actions, backup sources and destinations, the state store by `type`) becomes a
discriminated union of the options models the installed plugins register, so a
third-party probe is validated and appears in the JSON Schema like a built-in one.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PydanticUndefinedAnnotation, PydanticUserError, create_model

from watchkeeper.schema.alerting import EscalationLevel, MaintenanceWindow, Route, Task
from watchkeeper.schema.backups import BackupJobBase, Drill
from watchkeeper.schema.base import ConfigModel, Name, defaults_of, empty_dict, empty_list
from watchkeeper.schema.checks import CheckCommon, Defaults
from watchkeeper.schema.daemon import Engine, Sentry, Server
from watchkeeper.schema.slos import SLO

DEFAULT_SEVERITIES = ["critical", "high", "medium", "warning", "low", "info"]
DEFAULT_STORE = {"type": "sqlite"}


class PluginError(Exception):
    """A plugin is broken or conflicts with another: the daemon cannot start with it."""


class ConfigBase(ConfigModel):
    """The sections of monitor.yaml that no plugin shapes."""

    version: Literal[1] = Field(description="Format version; always 1.")
    include: list[str] = Field(
        default_factory=empty_list,
        description="Further files (globs, "
        "relative to this file) whose sections are merged into this "
        "one, e.g. [checks/*.yaml].",
    )
    defaults: Defaults = Field(
        default_factory=defaults_of(Defaults), description="Settings every check inherits."
    )
    environments: dict[Name, dict[str, str]] = Field(
        default_factory=empty_dict,
        description="Named sets of values a check's string fields read as ${env.key}.",
    )
    server: Server = Field(
        default_factory=defaults_of(Server),
        description="HTTP API, status page and metrics.",
    )
    engine: Engine = Field(
        default_factory=defaults_of(Engine),
        description="Worker processes and concurrency of the daemon.",
    )
    sentry: Sentry = Field(
        default_factory=defaults_of(Sentry),
        description="The daemon's own error reporting and check-ins.",
    )
    severities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SEVERITIES),
        min_length=1,
        description="Severity names, most severe first; routes match `>=high` by this order.",
    )
    routes: list[Route] = Field(
        default_factory=empty_list,
        description="Routing rules, first match wins unless `continue: true`.",
    )
    escalation: dict[Name, list[EscalationLevel]] = Field(
        default_factory=empty_dict,
        description="Escalation policies: levels by time unacknowledged.",
    )
    maintenance: list[MaintenanceWindow] = Field(
        default_factory=empty_list, description="Quiet windows, recurring or one-off."
    )
    tasks: dict[Name, Task] = Field(
        default_factory=empty_dict, description="Recurring checklists posted on schedule."
    )
    slos: dict[Name, SLO] = Field(
        default_factory=empty_dict, description="Service level objectives."
    )


def _title(type_name: str, suffix: str) -> str:
    return "".join(part.capitalize() for part in type_name.replace("-", "_").split("_")) + suffix


@functools.cache  # one class per type, whichever models it joins
def _tagged(
    options: type, key: str, type_name: str, title: str, extra_base: type | None = None
) -> type:
    bases = (options,) if extra_base is None else (options, extra_base)
    if extra_base is not None:
        clash = set(options.model_fields) & set(extra_base.model_fields)
        if clash:
            raise PluginError(
                f"probe type {type_name!r} defines keys every check already "
                f"has: {', '.join(sorted(clash))}"
            )
    model = create_model(
        title,
        __base__=bases,
        __module__=options.__module__,
        **{key: (Literal[type_name], Field(description=f"`{type_name}`"))},
    )
    model.__doc__ = (options.__doc__ or "").strip() or f"A {type_name} {key}."
    return model


def _union(models: list[type], key: str, tagged: bool = False) -> Any:
    if not models:
        return Any
    if len(models) == 1 and not tagged:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator=key)]  # noqa: UP007


def build_config_model(
    types: dict[str, dict[str, type]], only: Mapping[str, Collection[str]] | None = None
) -> type[ConfigBase]:
    """Return the monitor.yaml model for these plugin types (kind -> type name -> class).

    `only` (kind -> type names) keeps just those types in each union: a model for the
    types one file names, whose validators cost a fraction of the whole one's to build.
    A union keeps its shape (tagged once there are two types of the kind), so a file
    naming no other type gets the same errors from it as from the whole model.
    """

    def union(kind: str, suffix: str, key: str = "type", extra_base: type | None = None):
        classes = types.get(kind, {})
        if only is not None:
            classes = {n: classes[n] for n in classes if n in only.get(kind, ())}
        models = [
            _tagged(cls.Options, key, name, _title(name, suffix), extra_base)
            for name, cls in sorted(classes.items())
        ]
        return _union(models, key, tagged=len(types.get(kind, {})) > 1), models

    check, _ = union("probe", "Check", key="probe", extra_base=CheckCommon)
    notifier, _ = union("notifier", "Notifier")
    action, _ = union("action", "Action")
    source, _ = union("backup source", "Source")
    destination, _ = union("backup destination", "Destination")
    store, store_models = union("state store", "Store")

    job = create_model(
        "BackupJob",
        __base__=BackupJobBase,
        __module__=__name__,
        source=(source, Field(description="What is backed up (`type` selects the plugin).")),
    )
    backups = create_model(
        "Backups",
        __base__=ConfigModel,
        __module__=__name__,
        destinations=(
            dict[Name, destination],
            Field(
                default_factory=empty_dict, description="Where backup copies are written, by name."
            ),
        ),
        jobs=(dict[Name, job], Field(default_factory=empty_dict, description="Scheduled backups.")),
        drills=(
            dict[Name, Drill],
            Field(default_factory=empty_dict, description="Scheduled restore tests."),
        ),
    )
    backups.__doc__ = "Scheduled backups, their destinations and restore drills."

    def default_store():
        for model in store_models:
            if model.model_fields["type"].annotation == Literal["sqlite"]:
                # as `model(type="sqlite")`, without building the store's own validator
                # (see `defaults_of`)
                return model.model_construct(type="sqlite")
        return None

    model = create_model(
        "MonitorConfig",
        __base__=ConfigBase,
        __module__=__name__,
        state=(
            store | None,
            Field(
                default_factory=default_store,
                description="Where the "
                "daemon keeps what it knows: sqlite (default), postgres or redis.",
            ),
        ),
        checks=(
            dict[Name, check],
            Field(
                default_factory=empty_dict,
                description="Health checks by "
                "name; `probe` selects the plugin, the other keys are its options.",
            ),
        ),
        notifiers=(
            dict[Name, notifier],
            Field(
                default_factory=empty_dict,
                description="Receivers of notices by name; `type` selects the plugin.",
            ),
        ),
        actions=(
            dict[Name, action],
            Field(
                default_factory=empty_dict,
                description="Self-healing actions run by escalation level 1.",
            ),
        ),
        backups=(
            backups,
            Field(
                default_factory=defaults_of(backups),
                description="Scheduled backups, destinations and restore drills.",
            ),
        ),
    )
    model.__doc__ = "monitor.yaml: what watchkeeper watches, who hears, what it backs up."
    # the models are built once, here, as a whole (each plugin's options on its own would
    # be built and then rebuilt inside the unions); a plugin's options that cannot be built
    # fail now, naming the plugin, rather than on first use
    try:
        model.model_rebuild(force=True)
    except _UNBUILDABLE as exc:
        raise _unusable_options(types, exc) from exc
    return model


# what pydantic raises for a model whose fields it cannot validate
_UNBUILDABLE = (PydanticUserError, PydanticUndefinedAnnotation)


def _unusable_options(types: dict[str, dict[str, type]], exc: Exception) -> Exception:
    for kind, classes in types.items():
        for name, cls in sorted(classes.items()):
            try:
                cls.Options.model_rebuild(force=True)
            except _UNBUILDABLE as own:
                reason = str(own).splitlines()[0]
                return PluginError(
                    f"{kind} type {name!r} (module {cls.__module__}) has options that "
                    f"cannot be validated: {reason}"
                )
    return PluginError(f"the configuration model cannot be built: {str(exc).splitlines()[0]}")
