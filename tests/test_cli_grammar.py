"""One CLI grammar: `-c` before or after any command, help that reads at 80 columns, values
shown in their units."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from watchkeeper.engine.cli.grammar import PANELS, config_first

WATCHKEEPER = [sys.executable, "-m", "watchkeeper.engine"]

CONFIG = """\
version: 1
checks:
  host:
    probe: system
    schedule: {every: 1m}
  clock:
    probe: heartbeat
    expect_every: {every: 1h}
state: {type: sqlite, path: state.db}
"""


def run(*args: str, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("WATCHKEEPER_CONFIG", None)
    return subprocess.run(
        [*WATCHKEEPER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (["check", "-c", "a.yaml"], ["-c", "a.yaml", "check"]),
        (["check", "host", "--config", "a.yaml"], ["--config", "a.yaml", "check", "host"]),
        (["status", "--config=a.yaml"], ["--config=a.yaml", "status"]),
        (["-c", "a.yaml", "check"], ["-c", "a.yaml", "check"]),
        (
            ["--log-level", "debug", "report", "-c", "a.yaml"],
            ["--log-level", "debug", "-c", "a.yaml", "report"],
        ),
        # the later one wins, as a repeated option does
        (["-c", "a.yaml", "check", "-c", "b.yaml"], ["-c", "a.yaml", "-c", "b.yaml", "check"]),
        # a command exec runs keeps its own -c
        (["exec", "job", "--", "sh", "-c", "true"], ["exec", "job", "--", "sh", "-c", "true"]),
        (["alerts", "ack", "A1", "-c", "x.yaml"], ["-c", "x.yaml", "alerts", "ack", "A1"]),
        # plan reads its own -c beside a FILE argument, and refuses two different files
        (["plan", "-c", "a.yaml", "b.yaml"], ["plan", "-c", "a.yaml", "b.yaml"]),
    ],
)
def test_config_is_read_wherever_it_is_typed(typed: list[str], meant: list[str]) -> None:
    assert config_first(typed) == meant


@pytest.mark.parametrize("command", [["check", "host"], ["status"], ["plan"], ["validate"]])
def test_commands_take_c_after_their_name(tmp_path: Path, command: list[str]) -> None:
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    (elsewhere / "mine.yaml").write_text(CONFIG)
    after = run(*command, "-c", "conf/mine.yaml", cwd=tmp_path)
    before = run("-c", "conf/mine.yaml", *command, cwd=tmp_path)
    assert after.returncode == before.returncode == 0, after.stderr + after.stdout
    assert "unexpected extra argument" not in after.stderr


def test_help_shows_no_bool_type_and_lists_choices(tmp_path: Path) -> None:
    top = run("--help", cwd=tmp_path).stdout
    assert "<bool>" not in top
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", top).split())
    assert "The least to log: debug, info, warning or error." in flat
    assert "Log lines as text, json or journal (systemd)." in flat
    for command in ("validate", "check", "run", "alerts", "backup", "plan"):
        shown = run(command, "--help", cwd=tmp_path).stdout
        assert "<bool>" not in shown, command
        assert max(len(line) for line in shown.splitlines()) <= 80, command
    assert "seed" not in run("check", "--help", cwd=tmp_path).stdout


def test_commands_are_listed_by_workflow(tmp_path: Path) -> None:
    top = run("--help", cwd=tmp_path).stdout
    headings = [p for p in PANELS if p in top]
    assert headings == list(PANELS)
    listed = re.findall(r"^│ (\w[\w-]*) ", top, re.M)
    commands = [c for c in listed if c in {n for names in PANELS.values() for n in names}]
    assert commands == [n for names in PANELS.values() for n in names]


@pytest.mark.slow
def test_check_shows_sizes_in_their_unit(tmp_path: Path) -> None:
    (tmp_path / "monitor.yaml").write_text(CONFIG)
    out = run("check", "host", cwd=tmp_path, columns=250)
    assert out.returncode == 0, out.stderr
    shown = re.search(r"memory_available=(\S+?),", out.stdout)
    assert shown, out.stdout
    assert re.fullmatch(r"\d+(\.\d+)?(kB|MB|GB|TB)", shown[1]), shown[1]
    assert "e+" not in out.stdout
