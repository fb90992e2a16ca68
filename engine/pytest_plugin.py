"""pytest fixtures for plugin authors: a monitor.yaml with your plugin, one check, one notice.

    # conftest.py of your plugin's tests
    pytest_plugins = ["watchkeeper.engine.pytest_plugin"]

    # test_queue.py
    def test_queue_depth(monitor_config, run_check):
        config = monitor_config('''
            version: 1
            checks:
              jobs: {probe: queue, url: "http://127.0.0.1:9/"}
        ''')
        result = run_check(config, "jobs")
        assert not result.ok

A configuration goes through `watchkeeper validate --strict`, with the plugins installed in
the environment (yours, after `pip install -e .`) and the modules that the
`watchkeeper_plugins` fixture lists: override it to test a module you have not installed.
Checks run through the engine's runner (options, timeout, error handling) and notices go
to the notifier as the daemon sends them. The probe kit's fixtures (`http_server`,
`tcp_server`, `silent_udp`, `certificates`, see `watchkeeper.engine.testing`) come along.
"""

from __future__ import annotations

import logging
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import anyio
import pytest

from watchkeeper.engine import plugins

if TYPE_CHECKING:
    from watchkeeper.engine.alerting.notice import Notice
    from watchkeeper.engine.config.validation import Validation
    from watchkeeper.engine.run.probe import Result

pytest_plugins = ["watchkeeper.engine.testing"]

__all__ = ["acheck", "asend", "make_notice"]


# --- what the fixtures run, usable from async tests too ----------------------------------


async def acheck(
    config: Validation,
    name: str,
    *,
    environment: str | None = None,
    reg: plugins.Registry | None = None,
) -> Result:
    """Run one check of a validated configuration once, as the daemon runs it.

    `name` is the check's name (or `name@environment`); a check with environments needs
    `environment` unless it names the instance.
    """
    from watchkeeper.engine.config.instances import expand
    from watchkeeper.engine.run.executor import LocalExecutor

    reg = reg or plugins.registry()
    instances = expand(config.config, reg)
    chosen = [
        instance
        for key, instance in instances.items()
        if instance.parent is None  # a located check runs once, as its judging instance
        and (
            key == name or (instance.check == name and environment in (None, instance.environment))
        )
    ]
    if len(chosen) != 1:
        found = ", ".join(sorted(instances)) or "none"
        which = "no check instance" if not chosen else "several check instances"
        raise LookupError(f"{which} named {name!r} (pass environment=); instances: {found}")
    instance = chosen[0]
    if instance.passive:
        raise LookupError(f"check {name!r} is passive ({instance.probe_type}): it never runs")
    executor = LocalExecutor(reg, config.base_dir)
    try:
        return await executor.run(instance)
    finally:
        await executor.close()


async def asend(
    config: Validation,
    notifier: str,
    notice: Notice | None = None,
    *,
    reg: plugins.Registry | None = None,
) -> Notice:
    """Send a notice (default: `make_notice()`) through a notifier of the configuration.

    Returns the notice once the receiver accepted it; a refusal raises the notifier's
    `DeliveryError`, an overrun of the notifier's `timeout` raises `TimeoutError`.
    """
    from watchkeeper.engine.alerting.notifier import NotifyContext

    options = config.config.notifiers.get(notifier)
    if options is None:
        known = ", ".join(sorted(config.config.notifiers)) or "none"
        raise LookupError(f"no notifier named {notifier!r} (defined: {known})")
    plugin = (reg or plugins.registry()).get("notifier", options.type)()
    notice = notice or make_notice()
    ctx = NotifyContext(
        name=notifier,
        log=logging.getLogger(f"watchkeeper.notify.{notifier}"),
        timeout=options.timeout,
        base_dir=config.base_dir,
    )
    with anyio.fail_after(options.timeout):
        await plugin.send(notice, options, ctx)
    return notice


def make_notice(
    status: str = "firing",
    *,
    check: str = "api-health",
    environment: str | None = None,
    severity: str = "critical",
    summary: str = "HTTP 503 from https://app.example.com/api/health",
) -> Notice:
    """Return a notice about one alert, `firing` or `resolved`, as the outbox hands it over."""
    from watchkeeper.engine.alerting.notice import Notice, NoticeAlert, new_notice_id

    now = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 300))
    resolved = status == "resolved"
    alert = NoticeAlert(
        id=new_notice_id().removeprefix("wk-")[:12],
        check=check,
        environment=environment,
        rule="up",
        severity=severity,
        status=status,
        summary=summary,
        started_at=started,
        resolved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)) if resolved else None,
        duration=300.0 if resolved else None,
        change=status,
    )
    where = f"{check}@{environment}" if environment else check
    return Notice(
        id=new_notice_id(),
        kind="alert",
        status="resolved" if resolved else "firing",
        title=f"[{status.upper()}] {where}: {summary}",
        severity=severity,
        alerts=[alert],
        group={"check": check, **({"environment": environment} if environment else {})},
        created_at=now,
    )


