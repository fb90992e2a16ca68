"""The plugin manager: built-ins and entry-point plugins, and the types they provide."""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pluggy
from pydantic import BaseModel

from watchkeeper.engine import hookspecs
from watchkeeper.engine.entry_points import may_declare
from watchkeeper.engine.run.probe import Metric

# raised here and while the config model is assembled from the plugins' options
from watchkeeper.schema.config import PluginError

ENTRY_POINT_GROUP = "watchkeeper"
DISABLE_ENV = "WATCHKEEPER_DISABLE_PLUGINS"
BUILTIN_PREFIX = "watchkeeper.plugins."

DEFAULT_PLUGINS = (
    "watchkeeper.plugins.probes.http",
    "watchkeeper.plugins.probes.tcp",
    "watchkeeper.plugins.probes.dns",
    "watchkeeper.plugins.probes.tls",
    "watchkeeper.plugins.probes.postgres",
    "watchkeeper.plugins.probes.redis",
    "watchkeeper.plugins.probes.system",
    "watchkeeper.plugins.probes.command",
    "watchkeeper.plugins.probes.env",
    "watchkeeper.plugins.probes.heartbeat",
    "watchkeeper.plugins.probes.composite",
    "watchkeeper.plugins.probes.sentry",
    "watchkeeper.plugins.probes.udp",
    "watchkeeper.plugins.probes.mqtt",
    "watchkeeper.plugins.probes.nats",
    "watchkeeper.plugins.probes.icmp",
    "watchkeeper.plugins.probes.smtp",
    "watchkeeper.plugins.probes.imap",
    "watchkeeper.plugins.probes.pop3",
    "watchkeeper.plugins.probes.ssh",
    "watchkeeper.plugins.probes.websocket",
    "watchkeeper.plugins.probes.grpc",
    "watchkeeper.plugins.probes.mysql",
    "watchkeeper.plugins.probes.amqp",
    "watchkeeper.plugins.notifiers.log",
    "watchkeeper.plugins.notifiers.webhook",
    "watchkeeper.plugins.notifiers.slack",
    "watchkeeper.plugins.notifiers.email",
    "watchkeeper.plugins.notifiers.pagerduty",
    "watchkeeper.plugins.notifiers.sentry",
    "watchkeeper.plugins.notifiers.apprise",
    "watchkeeper.plugins.backup_sources.postgres",
    "watchkeeper.plugins.backup_sources.json_export",
    "watchkeeper.plugins.backup_sources.files",
    "watchkeeper.plugins.destinations.local",
    "watchkeeper.plugins.destinations.s3",
    "watchkeeper.plugins.destinations.vercel_blob",
    "watchkeeper.plugins.stores.sqlite",
    "watchkeeper.plugins.stores.postgres",
    "watchkeeper.plugins.stores.redis",
    "watchkeeper.plugins.actions.command",
    "watchkeeper.plugins.actions.http",
)

# kind -> provider hook; the kind names are what messages and `watchkeeper plugins` show
KINDS: dict[str, str] = {
    "probe": "watchkeeper_probes",
    "notifier": "watchkeeper_notifiers",
    "backup source": "watchkeeper_backup_sources",
    "backup destination": "watchkeeper_backup_destinations",
    "state store": "watchkeeper_state_stores",
    "action": "watchkeeper_actions",
}

# A built-in module provides one type, named as the module, of the kind its package holds
# (`watchkeeper.plugins.probes.http`: the probe `http`). So the registry knows every
# built-in type without importing a module, and `registry()` imports one when its type is
# first looked up: `watchkeeper validate` of a file with three probes loads three.
BUILTIN_KINDS = {
    "probes": "probe",
    "notifiers": "notifier",
    "backup_sources": "backup source",
    "destinations": "backup destination",
    "stores": "state store",
    "actions": "action",
}


def builtin_type(module_name: str) -> tuple[str, str]:
    """Return the (kind, type name) a built-in plugin module provides."""
    package, _, type_name = module_name.removeprefix(BUILTIN_PREFIX).partition(".")
    return BUILTIN_KINDS[package], type_name


