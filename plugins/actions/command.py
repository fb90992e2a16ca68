"""The `command` action: run a program (no shell) to heal something."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from pydantic import Field

from watchkeeper.engine.alerting.action import Action, ActionContext, ActionResult
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.plugins.notifiers.delivery import budget
from watchkeeper.schema.alerting import ActionOptions
from watchkeeper.schema.units import format_duration

OUTPUT_LIMIT = 65_536
"""Bytes of output kept (the last ones)."""
TAIL = 400
"""Characters of output quoted in the result's message."""
DRAIN_GRACE = 0.5
"""Seconds to keep reading after the program exits, while its children hold the pipe."""
ALERT_VARIABLES = {
    "id": "WATCHKEEPER_ALERT_ID",
    "check": "WATCHKEEPER_CHECK",
    "environment": "WATCHKEEPER_ENVIRONMENT",
    "rule": "WATCHKEEPER_RULE",
    "severity": "WATCHKEEPER_SEVERITY",
    "summary": "WATCHKEEPER_SUMMARY",
    "status": "WATCHKEEPER_STATUS",
}


class CommandActionOptions(ActionOptions):
    """Run argv without a shell; exit code 0 is success."""

    argv: list[str] = Field(min_length=1, description="Program and arguments; no shell.")
    cwd: str | None = Field(None, description="Working directory.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables (the alert's fields arrive as WATCHKEEPER_*).",
    )


def config_path(ctx: Any) -> str | None:
    """Return the absolute path of the configuration the daemon runs, if known.

    The context's `config_path` when the engine passes one, else the daemon's own
    WATCHKEEPER_CONFIG made absolute: the program runs in the config's folder, where a
    relative one would point elsewhere.
    """
    path = getattr(ctx, "config_path", None) or os.environ.get("WATCHKEEPER_CONFIG")
    return os.path.abspath(os.path.expanduser(path)) if path else None


def environment(options: CommandActionOptions, ctx: ActionContext) -> dict[str, str]:
    """Return the program's environment: the daemon's, the config, `env`, the alert's fields.

    WATCHKEEPER_CONFIG names the running configuration, so `watchkeeper backup cleanup`
    in an action works on it; `env` may still point it elsewhere.
    """
    env = dict(os.environ)
    config = config_path(ctx)
    if config is not None:
        env["WATCHKEEPER_CONFIG"] = config
    env |= {**options.env, "WATCHKEEPER_ACTION": ctx.name}
    for key, variable in ALERT_VARIABLES.items():
        value = getattr(ctx.alert, key, None) if ctx.alert is not None else None
        if value is not None:
            env[variable] = str(value)
    return env


class CommandAction(Action):
    type = "command"
    Options = CommandActionOptions

    async def run(self, options: CommandActionOptions, ctx: ActionContext) -> ActionResult:
        import anyio

        program = options.argv[0]
        cwd = ctx.base_dir / options.cwd if options.cwd else ctx.base_dir
        if not cwd.is_dir():
            return ActionResult(ok=False, message=f"working directory {cwd} does not exist")
        start = time.perf_counter()
        try:
            process = await anyio.open_process(
                options.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, in the order it was written
                cwd=cwd,
                env=environment(options, ctx),
                # its own process group, so a timeout kills whatever it started too
                start_new_session=True,
            )
        except FileNotFoundError:
            return ActionResult(ok=False, message=f"command not found: {program}")
        except PermissionError:
            return ActionResult(ok=False, message=f"cannot run {program}: permission denied")
        except OSError as exc:
            return ActionResult(ok=False, message=f"cannot run {program}: {exc.strerror or exc}")
        output = _Output()
        try:
            with anyio.move_on_after(budget(ctx.timeout)) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(output.drain, process.stdout)
                    await process.wait()
                    # a child it left behind may hold the pipe open: do not wait for it
                    with anyio.move_on_after(DRAIN_GRACE):
                        await output.done.wait()
                    tg.cancel_scope.cancel()
            timed_out = scope.cancelled_caught
        finally:
            # also on cancellation from outside: never leave the program running
            _kill_group(process)
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await process.aclose()
        duration = time.perf_counter() - start
        tail = _tail(output.text())
        if timed_out:
            message = f"timed out after {format_duration(ctx.timeout)}; killed {program}"
            return ActionResult(ok=False, message=_with(message, tail), duration=duration)
        code = process.returncode
        words = _exit_words(code if code is not None else -signal.SIGKILL)
        message = f"{program} {words} in {format_duration(duration)}"
        return ActionResult(ok=code == 0, message=_with(message, tail), duration=duration)


class _Output:
    """The last OUTPUT_LIMIT bytes of the program's output."""

    def __init__(self) -> None:
        import anyio

        self.data = bytearray()
        self.done = anyio.Event()

    async def drain(self, stream: Any) -> None:
        import anyio

        try:
            async for chunk in stream:
                self.data += chunk
                if len(self.data) > 2 * OUTPUT_LIMIT:
                    del self.data[:-OUTPUT_LIMIT]
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self.done.set()

    def text(self) -> str:
        return bytes(self.data[-OUTPUT_LIMIT:]).decode("utf-8", errors="replace")


def _with(message: str, tail: str) -> str:
    return REDACTOR.redact(f"{message}: {tail}" if tail else message)


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= TAIL else "…" + text[-TAIL:].lstrip()


def _exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


def _kill_group(process: Any) -> None:
    """Kill the program and everything in its process group, if any of it is left."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        elif process.returncode is None:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass


@hookimpl
def watchkeeper_actions():
    return [CommandAction]
