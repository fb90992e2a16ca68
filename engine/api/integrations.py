"""Acknowledge where people are: Slack's buttons and PagerDuty's webhooks.

Neither route takes the admin token: a request is taken when its vendor's signature
verifies, in constant time, against the secret of a configured notifier (every slack
notifier's `signing_secret`, every pagerduty notifier's `webhook_secret`). A forged, stale
or replayed request is refused with a bare 401, counted and rate limited like every
refused call (docs/api.md ► Limits) and written to the audit log; the answer never says
which part failed. An acknowledgement goes through the admin API's own path
(`admin.acknowledge`), so escalation stops and the audit log names who acted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.engine.api import admin, auth
from watchkeeper.engine.api.responses import BodyError, error, json_response, parse_json, read_body
from watchkeeper.engine.observe.redaction import secret_value
from watchkeeper.engine.state import audit

log = logging.getLogger("watchkeeper.api")

SLACK_WINDOW = 300.0
"""Slack: a request whose timestamp is further than 5 minutes from now is refused."""
PAGERDUTY_WINDOW = 1800.0
"""PagerDuty retries a delivery for about 20 minutes; an event older than this is stale."""
MAX_SEEN = 10_000
"""Signatures remembered against replays (the oldest are forgotten first)."""
PAGERDUTY_BODY = 256 * 1024
"""PagerDuty drops every webhook larger than 256 KB."""
SLACK_BODY = 1024 * 1024
SILENCE_FOR = 3600.0
UPDATE_TIMEOUT = 10.0
# as plugins/notifiers/slack.py names its buttons and plugins/notifiers/pagerduty.py its
# dedup keys (docs/notifiers.md): the engine imports no plugin
ACK_ACTION = "watchkeeper_ack"
SILENCE_ACTION = "watchkeeper_silence_1h"
DEDUP_PREFIX = "watchkeeper-"


class Seen:
    """Signatures already taken, each kept for its window: a second use is a replay."""

    def __init__(self, limit: int = MAX_SEEN):
        self.limit = limit
        self.until: OrderedDict[str, float] = OrderedDict()

    def first(self, key: str, until: float, now: float) -> bool:
        """Remember a signature until `until`; False when it was taken before."""
        while self.until and next(iter(self.until.values())) <= now:
            self.until.popitem(last=False)
        if key in self.until:
            return False
        self.until[key] = until
        if len(self.until) > self.limit:
            self.until.popitem(last=False)
        return True


def _seen(request: Request) -> Seen:
    state = request.app.state
    if getattr(state, "integration_seen", None) is None:
        state.integration_seen = Seen()
    return state.integration_seen


def refuse(request: Request, reason: str) -> Response:
    """Refuse a request whose signature does not hold: 401 (429 once its source failed too
    often), counted for the audit log as every refused call is; the reason is logged only."""
    state = request.app.state
    source = auth.source_of(auth.client(request))
    now = time.monotonic()
    wait = state.limiter.take(source, now)
    status = 429 if wait else 401
    if state.refusals.due(now):
        admin.write_refusals(state)
    state.refusals.count(source, request.url.path, status, time.time(), now)
    if wait:
        return json_response(
            {"error": "too many refused calls; retry later"},
            429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    log.warning("integration request refused", extra={"path": request.url.path, "why": reason})
    return error(401, "unauthorized")


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _notifiers(daemon: Any, kind: str, key: str) -> list[tuple[str, Any, str]]:
    """Return (name, options, secret) of every notifier of a type with that secret set."""
    found = []
    for name, options in daemon.config.notifiers.items():
        if options.type == kind:
            secret = secret_value(getattr(options, key, None))
            if secret:
                found.append((name, options, secret))
    return found


def _matching(presented: list[str], expected: list[str]) -> int | None:
    """Return the index of the expected signature one presented matches, comparing every
    pair in constant time (no early exit tells which came close)."""
    match = None
    for index, want in enumerate(expected):
        for given in presented:
            if hmac.compare_digest(given.encode(), want.encode()) and match is None:
                match = index
    return match


async def _body(request: Request, limit: int) -> bytes | None:
    try:
        return await read_body(request, limit)
    except BodyError:
        return None


def _audit(daemon: Any, by: str, action: str, via: str, details: dict[str, Any]) -> None:
    audit.record(daemon.writer, by, action, {"via": via, **details}, source=via)


# -- Slack ---------------------------------------------------------------------------------


async def slack_actions(request: Request) -> Response:
    """Take a click on a Slack message's button (a signed `block_actions` interaction)."""
    daemon = admin.daemon_of(request)
    apps = _notifiers(daemon, "slack", "signing_secret")
    stamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not apps or not stamp.isdigit() or not signature:
        return refuse(request, "no signature, or no slack app takes one")
    raw = await _body(request, SLACK_BODY)
    if raw is None:
        return refuse(request, "body too large")
    base = b"v0:" + stamp.encode() + b":" + raw
    index = _matching([signature], ["v0=" + _hex_hmac(secret, base) for _, _, secret in apps])
    now = time.time()
    if index is None:
        return refuse(request, "signature does not match")
    if abs(now - int(stamp)) > SLACK_WINDOW:
        return refuse(request, "timestamp outside 5 minutes")
    if not _seen(request).first(f"slack|{stamp}|{signature}", now + 2 * SLACK_WINDOW, now):
        return refuse(request, "replayed")
    name, options, _ = apps[index]
    interaction = _interaction(raw)
    action = _action(interaction)
    if action is None:
        log.info("slack interaction ignored", extra={"notifier": name})
        return Response(status_code=200)
    kind, alert_id = action
    user = interaction.get("user") or {}
    who = user.get("name") or user.get("username") or user.get("id") or "unknown"
    by = f"slack:{str(who)[:100]}"
    if kind == ACK_ACTION:
        line = await _slack_ack(daemon, alert_id, by, name)
    else:
        line = await _slack_silence(daemon, alert_id, by, name)
    if line is None:
        return Response(status_code=200)
    task = BackgroundTask(_edit_message, options, name, interaction, alert_id, line)
    return Response(status_code=200, background=task)


