"""Fixtures shared by every test: running the real CLI and writing configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

# hypothesis budgets: `make test` runs each property's own small fixed budget; `make fuzz`
# (WATCHKEEPER_FUZZ=1, or HYPOTHESIS_PROFILE=fuzz) runs thousands of examples a property
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
_FUZZ = os.environ.get("WATCHKEEPER_FUZZ", "").strip() not in ("", "0")
if _FUZZ or os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
    settings.load_profile("fuzz")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self):
        return json.loads(self.stdout)


def run_cli(
    *args: str,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> CliResult:
    """Run `python -m watchkeeper.engine ARGS` as a user would, in a fresh process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    full_env["NO_COLOR"] = "1"
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "watchkeeper.engine", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in a temporary directory (the config defaults to ./monitor.yaml there)."""

    def run(*args: str, **kwargs) -> CliResult:
        kwargs.setdefault("cwd", tmp_path)
        return run_cli(*args, **kwargs)

    return run


@pytest.fixture
def write_config(tmp_path):
    """Write a (dedented) monitor.yaml, or another file, into the temporary directory."""

    def write(text: str, name: str = "monitor.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture(scope="session")
def plugin_paths(tmp_path_factory) -> dict[str, str]:
    """Install each test plugin package once, each into its own directory for PYTHONPATH."""
    from tests.plugin_site import HERE, PACKAGES, install

    root = tmp_path_factory.mktemp("site")
    paths = {}
    for name in PACKAGES:
        install(HERE / name, root / name)
        paths[name] = str(root / name)
    return paths


@pytest.fixture
def target():
    """An HTTP target whose answers a test sets (tests.daemon_harness.Target)."""
    from tests.daemon_harness import Target

    server = Target()
    yield server
    server.close()


@pytest.fixture
def receiver():
    """A webhook receiver recording what the daemon sends (tests.daemon_harness.Recorder)."""
    from tests.daemon_harness import Recorder

    server = Recorder()
    yield server
    server.close()
