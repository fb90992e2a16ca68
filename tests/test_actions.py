"""The `command` and `http` self-healing actions, run for real."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.receivers import HttpRecorder, Reply, alert_of
from watchkeeper.engine.alerting.action import ActionContext
from watchkeeper.plugins.actions.command import CommandAction
from watchkeeper.plugins.actions.http import HttpAction

pytestmark = pytest.mark.anyio

TOKEN = "deploy-hook-secret-991"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def context(
    base_dir: Path, *, alert=None, timeout: float = 10.0, name: str = "fix"
) -> ActionContext:
    return ActionContext(
        name=name,
        alert=alert,
        base_dir=base_dir,
        log=logging.getLogger(f"watchkeeper.action.{name}"),
        timeout=timeout,
    )


async def run(action: type, options: dict, ctx: ActionContext):
    return await action().run(action.Options.model_validate(options), ctx)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --- command ---------------------------------------------------------------------------


async def test_exit_0_is_ok_and_reports_the_output(tmp_path):
    result = await run(CommandAction, {"argv": python("print('restarted app')")}, context(tmp_path))
    assert result.ok
    assert "exited 0" in result.message
    assert result.message.endswith(": restarted app")
    assert result.duration > 0


async def test_non_zero_exit_fails_with_its_code_and_output_tail(tmp_path):
    code = "import sys; print('x' * 2000); print('unit app.service not found', file=sys.stderr); sys.exit(5)"  # noqa: E501
    result = await run(CommandAction, {"argv": python(code)}, context(tmp_path))
    assert not result.ok
    assert "exited 5" in result.message
    assert result.message.endswith("unit app.service not found")
    assert len(result.message) < 600


async def test_the_alert_arrives_in_the_environment_and_env_is_added(tmp_path):
    code = (
        "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
        "if k.startswith(('WATCHKEEPER_', 'EXTRA'))}))"
    )
    ctx = context(tmp_path, alert=alert_of(), name="restart-app")
    result = await run(CommandAction, {"argv": python(code), "env": {"EXTRA": "1"}}, ctx)
    env = json.loads(result.message.split(": ", 1)[1])
    assert env == {
        "EXTRA": "1",
        "WATCHKEEPER_ACTION": "restart-app",
        "WATCHKEEPER_ALERT_ID": "al-7f3a9c",
        "WATCHKEEPER_CHECK": "api-health",
        "WATCHKEEPER_ENVIRONMENT": "production",
        "WATCHKEEPER_RULE": "slow",
        "WATCHKEEPER_SEVERITY": "high",
        "WATCHKEEPER_SUMMARY": "response_time is 5.2s, above the high threshold 5s",
        "WATCHKEEPER_STATUS": "firing",
    }


async def test_cwd_is_relative_to_the_config_folder(tmp_path):
    (tmp_path / "scripts").mkdir()
    result = await run(
        CommandAction,
        {"argv": python("import os; print(os.getcwd())"), "cwd": "scripts"},
        context(tmp_path),
    )
    assert result.message.endswith(str(tmp_path / "scripts"))
    missing = await run(CommandAction, {"argv": ["true"], "cwd": "nope"}, context(tmp_path))
    assert not missing.ok
    assert "does not exist" in missing.message


@dataclass(slots=True)
class ConfigContext(ActionContext):
    """An ActionContext that names the running config, as the engine passes it."""

    config_path: Path | None = None


PRINT_CONFIG = python("import os; print(os.environ.get('WATCHKEEPER_CONFIG'))")


async def test_the_running_config_arrives_as_watchkeeper_config(tmp_path):
    config = tmp_path / "examples" / "infinite-idea.yaml"
    ctx = ConfigContext("cleanup", None, tmp_path, logging.getLogger("t"), 10.0, config)
    result = await run(CommandAction, {"argv": PRINT_CONFIG}, ctx)
    assert result.message.endswith(f": {config}")
    # `env` may still point it elsewhere
    other = await run(
        CommandAction, {"argv": PRINT_CONFIG, "env": {"WATCHKEEPER_CONFIG": "x"}}, ctx
    )
    assert other.message.endswith(": x")


async def test_a_relative_watchkeeper_config_of_the_daemon_is_made_absolute(tmp_path, monkeypatch):
    """The program runs in the config's folder: the daemon's relative path would miss."""
    (tmp_path / "examples").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATCHKEEPER_CONFIG", "examples/monitor.yaml")
    result = await run(CommandAction, {"argv": PRINT_CONFIG}, context(tmp_path / "examples"))
    assert result.message.endswith(f": {tmp_path / 'examples' / 'monitor.yaml'}")


async def test_a_watchkeeper_command_in_an_action_uses_the_running_config(tmp_path, monkeypatch):
    """The seed example's disk clean-up: `watchkeeper backup cleanup` with no `-c`."""
    folder = tmp_path / "examples"
    folder.mkdir()
    config = folder / "infinite-idea.yaml"
    config.write_text(
        "version: 1\n"
        "backups:\n"
        "  destinations: {local: {type: local, path: backups}}\n"
        "  jobs:\n"
        "    config:\n"
        "      source: {type: files, paths: [infinite-idea.yaml]}\n"
        "      schedule: {cron: '0 2 * * *'}\n"
        "      to: [local]\n"
        "      retention: {keep_days: 30}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the daemon's folder has no monitor.yaml
    monkeypatch.delenv("WATCHKEEPER_CONFIG", raising=False)
    argv = [sys.executable, "-m", "watchkeeper.engine", "backup", "cleanup"]
    ctx = ConfigContext("cleanup-backups", None, folder, logging.getLogger("t"), 60.0, config)
    result = await run(CommandAction, {"argv": argv}, ctx)
    assert result.ok, result.message
    assert "no such file" not in result.message


async def test_no_shell(tmp_path):
    result = await run(CommandAction, {"argv": ["echo", "$HOME", "&&", "false"]}, context(tmp_path))
    assert result.ok
    assert result.message.endswith(": $HOME && false")


async def test_command_not_found(tmp_path):
    result = await run(CommandAction, {"argv": ["no-such-program-wk"]}, context(tmp_path))
    assert not result.ok
    assert result.message == "command not found: no-such-program-wk"


async def test_timeout_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid));"
        "print('started', flush=True); time.sleep(60)"
    )
    start = time.monotonic()
    result = await run(CommandAction, {"argv": python(code)}, context(tmp_path, timeout=1.0))
    assert time.monotonic() - start < 5
    assert not result.ok
    assert result.message.startswith("timed out after")
    assert "started" in result.message
    child = int(pidfile.read_text())
    for _ in range(50):
        if not alive(child):
            break
        await anyio.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the command's child outlived the timeout")