def _interaction(raw: bytes) -> dict[str, Any]:
    """Return the interaction of a form-encoded `payload=` body ({} when there is none)."""
    try:
        form = parse_qs(raw.decode("utf-8"), max_num_fields=10)
        data = parse_json(form.get("payload", [""])[0].encode())
    except (UnicodeDecodeError, ValueError, BodyError):
        return {}
    return data if isinstance(data, dict) else {}


def _action(interaction: dict[str, Any]) -> tuple[str, str] | None:
    """Return (action_id, alert id) of the first of our buttons in a block_actions payload."""
    if interaction.get("type") != "block_actions":
        return None
    for action in interaction.get("actions") or []:
        if not isinstance(action, dict):
            continue
        value = action.get("value")
        if action.get("action_id") in (ACK_ACTION, SILENCE_ACTION) and isinstance(value, str):
            return action["action_id"], value[:200]
    return None


async def _slack_ack(daemon: Any, alert_id: str, by: str, name: str) -> str | None:
    """Acknowledge as the Slack user; return the line the message shows, None if unknown."""
    try:
        outcome, alert = await admin.acknowledge(daemon, alert_id, by, "from Slack")
    except Exception as exc:
        log.warning("slack: acknowledgement failed", extra={"alert": alert_id, "error": str(exc)})
        return None
    if outcome == "unknown":
        log.warning("slack: button for an unknown alert", extra={"alert": alert_id})
        return None
    if outcome == "resolved":
        return "✅ Resolved"
    if outcome == "already":
        return f"✅ Acknowledged by {_name(alert.acked_by)}"
    details = {"alert": alert_id, "check": alert.instance, "notifier": name}
    _audit(daemon, by, "ack", "slack", details)
    return f"✅ Acknowledged by {_name(by)}"


