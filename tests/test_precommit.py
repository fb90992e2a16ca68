"""The `watchkeeper-validate` pre-commit hook, run by real pre-commit in a temporary repo.

pre-commit clones this repository at a commit, installs it into a virtualenv of its own
and runs the hook on the staged files. The work tree may hold uncommitted changes (and
commits here are not ours to make): the test commits a copy of it inside its temporary
directory and points pre-commit there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.worktree import commit_worktree, git

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GOOD = """\
version: 1
checks:
  web:
    probe: http
    url: https://app.example.com/health
notifiers:
  console: {type: log}
routes:
  - match: {}
    notify: [console]
"""
BAD = GOOD.replace("    url:", "    timout: 5s\n    url:")  # line 5, column 5


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's repository whose .pre-commit-config.yaml uses our hook."""
    root = tmp_path_factory.mktemp("precommit")
    rev = commit_worktree(root / "watchkeeper")
    project = root / "project"
    project.mkdir()
    git("init", "--quiet", cwd=project)
    config = {
        "repos": [
            {
                "repo": str(root / "watchkeeper"),
                "rev": rev,
                "hooks": [{"id": "watchkeeper-validate"}],
            }
        ]
    }
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # not a watchkeeper file: the hook must leave it alone
    (project / "docker-compose.yaml").write_text("services: {web: {image: nginx}}\n")
    return project


def pre_commit(project: Path) -> subprocess.CompletedProcess[str]:
    git("add", "--all", cwd=project)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["PRE_COMMIT_HOME"] = str(project.parent / "cache")  # never the user's cache
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--color", "never"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )


def test_hook_definition_matches_the_files_it_is_for():
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "watchkeeper-validate"
    assert hook["entry"] == "watchkeeper validate"
    assert hook["pass_filenames"] is True
    pattern = re.compile(hook["files"])
    for name in ("monitor.yaml", "ops/monitor.yml", "staging.watchkeeper.yaml"):
        assert pattern.search(name), name
    for name in ("docker-compose.yaml", "monitor.yaml.bak", "notmonitor.yaml"):
        assert not pattern.search(name), name


def test_a_good_config_passes_and_a_broken_one_fails_with_its_position(project):
    (project / "monitor.yaml").write_text(GOOD)
    (project / "staging.watchkeeper.yaml").write_text(GOOD)
    started = time.perf_counter()
    good = pre_commit(project)  # the first run installs the hook's environment
    print(f"pre-commit (with its install) took {time.perf_counter() - started:.1f}s")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "watchkeeper validate" in good.stdout, good.stdout
    assert "Passed" in good.stdout, good.stdout

    (project / "staging.watchkeeper.yaml").write_text(BAD)
    started = time.perf_counter()
    bad = pre_commit(project)
    print(f"pre-commit (installed) took {time.perf_counter() - started:.1f}s")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout, bad.stdout
    assert "staging.watchkeeper.yaml:5:5: checks.web.timout: unknown key 'timout'" in bad.stdout, (
        bad.stdout
    )
    # both files were validated, the good one without a problem
    assert "monitor.yaml, staging.watchkeeper.yaml: 1 error" in bad.stdout, bad.stdout
    assert not any(line.startswith("monitor.yaml:") for line in bad.stdout.splitlines())
