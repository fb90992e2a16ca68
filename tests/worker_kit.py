"""Check instances for tests that drive a probe worker directly (ProcessExecutor)."""

from __future__ import annotations

from pathlib import Path

import yaml

from watchkeeper.engine.config.instances import expand
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.testing import HttpTestServer


def instances_for(tmp_path: Path, checks: dict) -> dict:
    """The instances a monitor.yaml of these checks expands to."""
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "checks": checks}))
    validation = load_config(path)
    assert validation.config is not None, validation.problems
    return expand(validation.config, registry())


def http_check(url: str, **more) -> dict:
    return {"probe": "http", "url": url, "schedule": {"every": "1m"}, "timeout": "5s", **more}


def hits(server: HttpTestServer, path: str) -> int:
    return sum(1 for request in server.requests if request.path == path)


def one_then_two(server: HttpTestServer, tmp_path: Path) -> tuple[dict, dict]:
    """Checks `a` and `b` answering 200: the instances of `a` alone, then of both."""
    server.reply("/a", status=200)
    server.reply("/b", status=200)
    first = instances_for(tmp_path, {"a": http_check(server.url("/a"))})
    both = instances_for(
        tmp_path, {"a": http_check(server.url("/a")), "b": http_check(server.url("/b"))}
    )
    return first, both
