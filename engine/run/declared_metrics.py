"""The metrics a check can be judged on, and what `validate` checks of its thresholds.

A check's metrics are its `extract` entries (each with the unit it names), its probe's
declarations (`Probe.metrics`) and the engine's own `error_rate` and `uptime`. A rule on
any other name never fires, a value whose unit cannot fit the metric (`response_time
above 50%`) never means what was written, and a `where` on a label the metric lacks
selects nothing: `validate` refuses all three, at the rule's line.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from watchkeeper.engine.run.probe import Metric, MetricKind
from watchkeeper.schema.units import DURATION_PATTERN, PERCENT_PATTERN, SIZE_PATTERN

IMPLICIT = (
    Metric(
        "error_rate", "ratio", "failed runs ÷ runs of the check instance within the rule's `window`"
    ),
    Metric("uptime", "ratio", "1 − `error_rate` within the rule's `window`"),
)
"""Metrics every check has, computed by the engine from its results."""

EXTRACT_KINDS: dict[str, MetricKind] = {
    "number": "number",
    "count": "count",
    **dict.fromkeys(("ratio", "percent"), "ratio"),
    **dict.fromkeys(("ns", "us", "ms", "s", "m", "h", "d"), "duration"),
    **dict.fromkeys(("bytes", "kb", "mb", "gb", "kib", "mib", "gib"), "bytes"),
}
"""The kind of a metric read with `extract`, by the unit the extraction names."""

KIND_WORDS: dict[str, str] = {
    "duration": "a duration",
    "ratio": "a ratio",
    "bytes": "a size",
    "count": "a count",
    "number": "a plain number",
    "timestamp": "a timestamp",
    "any": "of any unit",
}
UNIT_WORDS = {"duration": "seconds", "ratio": "ratio", "bytes": "bytes", "count": "count"}
UNIT_WORDS |= {"number": "number", "timestamp": "Unix time", "any": "as reported"}
_WRITE = {
    "duration": "a duration such as 2s",
    "ratio": "a percentage such as 90%",
    "bytes": "a size such as 512MB",
    "count": "a plain number such as 10",
    "number": "a plain number",
    "timestamp": "a Unix time in seconds",
}
_FITS: dict[str, frozenset[str]] = {
    "duration": frozenset({"duration"}),
    "ratio": frozenset({"ratio"}),
    "bytes": frozenset({"bytes"}),
}
"""Written units each kind accepts besides a plain number (`any` accepts everything)."""

_PERCENT = re.compile(PERCENT_PATTERN)
_SIZE = re.compile(SIZE_PATTERN, re.IGNORECASE)
_DURATION = re.compile(DURATION_PATTERN, re.IGNORECASE)
_SPREAD = {"avg", "sum", "p50", "p90", "p95", "p99"}


@dataclass(frozen=True, slots=True)
class Declared:
    """A probe's declarations, indexed for lookups."""

    metrics: tuple[Metric, ...]
    by_name: dict[str, Metric]
    patterns: tuple[Metric, ...]


@functools.cache
def declared(probe: type) -> Declared | None:
    """Return a probe class's declarations, or None when it declares nothing."""
    metrics = getattr(probe, "metrics", None)
    if metrics is None:
        return None
    return Declared(
        tuple(metrics),
        {m.name: m for m in metrics if m.name},
        tuple(m for m in metrics if m.pattern),
    )


def extracted(options: Any) -> list[str]:
    """Return the names of the metrics a check's `extract` adds."""
    return list(_extract(options) or ())


def _extract(options: Any) -> Mapping[str, Any] | None:
    if options is None:
        return None
    # a model's field without pydantic's slow __getattr__ for probes that have none
    found = getattr(options, "__dict__", {}).get("extract")
    if found is None and not hasattr(type(options), "model_fields"):
        found = getattr(options, "extract", None)
    return found