def alive(pid: int) -> bool:
    """Return True while a process runs (a killed one waiting to be reaped does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


async def test_output_secrets_are_masked(tmp_path):
    from watchkeeper.engine.observe.redaction import REDACTOR

    REDACTOR.add("cmd-secret-value-1")
    try:
        result = await run(
            CommandAction, {"argv": ["echo", "token cmd-secret-value-1"]}, context(tmp_path)
        )
    finally:
        REDACTOR.clear()
    assert "cmd-secret-value-1" not in result.message


# --- http ------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    with HttpRecorder(Reply(200, '{"deploy": "queued"}')) as recorder:
        yield recorder


async def test_http_2xx_is_ok_with_method_headers_body(receiver, tmp_path):
    options = {
        "url": receiver.url(f"/hooks/{TOKEN}"),
        "method": "PUT",
        "headers": {"Authorization": "Bearer xyz", "Content-Type": "application/json"},
        "body": '{"ref": "main"}',
    }
    result = await run(HttpAction, options, context(tmp_path, alert=alert_of(), name="redeploy"))
    assert result.ok
    assert result.message.startswith("HTTP 200 in ")
    assert result.message.endswith('{"deploy": "queued"}')
    (request,) = receiver.requests
    assert request.method == "PUT"
    assert request.path == f"/hooks/{TOKEN}"
    assert request.headers["authorization"] == "Bearer xyz"
    assert request.headers["x-watchkeeper-alert"] == "al-7f3a9c"
    assert request.json() == {"ref": "main"}


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_http_refusal_fails_without_the_url(receiver, tmp_path, status):
    receiver.always(Reply(status, f"no such hook {TOKEN}"))
    result = await run(
        HttpAction, {"url": receiver.url(f"/hooks/{TOKEN}")}, context(tmp_path, name="redeploy")
    )
    assert not result.ok
    assert result.message.startswith(f"POST to `redeploy`: HTTP {status}")
    assert TOKEN not in result.message
    assert "127.0.0.1" not in result.message


async def test_http_unreachable(tmp_path):
    with HttpRecorder() as gone:
        url = gone.url(f"/hooks/{TOKEN}")
    result = await run(HttpAction, {"url": url}, context(tmp_path, name="redeploy"))
    assert not result.ok
    assert "cannot connect" in result.message
    assert TOKEN not in result.message


WRITE_CONFIG = "import os, sys; open(sys.argv[1], 'w').write(os.environ['WATCHKEEPER_CONFIG'])"


def test_a_daemon_started_with_c_gives_its_actions_that_config(tmp_path):
    """`watchkeeper -c elsewhere/other.yaml run`: level 1's command finds the same file."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    from tests.daemon_harness import free_port

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    seen = tmp_path / "seen.txt"
    config = folder / "other.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            version: 1
            state: {{type: sqlite, path: state.db}}
            server: {{listen: 127.0.0.1:{free_port()}}}
            checks:
              down: {{probe: tcp, host: 127.0.0.1, port: 9, schedule: {{every: 1s}}}}
            notifiers:
              console: {{type: log}}
            actions:
              note:
                type: command
                argv: {json.dumps([*python(WRITE_CONFIG), str(seen)])}
            escalation:
              heal: [{{after: 0s, actions: [note]}}]
            routes:
              - {{match: {{}}, notify: [console], group_wait: 0s, escalate: heal}}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper.engine",
            "-c",
            str(config.relative_to(tmp_path)),
            "run",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not seen.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert seen.exists(), err
    assert seen.read_text() == str(config.resolve())
