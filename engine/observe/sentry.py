"""The daemon's own errors in Sentry, and a dead-man's switch through Sentry Crons.

`init_sentry(config)` starts the SDK from `sentry:` when a DSN is set: error events from
the daemon's log (error level and up) and, at `traces_sample_rate`, API request traces.
Nothing leaves unscrubbed: `include_local_variables` is off, no PII is sent, and every
event, transaction and breadcrumb passes `scrub` — secrets masked by value, credentials in
headers and URLs, DSNs and e-mail addresses removed. `sentry_checkins` checks in to a
Crons monitor every `checkin_interval`, with a monitor config telling Sentry that
schedule, so Sentry raises an issue when the check-ins stop: when the daemon stops.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from typing import Any

import anyio

from watchkeeper.engine.observe.redaction import REDACTOR

log = logging.getLogger("watchkeeper.sentry")

FILTERED = "[Filtered]"
SENSITIVE_KEY = re.compile(
    r"authorization|cookie|token|passw|secret|api[_-]?key|dsn|sentry[_-]auth|credential",
    re.IGNORECASE,
)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
QUERY_SECRET = re.compile(
    r"([?&](?:token|access_token|api_key|apikey|key|password|secret|sig|signature)=)[^&#\s]*",
    re.IGNORECASE,
)


def scrub_text(text: str) -> str:
    """Mask secrets by value, then credentials by shape (URLs, Bearer, e-mail addresses)."""
    text = REDACTOR.redact(text)
    text = URL_USERINFO.sub(lambda m: m.group(1) + FILTERED + "@", text)
    text = BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
    text = QUERY_SECRET.sub(lambda m: m.group(1) + FILTERED, text)
    return EMAIL.sub("[email]", text)


def _scrub(value: Any, key: str | None = None) -> Any:
    if key is not None and SENSITIVE_KEY.search(key) and value not in (None, "", [], {}):
        return FILTERED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # headers arrive as [[name, value], ...] pairs
        if len(value) == 2 and isinstance(value[0], str) and SENSITIVE_KEY.search(value[0]):
            return [value[0], FILTERED]
        return [_scrub(v) for v in value]
    return value


# keys Sentry's protocol gives a meaning of its own: scrubbed as text, never blanked
_PROTOCOL_KEYS = {
    "release",
    "environment",
    "event_id",
    "platform",
    "level",
    "sdk",
    "type",
    "monitor_slug",
    "check_in_id",
    "status",
    "timestamp",
    "start_timestamp",
}


def scrub(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """Return an event (or transaction) with secrets and PII removed; Sentry's before_send."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("query_string", None)
        request.pop("cookies", None)
        request.pop("data", None)
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {k: v for k, v in user.items() if k == "id"}
    clean: dict[str, Any] = {}
    for key, value in event.items():
        if key in _PROTOCOL_KEYS:
            clean[key] = scrub_text(value) if isinstance(value, str) else value
        else:
            clean[key] = _scrub(value, key)
    return clean


def scrub_breadcrumb(crumb: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """Return a breadcrumb with secrets and PII removed; Sentry's before_breadcrumb."""
    return _scrub(crumb)


def release(options: Any) -> str:
    """Return the release tag: `sentry.release`, else `watchkeeper@<package version>`."""
    if options.release:
        return options.release
    from watchkeeper.engine.observe.version import version

    return f"watchkeeper@{version()}"


def init_sentry(config: Any) -> bool:
    """Start the Sentry SDK from `sentry:`; return False (doing nothing) without a DSN."""
    from watchkeeper.engine.observe.redaction import secret_value

    options = config.sentry
    dsn = secret_value(options.dsn)
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    integrations: list[Any] = [LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)]
    try:
        from sentry_sdk.integrations.starlette import StarletteIntegration

        integrations.append(StarletteIntegration())
    except Exception:  # pragma: no cover - an SDK without it
        pass
    sentry_sdk.init(
        dsn=dsn,
        release=release(options),
        environment=options.environment,
        sample_rate=options.sample_rate,
        traces_sample_rate=options.traces_sample_rate,
        include_local_variables=False,
        include_source_context=False,
        send_default_pii=False,
        max_request_body_size="never",
        before_send=scrub,
        before_send_transaction=scrub,
        before_breadcrumb=scrub_breadcrumb,
        auto_enabling_integrations=False,
        integrations=integrations,
    )
    log.info(
        "Sentry reporting on",
        extra={"environment": options.environment, "release": release(options)},
    )
    return True


def monitor_config(options: Any) -> dict[str, Any]:
    """Return the Crons monitor config: the check-in interval and a margin of as much."""
    minutes = max(1, math.ceil(options.checkin_interval / 60.0))
    return {
        "schedule": {"type": "interval", "value": minutes, "unit": "minute"},
        "checkin_margin": minutes,
        "failure_issue_threshold": 1,
        "recovery_threshold": 1,
        "timezone": "UTC",
    }


def _active() -> bool:
    # no client can be active before the SDK is imported (init_sentry imports it, given a
    # DSN), and importing it only to ask costs the daemon some 9 MB
    sentry_sdk = sys.modules.get("sentry_sdk")
    return sentry_sdk is not None and sentry_sdk.get_client().is_active()


async def sentry_checkins(daemon: Any, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
    """Check in to the Crons monitor every `checkin_interval` while the daemon runs.

    `ok` while the daemon's store takes writes, `error` while it does not; none at all
    once it stops, which is what makes Sentry alert.
    """
    task_status.started()
    if not _active():
        return
    from sentry_sdk.crons import capture_checkin

    try:
        while True:
            options = daemon.config.sentry
            if options.monitor_slug:
                capture_checkin(
                    monitor_slug=options.monitor_slug,
                    status="error" if daemon.writer.degraded else "ok",
                    monitor_config=monitor_config(options),
                )
            await anyio.sleep(options.checkin_interval)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(3):
            import sentry_sdk

            await anyio.to_thread.run_sync(lambda: sentry_sdk.flush(timeout=2))
