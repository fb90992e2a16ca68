"""The keys every check has, whatever its probe: schedule, thresholds, severity, labels..."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from watchkeeper.schema.base import ConfigModel, Name, PluginOptions, empty_dict, empty_list
from watchkeeper.schema.schedule import Schedule, TimezoneName
from watchkeeper.schema.units import Duration, Quantity, parse_duration

Aggregation = Literal["last", "avg", "min", "max", "sum", "count", "p50", "p90", "p95", "p99"]


def _parse_for(value: Any) -> int | float:
    """`for: 3` counts breaching evaluations; `for: 5m` is breaching for that long."""
    if isinstance(value, bool):
        raise ValueError("expected a count such as 3 or a duration such as 5m")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("`for` counts evaluations and must be at least 1")
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return max(1, int(value))
    return parse_duration(value)


ForSpec = Annotated[int | float, BeforeValidator(_parse_for)]
"""An int is a number of consecutive evaluations; a float is seconds of breaching."""


class Threshold(ConfigModel):
    """A rule on a metric: `{metric: response_time, above: 2s, severity: warning}`."""

    name: str | None = Field(
        None,
        description="Rule id; rules sharing a name are severity "
        "tiers of one alert. Default: the metric (with agg, window, where).",
    )
    metric: str = Field(
        description="Metric name in base units (seconds, bytes, ratios), "
        "e.g. response_time, memory_usage, error_rate, uptime, or one from "
        "`extract`."
    )
    above: Quantity | None = Field(
        None, description="Breach when the value is above this (2s, 85%, 512MB, 3)."
    )
    below: Quantity | None = Field(None, description="Breach when the value is below this.")
    severity: str = Field(
        "warning",
        description="Severity of the alert while this tier breaches; one of `severities`.",
    )
    agg: Aggregation | None = Field(
        None,
        description="Aggregate the metric over `window`: "
        "avg, min, max, sum, count, p50, p90, p95, p99, last.",
    )
    window: Duration | None = Field(
        None,
        description="Evaluate over the results of this "
        "long a window (needed by agg, error_rate and uptime).",
    )
    for_: ForSpec = Field(
        1,
        alias="for",
        description="Consecutive breaching evaluations "
        "(3) or time breaching (5m) before the alert fires.",
    )
    where: dict[str, str] = Field(
        default_factory=empty_dict,
        description="Labels selecting one instance of a labelled metric, e.g. {path: /}.",
    )
    min_samples: int | None = Field(
        None,
        ge=1,
        description="Runs needed in the window before "
        "error_rate/uptime may change the alert (default: the "
        "check's min_samples).",
    )
    description: str | None = Field(None, description="Shown in notifications.")

    @model_validator(mode="after")
    def _one_direction(self) -> Threshold:
        if (self.above is None) == (self.below is None):
            raise ValueError("a threshold needs exactly one of `above` or `below`")
        if self.agg not in (None, "last") and self.window is None:
            raise ValueError(f"`agg: {self.agg}` needs a `window`")
        return self

    @property
    def rule_id(self) -> str:
        """Return the alert rule id: the name, else metric[:agg:window] plus where."""
        if self.name:
            return self.name
        from watchkeeper.schema.units import format_duration

        rid = self.metric
        if self.agg or self.window:
            rid += f":{self.agg or 'avg'}:{format_duration(self.window or 0)}"
        if self.where:
            rid += "{" + ",".join(f"{k}={v}" for k, v in sorted(self.where.items())) + "}"
        return rid

    @property
    def direction(self) -> Literal["above", "below"]:
        return "above" if self.above is not None else "below"

    @property
    def limit(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]


class CheckSettings(ConfigModel):
    """Settings a check inherits from `defaults` when it does not set them."""

    timezone: TimezoneName | None = Field(
        None, description="IANA timezone for cron schedules (default UTC)."
    )
    timeout: Duration | None = Field(
        None, description="Longest a run may take; enforced from outside the probe (default 10s)."
    )
    schedule: Schedule | None = Field(
        None, description="When the check runs (default every 5m). Not for heartbeat checks."
    )
    severity: str | None = Field(
        None,
        description="Severity when the probe fails or an "
        "expectation does not hold (default critical).",
    )
    failure_threshold: int | None = Field(
        None, ge=1, description="Consecutive failed runs before the `up` alert fires (default 1)."
    )
    success_threshold: int | None = Field(
        None, ge=1, description="Consecutive good runs before an alert resolves (default 1)."
    )
    min_samples: int | None = Field(
        None,
        ge=1,
        description="Runs in the window before "
        "error_rate/uptime rules may change an alert (default 5).",
    )
    flap_threshold: int | None = Field(
        None,
        ge=2,
        description="More state flips than this "
        "within flap_window marks an alert flapping "
        "(default 6).",
    )
    flap_window: Duration | None = Field(
        None, description="Window for counting flips (default 1h)."
    )
    labels: dict[str, str] = Field(
        default_factory=empty_dict,
        description="Labels for routing, "
        "maintenance scope and the status page; merged with "
        "defaults.labels.",
    )


class Defaults(CheckSettings):
    """Inherited by every check."""


DEFAULTS = {
    "timezone": "UTC",
    "timeout": 10.0,
    "severity": "critical",
    "failure_threshold": 1,
    "success_threshold": 1,
    "min_samples": 5,
    "flap_threshold": 6,
    "flap_window": 3600.0,
}
"""Built-in values of the settings neither a check nor `defaults` set."""


LocationAgg = Literal["quorum", "worst", "best", "median", "mean"]


class Locations(ConfigModel):
    """Where a check runs from, and how many places must agree before it alerts."""

    from_: list[Name] = Field(
        alias="from",
        min_length=1,
        description="Locations to run from (replicas started with `--location NAME`); the "
        "check runs once per location, on a replica there.",
    )
    quorum: int | None = Field(
        None,
        ge=1,
        description="How many locations must see the check down before it alerts (and "
        "until fewer do, it stays firing). Default: a majority of `from`.",
    )
    agg: LocationAgg = Field(
        "quorum",
        description="How threshold rules combine the locations' values: `quorum` (the "
        "quorum-th worst, so fewer than `quorum` bad locations never fire), `worst`, "
        "`best`, `median` or `mean`.",
    )

    @property
    def needed(self) -> int:
        """The quorum in effect: the one written, else a majority of the locations."""
        return self.quorum if self.quorum is not None else len(self.from_) // 2 + 1


class CheckCommon(CheckSettings):
    """Keys every check has besides its probe's own."""

    enabled: bool = Field(True, description="false keeps the check in the file but never runs it.")
    description: str | None = Field(None, description="What the check watches, for people.")
    environments: list[Name] | None = Field(
        None,
        description="Run one instance per listed "
        "environment (`name@environment`); string fields "
        "may use ${env.key}.",
    )
    thresholds: list[Threshold] = Field(
        default_factory=empty_list,
        description="Rules on metrics; rules sharing a name are severity tiers of one alert.",
    )
    runbook: str | None = Field(None, description="Text or URL shown in every alert of this check.")
    depends_on: list[str] = Field(
        default_factory=empty_list,
        description="Checks whose `up` alert holds back this check's alerts (shown as blocked).",
    )
    locations: Locations | None = Field(
        None,
        description="Run from several locations and alert only when `quorum` of them see "
        "the check down (docs/scaling.md ► Locations).",
    )


class ProbeOptions(PluginOptions):
    """Base of a probe's own keys; the check model adds `probe:` and the common keys."""

    plugin_kind = "probe"


ExtractUnit = Literal[
    "number",
    "count",
    "ratio",
    "percent",
    "ns",
    "us",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "bytes",
    "kb",
    "mb",
    "gb",
    "kib",
    "mib",
    "gib",
]


class Extraction(ConfigModel):
    """A numeric metric read from a response or output, converted to base units."""

    path: str | None = Field(
        None,
        description="JSONPath-style location in a JSON body: "
        "`$.metrics.errorRate`, `$.items[0].ms`.",
    )
    regex: str | None = Field(
        None,
        description="Regular expression over text; the first "
        "group (or the whole match) is the number.",
    )
    unit: ExtractUnit = Field(
        "number",
        description="Unit the value is written in; it is converted to seconds, bytes or a ratio.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Extraction:
        if (self.path is None) == (self.regex is None):
            raise ValueError("an extraction needs exactly one of `path` or `regex`")
        if self.path is not None and not self.path.startswith("$"):
            raise ValueError("`path` starts at the document root: `$.a.b[0]`")
        if self.regex is not None:
            import re

            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self