@dataclass
class PluginInfo:
    """One registered plugin: its name, where it came from and the types it provides."""

    name: str
    origin: str  # "built-in" or "<distribution> <version>"
    types: dict[str, list[str]] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.origin == "built-in"


class _Deferring(pluggy.PluginManager):
    """A plugin manager whose built-ins are registered when their types are first used."""

    deferred: tuple[str, ...] = ()


_IMPORTING = threading.RLock()


class Types(Mapping[str, type]):
    """The types of one kind by name. A built-in one's module is imported (and registered
    with the plugin manager) when the type is first looked up; naming, counting and
    testing for a type (`in`) import nothing."""

    def __init__(self, manager: pluggy.PluginManager, kind: str) -> None:
        self.manager, self.kind = manager, kind
        self.classes: dict[str, type | None] = {}  # None: its module is not imported yet
        self.modules: dict[str, str] = {}  # type name -> built-in module to import

    def __getitem__(self, name: str) -> type:
        cls = self.classes[name]
        if cls is None:
            with _IMPORTING:
                cls = self.classes[name]
                if cls is None:
                    cls = self.classes[name] = _load_builtin(self.manager, self.modules[name])
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self.classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)


def _load_builtin(manager: pluggy.PluginManager, module_name: str) -> type:
    """Import a deferred built-in module, register it and return the type it provides."""
    kind, type_name = builtin_type(module_name)
    module = importlib.import_module(module_name)
    hooks = {name for name in vars(module) if name.startswith(f"{hookspecs.PROJECT}_")}
    if hooks != {KINDS[kind]}:
        raise PluginError(
            f"built-in plugin {module_name!r} implements {', '.join(sorted(hooks)) or 'no hook'}: "
            f"a built-in module is imported when its type is first used, so it implements "
            f"{KINDS[kind]!r} alone"
        )
    manager.register(module, name=module_name)
    classes = list(getattr(module, KINDS[kind])() or [])
    for cls in classes:
        _check_class(kind, module_name, cls)
    if [cls.type for cls in classes] != [type_name]:
        raise PluginError(
            f"built-in plugin {module_name!r} provides {kind} types "
            f"{[cls.type for cls in classes]}; a built-in module provides one, its own name"
        )
    return classes[0]


