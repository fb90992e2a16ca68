"""Read numeric metrics out of a response or output: `$.a.b[0]` lookups and regexes.

Shared by the probes and the engine wherever monitor.yaml says `extract:`. Every value
is converted from the unit the extraction names to base units (seconds, bytes, ratios).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a probe worker reads extractions as they come, without the schema
    from watchkeeper.schema.checks import Extraction

UNIT_FACTORS: dict[str, float] = {
    "number": 1.0,
    "count": 1.0,
    "ratio": 1.0,
    "percent": 0.01,
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "bytes": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "kib": 2.0**10,
    "mib": 2.0**20,
    "gib": 2.0**30,
}
"""Multiply a value written in the unit by this to get base units (MB = 10^6, MiB = 2^20)."""

_STEP = re.compile(
    r"""\.(?P<name>[^.\[\]]+)          # .name
      | \[(?P<index>-?\d+)\]           # [0], [-1]
      | \[(?P<q>["'])(?P<key>.*?)(?P=q)\]  # ["a key"], ['a.key']
    """,
    re.VERBOSE,
)


class ExtractError(ValueError):
    """A value cannot be found or is not a number; the message says which and where."""


@lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[str | int, ...]:
    """Split `$.a.b[0]["c d"]` into its steps: ('a', 'b', 0, 'c d')."""
    if not path.startswith("$"):
        raise ExtractError(f"path {path!r} must start at the document root `$`")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise ExtractError(f"path {path!r}: cannot read {path[pos:]!r}")
        if m["index"] is not None:
            steps.append(int(m["index"]))
        else:
            steps.append(m["name"] if m["name"] is not None else m["key"])
        pos = m.end()
    return tuple(steps)


def lookup(document: Any, path: str) -> Any:
    """Return the value at `path` in parsed JSON, or raise ExtractError naming the step."""
    value = document
    walked = "$"
    for step in parse_path(path):
        if isinstance(step, int):
            if not isinstance(value, list):
                raise ExtractError(f"{walked} is {kind_of(value)}, not a list")
            if not -len(value) <= step < len(value):
                raise ExtractError(f"{walked} has {len(value)} items, no [{step}]")
            value = value[step]
            walked += f"[{step}]"
        else:
            if not isinstance(value, Mapping):
                raise ExtractError(f"{walked} is {kind_of(value)}, not an object")
            if step not in value:
                raise ExtractError(f"{walked}.{step} not found")
            value = value[step]
            walked += f".{step}"
    return value


def to_number(value: Any, where: str) -> float:
    """Return value as a float: JSON numbers and numeric strings ("12.5"); not booleans."""
    if isinstance(value, bool) or value is None:
        raise ExtractError(f"{where} is {kind_of(value)}, not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ExtractError(f"{where} is {kind_of(value)} {short_json(value)}, not a number")


def to_base_units(value: float, unit: str) -> float:
    """Convert a value written in `unit` (ms, percent, mib...) to seconds, ratio or bytes."""
    try:
        return value * UNIT_FACTORS[unit]
    except KeyError:
        raise ExtractError(f"unknown unit {unit!r}") from None


def extract_one(extraction: Extraction, text: str | None = None, document: Any = None) -> float:
    """Read one metric: `regex` over text, `path` in the document (parsed from text if None)."""
    if extraction.regex is not None:
        if text is None:
            raise ExtractError("no text to search")
        m = re.search(extraction.regex, text)
        if m is None:
            raise ExtractError(f"regex {extraction.regex!r} does not match")
        raw = next((g for g in m.groups() if g is not None), m.group(0))
        return to_base_units(to_number(raw, f"regex {extraction.regex!r} match"), extraction.unit)
    assert extraction.path is not None
    if document is None:
        if text is None:
            raise ExtractError("no JSON document")
        document = parse_json(text)
    return to_base_units(
        to_number(lookup(document, extraction.path), extraction.path), extraction.unit
    )


def extract_metrics(
    extractions: Mapping[str, Extraction], text: str | None = None, document: Any = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Read every extraction; return (metrics in base units, {metric: what went wrong}).

    `document` is parsed JSON when the caller has it; otherwise `text` is parsed once, and
    only if some extraction has a `path`.
    """
    metrics: dict[str, float] = {}
    problems: dict[str, str] = {}
    parse_error: str | None = None
    if (
        document is None
        and text is not None
        and any(e.path is not None for e in extractions.values())
    ):
        try:
            document = parse_json(text)
        except ExtractError as exc:
            parse_error = str(exc)
    for name, extraction in extractions.items():
        if extraction.path is not None and document is None:
            problems[name] = parse_error or "no JSON document"
            continue
        try:
            metrics[name] = extract_one(extraction, text, document)
        except ExtractError as exc:
            problems[name] = str(exc)
    return metrics, problems


def parse_json(text: str | bytes) -> Any:
    """Parse JSON, raising ExtractError with a short reason."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ExtractError(f"not JSON ({exc})") from None


def describe_problems(problems: Mapping[str, str]) -> str:
    """Render extraction problems for a result message: `extract a: $.x not found`."""
    return "; ".join(f"extract {name}: {reason}" for name, reason in problems.items())


def kind_of(value: Any) -> str:
    """Name a JSON value's kind for messages: `an object`, `a string`, `null`..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def short_json(value: Any, limit: int = 40) -> str:
    """Render a JSON value for a message, cut to `limit` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
