"""`POST /api/v2/alerts`: Alertmanager's v2 intake, so Prometheus can alert through us.

    # prometheus.yml
    alerting:
      alertmanagers:
        - static_configs: [{targets: ["watch.example.com:8080"]}]
          authorization: {credentials: "<server.intake_token>"}

The body is Alertmanager's `postableAlerts`: a JSON list of `{labels, annotations,
startsAt, endsAt, generatorURL}`. The answer is Alertmanager's: 200 with an empty body;
400 naming what is wrong, in which case the valid alerts of the list are still taken (as
Alertmanager does). The admin token or `server.intake_token` is accepted as a Bearer
header; posts are not audited one by one (Prometheus sends every minute): each alert's
timeline says what happened to it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.engine.api import auth
from watchkeeper.engine.api.admin import deny
from watchkeeper.engine.api.responses import BodyError, error, parse_json, read_body
from watchkeeper.engine.run.intake import IntakeFull, Posted

MAX_ALERTS = 1000
"""Alerts one post may carry (Prometheus sends at most 64)."""
MAX_PAIRS = 128
"""Labels, and annotations, one alert may carry."""
NAME_LIMIT = 256
VALUE_LIMIT = 4096
ANNOTATION_LIMIT = 16 * 1024
URL_LIMIT = 2048
LAST_INSTANT = 253402300799.0  # 9999-12-31T23:59:59Z
REPORTED = 5
"""Problems named in a 400 answer; the count says how many more."""


def accepts(request: Request, daemon: Any) -> bool:
    """True when the request carries the admin token or the intake token."""
    token = auth.bearer(request)
    intake = auth.secret_value(daemon.config.server.intake_token)
    # both compared whatever the first says: a wrong token costs the same either way
    as_admin = auth.same(token, auth.admin_token(daemon))
    as_intake = auth.same(token, intake)
    return as_admin or as_intake


def _clean(text: str, allowed: str = "") -> bool:
    """True when a text holds no control characters (but `allowed`) and no lone surrogates."""
    return not any((ord(c) < 32 and c not in allowed) or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def _pairs(
    value: Any, name: str, limit: int, *, required: bool, allowed: str = ""
) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"`{name}` must be an object of strings")
    if len(value) > MAX_PAIRS:
        raise ValueError(f"`{name}` has more than {MAX_PAIRS} entries")
    pairs = {}
    for key, text in value.items():
        if not key or len(key) > NAME_LIMIT or not _clean(key):
            raise ValueError(f"`{name}` has an invalid name {key[:60]!r}")
        if not isinstance(text, str):
            raise ValueError(f"`{name}.{key[:60]}` must be a string")
        if len(text) > limit or not _clean(text, allowed):
            raise ValueError(f"`{name}.{key[:60]}` is too long or holds control characters")
        if text:  # an empty value is no label at all, as in Prometheus
            pairs[key] = text
    if required and not pairs:
        raise ValueError("`labels` must hold at least one label")
    return pairs


def _instant(value: Any, name: str) -> float | None:
    """Read an RFC 3339 time; None when absent or Go's zero time (`0001-01-01T00:00:00Z`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"`{name}` must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError(value)
        if parsed.year <= 1:
            return None
        at = parsed.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(f"`{name}` must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z") from None
    if not (math.isfinite(at) and 0 <= at <= LAST_INSTANT):
        raise ValueError(f"`{name}` must fall between 1970 and 9999")
    return at


def read_alert(item: Any) -> Posted:
    """Return one `postableAlert`; ValueError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise ValueError("each alert must be an object")
    labels = _pairs(item.get("labels"), "labels", VALUE_LIMIT, required=True)
    annotations = _pairs(
        item.get("annotations"), "annotations", ANNOTATION_LIMIT, required=False, allowed="\n\r\t"
    )
    starts = _instant(item.get("startsAt"), "startsAt")
    ends = _instant(item.get("endsAt"), "endsAt")
    if starts is not None and ends is not None and ends < starts:
        raise ValueError("`endsAt` is before `startsAt`")
    url = item.get("generatorURL")
    if url is not None and not isinstance(url, str):
        raise ValueError("`generatorURL` must be a string")
    # linked in notices and on the status page: only a web address, never `javascript:`
    if url is not None and not (url.startswith(("http://", "https://")) and len(url) <= URL_LIMIT
                                and _clean(url)):  # fmt: skip
        url = None
    return Posted(labels, annotations, starts, ends, url or None)


def read_alerts(document: Any) -> tuple[list[Posted], list[str]]:
    """Return the valid alerts of a post and what is wrong with the others; BodyError(400)
    when the body is not a list of alerts at all."""
    if not isinstance(document, list):
        raise BodyError(400, "the body must be a JSON list of alerts (Alertmanager's v2 API)")
    if len(document) > MAX_ALERTS:
        raise BodyError(400, f"at most {MAX_ALERTS} alerts a post")
    posted, problems = [], []
    for index, item in enumerate(document):
        try:
            posted.append(read_alert(item))
        except ValueError as exc:
            problems.append(f"alert {index}: {exc}")
    return posted, problems


async def post_alerts(request: Request) -> Response:
    """Take a list of alerts as Alertmanager's `POST /api/v2/alerts` does."""
    daemon = request.app.state.daemon
    if not accepts(request, daemon):
        return deny(request)
    try:
        posted, problems = read_alerts(parse_json(await read_body(request)))
    except BodyError as exc:
        return error(exc.status, exc.message)
    try:
        await daemon.intake.receive(posted)
    except IntakeFull as exc:
        return error(429, str(exc))
    if problems:
        more = len(problems) - REPORTED
        text = "; ".join(problems[:REPORTED]) + (f"; and {more} more" if more > 0 else "")
        return error(400, text)
    return Response(status_code=200)  # Alertmanager answers with an empty body
