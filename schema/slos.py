"""Service level objectives evaluated from the results history."""

from __future__ import annotations

from pydantic import Field, model_validator

from watchkeeper.schema.base import ConfigModel
from watchkeeper.schema.units import Duration, Quantity, Ratio


class BurnAlert(ConfigModel):
    """Alert when the error budget burns fast (Google SRE workbook multiwindow rules)."""

    severity: str = Field("high", description="Severity of the burn-rate alert.")
    fast: float = Field(14.4, gt=0, description="Burn rate over 1h (and 5m) that alerts.")
    slow: float = Field(6.0, gt=0, description="Burn rate over 6h (and 30m) that alerts.")


class SLO(ConfigModel):
    """An objective for one check: availability, or a metric staying below/above a limit."""

    check: str = Field(description="Check (or `check@environment`) the SLO is about.")
    objective: Ratio = Field(description="Share of good results, e.g. 99.9%.")
    window: Duration = Field(30 * 86400.0, description="Rolling window, e.g. 30d.")
    metric: str | None = Field(
        None, description="Metric for a latency/threshold SLO; none = availability."
    )
    below: Quantity | None = Field(
        None, description="A result is good when the metric is below this."
    )
    above: Quantity | None = Field(
        None, description="A result is good when the metric is above this."
    )
    alert: BurnAlert | None = Field(None, description="Burn-rate alerts through the routes.")
    description: str | None = Field(None, description="Shown in reports.")

    @model_validator(mode="after")
    def _shape(self) -> SLO:
        if self.metric is None and (self.below is not None or self.above is not None):
            raise ValueError("`below`/`above` need a `metric`")
        if self.metric is not None and (self.below is None) == (self.above is None):
            raise ValueError("a metric SLO needs exactly one of `below` or `above`")
        if self.objective >= 1.0:
            raise ValueError("an objective of 100% leaves no error budget; use e.g. 99.9%")
        return self
