"""Time `watchkeeper validate` on a generated 10,000-check config (target: <= 1.5 s).

    python bench/validate_10k.py [--checks N] [--runs R]

Prints the wall time of each run of the real CLI (a fresh process, as CI runs it), the
best and median, and the ratio to the target. Then the same file with every check's
`error_rate` rule over a window one failed run outweighs (10 runs against a 5%
threshold): 10,000 warnings, each pointing at its line. Reporting them must cost little
next to reading the file: the median must stay within 1.3x of the clean file's.

The package is byte-compiled first, as installing it does: where PYTHONDONTWRITEBYTECODE
is set and the checkout is installed in editable mode, every run would otherwise compile
watchkeeper's sources again (~0.2 s) before doing any work.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.5
WARNED_TARGET = 1.3
"""The warning-heavy file's median over the clean file's, at most."""
CRONS = ["*/5 * * * *", "0 * * * *", "*/15 * * * *", "30 2 * * *", "0 9 * * MON-FRI"]
# the mean time between runs of each cron above, in minutes
CRON_MINUTES = {"*/5 * * * *": 5, "0 * * * *": 60, "*/15 * * * *": 15, "30 2 * * *": 1440,
                "0 9 * * MON-FRI": 2016}  # fmt: skip
QUIET_RUNS, WARNED_RUNS = 200, 10
"""Runs an `error_rate` window holds: one failure is 0.5% of 200 runs (below the 5%
threshold, no warning) and 10% of 10 (above it: `validate` warns that one run trips it)."""


def _rate_rule(minutes: float, runs: int) -> str:
    window = f"{round(minutes * runs)}m"
    return f"      - {{metric: error_rate, window: {window}, above: 5%, severity: warning}}"


def generate(n: int, runs: int = QUIET_RUNS) -> str:
    """Return a config of `n` checks, each with an `error_rate` rule whose window holds
    `runs` runs (WARNED_RUNS: every check draws one warning)."""
    lines = [
        "version: 1",
        "defaults: {timeout: 10s, schedule: {every: 1m}}",
        "environments:",
        "  production: {base_url: https://prod.example.com}",
        "  staging: {base_url: https://staging.example.com}",
        "notifiers:",
        "  console: {type: log}",
        "  hook: {type: webhook, url: https://hooks.example.com/x}",
        "routes:",
        "  - {match: {severity: critical}, notify: [hook]}",
        "  - {match: {}, notify: [console]}",
        "checks:",
    ]
    for i in range(n):
        kind = i % 4
        lines.append(f"  check-{i}:")
        if kind == 0:
            lines += [
                "    probe: http",
                f"    url: ${{env.base_url}}/api/{i}",
                "    environments: [production, staging]",
                f'    schedule: {{cron: "{CRONS[i % len(CRONS)]}", timezone: Europe/Berlin}}',
                "    expect: {status: 200, headers: {X-Frame-Options: DENY}}",
                "    thresholds:",
                "      - {name: slow, metric: response_time, above: 2s, severity: warning}",
                "      - {name: slow, metric: response_time, above: 5s, severity: high}",
                _rate_rule(CRON_MINUTES[CRONS[i % len(CRONS)]], runs),
            ]
        elif kind == 1:
            lines += [
                "    probe: tcp",
                f"    host: host-{i}.internal",
                f"    port: {1000 + i % 60000}",
                "    schedule: {every: 30s, jitter: 5s}",
                "    labels: {team: infra}",
                "    thresholds:",
                _rate_rule(0.5, runs),
            ]
        elif kind == 2:
            lines += [
                "    probe: http",
                f"    url: https://svc-{i}.example.com/health",
                "    thresholds:",
                "      - {metric: response_time, agg: p95, window: 1h, above: 2s, for: 3, "
                "severity: warning}",
                _rate_rule(1, runs),
                f"    depends_on: [check-{i - 1}]",
            ]
        else:
            lines += [
                "    probe: command",
                f"    argv: [/usr/bin/true, '{i}']",
                f'    schedule: {{cron: "{CRONS[i % len(CRONS)]}"}}',
                "    thresholds:",
                _rate_rule(CRON_MINUTES[CRONS[i % len(CRONS)]], runs),
            ]
    return "\n".join(lines) + "\n"


def byte_compile() -> str:
    """Byte-compile the watchkeeper package where it is installed; say what was done."""
    import compileall
    import importlib.util

    folders = []
    for name in ("watchkeeper.engine", "watchkeeper.plugins", "watchkeeper.schema"):
        spec = importlib.util.find_spec(name)
        folders += list(spec.submodule_search_locations or []) if spec else []
    ok = all(compileall.compile_dir(f, quiet=1) for f in folders)
    if not ok:
        sys.exit("byte-compiling the package failed")
    return "byte-compiled, as installing it does (" + ", ".join(folders) + ")"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(exe: Path, path: Path, runs: int, warnings: int) -> tuple[list[float], list[float]]:
    """Validate `path` `runs` times in fresh processes; return wall and CPU seconds."""
    times, cpu = [], []
    for _ in range(runs):
        used = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(
            [str(exe), "-c", str(path), "validate"], capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - used)
        if proc.returncode != 0:
            sys.exit(f"validate failed:\n{proc.stdout}{proc.stderr}")
        found = proc.stdout.count(": warning: ")
        if found != warnings:
            sys.exit(f"expected {warnings} warnings from {path.name}, got {found}")
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("watchkeeper")
    compiled = byte_compile()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "monitor.yaml"
        path.write_text(generate(args.checks))
        warned = Path(tmp) / "warned.yaml"
        warned.write_text(generate(args.checks, WARNED_RUNS))
        size = path.stat().st_size
        load_before = os.getloadavg()[0]
        # interleaved, so that a change in the host's load weighs on both alike
        times, cpu, warned_times, warned_cpu = [], [], [], []
        for _ in range(args.runs):
            for into, into_cpu, file, warnings in (
                (times, cpu, path, 0),
                (warned_times, warned_cpu, warned, args.checks),
            ):
                wall, used = _time(exe, file, 1, warnings)
                into += wall
                into_cpu += used
    best, median = min(times), statistics.median(times)
    warned_median = statistics.median(warned_times)
    ratio = warned_median / median
    print(f"config: {args.checks} checks, {size / 1e6:.1f} MB")
    print(f"package: {compiled}")
    print(
        f"machine: {os.cpu_count()} CPUs; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print("clean (no warnings):")
    print("  runs:   " + "  ".join(f"{t:.3f}s" for t in times))
    print("  cpu:    " + "  ".join(f"{t:.3f}s" for t in cpu) + "   (user + system)")
    print(
        f"  best:   {best:.3f}s   median: {median:.3f}s   target: <= {TARGET}s   "
        f"median/target: {median / TARGET:.2f}x   {'MET' if median <= TARGET else 'MISSED'}"
    )
    print(f"one warning per check ({args.checks} warnings):")
    print("  runs:   " + "  ".join(f"{t:.3f}s" for t in warned_times))
    print("  cpu:    " + "  ".join(f"{t:.3f}s" for t in warned_cpu) + "   (user + system)")
    print(
        f"  best:   {min(warned_times):.3f}s   median: {warned_median:.3f}s   "
        f"warned/clean: {ratio:.2f}x   target: <= {WARNED_TARGET}x   "
        f"{'MET' if ratio <= WARNED_TARGET else 'MISSED'}"
    )
    # CPU seconds shift less than wall time when other guests keep the host busy
    cpu_ratio = statistics.median(warned_cpu) / statistics.median(cpu)
    print(
        f"  cpu median warned/clean: {cpu_ratio:.2f}x   "
        f"{'MET' if cpu_ratio <= WARNED_TARGET else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