def find(probe: type, name: str, options: Any = None) -> Metric | None:
    """Return the declaration of a metric a check reports: `extract` entries first (they
    replace a probe's metric of the same name), then the probe's, then the engine's."""
    extract = _extract(options)
    if extract and name in extract:
        unit = extract[name].unit
        return Metric(name, EXTRACT_KINDS.get(unit, "number"), f"read with `extract` ({unit})")
    found = declared(probe)
    if found is not None:
        metric = found.by_name.get(name)
        if metric is not None:
            return metric
    for metric in IMPLICIT:
        if metric.name == name:
            return metric
    if found is not None:
        for metric in found.patterns:
            if metric.matches(name):
                return metric
    return None


def metric_kind(probe_type: str, name: str, options: Any = None, reg: Any = None) -> str | None:
    """Return the kind of a metric a check of `probe_type` reports, e.g. `duration`; None
    when nothing declares it. `options` (the check) brings in its `extract` units."""
    from watchkeeper.engine.plugins import registry

    probe = (reg or registry()).types["probe"].get(probe_type)
    metric = find(probe, name.split("{")[0], options) if probe is not None else None
    return metric.kind if metric is not None else None


def quantity_kind(kind: str) -> str:
    """Return a declared metric kind as the unit formatter (schema/units.py) calls it:
    `bytes` is a `size`; durations and ratios keep their names; counts and numbers stay
    plain."""
    return {"bytes": "size"}.get(kind, kind)


@functools.lru_cache(maxsize=1024)
def written_kind(text: str) -> str | None:
    """Return the unit a threshold was written in: duration, ratio, bytes; None for a number."""
    text = text.strip()
    if _PERCENT.match(text):
        return "ratio"
    if _SIZE.match(text):
        return "bytes"
    if _DURATION.match(text):
        return "duration"
    return None


# --- validate ----------------------------------------------------------------------------

Finding = tuple[tuple, str, bool]
"""(path below the rule, message, whether it points at the key rather than the value)."""


def rule_problems(
    probe_type: str, probe: type, options: Any, rule: Any, raw: Any
) -> list[Finding] | None:
    """Return what is wrong with a threshold rule on a check's metrics; None when the
    metric is not declared and the probe declares nothing (so it cannot be checked).

    `raw` is the rule as written (a mapping), to see the unit its value was written in.
    """
    # runs for every rule of every check: the common case (a declared metric, a fitting
    # unit, no where, no agg) is kept to a few lookups
    name = rule.metric
    extract = _extract(options)
    unit = None
    if extract and name in extract:
        unit = extract[name].unit
        metric = Metric(name, EXTRACT_KINDS.get(unit, "number"))
    else:
        metric = _find_declared(probe, name)
    if metric is None:
        if declared(probe) is None:
            return None
        return [(("metric",), _unknown(probe_type, probe, options, name), False)]
    found: list[Finding] = []
    where, agg, window = rule.where, rule.agg, rule.window
    if where:
        for label in where:
            if label not in metric.labels:
                have = (
                    f"its labels: {', '.join(metric.labels)}"
                    if metric.labels
                    else "it has no labels"
                )
                found.append((("where", label), f"{name} has no label {label!r}; {have}", True))
    kind = metric.kind
    if metric is IMPLICIT[0] or metric is IMPLICIT[1]:
        if agg is not None:
            found.append(
                (
                    ("agg",),
                    f"`agg` does not apply to {name}: it is computed from the runs within the "
                    "`window`; remove `agg`",
                    False,
                )
            )
        agg = None
    elif agg is None and window is not None:
        agg = "avg"  # as the evaluator reads a window without agg
    if agg is not None:
        if kind == "timestamp" and agg in _SPREAD:
            found.append((_agg_path(rule), _nonsense(rule, agg, name, "timestamp"), False))
        elif kind == "ratio" and agg == "sum":
            found.append((_agg_path(rule), _nonsense(rule, agg, name, "ratio"), False))
        elif agg == "count":
            kind = "count"
    if kind != "any":
        above = rule.above
        side = "above" if above is not None else "below"
        limit = above if above is not None else rule.below
        written = raw.get(side) if type(raw) is dict else None
        if type(written) is str or (kind == "ratio" and limit > 1):
            problem = _unit_problem(name, kind, limit, written, agg == "count", unit)
            if problem:
                found.append(((side,), problem, False))
    return found


