"""The `file_age` probe: how long ago a file, or the newest file a pattern matches, changed.

"Verify backup completion" as a check: `path: backups/db-*.dump` with a threshold on
`file_age` alerts when the newest dump is older than a day.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

from pydantic import Field

from watchkeeper.engine.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Size


class FileAgeOptions(ProbeOptions):
    """Measure how long ago a file (the newest match of a glob pattern) was modified."""

    path: str = Field(
        description="File to watch, or a glob pattern (`backups/db-*.dump`) whose newest "
        "match counts; relative to monitor.yaml's folder."
    )
    min_size: Size = Field(
        0, ge=0, description="Fail when the file is smaller than this (an empty dump is no backup)."
    )


class FileAgeProbe(Probe):
    """Measure how long ago a file changed, and its size."""

    type = "file_age"
    Options = FileAgeOptions
    scope = "host"  # a file on the machine the daemon runs on
    # what thresholds may name: `validate` refuses others, and a value in the wrong unit
    metrics = (
        Metric("file_age", "duration", "since the file (the newest match) last changed"),
        Metric("file_size", "bytes", "size of that file"),
    )

    async def check(self, options: FileAgeOptions, ctx: ProbeContext) -> Result:
        import anyio  # imported when a check runs: `watchkeeper validate` stays fast

        pattern = Path(options.path)
        if not pattern.is_absolute():
            pattern = ctx.base_dir / pattern
        try:
            # stat() blocks: a slow or hung file system must not stall the event loop
            newest = await anyio.to_thread.run_sync(_newest, str(pattern))
        except OSError as exc:
            return Result(ok=False, message=f"cannot read {options.path}: {exc.strerror}")
        if newest is None:
            return Result(ok=False, message=f"no file matches {options.path}")
        path, stat = newest
        age = max(0.0, time.time() - stat.st_mtime)
        metrics = {"file_age": age, "file_size": float(stat.st_size)}
        details = {"path": str(path)}
        if stat.st_size < options.min_size:
            message = f"{path.name} has {stat.st_size} bytes, fewer than {options.min_size}"
            return Result(ok=False, message=message, metrics=metrics, details=details)
        message = f"{path.name} changed {_duration(age)} ago ({stat.st_size} bytes)"
        return Result(ok=True, message=message, metrics=metrics, details=details)


def _newest(pattern: str) -> tuple[Path, os.stat_result] | None:
    """Return the most recently modified file matching `pattern`, with its stat."""
    found = []
    for name in glob.glob(pattern):
        stat = os.stat(name)
        if not os.path.isdir(name):
            found.append((stat.st_mtime, Path(name), stat))
    if not found:
        return None
    _, path, stat = max(found, key=lambda item: item[0])
    return path, stat


def _duration(seconds: float) -> str:
    """`45s`, `12m`, `3h20m`, `2d4h`: an age as people say it."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes}m"
    if seconds < 86400:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
