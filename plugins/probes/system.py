"""The `system` probe: the host's CPU, memory, swap, disks and load."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.schema.checks import ProbeOptions

MIN_CPU_INTERVAL = 0.1
"""Seconds of CPU time accounting needed for a meaningful cpu_usage."""


class SystemOptions(ProbeOptions):
    """Read resource usage of the host the daemon runs on."""

    disks: list[str] = Field(
        default_factory=lambda: ["/"],
        description="Mount points whose usage is reported as disk_usage{path=...}.",
    )


class SystemProbe(Probe):
    """Read the host's CPU, memory, swap, load and disk usage."""

    type = "system"
    Options = SystemOptions
    scope = "host"
    metrics = (
        Metric(
            "cpu_usage",
            "ratio",
            "busy share of all CPUs since this probe's previous run "
            "(the first run measures from start-up)",
        ),
        Metric("memory_usage", "ratio", "`(total − available) ÷ total`"),
        Metric("memory_available", "bytes", "memory available to new programs without swapping"),
        Metric("swap_usage", "ratio", "0 without swap"),
        Metric("load1", "number", "load average over 1 minute (not divided by the CPU count)"),
        Metric("load5", "number", "load average over 5 minutes"),
        Metric("load15", "number", "load average over 15 minutes"),
        Metric(
            "disk_usage",
            "ratio",
            "used share of the filesystem holding `path`, as `df` shows it",
            labels=("path",),
        ),
        Metric(
            "disk_free", "bytes", "free space available to unprivileged users", labels=("path",)
        ),
    )

    def __init__(self) -> None:
        # our own CPU baseline rather than psutil.cpu_percent()'s process-wide one, which
        # any other caller (the daemon's /health, another plugin) would reset
        self._cpu: tuple[float, float, float] | None = None

    async def open(self, ctx: OpenContext) -> None:
        self._cpu = _cpu_sample()

    async def check(self, options: SystemOptions, ctx: ProbeContext) -> Result:
        import anyio

        if self._cpu is None:
            self._cpu = _cpu_sample()
        waited = time.monotonic() - self._cpu[0]
        if waited < MIN_CPU_INTERVAL:
            await anyio.sleep(MIN_CPU_INTERVAL - waited)
        disks = [(path, ctx.base_dir / path) for path in options.disks]
        # statvfs on a dead network mount blocks: keep it off the event loop, and let the
        # engine's timeout abandon the thread rather than wait for it
        result, self._cpu = await anyio.to_thread.run_sync(
            _collect, self._cpu, disks, abandon_on_cancel=True
        )
        return result


def _collect(
    previous_cpu: tuple[float, float, float], disks: list[tuple[str, Path]]
) -> tuple[Result, tuple[float, float, float]]:
    import psutil

    cpu = _cpu_sample()
    total = cpu[2] - previous_cpu[2]
    cpu_usage = min(max((cpu[1] - previous_cpu[1]) / total, 0.0), 1.0) if total > 0 else 0.0
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    load1, load5, load15 = os.getloadavg() if hasattr(os, "getloadavg") else psutil.getloadavg()
    result = Result(
        ok=True,
        metrics={
            "cpu_usage": cpu_usage,
            "memory_usage": (memory.total - memory.available) / memory.total,
            "memory_available": float(memory.available),
            "swap_usage": swap.used / swap.total if swap.total else 0.0,
            "load1": load1,
            "load5": load5,
            "load15": load15,
        },
    )
    problems = []
    shown = []
    for path, resolved in disks:
        try:
            usage = psutil.disk_usage(str(resolved))
        except FileNotFoundError:
            problems.append(f"disk {path}: no such path")
            continue
        except OSError as exc:
            problems.append(f"disk {path}: {exc.strerror or exc}")
            continue
        ratio = usage.used / (usage.used + usage.free) if usage.used + usage.free else 0.0
        result.sample("disk_usage", ratio, path=path)
        result.sample("disk_free", usage.free, path=path)
        shown.append(f"{path} {ratio:.0%}")
    m = result.metrics
    summary = (
        f"cpu {m['cpu_usage']:.0%}, memory {m['memory_usage']:.0%}, "
        f"swap {m['swap_usage']:.0%}, load {load1:.2f}"
    )
    if shown:
        summary += ", disk " + ", ".join(shown)
    if problems:
        result.ok = False
        result.message = "; ".join(problems) + f" ({summary})"
    else:
        result.message = summary
    return result, cpu


def _cpu_sample() -> tuple[float, float, float]:
    """Return (monotonic time, busy CPU seconds, total CPU seconds) across all CPUs."""
    import psutil

    times: Any = psutil.cpu_times()
    # guest time is already counted in user/nice; iowait is idle time (as psutil counts it)
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return time.monotonic(), total - idle, total


@hookimpl
def watchkeeper_probes():
    return [SystemProbe]
