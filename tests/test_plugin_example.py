"""examples/plugin-example installs like a real plugin, shows up, and passes its own tests.

It is built and installed into a temporary directory on PYTHONPATH, never into .venv
(`schema --check` would then see its types and fail there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "plugin-example"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1", **extra}


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the example (built there, not in the work tree) and where it is installed."""
    root = tmp_path_factory.mktemp("plugin-example")
    source = root / "plugin-example"
    shutil.copytree(
        EXAMPLE,
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*cache"),
    )
    target = root / "site"
    started = time.perf_counter()
    # an isolated build: the example needs a newer setuptools than .venv may have
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"),
            *("--target", str(target), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"installed the example in {time.perf_counter() - started:.1f}s")
    return source, target


def test_it_installs_as_a_distribution_with_its_entry_point(example):
    _, target = example
    info = next(target.glob("watchkeeper_example_plugin-*.dist-info"))
    assert "[watchkeeper]\nexample = watchkeeper_example" in (info / "entry_points.txt").read_text()
    assert (target / "watchkeeper_example" / "file_age.py").is_file()


def test_watchkeeper_plugins_lists_it(example, tmp_path):
    _, target = example
    result = run_cli(
        "plugins",
        "--third-party",
        "--format",
        "json",
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
    )
    assert result.code == 0, result.output
    assert result.json() == [
        {
            "name": "example",
            "origin": "watchkeeper-example-plugin 0.1.0",
            "types": {"probe": ["file_age"], "notifier": ["jsonl"]},
        }
    ]


def test_it_can_be_disabled_by_name(example, tmp_path):
    _, target = example
    env = {"PYTHONPATH": str(target), "WATCHKEEPER_DISABLE_PLUGINS": "example"}
    result = run_cli("plugins", "--third-party", "--format", "json", cwd=tmp_path, env=env)
    assert result.code == 0, result.output
    assert result.json() == []


def test_a_config_using_it_validates(example, write_config, cli):
    _, target = example
    write_config(
        """
        version: 1
        checks:
          backup-fresh:
            probe: file_age
            path: "backups/*.dump"
            min_size: 1KB
            thresholds: [{metric: file_age, above: 26h, severity: high}]
        notifiers:
          audit-log: {type: jsonl, path: notices.jsonl}
        routes:
          - match: {}
            notify: [audit-log]
        """
    )
    result = cli("validate", "--strict", env={"PYTHONPATH": str(target)})
    assert result.code == 0, result.output


def test_its_own_tests_pass_with_the_authors_fixtures(example):
    source, target = example
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(PYTHONPATH=str(target)),
    )
    print(f"the example's tests ran in {time.perf_counter() - started:.1f}s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout, proc.stdout
    assert "failed" not in proc.stdout, proc.stdout
