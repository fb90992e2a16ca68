"""The admin API: everything behind `server.admin_token`, each call in the audit log."""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.engine.api import auth, views
from watchkeeper.engine.api.responses import BodyError, error, json_body, json_response
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.engine.state import audit

log = logging.getLogger("watchkeeper.api")

Handler = Callable[[Request], Awaitable[Response]]
EVENT_VALUE = str | int | float | bool | None


def daemon_of(request: Request) -> Any:
    return request.app.state.daemon


def unauthorized() -> Response:
    """401 with no detail, whatever was wrong (no token, a wrong one, a closed API)."""
    return json_response({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})


def deny(request: Request) -> Response:
    """Refuse a call: 401, or 429 once its source has failed too often (docs/api.md ►
    Limits). Refusals are counted per source and minute for the audit log, not one by one."""
    state = request.app.state
    daemon = daemon_of(request)
    source = auth.source_of(auth.client(request))
    now = time.monotonic()
    wait = state.limiter.take(source, now)
    status = 429 if wait else 401
    if state.refusals.due(now):
        write_refusals(state)
    state.refusals.count(source, request.url.path, status, time.time(), now)
    if not auth.admin_token(daemon) and not state.told_closed:
        state.told_closed = True
        log.warning("admin API call refused: server.admin_token is not set, so it is closed")
    if wait:
        return json_response(
            {"error": "too many refused calls; retry later"},
            429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return unauthorized()


def write_refusals(state: Any) -> int:
    """End the window of refused calls (`app.state`'s): one `denied` audit row per source;
    return how many."""
    rows = state.refusals.close()
    for by, details in rows:
        audit.record(state.daemon.writer, by, "denied", details)
    return len(rows)


def admin(handler: Handler) -> Handler:
    """Let a handler run only with the admin token; audit the call."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        daemon = daemon_of(request)
        if not auth.is_admin(request, daemon):
            return deny(request)
        request.state.audited = False
        try:
            response = await handler(request)
        except BodyError as exc:
            response = error(exc.status, exc.message)
        if not request.state.audited:
            audit.record(
                daemon.writer,
                auth.who(request),
                "api",
                {
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                },
            )
        return response

    return guarded


def audited(request: Request, action: str, details: dict[str, Any], by: Any = None) -> None:
    """Write a specific audit entry for this call (instead of the generic one)."""
    audit.record(
        daemon_of(request).writer,
        auth.who(request, by),
        action,
        {"path": request.url.path, **details},
    )
    request.state.audited = True


# -- reading -------------------------------------------------------------------------------


@admin
async def status(request: Request) -> Response:
    return json_response(await views.status(daemon_of(request)))


@admin
async def alerts(request: Request) -> Response:
    from watchkeeper.engine.alerting.alerts import Alert

    daemon = daemon_of(request)
    which = request.query_params.get("status", "open")
    if which not in ("open", "all"):
        return error(400, "status must be open or all")
    limit = _int_param(request, "limit", 500, 1, 10_000)
    if which == "open":
        found = views.open_alerts(daemon)
    else:
        known = dict(daemon.runtime.book.by_id)
        try:
            for key, doc in (await daemon.store.get_all("alerts")).items():
                known.setdefault(key, Alert.from_doc(doc))
        except Exception as exc:
            return error(503, f"state store: {exc}")
        found = sorted(known.values(), key=lambda a: a.started_at, reverse=True)
    return json_response([a.public() for a in found[:limit]])


@admin
async def audit_log(request: Request) -> Response:
    daemon = daemon_of(request)
    since = _since(request, default=7 * 86400.0)
    limit = _int_param(request, "limit", 1000, 1, 100_000)
    write_refusals(request.app.state)  # what was refused so far this minute is shown now
    await daemon.writer.flush()
    try:
        entries = await audit.read(daemon.store, time.time() - since, limit=limit)
    except Exception as exc:
        return error(503, f"state store: {exc}")
    return json_response(entries)


# -- acting --------------------------------------------------------------------------------


async def acknowledge(
    daemon: Any, alert_id: str, by: str, comment: str | None = None
) -> tuple[str, Any]:
    """Acknowledge an alert as `by`, here or (its check running on another replica) through
    the store; return what happened and the alert: `acknowledged`, `requested`, `already`,
    `resolved`, or `unknown` with None. Raises when the store cannot say which alert it is.

    The admin API, Slack's buttons and PagerDuty's webhooks all acknowledge through here."""
    from watchkeeper.engine.alerting.alerts import Alert

    alert = daemon.runtime.book.by_id.get(alert_id)
    now = daemon.clock.now()
    request_doc = {"alert": alert_id, "by": by, "at": now, "comment": comment}
    if alert is None:
        doc = await daemon.store.get("alerts", alert_id)
        if doc is None:
            return "unknown", None
        alert = Alert.from_doc(doc)
        if alert.open:
            # another replica runs that check: it applies the request from the store
            await daemon.store.put("acks", {alert_id: request_doc})
            return "requested", alert
    if not alert.open:
        return "resolved", alert
    if alert.acked_at is not None:
        return "already", alert
    await daemon.alerting.acknowledge(alert_id, by, comment, now)
    try:
        await daemon.store.put("acks", {alert_id: request_doc})  # replicas and restarts
    except Exception:
        log.warning("acknowledgement not written to the store", extra={"alert": alert_id})
    return "acknowledged", alert


@admin
async def ack(request: Request) -> Response:
    daemon = daemon_of(request)
    alert_id = request.path_params["alert_id"]
    body = await json_body(request, required=False)
    given = _text(body, "by", 200)
    by = given or auth.who(request)
    comment = _text(body, "comment", 2000)
    try:
        outcome, alert = await acknowledge(daemon, alert_id, by, comment)
    except Exception as exc:
        return error(503, f"state store: {exc}")
    if outcome == "unknown":
        return error(404, "no alert with that id")
    if outcome == "resolved":
        return json_response({"status": "resolved", "alert": alert.public()}, 409)
    if outcome == "already":
        return json_response({"status": "already", "alert": alert.public()})
    if outcome == "requested":
        audited(request, "ack", {"alert": alert_id, "comment": comment}, given)
        return json_response({"status": "requested", "alert": alert.public()}, 202)
    audited(request, "ack", {"alert": alert_id, "check": alert.instance, "comment": comment}, given)
    return json_response({"status": "acknowledged", "alert": alert.public()})


@admin
async def silences(request: Request) -> Response:
    from watchkeeper.engine.alerting.silences import load_silences

    daemon = daemon_of(request)
    which = request.query_params.get("status", "active")
    if which not in ("active", "all"):
        return error(400, "status must be active or all")
    now = daemon.clock.now()
    try:
        found = await load_silences(daemon.store)
    except Exception as exc:
        return error(503, f"state store: {exc}")
    items = sorted(found.values(), key=lambda s: s.starts_at, reverse=True)
    if which == "active":
        items = [s for s in items if s.ends_at > now]
    return json_response([s.public(now) for s in items])


@admin
async def silence(request: Request) -> Response:
    from watchkeeper.engine.alerting.silences import Silence, add_silence, new_silence_id

    daemon = daemon_of(request)
    body = await json_body(request)
    now = daemon.clock.now()
    try:
        matchers = silence_matchers(body, daemon.config.severities)
        starts = _instant(body.get("starts_at"), "starts_at") if body.get("starts_at") else now
        ends = _silence_end(body, starts)
    except ValueError as exc:
        return error(422, str(exc))
    reason = _text(body, "reason", 500)
    given = _text(body, "created_by", 200) or _text(body, "by", 200)
    created_by = given or auth.who(request)
    item = Silence(
        id=new_silence_id(),
        matchers=matchers,
        starts_at=starts,
        ends_at=ends,
        created_by=created_by,
        created_at=now,
        reason=reason or "",
    )
    try:
        item.validate()
    except ValueError as exc:
        return error(422, str(exc))
    try:
        await add_silence(daemon.store, item)
    except Exception as exc:
        return error(503, f"state store: {exc}")
    daemon.alerting.silences[item.id] = item
    await daemon.alerting.rehold(now)
    fields = daemon.alerting.alert_fields
    matched = sum(1 for a in daemon.runtime.book.open.values() if item.matches(fields(a)))
    audited(
        request,
        "silence",
        {
            "silence": item.id,
            "reason": item.reason,
            "matchers": [str(m) for m in matchers],
            "ends_at": views.iso(ends),
        },
        given,
    )
    return json_response({**item.public(now), "open_alerts_matched": matched}, 201)


@admin
async def expire(request: Request) -> Response:
    from watchkeeper.engine.alerting.silences import expire_silence

    daemon = daemon_of(request)
    sid = request.path_params["silence_id"]
    body = await json_body(request, required=False)
    given = _text(body, "by", 200)
    by = given or auth.who(request)
    now = daemon.clock.now()
    try:
        item = await expire_silence(daemon.store, sid, by, now)
    except KeyError:
        return error(404, "no silence with that id")
    except Exception as exc:
        return error(503, f"state store: {exc}")
    daemon.alerting.silences[item.id] = item
    await daemon.alerting.release(now)
    audited(request, "expire", {"silence": sid}, given)
    return json_response(item.public(now))


@admin
async def event(request: Request) -> Response:
    daemon = daemon_of(request)
    body = await json_body(request)
    kind = body.get("event")
    if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", kind):
        return error(422, "`event` must name the event, e.g. deploy or rollback")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, EVENT_VALUE) for k, v in labels.items()
    ):
        return error(422, "`labels` must map names to strings")
    if any(isinstance(v, float) and not math.isfinite(v) for v in labels.values()):
        return error(422, "`labels` must map names to strings")
    for key, value in body.items():
        if key != "labels" and not isinstance(value, EVENT_VALUE):
            return error(422, f"`{key}` must be a string, number or boolean")
        if isinstance(value, float) and not math.isfinite(value):
            return error(422, f"`{key}` must be a finite number")
    told = await daemon.alerting.post_event(dict(body))
    details = {k: v for k, v in body.items() if k not in ("labels", "by")}
    audited(request, "event", {**details, "notifiers": told}, body.get("by"))
    return json_response({"event": kind, "notifiers": told})


@admin
async def reload(request: Request) -> Response:
    # read and checked by the daemon in its child process, as for SIGHUP: a hostile file
    # costs the child its time and memory limits, never this event loop
    daemon = daemon_of(request)
    before = {k: i.fingerprint for k, i in _all_instances(daemon).items()}
    old_server = daemon.config.server
    if not await daemon.reload():
        problems = [_problem(p) for p in (daemon.last_reload or {}).get("problems", ())]
        audited(request, "reload", {"ok": False, "problems": len(problems)})
        return json_response({"reloaded": False, "problems": problems}, 422)
    after = {k: i.fingerprint for k, i in _all_instances(daemon).items()}
    changes = {
        "added": sorted(k for k in after if k not in before),
        "removed": sorted(k for k in before if k not in after),
        "changed": sorted(k for k in after if k in before and before[k] != after[k]),
    }
    notes = []
    if daemon.config.server.listen != old_server.listen:
        notes.append("server.listen changed: it applies after a restart")
    audited(request, "reload", {"ok": True, **{k: len(v) for k, v in changes.items()}})
    return json_response({"reloaded": True, **changes, "notes": notes})


def _all_instances(daemon: Any) -> dict[str, Any]:
    return getattr(daemon.runtime, "all_instances", None) or daemon.runtime.instances


def _problem(problem: Any) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "path": REDACTOR.redact(problem.path),
        "level": problem.level,
        "message": REDACTOR.redact(problem.message),
    }


# -- parameters ----------------------------------------------------------------------------


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BodyError(422, f"`{key}` must be a string")
    return value.strip()[:limit] or None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BodyError(400, f"{name} must be a whole number")
    return max(low, min(high, int(raw)))


def _since(request: Request, default: float) -> float:
    from watchkeeper.schema.units import parse_duration

    raw = request.query_params.get("since")
    if raw is None:
        return default
    try:
        seconds = parse_duration(raw)
    except (ValueError, TypeError):
        seconds = -1.0
    if not seconds or seconds < 0:
        raise BodyError(400, "since must be a duration such as 7d or 12h")
    return float(seconds)


LAST_INSTANT = 253402300799.0
"""9999-12-31T23:59:59Z: the last time a silence may start or end (datetime's range)."""


def _instant(value: Any, name: str) -> float:
    """Read a time: UNIX seconds, or ISO-8601 with an offset (Z for UTC)."""
    at = None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        at = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            at = parsed.timestamp() if parsed.tzinfo is not None else None
        except (ValueError, OverflowError):
            at = None
    if at is not None:
        if not 0 <= at <= LAST_INSTANT:
            raise ValueError(f"`{name}` must fall between 1970 and 9999")
        return at
    raise ValueError(f"`{name}` must be ISO-8601 with an offset (2026-12-10T18:00:00Z)")


def _silence_end(body: dict[str, Any], starts: float) -> float:
    from watchkeeper.schema.units import parse_duration

    duration, ends_at = body.get("duration"), body.get("ends_at")
    if (duration is None) == (ends_at is None):
        raise ValueError("give one of `duration` (e.g. 2h) or `ends_at`")
    if ends_at is not None:
        return _instant(ends_at, "ends_at")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        seconds = float(duration)
    elif isinstance(duration, str):
        try:
            seconds = float(parse_duration(duration))
        except (ValueError, TypeError):
            seconds = 0.0
    else:
        seconds = 0.0
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("`duration` must be longer than 0s, e.g. 30m or 2h")
    if starts + seconds > LAST_INSTANT:
        raise ValueError("`duration` must end the silence before the year 10000")
    return starts + seconds


def _one_of(field: str, values: list[str]) -> Any:
    from watchkeeper.engine.alerting.silences import Matcher

    if len(values) == 1:
        return Matcher(field, values[0])
    return Matcher(field, "|".join(re.escape(v) for v in values), regex=True)


def _strings(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"`{name}` must be a string or a list of strings")
    return value


def silence_matchers(body: dict[str, Any], severities: list[str]) -> list[Any]:
    """Build a silence's matchers from `matchers` and/or check, environment, rule,
    severity and labels (every one given must match)."""
    from watchkeeper.engine.alerting.silences import Matcher, parse_matcher

    matchers = []
    for text in _strings(body["matchers"], "matchers") if body.get("matchers") else []:
        matchers.append(parse_matcher(text))
    if body.get("check") is not None:
        checks = _strings(body["check"], "check")
        matchers.append(_one_of("instance" if any("@" in c for c in checks) else "check", checks))
    for field in ("environment", "rule"):
        if body.get(field) is not None:
            matchers.append(_one_of(field, _strings(body[field], field)))
    if body.get("severity") is not None:
        chosen = _strings(body["severity"], "severity")
        unknown = [s for s in chosen if s not in severities]
        if unknown:
            raise ValueError(f"unknown severity {unknown[0]!r}; known: {', '.join(severities)}")
        matchers.append(_one_of("severity", chosen))
    labels = body.get("labels")
    if labels is not None:
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValueError("`labels` must map label names to values")
        matchers += [Matcher(f"label:{k}", v) for k, v in labels.items()]
    if not matchers:
        raise ValueError(
            'give `matchers` (e.g. ["check=api-health"]) or check, environment, rule, '
            "severity or labels"
        )
    return matchers
