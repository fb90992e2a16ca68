"""PagerDuty V3 webhooks, signed as PagerDuty signs them: an acknowledgement stops our
escalation, a resolution is recorded in the alert's timeline, forged and stale webhooks
are refused and audited, a redelivered one is done once, unknown incidents answer 200."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon
from tests.daemon_harness import Recorder, Target

pytestmark = pytest.mark.slow

ROUTING_KEY = "R0UT1NGkeyR0UT1NGkeyR0UT1NGkey12"
WEBHOOK_SECRET = "ChangeMe-whsec-3f1b9a77c0d24e51"
OLD_SECRET = "rotated-away-secret-0000000000"
URL = "/api/integrations/pagerduty"


def signed(event_type: str, incident_key: str, *, secrets=(OLD_SECRET, WEBHOOK_SECRET), at=None):
    """Return (body, headers) of a V3 webhook as PagerDuty documents it: one `v1=` HMAC-SHA256
    of the raw body per secret, comma-separated."""
    occurred = datetime.fromtimestamp(at or time.time(), UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred,
            "agent": {
                "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
                "id": "PLH1HKV",
                "self": "https://api.pagerduty.com/users/PLH1HKV",
                "summary": "Tenex Engineer",
                "type": "user_reference",
            },
            "client": {"name": "PagerDuty"},
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "self": "https://api.pagerduty.com/incidents/PGR0VU2",
                "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                "number": 2,
                "status": event_type.removeprefix("incident."),
                "incident_key": incident_key,
                "created_at": "2020-04-09T15:16:27Z",
                "title": "A little bump in the road",
                "service": {
                    "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                    "id": "PF9KMXH",
                    "self": "https://api.pagerduty.com/services/PF9KMXH",
                    "summary": "API Service",
                    "type": "service_reference",
                },
                "urgency": "high",
                "resolve_reason": None,
            },
        }
    }
    body = json.dumps(payload).encode()
    signatures = ["v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets]
    headers = {"Content-Type": "application/json", "X-PagerDuty-Signature": ",".join(signatures)}
    return body, headers


def config(target: Target, receiver: Recorder) -> dict:
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
            "pd": {
                "type": "pagerduty",
                "routing_key": "${PD_ROUTING_KEY}",
                "webhook_secret": "${PD_WEBHOOK_SECRET}",
                "url": f"{receiver.url}/v2/enqueue",
            },
            "oncall": {"type": "webhook", "url": f"{receiver.url}/oncall"},
        },
        "routes": [{"match": {}, "notify": ["pd"], "group_wait": "0s", "escalate": "standard"}],
        "escalation": {"standard": [{"after": "5s", "name": "on-call", "notify": ["oncall"]}]},
    }


ENV = {
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "PD_ROUTING_KEY": ROUTING_KEY,
    "PD_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def test_acknowledged_stops_escalation_and_resolved_is_recorded(tmp_path):
    target, receiver = Target(), Recorder()
    try:
        with LiveDaemon(tmp_path, config(target, receiver), ENV) as live:
            live.wait_status("web", "up")
            target.status = 503
            (trigger,) = receiver.wait_for(1, "/v2/enqueue", 15)
            assert trigger["event_action"] == "trigger"
            dedup = trigger["dedup_key"]
            alert_id = dedup.removeprefix("watchkeeper-")

            forged = signed("incident.acknowledged", dedup, secrets=("not-the-secret",))
            assert live.post(URL, None, content=forged[0], headers=forged[1]).status_code == 401
            stale = signed("incident.acknowledged", dedup, at=time.time() - 7200)
            assert live.post(URL, None, content=stale[0], headers=stale[1]).status_code == 401
            body, headers = signed("incident.acknowledged", dedup)
            answer = live.post(URL, None, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"done": "acknowledged"}
            # PagerDuty delivers at least once: the same signed event again is done once
            again = live.post(URL, None, content=body, headers=headers)
            assert (again.status_code, again.json()) == (200, {"done": "already"})
            assert live.daemon.runtime.book.by_id[alert_id].acked_by == "pagerduty:Tenex Engineer"

            time.sleep(6)  # the on-call level was due 5s after the trigger
            assert receiver.json("/oncall") == []
            assert "alert escalated" not in live.logs.text

            for kind in ("incident.unacknowledged", "incident.resolved"):
                body, headers = signed(kind, dedup)
                answer = live.post(URL, None, content=body, headers=headers)
                assert answer.json() == {"done": "recorded"}
            # our alert resolves from its check, not from PagerDuty
            assert live.daemon.runtime.book.by_id[alert_id].open

            body, headers = signed("incident.acknowledged", "d3640fbd41094207a1c11e58e46b1662")
            answer = live.post(URL, None, content=body, headers=headers)
            assert (answer.status_code, answer.json()) == (200, {"done": "unknown alert"})
            assert "pagerduty: webhook for an unknown alert" in live.logs.text

            live.flush()

            async def timeline():
                return await live.daemon.store.read("alert_events", alert_id)

            events = {(r.data["event"], r.data["detail"]) for r in live.call(timeline)}
            assert ("acknowledged", "pagerduty:Tenex Engineer") in events
            assert ("resolved in PagerDuty", "pagerduty:Tenex Engineer") in events
            assert ("unacknowledged in PagerDuty", "pagerduty:Tenex Engineer") in events

            entries = live.get("/api/audit").json()
            ack = next(e for e in entries if e["action"] == "ack")
            assert (ack["by"], ack["alert"], ack["source"]) == (
                "pagerduty:Tenex Engineer",
                alert_id,
                "pagerduty",
            )
            assert any(e["action"] == "resolved" for e in entries)
            denied = [e for e in entries if e["action"] == "denied"]
            assert sum(e["count"] for e in denied) == 2  # the forged and the stale one
            assert all(e["path"] == URL for e in denied)

            seen = [live.logs.text, json.dumps(entries)]
            for path in ("/api/status", "/api/alerts?status=all"):
                seen.append(live.get(path).text)
            for text in seen:
                assert WEBHOOK_SECRET not in text
                assert ROUTING_KEY not in text
    finally:
        target.close()
        receiver.close()
