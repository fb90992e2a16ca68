"""The `http` action: call a URL (a deploy hook, an orchestrator's API) to heal something."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.action import Action
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.alerting import ActionOptions
from watchkeeper.schema.base import Secret


class HttpActionOptions(ActionOptions):
    """Send an HTTP request; a 2xx answer is success."""

    url: Secret = Field(description="URL to call (may hold a token).")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "POST", description="HTTP method."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    body: str | None = Field(None, description="Request body.")


class HttpAction(Action):
    type = "http"
    Options = HttpActionOptions


@hookimpl
def watchkeeper_actions():
    return [HttpAction]
