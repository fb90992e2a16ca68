"""The per-check series of `/metrics`, kept as rendered bytes per check instance.

A scrape at 10,000 checks must not hold the event loop: each instance's lines are
rendered again only when something they show changed since the last scrape (a new
result, up or down, an alert firing), otherwise the bytes of the last scrape are reused;
the scrape joins them in slices and lets other tasks run between slices.

Every per-check series is written by `_render`, with the labels `_labels` gives, so a
label added there (a check's location) reaches all of them at once.

By default each instance has three series: up, state and the duration of its latest run.
`server.metrics_per_check: full` adds its duration histogram and its results by outcome,
about nine times the bytes.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

import anyio.lowlevel
from prometheus_client.utils import floatToGoString

BASIC = (
    (
        "watchkeeper_check_up",
        "gauge",
        "1 while a check instance's probe succeeds, 0 while it is down; "
        "absent before its first result.",
    ),
    (
        "watchkeeper_check_state",
        "gauge",
        "1, with the instance's state in the `state` label: up, degraded (a threshold "
        "alert fires) or down; absent before its first result.",
    ),
    (
        "watchkeeper_check_last_duration_seconds",
        "gauge",
        "How long the instance's latest probe run took.",
    ),
)
FULL = (
    (
        "watchkeeper_check_duration_seconds",
        "histogram",
        "How long each probe run of the instance took (server.metrics_per_check: full).",
    ),
    (
        "watchkeeper_check_results_total",
        "counter",
        "Probe runs of the instance by outcome (ok = true/false; server.metrics_per_check: full).",
    ),
)
SLICE = 200
"""Instances handled between two looks at the clock during a scrape."""
TURN = 0.004
"""The longest a scrape holds the event loop before letting other tasks run."""


def _header(families: tuple[tuple[str, str, str], ...]) -> list[bytes]:
    return [
        f"# HELP {name} {text}\n# TYPE {name} {kind}\n".encode() for name, kind, text in families
    ]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(instance: Any) -> str:
    """Return the labels every series of one instance carries, as exposition text; a
    located check's run from one location adds `location` (its check's own series,
    the verdict over the locations, have none)."""
    labels = (
        f'check="{_escape(instance.check)}",environment="{_escape(instance.environment or "")}"'
    )
    location = getattr(instance, "location", None)
    return f'{labels},location="{_escape(location)}"' if location else labels


class _Tally:
    """One instance's run durations and outcomes, for `metrics_per_check: full`."""

    __slots__ = ("buckets", "failed", "ok", "probe", "sum", "version")

    def __init__(self, size: int, probe: str):
        self.buckets = [0] * size  # runs per bucket, not yet cumulative; the last is +Inf
        self.sum = 0.0
        self.ok = 0
        self.failed = 0
        self.probe = probe
        self.version = 0


class _Shown:
    """What an instance's cached lines show, and the lines."""

    __slots__ = ("at", "firing", "lines", "version")

    def __init__(self, at: float | None, firing: bool, version: int, lines: tuple[bytes, ...]):
        self.at = at
        self.firing = firing
        self.version = version
        self.lines = lines


