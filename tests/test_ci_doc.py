"""docs/ci.md works as printed: its GitHub workflow, GitLab job and shell script run here.

The validate and route commands of each example run against examples/infinite-idea.yaml
(the seed guide's configuration), with a ci.env of placeholders as the page describes;
a broken copy of the file shows the annotations' shape and that each example fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_examples import dummy_environment
from tests.worktree import git

DOC = REPO / "docs" / "ci.md"
SEED = REPO / "examples" / "infinite-idea.yaml"
BIN = Path(sys.executable).parent
ANNOTATION = re.compile(r"^::(error|warning) file=([^,]+),line=(\d+),col=(\d+)::(\S.*)$")

needs_jq = pytest.mark.skipif(shutil.which("jq") is None, reason="the examples use jq")


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def code_blocks(title: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(title), re.M | re.S)


def workflow() -> dict:
    (block,) = [b for b in code_blocks("GitHub Actions", "yaml") if "jobs:" in b]
    return yaml.safe_load(block)


def base_environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # this checkout's watchkeeper
    env["NO_COLOR"] = "1"
    env["HOME"] = str(tmp_path)
    return env


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A user's repository: a ci.env with a placeholder for every variable of the seed."""
    lines = [f"{name}={value}" for name, value in sorted(dummy_environment(SEED).items())]
    (tmp_path / "ci.env").write_text("# placeholders\n" + "\n".join(lines) + "\n")
    return tmp_path


def broken_copy(workspace: Path) -> tuple[Path, int, int]:
    """Copy the seed config with one threshold broken; return it and the bad value's place."""
    text = SEED.read_text()
    value = text.find("above: 5s") + len("above: ")
    assert value > len("above: "), "the seed config changed: pick another value to break"
    line = text.count("\n", 0, value) + 1
    column = value - (text.rfind("\n", 0, value) + 1) + 1
    path = workspace / "monitor.yaml"
    path.write_text(text[:value] + "fast" + text[value + len("5s") :])
    return path, line, column


def run_steps(
    steps: list[dict], env: dict[str, str], cwd: Path
) -> list[subprocess.CompletedProcess]:
    """Run `run:` steps as GitHub does with `shell: bash`, carrying $GITHUB_ENV between them."""
    github_env = cwd / ".github_env"
    github_env.write_text("")
    done = []
    for step in steps:
        exported = dict(
            line.split("=", 1) for line in github_env.read_text().splitlines() if "=" in line
        )
        step_env = {**env, **exported, **step.get("env", {}), "GITHUB_ENV": str(github_env)}
        script = cwd / ".step.sh"
        script.write_text(step["run"])
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        done.append(proc)
        if proc.returncode != 0:
            break
    return done


def runnable_steps() -> list[dict]:
    """The workflow's `run:` steps, less installing watchkeeper (this checkout's is used)."""
    steps = workflow()["jobs"]["check"]["steps"]
    return [s for s in steps if "run" in s and "pip install" not in s["run"]]


# --- GitHub Actions ----------------------------------------------------------------------


def test_the_workflow_runs_on_pull_requests_and_does_what_the_page_says():
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    job = flow["jobs"]["check"]
    assert job["defaults"]["run"]["shell"] == "bash"
    commands = "\n".join(step.get("run", "") for step in job["steps"])
    assert "pip install" in commands
    assert "watchkeeper validate --format github --strict" in commands
    assert "watchkeeper route --format json" in commands
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in job["steps"])


@needs_jq
@pytest.mark.slow
def test_the_workflow_passes_on_the_seed_config(workspace):
    env = {
        **base_environment(workspace),
        **workflow()["jobs"]["check"]["env"],
        "WATCHKEEPER_CONFIG": str(SEED),
    }
    steps = runnable_steps()
    done = run_steps(steps, env, workspace)
    assert all(proc.returncode == 0 for proc in done), done[-1].stdout + done[-1].stderr
    assert len(done) == len(steps)
    validate = done[next(i for i, step in enumerate(steps) if "validate" in step["run"])]
    assert not [line for line in validate.stdout.splitlines() if line.startswith("::")]
    routes = done[-1].stdout.split()
    assert routes == ["true"] * 4, done[-1].stdout


