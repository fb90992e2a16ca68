"""The `http` action: call a URL (a deploy hook, an orchestrator's API) to heal something."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from watchkeeper.engine.alerting.action import Action, ActionContext, ActionResult
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.plugins.notifiers.delivery import ReceiverError, secret_parts, send_http, snippet
from watchkeeper.schema.alerting import ActionOptions
from watchkeeper.schema.base import Secret
from watchkeeper.schema.units import format_duration


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

    async def run(self, options: HttpActionOptions, ctx: ActionContext) -> ActionResult:
        start = time.perf_counter()
        headers = dict(options.headers)
        alert_id = getattr(ctx.alert, "id", None)
        if alert_id:
            headers.setdefault("X-Watchkeeper-Alert", alert_id)
        url = options.url.get_secret_value()
        secrets = [*secret_parts(url), *options.headers.values()]
        try:
            response = await send_http(
                f"{options.method} to `{ctx.name}`",
                options.method,
                url,
                content=options.body.encode() if options.body is not None else None,
                headers=headers,
                timeout=ctx.timeout,
                secrets=secrets,
            )
        except ReceiverError as exc:
            return ActionResult(ok=False, message=str(exc), duration=time.perf_counter() - start)
        duration = time.perf_counter() - start
        message = f"HTTP {response.status_code} in {format_duration(duration)}"
        said = snippet(response.text, secrets)
        return ActionResult(
            ok=True, message=f"{message}: {said}" if said else message, duration=duration
        )


@hookimpl
def watchkeeper_actions():
    return [HttpAction]
