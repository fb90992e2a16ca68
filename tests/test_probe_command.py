"""The command probe: real programs, exit codes, output, timeouts."""

from __future__ import annotations

import sys
import time
import uuid

import anyio
import psutil
import pytest

from watchkeeper.engine.testing import acheck_once, check_once


def running(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions marker."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_exit_zero_is_good():
    result = check_once("command", {"argv": ["sh", "-c", "echo all good"]})
    assert result.ok, result.message
    assert result.metrics["exit_code"] == 0
    assert 0 < result.metrics["run_time"] < 2
    assert result.message.startswith("sh exited 0 in ")
    assert result.message.endswith(": all good")


def test_unexpected_exit_code_quotes_stderr():
    result = check_once(
        "command", {"argv": ["sh", "-c", "echo progress; echo 'disk /data is full' >&2; exit 2"]}
    )
    assert not result.ok
    assert result.metrics["exit_code"] == 2
    assert result.message == "sh exited 2 (expected exit 0): disk /data is full"


def test_expect_exit_accepts_other_codes():
    result = check_once("command", {"argv": ["sh", "-c", "exit 1"], "expect_exit": [0, 1]})
    assert result.ok
    assert result.metrics["exit_code"] == 1
    result = check_once("command", {"argv": ["sh", "-c", "exit 3"], "expect_exit": [0, 1]})
    assert result.message == "sh exited 3 (expected exit 0 or 1)"


def test_killed_by_a_signal():
    result = check_once("command", {"argv": ["sh", "-c", "kill -TERM $$"]})
    assert not result.ok
    assert result.metrics["exit_code"] == -15
    assert result.message == "sh was killed by SIGTERM (expected exit 0)"


def test_only_the_tail_of_long_output_is_quoted():
    script = "for i in $(seq 1 400); do echo line-$i; done; exit 1"
    result = check_once("command", {"argv": ["sh", "-c", script]})
    assert result.message.endswith("line-400")
    assert "line-1\n" not in result.message
    assert len(result.message) < 600


def test_timeout_kills_the_program_and_its_children():
    marker = f"{30 + uuid.uuid4().int % 1000 / 10_000:.4f}"  # e.g. 30.0417: sleep takes it
    started = time.monotonic()
    result = check_once(
        "command",
        {"argv": ["sh", "-c", f"echo started; sleep {marker} & sleep {marker}; wait"]},
        timeout=1,
    )
    assert time.monotonic() - started < 1.5
    assert not result.ok
    assert result.message == "timed out after 1s; killed sh: started"
    assert result.details["timeout"] is True
    deadline = time.monotonic() + 2
    while running(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(f"sleep {marker}") == []


def test_cancelled_from_outside_kills_the_program():
    """The engine cancels a run at its timeout or on shutdown: nothing may outlive it."""
    marker = f"{30 + uuid.uuid4().int % 1000 / 10_000:.4f}"

    async def main():
        with anyio.move_on_after(0.5):
            await acheck_once(
                "command", {"argv": ["sh", "-c", f"sleep {marker} & sleep {marker}"]}, timeout=20
            )

    anyio.run(main)
    time.sleep(0.1)
    assert running(f"sleep {marker}") == []


def test_children_left_behind_are_cleaned_up():
    marker = f"{30 + uuid.uuid4().int % 1000 / 10_000:.4f}"
    result = check_once("command", {"argv": ["sh", "-c", f"sleep {marker} & echo spawned"]})
    assert result.ok, result.message
    time.sleep(0.1)
    assert running(f"sleep {marker}") == []


def test_extract_with_regex_and_units():
    result = check_once(
        "command",
        {
            "argv": ["sh", "-c", "echo 'replication lag: 1500 ms'; echo 'queue: 42 items'"],
            "extract": {
                "replication_lag": {"regex": r"lag: (\d+) ms", "unit": "ms"},
                "queue": {"regex": r"queue: (\d+)", "unit": "count"},
            },
        },
    )
    assert result.ok, result.message
    assert result.metrics["replication_lag"] == pytest.approx(1.5)
    assert result.metrics["queue"] == 42


def test_extract_from_json_stdout():
    script = "import json; print(json.dumps({'backup': {'size_mb': 12.5, 'age_h': 2}}))"
    result = check_once(
        "command",
        {
            "argv": [sys.executable, "-c", script],
            "extract": {
                "backup_size": {"path": "$.backup.size_mb", "unit": "mb"},
                "backup_age": {"path": "$.backup.age_h", "unit": "h"},
            },
        },
    )
    assert result.metrics["backup_size"] == 12_500_000
    assert result.metrics["backup_age"] == 7200


def test_extraction_problem_is_reported():
    result = check_once(
        "command",
        {"argv": ["echo", "nothing here"], "extract": {"x": {"regex": r"x=(\d+)"}}},
    )
    assert result.ok
    assert "x" not in result.metrics
    assert "extract x: regex 'x=(\\\\d+)' does not match" in result.message


def test_cwd_is_relative_to_the_config_folder(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "VERSION").write_text("1.2.3\n")
    result = check_once(
        "command", {"argv": ["cat", "VERSION"], "cwd": "scripts"}, base_dir=tmp_path
    )
    assert result.ok, result.message
    assert result.message.endswith(": 1.2.3")


def test_missing_cwd(tmp_path):
    result = check_once("command", {"argv": ["true"], "cwd": "nope"}, base_dir=tmp_path)
    assert not result.ok
    assert result.message == f"working directory {tmp_path / 'nope'} does not exist"


def test_env_is_added_to_the_environment(monkeypatch):
    monkeypatch.setenv("WK_TEST_INHERITED", "from-daemon")
    result = check_once(
        "command",
        {
            "argv": ["sh", "-c", 'test "$WK_TEST_ADDED-$WK_TEST_INHERITED" = "yes-from-daemon"'],
            "env": {"WK_TEST_ADDED": "yes"},
        },
    )
    assert result.ok, result.message


def test_command_not_found():
    result = check_once("command", {"argv": ["wk-no-such-program", "--flag"]})
    assert not result.ok
    assert result.message == "command not found: wk-no-such-program"


def test_not_executable(tmp_path):
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    result = check_once("command", {"argv": [str(script)]})
    assert not result.ok
    assert result.message == f"cannot run {script}: permission denied"


def test_arguments_are_not_shown():
    result = check_once("command", {"argv": ["sh", "-c", "exit 1", "--password=hunter2-xyz"]})
    assert "hunter2-xyz" not in result.message
