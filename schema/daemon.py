"""The daemon itself: its state store, HTTP server and Sentry reporting."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from watchkeeper.schema.base import ConfigModel, PluginOptions, Secret
from watchkeeper.schema.units import Duration, Ratio

PING_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
"""What a ping key or ping id looks like: long enough not to be guessed, safe in a URL."""
MIN_RETENTION = 2 * 86400.0
"""The shortest `state.retention`: a day's raw results outlive the making of its rollup."""


def check_ping_secret(value: Secret | None, name: str) -> Secret | None:
    """Refuse a ping key or ping id too short to stay secret; '' (an unset variable) and
    a `${env.…}` reference (resolved per instance) pass."""
    text = value.get_secret_value() if value is not None else ""
    if text and "${env." not in text and not PING_SECRET.match(text):
        # the value itself is never quoted: it is a secret, even when malformed
        raise ValueError(
            f"{name} must be 16-128 letters, digits, `_` or `-` (a UUID will do: uuidgen)"
        )
    return value


class StoreOptions(PluginOptions):
    """Keys every state store has besides its type's own."""

    plugin_kind = "state store"

    retention: Duration = Field(
        30 * 86400.0,
        description="Raw results are kept this long (at least 2d: a day's rollup is made "
        "from them once the day is over).",
    )
    rollup_retention: Duration = Field(
        400 * 86400.0, description="Daily rollups (uptime bars, reports) are kept this long."
    )

    @field_validator("retention")
    @classmethod
    def _outlives_a_day(cls, value: float) -> float:
        # shorter, and a day's raw results could be pruned before its rollup is made: its
        # uptime and SLO figures would be lost for good
        if value < MIN_RETENTION:
            raise ValueError(
                "must be at least 2d: each day's rollup (uptime, reports, SLOs) is made from "
                "its raw results after the day is over"
            )
        return value

    lease_time: Duration = Field(
        15.0,
        description="Replica membership lease; a dead replica's "
        "checks move to the others within this time.",
    )


class Server(ConfigModel):
    """The daemon's HTTP API, status page and metrics."""

    listen: str = Field(
        "127.0.0.1:8080", description="host:port to listen on; default loopback only."
    )
    admin_token: Secret | None = Field(
        None, description="Bearer token for /api/*; empty closes the admin API."
    )
    ping_key: Secret | None = Field(
        None,
        description="Project key of the healthchecks.io-style `/ping/{ping_key}/{check}` "
        "URLs (16-128 of A-Z a-z 0-9 _ -); unset or empty answers 404 to them.",
    )
    intake_token: Secret | None = Field(
        None,
        description="Bearer token for `POST /api/v2/alerts`, Alertmanager's v2 intake "
        "(Prometheus sends it as `authorization.credentials`); the admin token works too.",
    )
    intake_severity: str = Field(
        "high",
        description="Severity of a posted alert whose `severity` label names none of "
        "`severities` (or that has none).",
    )
    intake_resolve_timeout: Duration = Field(
        300.0,
        description="A posted alert without `endsAt` resolves when it is not sent again "
        "for this long (Alertmanager's `resolve_timeout`).",
    )
    status_page: Literal["public", "token", "off"] = Field(
        "public", description="Who may see `/` and the badges."
    )
    metrics: Literal["public", "token", "off"] = Field(
        "public", description="Who may scrape `/metrics`."
    )
    metrics_per_check: Literal["basic", "full"] = Field(
        "basic",
        description="Series `/metrics` shows per check instance: `basic` is up, state and "
        "the latest run's duration; `full` adds a duration histogram and results by outcome "
        "(about 9x the bytes). Histograms over all checks are there either way.",
    )
    title: str = Field("Status", description="Status page title.")
    group_by: str = Field(
        "environment",
        pattern=r"^(environment|label:[A-Za-z0-9_.-]+)$",
        description="How the status page groups checks: `environment`, or "
        "`label:<name>` for a label's values.",
    )
    enabled: bool = Field(True, description="false runs the daemon without HTTP.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {value!r}")
        return value

    @field_validator("ping_key")
    @classmethod
    def _ping_key(cls, value: Secret | None) -> Secret | None:
        return check_ping_secret(value, "ping_key")

    @field_validator("intake_resolve_timeout")
    @classmethod
    def _resolve_timeout(cls, value: float) -> float:
        if not 1.0 <= value <= 366 * 86400.0:
            raise ValueError("must be between 1s and 366d")
        return value


class Sentry(ConfigModel):
    """Report the daemon's own errors, and a check-in so Sentry notices when it stops."""

    dsn: Secret | None = Field(None, description="Sentry DSN; empty = off.")
    environment: str | None = Field(None, description="Sentry environment tag.")
    release: str | None = Field(None, description="Release tag (default: the watchkeeper version).")
    traces_sample_rate: Ratio = Field(0.0, description="Share of operations traced.")
    sample_rate: Ratio = Field(1.0, description="Share of errors sent.")
    monitor_slug: str | None = Field(
        "watchkeeper-daemon",
        description="Sentry Crons monitor the daemon checks in to; null = no check-ins.",
    )
    checkin_interval: Duration = Field(300.0, description="How often the daemon checks in.")


class Engine(ConfigModel):
    """How the daemon runs checks: worker processes and concurrency."""

    workers: int | Literal["auto"] = Field(
        "auto",
        description="Worker processes running "
        "probes (0 = in the daemon's own process); a probe "
        "that blocks only ever stalls its own worker, which "
        "is replaced. auto: one, plus one per 1,500 runs a "
        "second, at most one per CPU beyond the first and 4; "
        "at least 2 when a probe from a third-party plugin is "
        "used, so one that blocks cannot hold up the others.",
    )
    concurrency: int = Field(256, ge=1, description="Most checks running at once.")
    shutdown_grace: Duration = Field(
        10.0, description="On SIGTERM, let running checks finish this long before cancelling them."
    )