@dataclass(eq=False)
class Registry:
    """Every plugin type by kind, e.g. `registry.types["probe"]["http"]`."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo]
    types: dict[str, Mapping[str, type]]

    def kind(self, kind: str) -> Mapping[str, type]:
        return self.types[kind]

    def is_builtin(self, kind: str, type_name: str) -> bool:
        """True when the type comes with watchkeeper, not from a third-party plugin."""
        return any(info.builtin for info in self.plugins if type_name in info.types.get(kind, ()))

    def get(self, kind: str, type_name: str) -> type:
        try:
            return self.types[kind][type_name]
        except KeyError:
            known = ", ".join(sorted(self.types[kind])) or "none"
            raise PluginError(
                f"no {kind} plugin provides type {type_name!r} (known: {known})"
            ) from None


def blocked_names() -> set[str]:
    """Return plugin names blocked by WATCHKEEPER_DISABLE_PLUGINS (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    names = {part.strip() for part in raw.split(",") if part.strip()}
    # a built-in may be named in full or relative to watchkeeper.plugins
    return names | {BUILTIN_PREFIX + name for name in names if not name.startswith("watchkeeper.")}


def create_manager(*, load_entry_points: bool = True, defer: bool = False) -> pluggy.PluginManager:
    """Build a plugin manager with the built-ins and, unless disabled, entry-point plugins.

    `defer` leaves the built-ins to `build_registry`'s registry, which imports and
    registers each when its type is first looked up.
    """
    manager = _Deferring(hookspecs.PROJECT) if defer else pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in blocked_names():
        manager.set_blocked(name)
    deferred = []
    for module_name in DEFAULT_PLUGINS:
        if manager.is_blocked(module_name):
            continue
        if defer:
            deferred.append(module_name)
        else:
            manager.register(importlib.import_module(module_name), name=module_name)
    if isinstance(manager, _Deferring):
        manager.deferred = tuple(deferred)
    # reading every distribution's metadata costs more than a small validate: only when
    # some distribution declares the group (engine/entry_points.py)
    if load_entry_points and may_declare(ENTRY_POINT_GROUP):
        try:
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc
        except Exception as exc:  # an entry point that fails to import
            raise PluginError(
                f"a plugin of entry-point group {ENTRY_POINT_GROUP!r} failed "
                f"to load: {type(exc).__name__}: {exc}"
            ) from exc
    try:
        # a misspelled hook name must fail at start-up, not be silently ignored
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(_unknown_hook(manager, exc)) from exc
    return manager


def _unknown_hook(manager: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    known = [name for name in vars(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_")]
    unknown = [
        name
        for name, caller in vars(manager.hook).items()
        if not name.startswith("_")
        and not caller.has_spec()
        and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
    ]
    if not unknown:
        return f"plugin {manager.get_name(exc.plugin)!r}: {exc}"
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"hooks: {', '.join(sorted(known))}"
    return f"plugin {manager.get_name(exc.plugin)!r} implements unknown hook {unknown[0]!r}; {hint}"


def build_registry(manager: pluggy.PluginManager) -> Registry:
    """Collect the types each plugin provides, rejecting invalid classes and duplicates."""
    origins = {
        id(plugin): f"{dist.project_name} {dist.version}"
        for plugin, dist in manager.list_plugin_distinfo()
    }
    infos: dict[str, PluginInfo] = {}
    types: dict[str, Types] = {kind: Types(manager, kind) for kind in KINDS}
    providers: dict[tuple[str, str], str] = {}
    deferred = [(*builtin_type(name), name) for name in getattr(manager, "deferred", ())]
    for kind, hook_name in KINDS.items():
        # the built-ins first, as if registered: known by name, imported when used
        for _kind, type_name, module_name in (d for d in deferred if d[0] == kind):
            infos[module_name] = PluginInfo(module_name, "built-in", {kind: [type_name]})
            providers[(kind, type_name)] = module_name
            types[kind].classes[type_name] = None
            types[kind].modules[type_name] = module_name
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            info = infos.setdefault(
                plugin_name,
                PluginInfo(plugin_name, origins.get(id(impl.plugin), "built-in")),
            )
            for cls in impl.function() or []:
                _check_class(kind, plugin_name, cls)
                previous = providers.get((kind, cls.type))
                if previous is not None:
                    raise PluginError(
                        f"{kind} type {cls.type!r} is provided by both {previous!r} and "
                        f"{plugin_name!r}; disable one with {DISABLE_ENV}={plugin_name}"
                    )
                providers[(kind, cls.type)] = plugin_name
                types[kind].classes[cls.type] = cls
                info.types.setdefault(kind, []).append(cls.type)
    for plugin in manager.get_plugins():
        name = manager.get_name(plugin)
        infos.setdefault(name, PluginInfo(name, origins.get(id(plugin), "built-in")))
    return Registry(manager=manager, plugins=list(infos.values()), types=dict(types))


def _check_class(kind: str, plugin_name: str, cls: object) -> None:
    type_name = getattr(cls, "type", None)
    if not isinstance(type_name, str) or not type_name:
        raise PluginError(
            f"plugin {plugin_name!r} returned a {kind} class {cls!r} without a `type` name"
        )
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(
            f"plugin {plugin_name!r}: {kind} type {type_name!r} has no `Options` pydantic model"
        )
    metrics = getattr(cls, "metrics", None) if kind == "probe" else None
    if metrics is not None and not (
        isinstance(metrics, tuple | list) and all(isinstance(m, Metric) for m in metrics)
    ):
        raise PluginError(
            f"plugin {plugin_name!r}: probe type {type_name!r} declares `metrics` that are not "
            "a tuple of watchkeeper.engine.probe.Metric"
        )


@functools.cache
def registry() -> Registry:
    """Return the process-wide registry (built once; plugins do not change while running).

    Its built-in plugins are imported as their types are first used (see `Types`).
    """
    return build_registry(create_manager(defer=True))