async def _slack_silence(daemon: Any, alert_id: str, by: str, name: str) -> str | None:
    """Silence the alert's check instance and rule for an hour, authored by the Slack user."""
    from watchkeeper.engine.alerting.alerts import Alert
    from watchkeeper.engine.alerting.silences import (
        Matcher,
        Silence,
        add_silence,
        new_silence_id,
    )

    alert = daemon.runtime.book.by_id.get(alert_id)
    try:
        if alert is None:
            doc = await daemon.store.get("alerts", alert_id)
            alert = Alert.from_doc(doc) if doc is not None else None
        if alert is None:
            log.warning("slack: button for an unknown alert", extra={"alert": alert_id})
            return None
        now = daemon.clock.now()
        item = Silence(
            id=new_silence_id(),
            matchers=[Matcher("instance", alert.instance), Matcher("rule", alert.rule)],
            starts_at=now,
            ends_at=now + SILENCE_FOR,
            created_by=by,
            created_at=now,
            reason="Silence 1 h, from Slack",
        )
        item.validate()
        await add_silence(daemon.store, item)
    except Exception as exc:
        log.warning("slack: silence failed", extra={"alert": alert_id, "error": str(exc)})
        return None
    daemon.alerting.silences[item.id] = item
    await daemon.alerting.rehold(now)
    _audit(
        daemon,
        by,
        "silence",
        "slack",
        {
            "silence": item.id,
            "alert": alert_id,
            "matchers": [str(m) for m in item.matchers],
            "notifier": name,
        },
    )
    return f"🔕 Silenced for 1 h by {_name(by)}"


def _name(by: str | None) -> str:
    return (by or "someone").removeprefix("slack:")


def _edited(blocks: Any, alert_id: str, line: str) -> list[Any]:
    """Return a message's blocks with the alert's buttons replaced by what was done."""
    kept: list[Any] = []
    done = {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(line)}]}
    replaced = False
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, dict) and block.get("block_id") == f"watchkeeper|{alert_id}":
            kept.append(done)
            replaced = True
        else:
            kept.append(block)
    if not replaced:
        kept.append(done)
    return kept


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def _edit_message(
    options: Any, name: str, interaction: dict[str, Any], alert_id: str, line: str
) -> None:
    """Edit the clicked message in place (chat.update) to say who acknowledged or silenced."""
    import httpx

    message = interaction.get("message") or {}
    container = interaction.get("container") or {}
    channel = (interaction.get("channel") or {}).get("id") or container.get("channel_id")
    ts = message.get("ts") or container.get("message_ts")
    if not channel or not ts:
        log.warning("slack: no message to update", extra={"notifier": name, "alert": alert_id})
        return
    body = {
        "channel": channel,
        "ts": ts,
        "text": message.get("text") or line,
        "blocks": _edited(message.get("blocks"), alert_id, line),
    }
    token = secret_value(options.bot_token)
    try:
        async with httpx.AsyncClient(timeout=UPDATE_TIMEOUT, follow_redirects=False) as client:
            response = await client.post(
                f"{options.api_url.rstrip('/')}/chat.update",
                content=json.dumps(body).encode(),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Authorization": f"Bearer {token}",
                },
            )
        answer = response.json()
        ok = isinstance(answer, dict) and answer.get("ok") is True
        said = answer.get("error") if isinstance(answer, dict) else None
    except (httpx.HTTPError, ValueError) as exc:
        ok, said = False, type(exc).__name__
    if not ok:
        log.warning(
            "slack: chat.update failed",
            extra={"notifier": name, "alert": alert_id, "error": str(said)[:100]},
        )


# -- PagerDuty -----------------------------------------------------------------------------


