"""`POST /api/heartbeat/{check}`: a job reports in, as healthchecks.io pings do.

    curl -fsS -m 10 --retry 5 -X POST -H "Authorization: Bearer $TOKEN" \
        https://watch.example.com/api/heartbeat/nightly-backup-ran?status=start&rid=$RID

`?status=start|ok|fail` (default ok; also as a last path segment, `/start`, `/fail`,
or an exit code `/3`), `?exit=N` (non-zero = fail), `?rid=` pairs start and end of
overlapping runs. A JSON body (at most 100 kB) may carry `{"metrics": {...}, "log":
"..."}`; any other body is kept as the log tail (its last 10 kB). The check's own `token`
or the admin token is accepted, as a Bearer header or `?token=`.

Without a valid token every name, known or not, gets the same 401: names cannot be probed.
A valid token (the admin token, or any heartbeat check's own) may learn that a name is
unknown (404) or needs its environment (400).
"""

from __future__ import annotations

import math
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.engine.api import auth
from watchkeeper.engine.api.admin import deny
from watchkeeper.engine.api.responses import (
    BodyError,
    error,
    json_response,
    parse_json,
    read_body,
)
from watchkeeper.engine.state import audit

LOG_TAIL = 10 * 1024
MAX_BODY = 100 * 1024
MAX_METRICS = 100
RID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def find_instance(daemon: Any, name: str) -> tuple[Any | None, str | None]:
    """Return (heartbeat instance, None), or (None, why not) for `check` or `check@env`."""
    runtime = daemon.runtime
    everything = getattr(runtime, "all_instances", None) or runtime.instances
    instance = everything.get(name)
    if instance is None:
        matches = [i for i in everything.values() if i.check == name]
        if len(matches) > 1:
            return None, "ambiguous"
        instance = matches[0] if matches else None
    if instance is None or instance.probe_type != "heartbeat":
        return None, "unknown"
    return instance, None


def _status(request: Request) -> tuple[str, int | None]:
    status = request.query_params.get("status")
    code_text = request.query_params.get("exit")
    segment = request.path_params.get("signal")
    if segment is not None:
        if segment in ("start", "ok", "fail"):
            status = status or segment
        elif segment.isdigit():
            code_text = code_text or segment
        else:
            raise BodyError(404, "not found")
    status = status or "ok"
    if status not in ("start", "ok", "fail"):
        raise BodyError(400, "status must be start, ok or fail")
    code = None
    if code_text is not None:
        if not re.fullmatch(r"-?\d{1,9}", code_text):
            raise BodyError(400, "exit must be a whole number")
        code = int(code_text)
    return status, code


def _payload(raw: bytes, content_type: str) -> tuple[dict[str, float], str | None, Any]:
    """Return (metrics, log tail, JSON document or None) of a beat's body."""
    if not raw.strip():
        return {}, None, None
    document = None
    if "json" in content_type or raw.lstrip()[:1] == b"{":
        try:
            document = parse_json(raw)
        except BodyError:
            if "json" in content_type:
                raise
    if not isinstance(document, dict):
        return {}, raw[-LOG_TAIL:].decode("utf-8", "replace"), document
    metrics = document.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise BodyError(422, "`metrics` must map names to numbers")
    if len(metrics) > MAX_METRICS:
        raise BodyError(422, f"a beat carries at most {MAX_METRICS} metrics")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not _finite(value):
            raise BodyError(422, f"metric {str(name)[:60]!r} must be a finite number")
        clean[name[:200]] = float(value)
    log = document.get("log")
    if log is not None and not isinstance(log, str):
        raise BodyError(422, "`log` must be a string")
    if log is not None:
        log = log.encode()[-LOG_TAIL:].decode("utf-8", "ignore")
    return clean, log, document


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _holders(daemon: Any, token: str | None) -> set[str]:
    """Return the heartbeat instances whose own token is `token`.

    Every heartbeat's token is compared, whatever the name asked for, so a known and an
    unknown name cost the same time.
    """
    runtime = daemon.runtime
    everything = getattr(runtime, "all_instances", None) or runtime.instances
    return {
        key
        for key, instance in everything.items()
        if instance.probe_type == "heartbeat"
        and auth.same(token, auth.secret_value(getattr(instance.options, "token", None)))
    }


async def record(daemon: Any, instance: Any, beat: Any) -> int:
    """Keep a beat and judge it here when this daemon runs the check; else leave it in the
    store for the replica that does. Return how many open runs it dropped."""
    from watchkeeper.engine.state.store import Row

    if instance.key in daemon.runtime.instances:
        return await daemon.heartbeats.record(instance.key, beat)
    # another replica runs this check: it picks the beat up from the store
    daemon.writer.append("beats", Row(key=instance.key, at=beat.at, data=beat.to_data()))
    return 0


async def heartbeat(request: Request) -> Response:
    """Record one beat for a heartbeat check."""
    from watchkeeper.engine.run.heartbeats import MAX_OPEN_RUNS, Beat

    daemon = request.app.state.daemon
    instance, why = find_instance(daemon, request.path_params["check"])
    token = auth.presented(request, query=True)
    as_admin = auth.same(token, auth.admin_token(daemon))
    holders = _holders(daemon, token)
    if instance is None:
        if not (as_admin or holders):
            return deny(request)  # the same answer as a wrong token: no probing for names
        if why == "ambiguous":
            return error(400, "that check has several environments; post to check@environment")
        return error(404, "no heartbeat check of that name")
    if not (as_admin or instance.key in holders):
        return deny(request)
    try:
        status, code = _status(request)
        rid = request.query_params.get("rid")
        if rid is not None and not RID.match(rid):
            raise BodyError(400, "rid must be 1-128 letters, digits or _.:-")
        raw = await read_body(request, MAX_BODY)
        metrics, log, document = _payload(raw, request.headers.get("content-type", ""))
    except BodyError as exc:
        return error(exc.status, exc.message)
    extract = getattr(instance.options, "extract", None)
    problems: dict[str, str] = {}
    if extract and raw.strip():
        from watchkeeper.engine.run.extract import extract_metrics

        found, problems = extract_metrics(
            extract, text=raw.decode("utf-8", "replace"), document=document
        )
        metrics = {**found, **metrics}
    now = daemon.clock.now()
    beat = Beat(
        status=status,  # type: ignore[arg-type]
        at=now,
        rid=rid,
        exit_code=code,
        metrics=metrics or None,
        log=log,
        source="api",
    )
    dropped = await record(daemon, instance, beat)
    if as_admin:
        audit.record(
            daemon.writer,
            auth.who(request),
            "heartbeat",
            {"check": instance.key, "status": status, "path": request.url.path},
        )
    answer: dict[str, Any] = {
        "ok": True,
        "check": instance.check,
        "environment": instance.environment,
        "status": "fail" if status == "ok" and code not in (None, 0) else status,
    }
    if problems:
        answer["extract_problems"] = problems
    if dropped:
        answer["runs_dropped"] = dropped
        answer["note"] = f"more than {MAX_OPEN_RUNS} open runs: the oldest was dropped"
    return json_response(answer)
