"""What a probe worker imports: a worker of http checks does without pydantic and the
config's models (about a fifth of its memory), and the http probe still owns its model."""

from __future__ import annotations

import re
import socket

import anyio
import pytest

from tests.worker_kit import http_check, instances_for
from watchkeeper.engine.config.problems import ConfigError
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.executor import ProcessExecutor
from watchkeeper.engine.testing import HttpTestServer

# the config's language and what only it needs: a worker reads its checks as plain values
FORBIDDEN = ("pydantic", "pydantic_core", "watchkeeper.schema", "croniter", "dateutil")
ALLOWED = {"watchkeeper.schema", "watchkeeper.schema.units"}
"""How durations are written (a timeout's message says its duration): no pydantic in it."""

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)


def test_a_worker_running_http_checks_imports_no_pydantic(tmp_path, monkeypatch, capfd):
    # the worker inherits stderr: `-X importtime` lists every module it imports there
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with HttpTestServer() as server:
        server.reply("/ok", json={"status": "up", "latency": 12})
        server.reply("/full", json={"status": "up", "latency": 12})
        server.reply("/slow", json={"status": "up"}, delay=2.0)
        with socket.socket() as closed:  # a port nothing listens on, once closed
            closed.bind(("127.0.0.1", 0))
            refused = f"http://127.0.0.1:{closed.getsockname()[1]}/gone"
        instances = instances_for(
            tmp_path,
            {
                "plain": http_check(server.url("/ok")),
                "full": http_check(
                    server.url("/full"),
                    headers={"X-Probe": "yes"},
                    auth={"username": "watch", "password": "hunter2-secret"},
                    expect={"status": 200, "json": {"status": "up"}, "body_contains": "up"},
                    extract={"latency": {"path": "$.latency", "unit": "ms"}},
                ),
                "refused": http_check(refused),
                # a timeout's message formats its duration: without pydantic too
                "slow": {**http_check(server.url("/slow")), "timeout": "300ms"},
            },
        )

        async def run_all() -> dict:
            executor = ProcessExecutor(registry(), tmp_path, 1)
            results = {}
            async with anyio.create_task_group() as tg:
                await tg.start(executor.serve)
                await executor.load(instances)
                for instance in instances.values():
                    results[instance.check] = await executor.run(instance)
                tg.cancel_scope.cancel()
            return results

        results = anyio.run(run_all)
        sent = [r for r in server.requests if r.path == "/full"]
    assert results["plain"].ok, results["plain"].message
    assert results["full"].ok, results["full"].message
    assert results["full"].metrics["latency"] == pytest.approx(0.012)
    assert sent
    assert sent[0].headers["Authorization"].startswith("Basic ")
    assert sent[0].headers["X-Probe"] == "yes"
    assert not results["refused"].ok
    assert "connection refused" in results["refused"].message
    assert not results["slow"].ok
    assert "300ms" in results["slow"].message, results["slow"].message

    # (a module imported by importlib, as the worker imports its probes, is not listed
    # itself, but what it imports is: pydantic would show as pydantic_core at least)
    imported = set(_IMPORTED.findall(capfd.readouterr().err))
    assert "watchkeeper.plugins.probes.http_request" in imported  # the worker's were read
    forbidden = {m for m in imported if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)}
    assert not forbidden - ALLOWED
    assert "watchkeeper.plugins.probes.http_options" not in imported


def test_the_http_probe_options_are_its_model():
    from watchkeeper.plugins.probes import http, http_options
    from watchkeeper.schema.checks import ProbeOptions

    assert registry().get("probe", "http").Options is http_options.HttpOptions
    assert http.HttpProbe.Options is http_options.HttpOptions
    assert http.HttpProbe().Options is http_options.HttpOptions
    assert issubclass(http.HttpProbe.Options, ProbeOptions)
    assert http.HttpOptions is http_options.HttpOptions  # where callers imported it from
    assert http.HttpExpect is http_options.HttpExpect


def test_validate_reports_bad_http_options_at_their_line(tmp_path):
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "version: 1\n"
        "checks:\n"
        "  web:\n"
        "    probe: http\n"
        "    url: https://example.com\n"
        "    max_redirects: -1\n"
        "    expect:\n"
        '      body_regex: "(unclosed"\n'
        "    schedule: {every: 1m}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    where = {(p.path, p.line) for p in raised.value.problems}
    assert ("checks.web.max_redirects", 6) in where
    assert ("checks.web.expect", 8) in where
