"""Hook specifications: every extension point of watchkeeper, in one place.

Plugins implement these with `@hookimpl` and register through the entry-point group
`watchkeeper`; the built-ins in `watchkeeper.plugins` register the same way.
Provider hooks return the classes a plugin supplies; event hooks only listen and may
be plain or async functions (the engine awaits them with a timeout and logs failures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from watchkeeper.engine.alerting.alerts import Alert
    from watchkeeper.engine.run.probe import Result

PROJECT = "watchkeeper"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "hookimpl",
    "hookspec",
    "watchkeeper_actions",
    "watchkeeper_alert_changed",
    "watchkeeper_backup_destinations",
    "watchkeeper_backup_finished",
    "watchkeeper_backup_sources",
    "watchkeeper_event",
    "watchkeeper_notice_sent",
    "watchkeeper_notifiers",
    "watchkeeper_probes",
    "watchkeeper_result",
    "watchkeeper_shutdown",
    "watchkeeper_startup",
    "watchkeeper_state_stores",
]


@hookspec
def watchkeeper_probes() -> list[type]:
    """Return the probe classes this plugin provides.

    A probe class has a `type` name (what `probe:` selects in a check), an `Options`
    pydantic model for its keys, and `async def check(self, options, ctx) -> Result`;
    optionally `async def open(self, ctx)` and `async def close(self)`.
    """


@hookspec
def watchkeeper_notifiers() -> list[type]:
    """Return the notifier classes this plugin provides.

    A notifier class has a `type` name, an `Options` model and
    `async def send(self, notice, options, ctx)`, which returns once the receiver accepted it.
    """


@hookspec
def watchkeeper_backup_sources() -> list[type]:
    """Return the backup source classes this plugin provides.

    A source class has a `type` name, an `Options` model, and produces the files of one
    backup (`async def dump(self, options, ctx)`) and restores them
    (`async def restore(self, options, files, target, ctx)`).
    """


@hookspec
def watchkeeper_backup_destinations() -> list[type]:
    """Return the backup destination classes this plugin provides.

    A destination class has a `type` name, an `Options` model, and stores, lists, reads
    and deletes backup files.
    """


@hookspec
def watchkeeper_state_stores() -> list[type]:
    """Return the state store classes this plugin provides.

    A store class has a `type` name (what `state.type` selects), an `Options` model and
    implements `watchkeeper.engine.store.StateStore`.
    """


@hookspec
def watchkeeper_actions() -> list[type]:
    """Return the self-healing action classes this plugin provides.

    An action class has a `type` name, an `Options` model and
    `async def run(self, options, ctx) -> ActionResult`.
    """


@hookspec
def watchkeeper_startup(config: Any) -> None:
    """Observe the daemon starting with a validated configuration.

    :param config: the validated monitor.yaml model.
    """


@hookspec
def watchkeeper_shutdown() -> None:
    """Observe the daemon stopping, after the last check finished."""


@hookspec
def watchkeeper_result(check: str, environment: str | None, result: Result) -> None:
    """Observe one probe result, after it was evaluated and stored.

    :param check: the check's name as written in monitor.yaml.
    :param environment: the environment of this check instance, or None.
    :param result: the probe's result (ok, metrics, message, duration).
    """


@hookspec
def watchkeeper_alert_changed(alert: Alert) -> None:
    """Observe an alert changing state or severity (pending, firing, resolved).

    :param alert: the alert after the change.
    """


@hookspec
def watchkeeper_notice_sent(notifier: str, notice: Any) -> None:
    """Observe a notice accepted by its receiver.

    :param notifier: the notifier's name in monitor.yaml.
    :param notice: the notice that was delivered.
    """


@hookspec
def watchkeeper_event(event: dict[str, Any]) -> None:
    """Observe an event (deploy, rollback...) posted to the daemon.

    :param event: the event as posted, e.g. `{"event": "deploy", "version": "1.4.2"}`.
    """


@hookspec
def watchkeeper_backup_finished(backup: Any) -> None:
    """Observe a backup run finishing, successfully or not.

    :param backup: the catalog entry of the run.
    """
