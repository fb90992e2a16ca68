"""The `webhook` notifier: a JSON POST of the alerts in a group."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Literal

from pydantic import Field

from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import Notifier, NotifyContext
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.plugins.notifiers.delivery import json_bytes, send_http
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret

SIGNATURE_HEADER = "X-Watchkeeper-Signature"


class WebhookOptions(NotifierOptions):
    """POST `{"status", "alerts": [...]}` with an Idempotency-Key header."""

    url: Secret = Field(description="Receiver URL.")
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    signing_secret: Secret | None = Field(
        None, description="Sign the body with HMAC-SHA256 in the X-Watchkeeper-Signature header."
    )
    verify: bool = Field(True, description="Verify the receiver's TLS certificate.")


def signature(secret: str, body: bytes) -> str:
    """Return the X-Watchkeeper-Signature value for a body: `sha256=<hex HMAC>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier(Notifier):
    type = "webhook"
    Options = WebhookOptions

    def preview(self, notice: Notice, options: WebhookOptions) -> str:
        """Return the JSON body this notice would be sent as."""
        payload = REDACTOR.redact_obj(notice.webhook_payload())
        return f"{options.method} Idempotency-Key: {notice.id}\n" + json.dumps(
            payload, indent=2, ensure_ascii=False
        )

    async def send(self, notice: Notice, options: WebhookOptions, ctx: NotifyContext) -> None:
        body = json_bytes(REDACTOR.redact_obj(notice.webhook_payload()))
        headers = {
            **options.headers,
            "Content-Type": "application/json",
            # the same on every attempt of this notice: a resend after a crash is recognisable
            "Idempotency-Key": notice.id,
        }
        secrets = [v for v in options.headers.values()]
        if options.signing_secret is not None:
            key = options.signing_secret.get_secret_value()
            headers[SIGNATURE_HEADER] = signature(key, body)
            secrets.append(key)
        await send_http(
            f"webhook `{ctx.name}`",
            options.method,
            options.url.get_secret_value(),
            content=body,
            headers=headers,
            timeout=ctx.timeout,
            verify=options.verify,
            secrets=secrets,
        )


@hookimpl
def watchkeeper_notifiers():
    return [WebhookNotifier]