@functools.lru_cache(maxsize=4096)
def _find_declared(probe: type, name: str) -> Metric | None:
    return find(probe, name)


def _agg_path(rule: Any) -> tuple:
    return ("agg",) if rule.agg is not None else ("window",)


def _nonsense(rule: Any, agg: str, name: str, kind: str) -> str:
    what = {"avg": "an average", "sum": "a sum"}.get(agg, f"a percentile ({agg})")
    better = "min, max or last" if kind == "timestamp" else "avg, min, max or a percentile"
    how = f"`agg: {agg}` takes" if rule.agg is not None else "`window` without `agg` takes"
    return f"{how} {what} of {name} ({KIND_WORDS[kind]}), which means nothing; use agg: {better}"


def _unit_problem(
    name: str, kind: str, limit: Any, written: Any, counted: bool, extract_unit: str | None
) -> str | None:
    unit = written_kind(written) if type(written) is str else None
    if unit is not None and unit not in _FITS.get(kind, ()):
        if counted:
            what = "`agg: count` counts the results in the window, a count"
        else:
            what = f"{name} is {KIND_WORDS[kind]}"
            if extract_unit:
                what += f" (extracted with unit {extract_unit})"
        return f"{what}; {written.strip()} is {KIND_WORDS[unit]} (write {_WRITE[kind]})"
    if kind == "ratio" and unit is None and isinstance(limit, float) and limit > 1:
        shown = f"{limit:g}"
        return (
            f"{name} is a ratio from 0 to 1; {shown} is {limit * 100:g}% (did you mean {shown}%?)"
        )
    return None


def _unknown(probe_type: str, probe: type, options: Any, name: str) -> str:
    extract = list(extracted(options))
    found = declared(probe)
    own = [m.name for m in found.metrics if m.name] if found else []
    patterns = [m.shown for m in found.patterns] if found else []
    candidates = [*extract, *own, *(m.name for m in IMPLICIT)]
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(own) or "no named metrics"
    if patterns:
        listing += ", and names matching " + ", ".join(patterns)
    if extract:
        listing += "; extracted: " + ", ".join(extract)
    return f"{probe_type} has no metric {name!r}{hint}; it reports {listing}"


# --- a probe's results against its declarations ------------------------------------------


def undeclared(probe: type, result: Any, options: Any = None) -> list[str]:
    """Return how a result strays from its probe's declarations: a metric or label not
    declared, a value its kind cannot take (a ratio of 3, a negative size).

    For probe authors' tests: `assert undeclared(QueueProbe, result) == []`.
    """
    problems = []
    if declared(probe) is None:
        return [f"probe {getattr(probe, 'type', probe)!r} declares no metrics"]
    reported = [(n, v, {}) for n, v in result.metrics.items()]
    reported += [(s.name, s.value, s.labels) for s in result.samples]
    for name, value, labels in reported:
        metric = find(probe, name, options)
        if metric is None:
            problems.append(f"reports {name!r}, which it does not declare")
            continue
        for label in labels:
            if label not in metric.labels:
                problems.append(f"{name} carries label {label!r}, which it does not declare")
        if not _value_fits(metric.kind, value):
            problems.append(f"{name} is declared {metric.kind} but reported {value!r}")
    return problems


def _value_fits(kind: str, value: float) -> bool:
    if math.isnan(value):
        return True
    if kind == "ratio":
        return 0.0 <= value <= 1.0
    if kind in ("count", "bytes"):
        return value >= 0 and float(value).is_integer()
    return math.isfinite(value)


# --- the JSON Schema and the docs ----------------------------------------------------------