async def pagerduty(request: Request) -> Response:
    """Take a PagerDuty V3 webhook: an incident acknowledged, resolved or unacknowledged."""
    daemon = admin.daemon_of(request)
    services = _notifiers(daemon, "pagerduty", "webhook_secret")
    header = request.headers.get("x-pagerduty-signature", "")
    presented = [p.strip() for p in header.split(",") if p.strip().startswith("v1=")][:10]
    if not services or not presented:
        return refuse(request, "no signature, or no pagerduty notifier takes one")
    raw = await _body(request, PAGERDUTY_BODY)
    if raw is None:
        return refuse(request, "body too large")
    expected = ["v1=" + _hex_hmac(secret, raw) for _, _, secret in services]
    index = _matching(presented, expected)
    if index is None:
        return refuse(request, "signature does not match")
    try:
        data = parse_json(raw)
    except BodyError:
        data = None
    event = data.get("event") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        return refuse(request, "no event")
    now = time.time()
    occurred = _instant(event.get("occurred_at"))
    if occurred is None or not -SLACK_WINDOW < now - occurred < PAGERDUTY_WINDOW:
        return refuse(request, "event outside its window")
    event_id = str(event.get("id") or "")
    if not event_id:
        return refuse(request, "no event id")
    if not _seen(request).first(f"pagerduty|{event_id}", now + 2 * PAGERDUTY_WINDOW, now):
        # PagerDuty delivers at least once and turns a subscription off after refusals in
        # a row: a signed event already taken is answered as done, and done only once
        log.info("pagerduty event %s was already taken; nothing done again", event_id)
        return json_response({"done": "already"})
    name = services[index][0]
    kind = event.get("event_type")
    incident = event.get("data") if isinstance(event.get("data"), dict) else {}
    agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
    who = agent.get("summary") or agent.get("id") or "unknown"
    by = f"pagerduty:{str(who)[:100]}"
    if kind not in ("incident.acknowledged", "incident.resolved", "incident.unacknowledged"):
        return json_response({"done": "ignored"})
    key = incident.get("incident_key")
    alert_id = key[len(DEDUP_PREFIX) :] if isinstance(key, str) else ""
    alert = await _find(daemon, alert_id) if key and key.startswith(DEDUP_PREFIX) else None
    if alert is None:
        log.warning(
            "pagerduty: webhook for an unknown alert",
            extra={"notifier": name, "incident": str(incident.get("id"))[:40], "event": kind},
        )
        return json_response({"done": "unknown alert"})
    details = {"alert": alert_id, "check": alert.instance, "notifier": name, "event": kind}
    if kind == "incident.acknowledged":
        try:
            outcome, _ = await admin.acknowledge(daemon, alert_id, by, "from PagerDuty")
        except Exception as exc:
            return error(503, f"state store: {exc}")  # PagerDuty retries a 5xx
        if outcome in ("acknowledged", "requested"):
            _audit(daemon, by, "ack", "pagerduty", details)
        return json_response({"done": outcome})
    what = "resolved in PagerDuty" if kind == "incident.resolved" else "unacknowledged in PagerDuty"
    _timeline(daemon, alert, what, by)
    _audit(daemon, by, kind.removeprefix("incident."), "pagerduty", details)
    return json_response({"done": "recorded"})


async def _find(daemon: Any, alert_id: str) -> Any:
    from watchkeeper.engine.alerting.alerts import Alert

    alert = daemon.runtime.book.by_id.get(alert_id)
    if alert is not None or not alert_id:
        return alert
    try:
        doc = await daemon.store.get("alerts", alert_id)
    except Exception:
        return None
    return Alert.from_doc(doc) if doc is not None else None


def _timeline(daemon: Any, alert: Any, what: str, by: str) -> None:
    """Add to the alert's timeline what a person did in PagerDuty (our alert resolves from
    its check, never from there; an un-acknowledgement is recorded, not applied)."""
    from watchkeeper.engine.alerting.timeline import alert_event

    alert_event(daemon.runtime, alert, what, by)
    log.info(what, extra={"alert": alert.id, "check": alert.instance, "by": by})


def _instant(value: Any) -> float | None:
    from datetime import datetime

    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
