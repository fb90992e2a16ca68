"""The daemon's HTTP application: routes, security headers, errors, access log.

Every response carries X-Frame-Options: DENY, X-Content-Type-Options: nosniff and
Referrer-Policy: origin-when-cross-origin (the seed's security headers); HTML and SVG
also carry a Content-Security-Policy that allows no script at all. The access log never
shows a query string, so a `?token=` stays out of it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchkeeper.engine.api import admin, heartbeat, intake, integrations, ping, public
from watchkeeper.engine.api.auth import FailureLimiter, Refusals
from watchkeeper.engine.api.health import HealthChecks
from watchkeeper.engine.api.metrics import Metrics
from watchkeeper.engine.api.responses import error
from watchkeeper.engine.api.status_page import StatusPage

log = logging.getLogger("watchkeeper.api")
access_log = logging.getLogger("watchkeeper.api.access")

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"origin-when-cross-origin"),
]
CSP = (
    b"default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'"
)


class Guard:
    """Outermost layer: security headers on every response, a JSON 500 for any failure,
    one access-log line per request; `Connection: close` on an answer given before the
    request's body was read (a refusal, a 413), so the unread rest never starts the next
    request on a kept-alive connection."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        read = {"all": not _has_body(scope)}

        async def receive_tracked() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                read["all"] = True
            return message

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                headers += SECURITY_HEADERS
                if not read["all"]:
                    headers.append((b"connection", b"close"))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith((b"text/html", b"image/svg")):
                    headers.append((b"content-security-policy", CSP))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive_tracked, send_secured)
        except Exception:
            log.exception(
                "API request failed",
                extra={"method": scope.get("method"), "path": scope.get("path")},
            )
            if not status["sent"]:
                response = error(500, "internal error")
                await response(scope, receive, send_secured)
        finally:
            client = scope.get("client")
            access_log.debug(
                "http request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),  # never the query string: it may hold a token
                    "status": status["code"],
                    "client": client[0] if client else None,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


_OURS = {k for k, _ in SECURITY_HEADERS} | {b"content-security-policy", b"connection"}


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "not found", 405: "method not allowed"}
    response = error(exc.status_code, messages.get(exc.status_code, "request refused"))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def routes() -> list[Any]:
    return [
        Route("/", public.status_page, methods=["GET"]),
        Route("/health", public.health, methods=["GET"]),
        Route("/api/health", public.health, methods=["GET"]),  # the seed's name for it
        Route("/ready", public.ready, methods=["GET"]),
        Route("/metrics", public.metrics, methods=["GET"]),
        Route("/badge/{check}.svg", public.badge, methods=["GET"]),
        Route("/checks/{check}", public.check_page, methods=["GET"]),
        Route("/openapi.json", public.openapi, methods=["GET"]),
        Route("/api/status", admin.status, methods=["GET"]),
        Route("/api/admin/monitoring", admin.status, methods=["GET"]),  # the seed's name
        Route("/api/alerts", admin.alerts, methods=["GET"]),
        Route("/api/alerts/silences", admin.silences, methods=["GET"]),
        Route("/api/alerts/silences", admin.silence, methods=["POST"]),
        Route("/api/alerts/silences/{silence_id}", admin.expire, methods=["DELETE"]),
        Route("/api/alerts/{alert_id}/ack", admin.ack, methods=["POST"]),
        Route("/api/heartbeat/{check}", heartbeat.heartbeat, methods=["POST"]),
        Route("/api/heartbeat/{check}/{signal}", heartbeat.heartbeat, methods=["POST"]),
        Route("/ping/{rest:path}", ping.ping, methods=["GET", "HEAD", "POST"]),
        Route("/api/events", admin.event, methods=["POST"]),
        Route("/api/v2/alerts", intake.post_alerts, methods=["POST"]),  # Alertmanager's intake
        Route("/api/reload", admin.reload, methods=["POST"]),
        Route("/api/audit", admin.audit_log, methods=["GET"]),
        Route("/api/integrations/slack/actions", integrations.slack_actions, methods=["POST"]),
        Route("/api/integrations/pagerduty", integrations.pagerduty, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


SWEEP_EVERY = 5.0
"""How often the window of refused calls is checked for its end when no call comes."""


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """While serving, end each window of refused calls on time and keep /health's check
    list fresh; at the end, write the last window."""

    async def sweep() -> None:
        while True:
            await anyio.sleep(SWEEP_EVERY)
            if app.state.refusals.due(time.monotonic()):
                admin.write_refusals(app.state)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sweep, name="refused calls")
        tg.start_soon(app.state.health.renew, name="health check list")
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
            admin.write_refusals(app.state)  # the daemon flushes its writer after the server


def create_app(daemon: Any) -> Starlette:
    """Return the ASGI application serving one daemon (call `app.state.metrics.attach()`
    to start counting results; `serve_http` does)."""
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(Guard)],
        exception_handlers={HTTPException: _http_error},
        lifespan=_lifespan,
    )
    refusals = Refusals()
    app.state.daemon = daemon
    app.state.refusals = refusals
    app.state.limiter = FailureLimiter()
    app.state.health = HealthChecks(daemon)
    app.state.metrics = Metrics(daemon, refusals=refusals)
    app.state.page = StatusPage(daemon)
    app.state.told_closed = False
    return app