# --- fixtures -------------------------------------------------------------------------------

_REGISTRIES: dict[tuple[str, ...], plugins.Registry] = {}
"""Registries with extra plugin modules, built once per set of modules (imports are slow)."""


def _registry_with(modules: list[ModuleType]) -> plugins.Registry:
    names = tuple(module.__name__ for module in modules)
    if names not in _REGISTRIES:
        manager = plugins.create_manager()
        for module in modules:
            if not manager.is_registered(module):  # installed as well: registered already
                manager.register(module, name=module.__name__)
        try:
            manager.check_pending()
        except Exception as exc:
            raise plugins.PluginError(f"{names}: {exc}") from exc
        _REGISTRIES[names] = plugins.build_registry(manager)
    return _REGISTRIES[names]


@pytest.fixture
def watchkeeper_plugins() -> list[ModuleType]:
    """Plugin modules to register besides the installed ones: override it to add yours."""
    return []


@pytest.fixture
def watchkeeper_registry(watchkeeper_plugins: list[ModuleType]) -> Iterator[plugins.Registry]:
    """The plugins this test sees: installed ones plus `watchkeeper_plugins`, everywhere."""
    if not watchkeeper_plugins:
        yield plugins.registry()
        return
    reg = _registry_with(watchkeeper_plugins)
    # every part of the engine asks plugins.registry(): make it answer with this one
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plugins, "create_manager", lambda **_: reg.manager)
        patch.setattr(plugins, "build_registry", lambda _manager: reg)
        plugins.registry.cache_clear()
        try:
            yield reg
        finally:
            plugins.registry.cache_clear()


def _write(directory: Path, text: str, name: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _validate(path: Path, env: dict[str, str] | None, reg: plugins.Registry) -> Validation:
    from watchkeeper.engine.config.validation import validate

    return validate(path, env={**os.environ, **(env or {})}, strict=True, reg=reg)


def _texts(validation: Validation, directory: Path) -> list[str]:
    """The problems as `validate` prints them, with file names relative to `directory`."""
    prefix = f"{directory}{os.sep}"
    return [problem.text().replace(prefix, "") for problem in validation.problems]


@pytest.fixture
def monitor_config(tmp_path: Path, watchkeeper_registry: plugins.Registry):
    """Write a (dedented) monitor.yaml into tmp_path and validate it strictly.

    `monitor_config(text, env={...}, name="monitor.yaml")` returns the validation
    (`.config` is the model, `.base_dir` its folder); an invalid file fails the test with
    every problem as `file:line:col: key.path: message`.
    """

    def load(text: str, *, env: dict[str, str] | None = None, name: str = "monitor.yaml"):
        validation = _validate(_write(tmp_path, text, name), env, watchkeeper_registry)
        if not validation.valid:
            problems = "\n".join(_texts(validation, tmp_path))
            pytest.fail(f"{name} is not valid:\n{problems}", pytrace=False)
        return validation

    return load


@pytest.fixture
def config_problems(tmp_path: Path, watchkeeper_registry: plugins.Registry):
    """`config_problems(text, env={...})`: the problems strict validation finds, as text.

    Each is `monitor.yaml:line:col: key.path: message`, the way `watchkeeper validate`
    prints it: assert on them to test your options' validation and messages.
    """

    def problems(text: str, *, env: dict[str, str] | None = None, name: str = "monitor.yaml"):
        validation = _validate(_write(tmp_path, text, name), env, watchkeeper_registry)
        return _texts(validation, tmp_path)

    return problems


@pytest.fixture
def run_check(watchkeeper_registry: plugins.Registry):
    """`run_check(config, name, environment=None)`: run one check once; return its Result."""

    def run(config: Validation, name: str, *, environment: str | None = None) -> Result:
        return anyio.run(
            lambda: acheck(config, name, environment=environment, reg=watchkeeper_registry)
        )

    return run


@pytest.fixture
def send_notice(watchkeeper_registry: plugins.Registry):
    """`send_notice(config, notifier, notice=None)`: deliver one notice; return it.

    Without a notice, a firing critical alert from `make_notice()` is sent.
    """

    def send(config: Validation, notifier: str, notice: Notice | None = None) -> Notice:
        return anyio.run(lambda: asend(config, notifier, notice, reg=watchkeeper_registry))

    return send
