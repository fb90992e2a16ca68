"""`/ping/...`: healthchecks.io-style ping URLs, so a crontab line copied from its docs
works with only the base URL changed:

    0 2 * * * /usr/local/bin/backup.sh && curl -fsS -m 10 --retry 5 -o /dev/null \\
        https://watch.example.com/ping/$KEY/nightly-backup

Two shapes, as healthchecks has: `/ping/{ping_key}/{check}` with the project's
`server.ping_key`, and `/ping/{ping_id}` with a heartbeat check's own `ping_id`. Either
may end in `/start`, `/fail`, `/log` or an exit status (`/0` is success, `/1`..`/255`
failure); `?rid=` pairs a start with its end. GET, HEAD and POST count alike. A body is
the run's log: its last `LOG_LIMIT` bytes are kept, and a longer one is cut with a note
saying so. `/log` keeps a log entry and changes nothing else.

Every answer is plain text, `OK` as healthchecks gives it. A wrong key, an unknown
ping_id and an unknown check all get the same `404 not found`, decided before the body is
read, and each spends its source's refusal budget (the API's `FailureLimiter`, as a
refused heartbeat does): neither keys nor names can be probed.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from watchkeeper.engine.api import admin, auth
from watchkeeper.engine.api.heartbeat import RID, find_instance, record
from watchkeeper.engine.api.responses import BodyError

LOG_LIMIT = 100_000
"""Bytes of a body kept as the run's log: healthchecks' limit, told in `Ping-Body-Limit`."""
MAX_READ = 10 * 1024 * 1024
"""Bytes of a body read at most (the rest of a longer one is refused with 413): past the
log's limit a body is only counted, so this bounds time, not memory."""
LOG_SUFFIX = "#log"
"""`/log` entries are kept in the beats stream under `<instance key>#log`: the heartbeat
tracker judges only rows keyed by an instance, so an entry changes no state, and
housekeeping prunes it with the beats."""
SIGNALS = {"start": "start", "fail": "fail", "log": "log"}
EXIT = re.compile(r"^\d{1,3}$")
HEADERS = {"Ping-Body-Limit": str(LOG_LIMIT)}


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(body, status, headers={**HEADERS, **(headers or {})})


def _not_found(request: Request, parts: list[str]) -> Response:
    """Answer 404, or 429 once the source was refused too often; count the refusal."""
    state = request.app.state
    source = auth.source_of(auth.client(request))
    now = time.monotonic()
    wait = state.limiter.take(source, now)
    status = 429 if wait else 404
    if state.refusals.due(now):
        admin.write_refusals(state)
    # the audit shows the path without its first segment: that may be the real key
    shown = "/ping/" + "/".join(["*", *parts[1:]])
    state.refusals.count(source, shown[:200], status, time.time(), now)
    if wait:
        retry = str(max(1, math.ceil(wait)))
        return _text("too many refused calls; retry later", 429, {"Retry-After": retry})
    return _text("not found", 404)


def _ping_id_holders(daemon: Any, given: str) -> list[Any]:
    """Return the heartbeat instances whose `ping_id` is `given`.

    Every heartbeat's ping_id is compared, whatever was asked for, so a known and an
    unknown id cost the same time.
    """
    runtime = daemon.runtime
    everything = getattr(runtime, "all_instances", None) or runtime.instances
    return [
        instance
        for instance in everything.values()
        if instance.probe_type == "heartbeat"
        and auth.same(given, auth.secret_value(getattr(instance.options, "ping_id", None)))
    ]


def _target(daemon: Any, parts: list[str]) -> tuple[Any | None, str | None, str | None]:
    """Return (instance, signal segment, None), or (None, None, why) when the URL names
    no heartbeat: `unknown` (answered 404 like a wrong key) or `ambiguous`."""
    key = auth.secret_value(daemon.config.server.ping_key)
    by_key = auth.same(parts[0], key)
    holders = _ping_id_holders(daemon, parts[0])
    if by_key and len(parts) in (2, 3):
        instance, why = find_instance(daemon, parts[1])
        return instance, (parts[2] if len(parts) == 3 else None), why
    if holders and len(parts) in (1, 2):
        if len(holders) > 1:
            return None, None, "ambiguous"
        return holders[0], (parts[1] if len(parts) == 2 else None), None
    return None, None, "unknown"


def _signal(segment: str | None) -> tuple[str, int | None]:
    """Return (start|ok|fail|log, exit status) of a URL's last segment; BodyError else."""
    if segment is None:
        return "ok", None
    if segment in SIGNALS:
        return SIGNALS[segment], None
    if EXIT.match(segment):
        code = int(segment)
        if code > 255:
            raise BodyError(400, "exit status must be 0-255")
        return "ok", code
    raise BodyError(404, "not found")


async def _read_log(request: Request) -> str | None:
    """Return the body as the run's log: its last `LOG_LIMIT` bytes, with a note in front
    when more came; None when it is blank. BodyError(413) past `MAX_READ` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_READ:
        raise BodyError(413, f"request body larger than {MAX_READ} bytes")
    kept = bytearray()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_READ:
            raise BodyError(413, f"request body larger than {MAX_READ} bytes")
        kept += chunk
        if len(kept) > 2 * LOG_LIMIT:  # trimmed now and then, not on every chunk
            del kept[:-LOG_LIMIT]
    if not bytes(kept).strip():
        return None
    if total <= LOG_LIMIT:
        return bytes(kept).decode("utf-8", "replace")
    room = LOG_LIMIT - len(_cut_note(total, total, LOG_LIMIT).encode())
    tail = bytes(kept[-room:])
    while tail[:1] and 0x80 <= tail[0] < 0xC0:  # cut inside a character: start at the next
        tail = tail[1:]
    return _cut_note(total, total - len(tail), len(tail)) + tail.decode("utf-8", "replace")


def _cut_note(total: int, cut: int, kept: int) -> str:
    return f"[the body was {total} bytes: the first {cut} were cut, the last {kept} kept]\n"


async def ping(request: Request) -> Response:
    """Record one healthchecks.io-style ping for a heartbeat check."""
    from watchkeeper.engine.run.heartbeats import Beat
    from watchkeeper.engine.state.store import Row

    daemon = request.app.state.daemon
    rest = request.path_params["rest"]
    parts = rest[:-1].split("/") if rest.endswith("/") else rest.split("/")
    if not all(parts) or len(parts) > 3:
        return _not_found(request, parts)
    instance, segment, why = _target(daemon, parts)
    if instance is None:
        if why == "ambiguous":
            return _text(
                "ambiguous: this check has several environments; ping check@environment", 409
            )
        return _not_found(request, parts)
    try:
        status, code = _signal(segment)
        rid = request.query_params.get("rid") or None
        if rid is not None and not RID.match(rid):
            raise BodyError(400, "rid must be 1-128 letters, digits or _.:-")
        log = await _read_log(request)
    except BodyError as exc:
        if exc.status == 404:
            return _not_found(request, parts)
        return _text(exc.message, exc.status)
    now = daemon.clock.now()
    if status == "log":
        entry = {"status": "log", "rid": rid, "log": log, "source": "ping"}
        data = {k: v for k, v in entry.items() if v is not None}
        daemon.writer.append("beats", Row(key=instance.key + LOG_SUFFIX, at=now, data=data))
        return _text("OK")
    beat = Beat(
        status=status,  # type: ignore[arg-type]
        at=now,
        rid=rid,
        exit_code=code,
        log=log,
        source="ping",
    )
    await record(daemon, instance, beat)
    return _text("OK")