def offer_metric_names(schema: dict[str, Any], probes: Mapping[str, type]) -> None:
    """Give each probe's branch of the JSON Schema its metric names, for editors to offer
    (`examples`, not `enum`: `extract` and pattern-declared names are just as valid)."""
    for definition in schema.get("$defs", {}).values():
        probe_type = definition.get("properties", {}).get("probe", {}).get("const")
        thresholds = definition.get("properties", {}).get("thresholds")
        probe = probes.get(probe_type) if probe_type else None
        if probe is None or thresholds is None or "items" not in thresholds:
            continue
        found = declared(probe)
        metrics = [*(found.metrics if found else ()), *IMPLICIT]
        names = [m.name for m in metrics if m.name]
        described = "; ".join(f"{m.shown} ({UNIT_WORDS[m.kind]})" for m in metrics)
        if found is None:
            described = f"{probe_type} declares no metrics; every check has " + described
        description = f"Metric this rule judges. {probe_type}: {described}"
        if getattr(getattr(probe, "Options", None), "model_fields", {}).get("extract"):
            description += "; and each `extract` entry"
        thresholds["items"] = {
            "allOf": [
                thresholds["items"],
                {"properties": {"metric": {"examples": names, "description": description + "."}}},
            ]
        }


BLOCK = re.compile(r"(<!-- metrics:(?P<name>[\w*-]+) -->\n)(?P<body>.*?)(<!-- /metrics -->)", re.S)
REFRESH = "python -m watchkeeper.engine.run.declared_metrics --write docs/probes.md"
ENGINE = "every-check"
"""The block name of the metrics every check has."""


def table(metrics: Iterable[Metric], *, extract: bool = False) -> str:
    """Render declarations as the markdown table docs/probes.md shows."""
    lines = ["| metric | unit | |", "| --- | --- | --- |"]
    for m in metrics:
        name = f"`{m.name}`" if m.name else f"names matching `{m.pattern}`"
        if m.labels:
            name = f"`{m.name}{{{','.join(m.labels)}}}`" if m.name else name
        lines.append(f"| {name} | {UNIT_WORDS[m.kind]} | {m.description} |")
    if extract:
        lines.append("| *extracted* | as its `unit` says | each `extract` entry, in base units |")
    return "\n".join(lines) + "\n"


def block_for(name: str, probes: Mapping[str, type]) -> str | None:
    """Return the generated table of one marked block: a probe type, or every-check."""
    if name == ENGINE:
        return table(IMPLICIT)
    probe = probes.get(name)
    found = declared(probe) if probe is not None else None
    if found is None:
        return None
    fields = getattr(getattr(probe, "Options", None), "model_fields", {})
    return table(found.metrics, extract="extract" in fields)


def refresh(text: str, probes: Mapping[str, type]) -> tuple[str, list[str]]:
    """Return a document with its `<!-- metrics:NAME -->` blocks regenerated, and the
    names of blocks that name no declaring probe."""
    unknown: list[str] = []

    def fill(m: re.Match[str]) -> str:
        body = block_for(m["name"], probes)
        if body is None:
            unknown.append(m["name"])
            return m.group(0)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(fill, text), unknown


def main(argv: list[str] | None = None) -> int:
    """Regenerate (--write) or check the metric tables of a markdown file."""
    import argparse
    from pathlib import Path

    from watchkeeper.engine.plugins import registry

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--write", action="store_true", help="rewrite the file in place")
    args = parser.parse_args(argv)
    probes = {
        name: cls
        for name, cls in registry().types["probe"].items()
        if cls.__module__.startswith("watchkeeper.plugins.")
    }
    text = args.path.read_text()
    fresh, unknown = refresh(text, probes)
    if unknown:
        print(f"{args.path}: no declaring built-in probe for block(s): {', '.join(unknown)}")
        return 1
    if args.write:
        if fresh != text:
            args.path.write_text(fresh)
        print(f"{args.path}: metric tables up to date")
        return 0
    if fresh != text:
        print(f"{args.path}: metric tables are stale; refresh them with: {REFRESH}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
