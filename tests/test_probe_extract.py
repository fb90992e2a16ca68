"""Metric extraction shared by http, command and heartbeat: lookups, regexes, units."""

from __future__ import annotations

import pytest

from watchkeeper.engine.run.extract import (
    ExtractError,
    extract_metrics,
    extract_one,
    lookup,
    parse_path,
    to_base_units,
)
from watchkeeper.schema.checks import Extraction

DOC = {
    "metrics": {"aiGenerationMs": 1500, "errorRate": "0.02", "ok": True},
    "items": [{"ms": 5}, {"ms": 7}],
    "odd keys": {"a.b": 3},
}


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.a", ("a",)),
        ("$.a.b[0]", ("a", "b", 0)),
        ("$.items[-1].ms", ("items", -1, "ms")),
        ("$['odd keys'][\"a.b\"]", ("odd keys", "a.b")),
        ("$[0][1]", (0, 1)),
    ],
)
def test_parse_path(path, steps):
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", ["a.b", "$.a..b", "$.a[x]", "$.a["])
def test_parse_path_rejects(path):
    with pytest.raises(ExtractError):
        parse_path(path)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$.metrics.aiGenerationMs", 1500),
        ("$.items[1].ms", 7),
        ("$.items[-1].ms", 7),
        ("$['odd keys']['a.b']", 3),
        ("$.items", [{"ms": 5}, {"ms": 7}]),
    ],
)
def test_lookup(path, value):
    assert lookup(DOC, path) == value


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("$.metrics.missing", "$.metrics.missing not found"),
        ("$.items[2].ms", "$.items has 2 items, no [2]"),
        ("$.metrics[0]", "$.metrics is an object, not a list"),
        ("$.items.ms", "$.items is a list, not an object"),
        ("$.metrics.aiGenerationMs.x", "$.metrics.aiGenerationMs is a number, not an object"),
    ],
)
def test_lookup_says_where_it_failed(path, message):
    with pytest.raises(ExtractError) as caught:
        lookup(DOC, path)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "unit", "base"),
    [
        (3, "number", 3),
        (3, "count", 3),
        (0.25, "ratio", 0.25),
        (85, "percent", 0.85),
        (1_500_000_000, "ns", 1.5),
        (2500, "us", 0.0025),
        (1500, "ms", 1.5),
        (2, "s", 2),
        (2, "m", 120),
        (1.5, "h", 5400),
        (30, "d", 2_592_000),
        (512, "bytes", 512),
        (2, "kb", 2000),
        (512, "mb", 512_000_000),
        (2, "gb", 2_000_000_000),
        (2, "kib", 2048),
        (1, "mib", 1_048_576),
        (1, "gib", 1_073_741_824),
    ],
)
def test_units_convert_to_base_units(value, unit, base):
    assert to_base_units(value, unit) == pytest.approx(base)


def test_every_unit_the_schema_allows_is_known():
    from typing import get_args

    from watchkeeper.engine.run.extract import UNIT_FACTORS
    from watchkeeper.schema.checks import ExtractUnit

    assert set(get_args(ExtractUnit)) == set(UNIT_FACTORS)


def test_numeric_strings_count_booleans_do_not():
    assert extract_one(Extraction(path="$.metrics.errorRate", unit="ratio"), document=DOC) == 0.02
    with pytest.raises(ExtractError, match="is a boolean, not a number"):
        extract_one(Extraction(path="$.metrics.ok"), document=DOC)


def test_regex_uses_the_first_group_or_the_whole_match():
    text = "took 250ms, 3 retries"
    assert extract_one(Extraction(regex=r"took (\d+)ms", unit="ms"), text) == 0.25
    assert extract_one(Extraction(regex=r"\d+(?= retries)"), text) == 3
    assert extract_one(Extraction(regex=r"(x)?(\d+) retries"), text) == 3


def test_extract_metrics_collects_values_and_problems():
    extractions = {
        "gen": Extraction(path="$.metrics.aiGenerationMs", unit="ms"),
        "rate": Extraction(path="$.metrics.errorRate", unit="ratio"),
        "gone": Extraction(path="$.metrics.gone"),
    }
    metrics, problems = extract_metrics(extractions, document=DOC)
    assert metrics == {"gen": 1.5, "rate": 0.02}
    assert problems == {"gone": "$.metrics.gone not found"}


def test_extract_metrics_parses_text_once_and_reports_bad_json():
    path_and_regex = {
        "a": Extraction(path="$.a"),
        "b": Extraction(regex=r"b=(\d+)"),
    }
    metrics, problems = extract_metrics(path_and_regex, text='{"a": 5}')
    assert metrics == {"a": 5}
    assert problems == {"b": "regex 'b=(\\\\d+)' does not match"}
    metrics, problems = extract_metrics(path_and_regex, text="b=7 but not JSON")
    assert metrics == {"b": 7}
    assert problems["a"].startswith("not JSON")
