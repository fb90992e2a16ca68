"""Slack as an app: firing messages carry buttons; a click, signed as Slack signs it,
acknowledges (escalation stops), silences, and edits the message in place; forged, stale
and replayed clicks are refused and audited."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from pydantic import ValidationError

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.daemon_harness import Recorder, Target
from tests.receivers import HttpRecorder, Reply
from watchkeeper.plugins.notifiers.slack import SlackOptions

BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
POSTED = {"ok": True, "channel": "C0123ABCD", "ts": "1700000000.000100"}


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Sign a request as "Verifying requests from Slack" says: v0:timestamp:body."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def block_actions(action_id: str, alert_id: str, message: dict) -> bytes:
    """A block_actions interaction as Slack documents it, form-encoded as `payload=`."""
    interaction = {
        "type": "block_actions",
        "team": {"id": "T9TK3CUKW", "domain": "example"},
        "user": {
            "id": "UA8RXUSPL",
            "username": "jtorrance",
            "name": "jtorrance",
            "team_id": "T9TK3CUKW",
        },
        "api_app_id": "AABA1ABCD",
        "token": "9s8d9as89d8as9d8as989",
        "container": {
            "type": "message",
            "message_ts": POSTED["ts"],
            "channel_id": POSTED["channel"],
            "is_ephemeral": False,
        },
        "trigger_id": "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
        "channel": {"id": POSTED["channel"], "name": "alerts"},
        "message": {
            "type": "message",
            "bot_id": "BAH5CA16Z",
            "ts": POSTED["ts"],
            "text": message["text"],
            "blocks": message["blocks"],
        },
        "response_url": "https://hooks.slack.com/actions/AABA1ABCD/1232321423432/D09sSasdasdAS9091209",
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"watchkeeper|{alert_id}",
                "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True},
                "value": alert_id,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(interaction)}).encode()


def config(target: Target, slack: HttpRecorder, oncall: Recorder) -> dict:
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "server": {"admin_token": "${ADMIN_TOKEN}"},
        "checks": {
            "web": {
                "probe": "http",
                "url": f"{target.url}/health",
                "schedule": {"every": "1s"},
                "timeout": "2s",
            }
        },
        "notifiers": {
            "alerts": {
                "type": "slack",
                "bot_token": "${SLACK_BOT_TOKEN}",
                "signing_secret": "${SLACK_SIGNING_SECRET}",
                "channel": "#alerts",
                "api_url": slack.url("/api"),
                "retry_initial": "200ms",
            },
            "oncall": {"type": "webhook", "url": f"{oncall.url}/oncall"},
        },
        "routes": [{"match": {}, "notify": ["alerts"], "group_wait": "0s", "escalate": "standard"}],
        "escalation": {"standard": [{"after": "5s", "name": "on-call", "notify": ["oncall"]}]},
    }


ENV = {
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
}


def calls(slack: HttpRecorder, method: str) -> list[dict]:
    return [r.json() for r in slack.requests if r.path == f"/api/{method}"]


def test_the_options_take_one_way_in():
    SlackOptions.model_validate({"webhook_url": "https://hooks.example/x"})
    app = {"bot_token": "xoxb-1", "signing_secret": "s", "channel": "#a"}
    assert SlackOptions.model_validate(app).interactive
    for wrong in (
        {},  # neither
        {**app, "webhook_url": "https://hooks.example/x"},  # both
        {"bot_token": "xoxb-1"},  # an app needs its channel
        {"webhook_url": "https://h.example/x", "signing_secret": "s"},
    ):
        with pytest.raises(ValidationError):
            SlackOptions.model_validate(wrong)


@pytest.mark.slow
def test_a_click_acknowledges_stops_escalation_and_edits_the_message(tmp_path):
    target, oncall = Target(), Recorder()
    answer = Reply(200, json.dumps(POSTED), {"Content-Type": "application/json"})
    try:
        with (
            HttpRecorder(answer) as slack,
            LiveDaemon(tmp_path, config(target, slack, oncall), ENV) as live,
        ):
            live.wait_status("web", "up")
            target.status = 503
            posted = wait_until(lambda: calls(slack, "chat.postMessage"), 15, what="a message")
            message = posted[0]
            request = next(r for r in slack.requests if r.path == "/api/chat.postMessage")
            assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
            assert message["channel"] == "#alerts"
            (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
            buttons = {e["action_id"]: e for e in actions["elements"]}
            assert buttons["watchkeeper_ack"]["text"]["text"] == "Acknowledge"
            assert buttons["watchkeeper_silence_1h"]["text"]["text"] == "Silence 1 h"
            alert_id = buttons["watchkeeper_ack"]["value"]
            assert alert_id in live.daemon.runtime.book.by_id

            now = int(time.time())
            body = block_actions("watchkeeper_ack", alert_id, message)
            url = "/api/integrations/slack/actions"
            # forged (another secret), stale (6 minutes old), then the real click, replayed
            assert (
                live.post(url, None, content=body, headers=sign(body, now, "wrong")).status_code
                == 401
            )
            stale = sign(body, now - 360)
            assert live.post(url, None, content=body, headers=stale).status_code == 401
            good = sign(body, now)
            assert live.post(url, None, content=body, headers=good).status_code == 200
            assert live.post(url, None, content=body, headers=good).status_code == 401
            assert live.post(url, None, content=body).status_code == 401  # unsigned

            alert = live.daemon.runtime.book.by_id[alert_id]
            assert alert.acked_by == "slack:jtorrance"
            updates = wait_until(lambda: calls(slack, "chat.update"), 10, what="chat.update")
            update = updates[0]
            assert (update["channel"], update["ts"]) == (POSTED["channel"], POSTED["ts"])
            shown = json.dumps(update["blocks"])
            assert "Acknowledged by jtorrance" in shown
            assert "watchkeeper_ack" not in shown  # the buttons are gone

            # the escalation level (5s after the message) never runs
            time.sleep(6)
            assert oncall.json("/oncall") == []
            assert "alert escalated" not in live.logs.text

            # Silence 1 h: a silence of the alert's instance and rule, by the Slack user
            again = int(time.time())
            silence = block_actions("watchkeeper_silence_1h", alert_id, message)
            assert (
                live.post(url, None, content=silence, headers=sign(silence, again)).status_code
                == 200
            )
            (made,) = live.get("/api/alerts/silences").json()
            assert made["created_by"] == "slack:jtorrance"
            assert sorted(made["matchers"]) == ["instance=web", "rule=up"]

            # a button of an alert we do not know: 200, nothing done, logged
            unknown = block_actions("watchkeeper_ack", "ffffffffffff", message)
            headers = sign(unknown, int(time.time()))
            assert live.post(url, None, content=unknown, headers=headers).status_code == 200
            assert "slack: button for an unknown alert" in live.logs.text

            entries = live.get("/api/audit").json()
            ack = next(e for e in entries if e["action"] == "ack")
            assert (ack["by"], ack["alert"], ack["source"]) == (
                "slack:jtorrance",
                alert_id,
                "slack",
            )
            assert any(e["action"] == "silence" and e["by"] == "slack:jtorrance" for e in entries)
            denied = [e for e in entries if e["action"] == "denied"]
            assert sum(e["count"] for e in denied) == 4
            assert all(e["path"] == url for e in denied)

            # the secrets are nowhere to be read: logs, API answers, messages posted
            seen = [live.logs.text, json.dumps(entries)]
            for path in ("/api/status", "/api/alerts?status=all", "/openapi.json"):
                seen.append(live.get(path).text)
            seen += [r.text for r in slack.requests]
            for text in seen:
                assert BOT_TOKEN not in text
                assert SIGNING_SECRET not in text
    finally:
        target.close()
        oncall.close()
