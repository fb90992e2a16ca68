"""The plugin authors' fixtures (watchkeeper.engine.pytest_plugin), used as an author would:
in a pytest run of their own, with a plugin module that is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.alerting.notifier import DeliveryError, Notifier
from watchkeeper.engine.run.probe import Probe, Result
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.checks import ProbeOptions

SENT = []


class EchoOptions(ProbeOptions):
    """Report a number."""

    value: float = Field(description="The number to report; negative fails the check.")


class EchoProbe(Probe):
    type = "echo_test"
    Options = EchoOptions

    async def check(self, options, ctx):
        metrics = {"value": options.value}
        message = f"{ctx.check}@{ctx.environment}: {options.value:g}"
        return Result(ok=options.value >= 0, message=message, metrics=metrics)


class MemoryOptions(NotifierOptions):
    """Keep notices in memory."""

    refuse: bool = Field(False, description="Refuse every notice.")


class MemoryNotifier(Notifier):
    type = "memory_test"
    Options = MemoryOptions

    async def send(self, notice, options, ctx):
        if options.refuse:
            raise DeliveryError("refused by the receiver", retryable=False)
        SENT.append((ctx.name, notice))


@hookimpl
def watchkeeper_probes():
    return [EchoProbe]


@hookimpl
def watchkeeper_notifiers():
    return [MemoryNotifier]
'''

CONFTEST = """
import pytest

import my_plugin

pytest_plugins = ["watchkeeper.engine.pytest_plugin"]


@pytest.fixture
def watchkeeper_plugins():
    return [my_plugin]
"""

TESTS = '''
import pytest

import my_plugin
from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.pytest_plugin import make_notice

CONFIG = """
    version: 1
    environments:
      production: {}
      staging: {}
    checks:
      numbers: {probe: echo_test, value: 3, environments: [production, staging]}
      negative: {probe: echo_test, value: -1}
    notifiers:
      memory: {type: memory_test}
      wall: {type: memory_test, refuse: true}
    routes:
      - match: {}
        notify: [memory]
    """


def test_run_check_runs_one_instance(monitor_config, run_check):
    config = monitor_config(CONFIG)
    result = run_check(config, "numbers", environment="staging")
    assert result.ok
    assert result.message == "numbers@staging: 3"
    assert result.metrics == {"value": 3.0}
    assert run_check(config, "numbers@production").message == "numbers@production: 3"
    assert not run_check(config, "negative").ok


def test_an_ambiguous_or_unknown_check_is_refused(monitor_config, run_check):
    config = monitor_config(CONFIG)
    with pytest.raises(LookupError, match="several check instances"):
        run_check(config, "numbers")
    with pytest.raises(LookupError, match="no check instance"):
        run_check(config, "nope")


def test_send_notice_delivers_through_the_notifier(monitor_config, send_notice):
    config = monitor_config(CONFIG)
    sent = send_notice(config, "memory")
    resolved = send_notice(config, "memory", make_notice("resolved", check="numbers"))
    assert my_plugin.SENT == [("memory", sent), ("memory", resolved)]
    assert sent.alerts[0].status == "firing"
    assert resolved.status == "resolved"
    assert resolved.alerts[0].resolved_at


def test_a_refusal_reaches_the_test(monitor_config, send_notice):
    with pytest.raises(DeliveryError, match="refused by the receiver"):
        send_notice(monitor_config(CONFIG), "wall")


def test_config_problems_are_as_validate_prints_them(config_problems):
    problems = config_problems("""
        version: 1
        checks:
          numbers: {probe: echo_test, valeu: 3}
    """)
    assert any(p.startswith("monitor.yaml:3:") and "valeu" in p for p in problems), problems


def test_an_invalid_config_fails_the_test_with_its_problems(monitor_config):
    with pytest.raises(pytest.fail.Exception, match="monitor.yaml:3:.*valeu"):
        monitor_config("""
            version: 1
            checks:
              numbers: {probe: echo_test, valeu: 3}
        """)


def test_strict_validation_wants_variables(monitor_config):
    text = """
        version: 1
        checks:
          numbers: {probe: echo_test, value: "${ECHO_VALUE}"}
    """
    with pytest.raises(pytest.fail.Exception, match="ECHO_VALUE is not set"):
        monitor_config(text)
    assert monitor_config(text, env={"ECHO_VALUE": "5"}).valid


def test_the_registry_has_the_plugin_while_the_test_runs(watchkeeper_registry):
    assert registry() is watchkeeper_registry
    assert "echo_test" in registry().types["probe"]


def test_the_probe_kit_fixtures_come_along(http_server):
    http_server.reply("/", json={"ok": True})
    assert http_server.url("/").startswith("http://127.0.0.1:")
'''

AFTER = """
from watchkeeper.engine.plugins import registry


def test_the_registry_is_back_to_the_installed_plugins():
    assert "echo_test" not in registry().types["probe"]
"""


def test_the_fixtures_work_in_an_authors_test_run(tmp_path: Path):
    for name, text in {
        "my_plugin.py": PLUGIN,
        "conftest.py": CONFTEST,
        "test_with_plugin.py": TESTS,
        "test_zz_after.py": AFTER,
    }.items():
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["PYTHONPATH"] = str(tmp_path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 passed" in proc.stdout, proc.stdout
