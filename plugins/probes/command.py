"""The `command` probe: run a program (no shell) and judge its exit code and output."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.extract import describe_problems, extract_metrics
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import time_budget, took
from watchkeeper.schema.checks import Extraction, ProbeOptions
from watchkeeper.schema.units import format_duration

OUTPUT_LIMIT = 1_048_576
"""Bytes of each stream kept (the last ones) for extraction and messages."""
TAIL = 500
"""Characters of output quoted in a message."""
DRAIN_GRACE = 0.5
"""Seconds to keep reading after the program exits, while its children hold the pipes."""


class CommandOptions(ProbeOptions):
    """Run argv without a shell; exit code 0 (or one of expect_exit) is good."""

    argv: list[str] = Field(min_length=1, description="Program and arguments; no shell.")
    cwd: str | None = Field(None, description="Working directory.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    expect_exit: list[int] = Field(
        default_factory=lambda: [0], description="Exit codes that count as good."
    )
    extract: dict[str, Extraction] = Field(
        default_factory=dict,
        description="Metrics read from stdout (regex, or path when it is JSON).",
    )


class CommandProbe(Probe):
    """Run a program; judge its exit code; read metrics from its output."""

    type = "command"
    Options = CommandOptions
    scope = "host"
    metrics = (
        Metric("exit_code", "number", "negative when killed by a signal (`-9` for SIGKILL)"),
        Metric("run_time", "duration", "from start to exit"),
    )

    async def check(self, options: CommandOptions, ctx: ProbeContext) -> Result:
        import anyio

        program = options.argv[0]
        cwd = ctx.base_dir / options.cwd if options.cwd else ctx.base_dir
        if not cwd.is_dir():
            return Result(ok=False, message=f"working directory {cwd} does not exist")
        env = environment(options, ctx)
        start = time.perf_counter()
        try:
            process = await anyio.open_process(
                options.argv,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                # its own process group, so a timeout kills whatever it started too
                start_new_session=True,
            )
        except FileNotFoundError:
            return Result(ok=False, message=f"command not found: {program}")
        except PermissionError:
            return Result(ok=False, message=f"cannot run {program}: permission denied")
        except OSError as exc:
            return Result(ok=False, message=f"cannot run {program}: {exc.strerror or exc}")

        stdout, stderr = _Output(), _Output()
        try:
            timed_out = await _run(process, time_budget(ctx.timeout), stdout, stderr)
        finally:
            # also on cancellation from outside: never leave the program running
            _kill_group(process)
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await process.aclose()
        run_time = time.perf_counter() - start
        code = process.returncode if process.returncode is not None else -signal.SIGKILL
        metrics = {"exit_code": float(code), "run_time": run_time}
        out_text = stdout.text()
        tail = _tail(stderr.text()) if stderr.data else _tail(out_text)
        tail_any = _tail(out_text) or tail

        if timed_out:
            message = f"timed out after {format_duration(ctx.timeout)}; killed {program}"
            return Result(
                ok=False,
                message=message + (f": {tail_any}" if tail_any else ""),
                metrics={"run_time": run_time},
                details={"timeout": True},
            )
        details: dict[str, Any] = {"exit_code": code}
        problems: dict[str, str] = {}
        if options.extract:
            extracted, problems = extract_metrics(options.extract, text=out_text)
            metrics.update(extracted)
            if problems:
                details["extract_errors"] = problems
        if code not in options.expect_exit:
            expected = " or ".join(str(c) for c in options.expect_exit)
            message = f"{program} {_exit_words(code)} (expected exit {expected})"
            return Result(
                ok=False,
                message=message + (f": {tail}" if tail else ""),
                metrics=metrics,
                details=details,
            )
        message = f"{program} exited {code} in {took(run_time)}"
        if problems:
            message += "; " + describe_problems(problems)
        if tail_any:
            message += f": {tail_any}"
        return Result(ok=True, message=message, metrics=metrics, details=details)


def environment(options: CommandOptions, ctx: Any) -> dict[str, str]:
    """Return the program's environment: the daemon's, the config's path, then `env`.

    WATCHKEEPER_CONFIG names the running configuration (absolute: the program runs in the
    config's folder), so a probe running `watchkeeper backup list` reads the same one.
    """
    env = dict(os.environ)
    config = getattr(ctx, "config_path", None) or env.get("WATCHKEEPER_CONFIG")
    if config:
        env["WATCHKEEPER_CONFIG"] = os.path.abspath(os.path.expanduser(config))
    return env | options.env


async def _run(process: Any, budget: float, stdout: _Output, stderr: _Output) -> bool:
    """Wait for the program, reading its output; return True when it ran out of time."""
    import anyio

    timed_out = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout.drain, process.stdout)
        tg.start_soon(stderr.drain, process.stderr)
        with anyio.move_on_after(budget) as scope:
            await process.wait()
        if scope.cancelled_caught:
            timed_out = True
            _kill_group(process)
        with anyio.move_on_after(DRAIN_GRACE):
            await stdout.done.wait()
            await stderr.done.wait()
        tg.cancel_scope.cancel()
    return timed_out


class _Output:
    """The last OUTPUT_LIMIT bytes of a stream."""

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
def watchkeeper_probes():
    return [CommandProbe]
