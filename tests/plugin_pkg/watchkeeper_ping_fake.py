"""A third-party plugin for the tests: a `ping_fake` probe and a `pager_fake` notifier."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.alerting.notifier import Notifier
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, Result
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Duration


class PingFakeOptions(ProbeOptions):
    """Pretend to ping a host."""

    host: str = Field(description="Host to ping.")
    count: int = Field(3, ge=1, description="Echo requests per run.")
    interval: Duration = Field(1.0, description="Time between echo requests.")


class PingFakeProbe(Probe):
    """Pretend to ping a host."""

    type = "ping_fake"
    Options = PingFakeOptions
    metrics = (
        Metric("rtt", "duration", "round-trip time"),
        Metric("packet_loss", "ratio", "share of echo requests unanswered"),
    )

    async def check(self, options: PingFakeOptions, ctx) -> Result:
        return Result(ok=True, metrics={"rtt": 0.001, "packet_loss": 0.0})


class PagerFakeOptions(NotifierOptions):
    """Page someone through a pretend service."""

    api_token: Secret = Field(description="API token of the pretend service.")
    team: str = Field("ops", description="Team paged.")


class PagerFakeNotifier(Notifier):
    type = "pager_fake"
    Options = PagerFakeOptions


@hookimpl
def watchkeeper_probes():
    return [PingFakeProbe]


@hookimpl
def watchkeeper_notifiers():
    return [PagerFakeNotifier]
