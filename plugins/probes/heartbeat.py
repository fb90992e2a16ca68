"""The `heartbeat` probe: passive; something must report in on schedule."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe
from watchkeeper.schema.base import ConfigModel, Secret, empty_dict
from watchkeeper.schema.checks import Extraction, ProbeOptions
from watchkeeper.schema.daemon import check_ping_secret
from watchkeeper.schema.schedule import CronExpr, TimezoneName
from watchkeeper.schema.units import Duration


class Expectation(ConfigModel):
    """How often beats are due: `{every: 1h}` or `{cron: "0 2 * * *"}`."""

    every: Duration | None = Field(None, description="A beat is due this often.")
    cron: CronExpr | None = Field(None, description="A beat is due at these times.")
    timezone: TimezoneName | None = Field(None, description="Timezone of `cron`.")

    @model_validator(mode="after")
    def _one_kind(self) -> Expectation:
        if (self.every is None) == (self.cron is None):
            raise ValueError("expect_every needs exactly one of `every` or `cron`")
        return self


class HeartbeatOptions(ProbeOptions):
    """Alert when no `ok` beat arrives by the next due time plus grace."""

    expect_every: Expectation = Field(description="When beats are due.")
    grace: Duration = Field(300.0, description="How late a beat may be.")
    max_runtime: Duration | None = Field(
        None, description="After a `start` beat, `ok` must follow within this."
    )
    token: Secret | None = Field(
        None, description="Token accepted for this check's beats besides the admin token."
    )
    extract: dict[str, Extraction] = Field(
        default_factory=empty_dict,
        description="Metrics read from the beat's body, besides its `metrics`.",
    )
    ping_id: Secret | None = Field(
        None,
        description="This check's own ping URL, `/ping/{ping_id}`, healthchecks.io style: "
        "a secret (16-128 of A-Z a-z 0-9 _ -, a UUID will do) that can be handed to the "
        "job without the project's `server.ping_key`.",
    )

    @field_validator("ping_id")
    @classmethod
    def _ping_id(cls, value: Secret | None) -> Secret | None:
        return check_ping_secret(value, "ping_id")


class HeartbeatProbe(Probe):
    """Passive: something must report in on schedule; judged by the engine."""

    type = "heartbeat"
    Options = HeartbeatOptions
    passive = True
    metrics = (
        Metric("runtime", "duration", "from a `start` beat to its `ok` (or `fail`)"),
        # names a job posts with its beat (`{"metrics": {...}}`) are known only at run time
        Metric(
            pattern=r".+",
            kind="any",
            description='each metric posted with a beat (`{"metrics": {...}}`), '
            "in the unit the job sends",
        ),
    )


@hookimpl
def watchkeeper_probes():
    return [HeartbeatProbe]
