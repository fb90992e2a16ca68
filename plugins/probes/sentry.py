"""The `sentry` probe: new unresolved issues and event counts from Sentry's web API."""

from __future__ import annotations

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import Probe
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Duration


class SentryOptions(ProbeOptions):
    """Ask Sentry for new unresolved issues and error counts of a project."""

    organization: str = Field(description="Organisation slug.")
    project: str = Field(description="Project slug.")
    auth_token: Secret = Field(description="Sentry auth token with project:read.")
    api_url: str = Field(
        "https://sentry.io/api/0/",
        description="API base URL (self-hosted Sentry: https://sentry.example.com/api/0/).",
    )
    environment: str | None = Field(None, description="Only this Sentry environment.")
    window: Duration = Field(86400.0, description="New issues first seen within this window.")
    query: str = Field("is:unresolved", description="Issue search query.")


class SentryProbe(Probe):
    """Metrics: new_issues, events (in the window)."""

    type = "sentry"
    Options = SentryOptions


@hookimpl
def watchkeeper_probes():
    return [SentryProbe]
