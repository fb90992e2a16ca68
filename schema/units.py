"""Typed unit values of monitor.yaml: durations, ratios, sizes and unit-bearing thresholds.

Every value is held in base units (seconds, ratio 0-1, bytes) so that thresholds and
metrics compare as plain numbers, and keeps the text it was written as for messages.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:  # a probe worker formats durations without loading pydantic (~5 MB)
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import core_schema

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

_NUMBER = r"(?P<num>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_DURATION_RE = re.compile(_NUMBER + r"\s*(?P<unit>ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_FULL = re.compile(r"^(?:\s*" + _NUMBER + r"\s*(?:ms|s|m|h|d|w)\s*)+$", re.IGNORECASE)
_SIZE_RE = re.compile(r"^\s*" + _NUMBER + r"\s*(?P<unit>[kmgt]i?b|b)\s*$", re.IGNORECASE)
_PERCENT_RE = re.compile(r"^\s*" + _NUMBER + r"\s*%\s*$")

DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d|w)\s*)+$"
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT][iI]?[bB]|[bB])\s*$"
PERCENT_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$"


def _invalid(kind: str, message: str, context: dict[str, Any] | None = None) -> Exception:
    """The error pydantic reports at the value's place in the file."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError(kind, message, context)


def parse_duration(value: Any) -> float:
    """Return seconds for `250ms`, `5s`, `1h30m`, `30d` or a bare number of seconds."""
    if isinstance(value, bool):
        raise _invalid("duration", "expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise _invalid("duration", "a duration cannot be negative")
        return _finite(float(value))
    if isinstance(value, str):
        seconds = _duration_text(value)
        if seconds is not None:
            return _finite(seconds)
    raise _invalid(
        "duration",
        "expected a duration such as 250ms, 30s, 5m, 1h or 1d, got '{value}'",
        {"value": value},
    )


def _finite(seconds: float) -> float:
    # .inf, .nan and a 400-digit number of seconds are no time at all: every timer, window
    # and schedule built from them would overflow (bounds of each use are checked there)
    if not math.isfinite(seconds):
        raise _invalid("duration", "expected a finite duration, got infinity")
    return seconds


def parse_ratio(value: Any) -> float:
    """Return a ratio for `85%` or a bare number between 0 and 1."""
    if isinstance(value, bool):
        raise _invalid("ratio", "expected a percentage such as 85%")
    if isinstance(value, int | float):
        ratio = float(value)
    elif isinstance(value, str) and (m := _PERCENT_RE.match(value)):
        ratio = float(m["num"]) / 100.0
    else:
        raise _invalid(
            "ratio",
            "expected a percentage such as 99.9% or a ratio 0-1, got '{value}'",
            {"value": value},
        )
    if not 0.0 <= ratio <= 1.0:
        raise _invalid("ratio", "expected a percentage between 0% and 100%")
    return ratio


def parse_size(value: Any) -> int:
    """Return bytes for `512MB`, `2GiB` or a bare number of bytes (MB = 10^6, MiB = 2^20)."""
    if isinstance(value, bool):
        raise _invalid("size", "expected a size such as 512MB or 2GB")
    if isinstance(value, int | float):
        if value < 0:
            raise _invalid("size", "a size cannot be negative")
        return int(value)
    if isinstance(value, str) and (m := _SIZE_RE.match(value)):
        return int(float(m["num"]) * SIZE_UNITS[m["unit"].lower()])
    raise _invalid(
        "size", "expected a size such as 512MB, 2GB or 1GiB, got '{value}'", {"value": value}
    )


def parse_quantity(value: Any) -> float:
    """Return the base-unit number of a threshold: a duration, percentage, size or number."""
    if isinstance(value, bool):
        raise _invalid("quantity", "expected a number, duration, percentage or size")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        number = _quantity_text(value)
        if number is not None:
            return number
    raise _invalid(
        "quantity",
        "expected a number or a value with a unit (2s, 85%, 512MB), got '{value}'",
        {"value": value},
    )


# A large config writes the same few values (`2s`, `5m`, `90%`) thousands of times:
# each distinct text is parsed once.


@functools.lru_cache(maxsize=1024)
def _duration_text(text: str) -> float | None:
    if not _DURATION_FULL.match(text):
        return None
    return sum(
        float(m["num"]) * DURATION_UNITS[m["unit"].lower()] for m in _DURATION_RE.finditer(text)
    )


@functools.lru_cache(maxsize=1024)
def _quantity_text(value: str) -> float | None:
    text = value.strip()
    if _PERCENT_RE.match(text):
        return float(text.rstrip("% \t")) / 100.0
    if _SIZE_RE.match(text):
        return float(parse_size(text))
    if _DURATION_FULL.match(text):
        return _duration_text(text)
    try:
        return float(text)
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    """Render seconds the way a person writes them: 90 -> 1m30s, 0.25 -> 250ms."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms" if seconds else "0s"
    parts = []
    remaining = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_size(size: float) -> str:
    """Render bytes with a binary unit: 1536 -> 1.5KiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"  # pragma: no cover


# -- quantities in messages --------------------------------------------------------------
# A value is shown in the unit people think in, with enough digits to show why it crossed
# its threshold: `2.5s above 2s`, `2.004s above 2s` (never `2s above 2s`), `943.7MB`,
# `85.2%`, `812ms`. Units are written as monitor.yaml writes them (no space), so a
# threshold reads as it was configured.

QuantityKind = str
"""`duration` (seconds), `size` (bytes), `ratio` (0-1) or `number`."""

_SIZE_STEPS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
_MAX_EXTRA_DIGITS = 6
_LONG_STEPS = 3
"""Durations of a minute or more are shown as 5d, 13d23h58m, 2m1s before any decimals."""


def _scale(value: float, kind: QuantityKind) -> tuple[float, str, int]:
    """Return (divisor, suffix, default decimals) for showing `value`."""
    magnitude = abs(value)
    if kind == "duration":
        if magnitude < 1:
            return 0.001, "ms", 1 if 0 < magnitude < 0.01 else 0
        return 1.0, "s", 1
    if kind == "size":
        for suffix, size in _SIZE_STEPS:
            if magnitude >= size:
                return float(size), suffix, 1
        return 1.0, "B", 0
    if kind == "ratio":
        return 0.01, "%", 1
    return 1.0, "", 0 if float(value).is_integer() else 2


def _digits(number: float, decimals: int) -> str:
    text = f"{number:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _shown(value: float, kind: QuantityKind, extra: int = 0) -> tuple[str, float]:
    """Return the text of a value and the number that text stands for (base units)."""
    if not math.isfinite(value):  # an aggregate can overflow: say so, never raise
        return ("-" if value < 0 else "") + (
            "infinite" if value == value else "not a number"
        ), value
    if value < 0:  # an expired certificate's expiry: -3d, not -259200000ms
        text, shown = _shown(-value, kind, extra)
        return "-" + text, -shown
    if kind == "duration" and abs(value) >= 60 and extra < _LONG_STEPS:
        # to the unit below the largest, finer with each extra digit asked for:
        # 4d23h59m51s reads 5d, then 4d23h60m... 13d23h58m below 14d, 2h15m40s reads 2h16m
        steps = [3600, 60, 1] if abs(value) >= 86400 else [60, 1] if abs(value) >= 3600 else [1]
        step = steps[min(extra, len(steps) - 1)]
        rounded = float(round(value / step) * step)
        return format_duration(rounded), rounded
    divisor, suffix, decimals = _scale(value, kind)
    decimals += extra
    number = value / divisor
    if number and round(number, decimals) == 0:  # a tiny non-zero value is not `0%`
        decimals = max(decimals, 1 - math.floor(math.log10(abs(number))))
    return _digits(number, decimals) + suffix, round(number, decimals) * divisor


def format_quantity(value: float, kind: QuantityKind) -> str:
    """Render a metric value in its unit: 2.5 -> 2.5s, 0.8124 -> 812ms, 0.852 -> 85.2%."""
    return _shown(value, kind)[0]


def format_limit(value: float, kind: QuantityKind) -> str:
    """Render a threshold exactly (up to a few decimals): 2 -> 2s, 2.25 -> 2.25s."""
    for extra in range(4):
        text, shown = _shown(value, kind, extra)
        if math.isclose(shown, value, rel_tol=1e-9, abs_tol=1e-12):
            return text
    return _shown(value, kind)[0]  # 870MiB: 912.3MB


def format_against(
    value: float, limit: float, kind: QuantityKind, direction: str | None = None
) -> tuple[str, str]:
    """Render a value and the threshold it is judged against, the value with enough digits
    to show which side of the threshold it is on (2.004s above 2s, not 2s above 2s)."""
    limit_text = format_limit(limit, kind)
    if value == limit:
        return limit_text, limit_text
    limit_shown = _shown(limit, kind, 3)[1]
    text, shown = _shown(value, kind)
    for extra in range(1, _MAX_EXTRA_DIGITS + 1):
        if direction == "above":
            clear = shown > limit_shown
        elif direction == "below":
            clear = shown < limit_shown
        else:
            clear = text != limit_text
        if clear and text != limit_text:
            break
        text, shown = _shown(value, kind, extra)
        if kind == "duration" and abs(value) >= 60 and extra >= _LONG_STEPS:
            limit_text = _digits(limit, 3) + "s"  # 120.4s above 120s, not above 2m
    return text, limit_text


class _Unit:
    """Attach a parser and a JSON-schema shape to a plain float or int annotation."""

    def __init__(self, parse, pattern: str, example: str, description: str, allow_number=True):
        self.parse = parse
        self.pattern = pattern
        self.example = example
        self.description = description
        self.allow_number = allow_number

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            self.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        text = {"type": "string", "pattern": self.pattern}
        shape: dict[str, Any] = (
            {"anyOf": [text, {"type": "number", "minimum": 0}]} if self.allow_number else text
        )
        shape["examples"] = [self.example]
        return shape


Duration = Annotated[float, _Unit(parse_duration, DURATION_PATTERN, "30s", "a duration")]
"""Seconds, written as 250ms, 30s, 5m, 1h, 1d (or a number of seconds)."""

Ratio = Annotated[float, _Unit(parse_ratio, PERCENT_PATTERN, "99.9%", "a percentage")]
"""A ratio 0-1, written as 85% (or a number 0-1)."""

Size = Annotated[int, _Unit(parse_size, SIZE_PATTERN, "512MB", "a size")]
"""Bytes, written as 512MB, 2GB, 1GiB (or a number of bytes)."""

Quantity = Annotated[
    float,
    _Unit(
        parse_quantity,
        r"^\s*[0-9.]+\s*(ms|s|m|h|d|w|%|[kKmMgGtT]?[iI]?[bB])?\s*$",
        "2s",
        "a number, duration, percentage or size",
    ),
]
"""A threshold in base units: 2s -> 2, 85% -> 0.85, 512MB -> 512000000, 3 -> 3."""