@needs_jq
@pytest.mark.slow
def test_the_workflow_fails_on_a_broken_config_with_annotations(workspace):
    path, line, column = broken_copy(workspace)
    env = {**base_environment(workspace), **workflow()["jobs"]["check"]["env"]}
    assert env["WATCHKEEPER_CONFIG"] == "monitor.yaml"
    done = run_steps(runnable_steps(), env, workspace)
    failed = done[-1]
    assert failed.returncode == 1, failed.stdout + failed.stderr
    annotations = [ANNOTATION.match(text) for text in failed.stdout.splitlines()]
    assert annotations, failed.stdout
    assert all(annotations), failed.stdout
    (only,) = annotations
    level, file, at_line, at_column, message = only.groups()
    assert (level, file) == ("error", "monitor.yaml")
    assert (int(at_line), int(at_column)) == (line, column), message
    assert "fast" in message, message
    assert path.read_text().splitlines()[line - 1][column - 1 :].startswith("fast")


@needs_jq
@pytest.mark.slow
def test_a_route_regression_fails_the_route_tests(workspace):
    text = SEED.read_text()
    critical = "- match: {severity: critical, labels: {heal: redeploy}}\n    notify: [alerts]"
    assert critical in text, "the seed config changed: update this test"
    (workspace / "monitor.yaml").write_text(
        text.replace(critical, critical.replace("[alerts]", "[monitoring]"))
    )
    env = {**base_environment(workspace), **workflow()["jobs"]["check"]["env"]}
    done = run_steps(runnable_steps(), env, workspace)
    assert done[-1].returncode != 0
    assert "route" in (workspace / ".step.sh").read_text()
    assert done[-1].stdout.split()[0] == "false", done[-1].stdout


# --- GitLab CI ---------------------------------------------------------------------------


def gitlab_job() -> dict:
    (block,) = code_blocks("GitLab CI", "yaml")
    return yaml.safe_load(block)["monitoring-config"]


def run_gitlab_script(workspace: Path, **variables: str) -> subprocess.CompletedProcess:
    """Run the job's script lines in one shell, as GitLab does, less `before_script`."""
    job = gitlab_job()
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", "\n".join(job["script"])],
        cwd=workspace,
        env={**base_environment(workspace), **job["variables"], **variables},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_gitlab_job_runs_on_merge_requests_and_reports_code_quality():
    job = gitlab_job()
    assert job["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert job["artifacts"]["reports"]["codequality"] == "gl-code-quality-report.json"
    assert any("pip install" in line for line in job["before_script"])


@needs_jq
@pytest.mark.slow
def test_the_gitlab_job_passes_on_the_seed_and_reports_a_broken_copy(workspace):
    good = run_gitlab_script(workspace, WATCHKEEPER_CONFIG=str(SEED))
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads((workspace / "gl-code-quality-report.json").read_text())
    assert report == []

    _, line, _ = broken_copy(workspace)
    bad = run_gitlab_script(workspace)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    (issue,) = json.loads((workspace / "gl-code-quality-report.json").read_text())
    assert issue["location"] == {"path": "monitor.yaml", "lines": {"begin": line}}
    assert issue["severity"] == "major"
    assert issue["check_name"] == "watchkeeper"
    assert issue["fingerprint"]
    assert "fast" in issue["description"]


# --- a shell script ----------------------------------------------------------------------


@needs_jq
@pytest.mark.slow
def test_the_shell_script_passes_on_the_seed_and_fails_on_a_broken_copy(workspace):
    (script,) = code_blocks("Any other CI: a shell script", "sh")
    path = workspace / "ci" / "check-monitoring.sh"
    path.parent.mkdir()
    path.write_text(script)
    git("init", "--quiet", cwd=workspace)
    env = {**base_environment(workspace), "WATCHKEEPER_CONFIG": str(SEED)}
    good = subprocess.run(["sh", str(path)], cwd=workspace, env=env, capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().endswith("monitor.yaml: valid, routes as expected")

    broken_copy(workspace)
    env.pop("WATCHKEEPER_CONFIG")
    bad = subprocess.run(["sh", str(path)], cwd=workspace, env=env, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "monitor.yaml:" in bad.stdout + bad.stderr


def test_the_pre_commit_snippet_names_the_hook_this_repository_provides():
    blocks = [yaml.safe_load(b) for b in code_blocks("pre-commit", "yaml") if "repos:" in b]
    (config,) = blocks
    (hook,) = config["repos"][0]["hooks"]
    provided = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] in {h["id"] for h in provided}
