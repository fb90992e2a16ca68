"""Routes without the admin token: health, readiness, status page, badges, metrics."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from watchkeeper.engine.api import auth, check_rows, views
from watchkeeper.engine.api.admin import deny
from watchkeeper.engine.api.health import Encoded, encode_object
from watchkeeper.engine.api.responses import error, json_response
from watchkeeper.engine.api.status_page import View, badge_status, badge_svg


def daemon_of(request: Request) -> Any:
    return request.app.state.daemon


async def health(request: Request) -> Response:
    """200 while the daemon runs and its store takes writes, 503 otherwise.

    The checks are listed as they were at most `health.FRESH` seconds ago (health.py);
    the rest is read now.
    """
    daemon = daemon_of(request)
    checks = request.app.state.health
    overall, listed = await checks.fresh()
    store = views.store_state(daemon)
    stopping = daemon.stopping.is_set()
    healthy = store["state"] == "ok" and not stopping
    body = {
        "status": ("stopping" if stopping else "unhealthy") if not healthy else overall,
        "version": views.version(),
        "checks": Encoded(listed),
        "daemon": views.resources(daemon),
        "store": {
            "type": store["type"],
            "state": store["state"],
            "pending_writes": store["pending_writes"],
        },
        "outbox": {"depth": views.outbox_state(daemon)["depth"]},
        # a refused or rolled-back reload leaves the daemon healthy on its previous config,
        # but someone should know; the problems themselves are for the admin API
        "last_reload": outcome() if (outcome := getattr(daemon, "reload_outcome", None)) else None,
    }
    checks.read()
    return Response(
        encode_object(body),
        200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
        media_type="application/json",
    )


async def ready(request: Request) -> Response:
    """200 once the configuration is loaded and the store reachable."""
    daemon = daemon_of(request)
    is_ready = daemon.ready.is_set() and not daemon.writer.degraded and not daemon.stopping.is_set()
    return json_response(
        {"ready": is_ready}, 200 if is_ready else 503, headers={"Cache-Control": "no-store"}
    )


def _allowed(request: Request, mode: str, *, query: bool) -> Response | None:
    """Return the refusal for a `public | token | off` route, or None to go on."""
    if mode == "off":
        return error(404, "not found")
    if mode == "token" and not auth.is_admin(request, daemon_of(request), query=query):
        return deny(request)
    return None


def _page_view(request: Request) -> Response | View:
    """Return the refusal for a status page request, or how its reader sees the pages."""
    daemon = daemon_of(request)
    refused = _allowed(request, daemon.config.server.status_page, query=True)
    if refused is not None:
        return refused
    detailed = auth.is_admin(request, daemon, query=True)
    if not detailed and auth.presented(request, query=True) is not None:
        # a wrong token is refused like anywhere else (counted, then 429), so the page
        # cannot be used to guess the admin token by whether incidents show
        return deny(request)
    token = request.query_params.get("token") if detailed and not auth.bearer(request) else None
    return View.of(request.query_params, detailed=detailed, token=token)


async def status_page(request: Request) -> Response:
    view = _page_view(request)
    if isinstance(view, Response):
        return view
    html = await request.app.state.page.render(view=view)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def check_page(request: Request) -> Response:
    """One check's page: response-time chart, daily uptime, results, incidents, windows."""
    from watchkeeper.engine.api.check_page import render_check

    view = _page_view(request)
    if isinstance(view, Response):
        return view
    found, html = await render_check(
        request.app.state.page, request.path_params["check"], view, request.query_params
    )
    return HTMLResponse(html, 200 if found else 404, headers={"Cache-Control": "no-store"})


async def badge(request: Request) -> Response:
    """The status of one check as the status page shows it now, read from that check's
    instances alone (check_rows.py): a badge polled at 10,000 checks costs little."""
    daemon = daemon_of(request)
    refused = _allowed(request, daemon.config.server.status_page, query=True)
    if refused is not None:
        return refused
    name = request.path_params["check"]
    status = badge_status(await check_rows.rows_of(daemon, name), name)
    if status is None:
        return Response(
            badge_svg(name, "not found"),
            404,
            media_type="image/svg+xml",
            headers={"Cache-Control": "no-store"},
        )
    return Response(
        badge_svg(name, status),
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-cache, max-age=0"},
    )


async def metrics(request: Request) -> Response:
    from watchkeeper.engine.api.metrics import CONTENT_TYPE

    daemon = daemon_of(request)
    refused = _allowed(request, daemon.config.server.metrics, query=False)
    if refused is not None:
        return refused
    body, headers = await request.app.state.metrics.response(
        request.headers.get("accept-encoding", "")
    )
    return Response(body, media_type=CONTENT_TYPE, headers=headers)


async def openapi(request: Request) -> Response:
    from watchkeeper.engine.api.openapi import document

    return json_response(document())