class CheckSeries:
    """The per-check families of one daemon's exposition."""

    def __init__(self, daemon: Any, buckets: tuple[float, ...]):
        self.daemon = daemon
        self.bounds = buckets
        self._le = [floatToGoString(b) for b in buckets] + ["+Inf"]
        self.tallies: dict[str, _Tally] = {}
        self.cache: dict[str, _Shown] = {}  # instance key -> its lines and what they show
        self._full = False

    def full(self) -> bool:
        return self.daemon.config.server.metrics_per_check == "full"

    def observe(self, instance: Any, ok: bool, duration: float) -> None:
        """Count one run in the instance's histogram (only while `full` is chosen)."""
        tally = self.tallies.get(instance.key)
        if tally is None:
            tally = self.tallies[instance.key] = _Tally(len(self._le), instance.probe_type)
        tally.buckets[bisect_left(self.bounds, duration)] += 1
        tally.sum += duration
        if ok:
            tally.ok += 1
        else:
            tally.failed += 1
        tally.version += 1

    def warm(self, instance: Any, full: bool) -> None:
        """Render an instance's lines as its result comes in (from `Metrics.observe`), so a
        scrape, the first one too, finds them ready. The scrape still renders again what
        changed since (an alert firing without a result, say): this only saves it work."""
        runtime = self.daemon.runtime
        key = instance.key
        last = runtime.latest.get(key)
        if full != self._full or not last or runtime.instances.get(key) is not instance:
            return  # the next scrape starts afresh; a result of a check replaced meanwhile
        evaluator = runtime.evaluators.get(key)
        get_open = runtime.book.get_open
        firing = any(
            (alert := get_open(key, rule)) is not None and alert.status == "firing"
            for rule in (evaluator.rules if evaluator is not None else ())
        )
        tally = self.tallies.get(key) if full else None
        lines = self._render(instance, last, runtime.instance_down(key), firing, tally)
        version = -1 if tally is None else tally.version
        self.cache[key] = _Shown(last.get("at"), firing, version, lines)

    async def exposition(self) -> list[bytes]:
        """Return the per-check families as chunks of exposition text (to be joined once),
        yielding to the event loop between slices of instances."""
        runtime = self.daemon.runtime
        full = self.full()
        if full != self._full:  # a reload switched the histograms on or off
            self._full = full
            self.cache.clear()
            if not full:
                self.tallies.clear()
        families = BASIC + FULL if full else BASIC
        instances = runtime.instances
        for gone in self.cache.keys() - instances.keys():
            del self.cache[gone]
            self.tallies.pop(gone, None)
        firing = {key for (key, _rule), a in runtime.book.open.items() if a.status == "firing"}
        keys = list(instances)
        cache_get, latest_get = self.cache.get, runtime.latest.get
        instance_down = runtime.instance_down
        tallies = self.tallies if full else {}
        shown_lines: list[tuple[bytes, ...]] = []
        append = shown_lines.append
        since = time.perf_counter()
        for start in range(0, len(keys), SLICE):
            if time.perf_counter() - since > TURN:
                await anyio.lowlevel.checkpoint()
                since = time.perf_counter()
            for key in keys[start : start + SLICE]:
                last = latest_get(key)
                if not last:
                    continue  # no result yet
                tally = tallies.get(key)
                version = -1 if tally is None else tally.version
                entry = cache_get(key)
                # up or down changes only with a result, which brings a new `latest`
                if (
                    entry is None
                    or entry.at != last.get("at")
                    or entry.firing != (key in firing)
                    or entry.version != version
                ):
                    instance = instances.get(key)
                    if instance is None:
                        continue  # removed by a reload meanwhile
                    entry = self.cache[key] = _Shown(
                        last.get("at"),
                        key in firing,
                        version,
                        self._render(instance, last, instance_down(key), key in firing, tally),
                    )
                append(entry.lines)
        chunks: list[bytes] = []
        for index, head in enumerate(_header(families)):
            chunks.append(head)
            chunks += [lines[index] for lines in shown_lines]
        return chunks

    def _render(
        self,
        instance: Any,
        last: dict[str, Any],
        down: bool,
        firing: bool,
        tally: _Tally | None,
    ) -> tuple[bytes, ...]:
        """Return one instance's lines, one bytes per family (BASIC, then FULL if chosen)."""
        labels = _labels(instance)
        state = "down" if down else ("degraded" if firing else "up")
        duration = last.get("duration")
        lines = [
            f"watchkeeper_check_up{{{labels}}} {'0.0' if down else '1.0'}\n",
            f'watchkeeper_check_state{{{labels},state="{state}"}} 1.0\n',
            ""
            if duration is None
            else f"watchkeeper_check_last_duration_seconds{{{labels}}} "
            f"{floatToGoString(max(0.0, float(duration)))}\n",
        ]
        if self._full:
            lines += ["", ""] if tally is None else self._render_tally(labels, tally)
        return tuple(line.encode() for line in lines)

    def _render_tally(self, labels: str, tally: _Tally) -> list[str]:
        name = "watchkeeper_check_duration_seconds"
        with_probe = f'{labels},probe="{_escape(tally.probe)}"'
        histogram = []
        total = 0
        for le, count in zip(self._le, tally.buckets, strict=True):
            total += count
            histogram.append(f'{name}_bucket{{{with_probe},le="{le}"}} {total}.0\n')
        histogram.append(f"{name}_count{{{with_probe}}} {total}.0\n")
        histogram.append(f"{name}_sum{{{with_probe}}} {floatToGoString(tally.sum)}\n")
        results = (
            f'watchkeeper_check_results_total{{{labels},ok="true"}} {tally.ok}.0\n'
            f'watchkeeper_check_results_total{{{labels},ok="false"}} {tally.failed}.0\n'
        )
        return ["".join(histogram), results]
