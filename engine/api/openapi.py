"""The OpenAPI 3.1 document of the JSON routes (served at `GET /openapi.json`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from watchkeeper.engine.api.views import version

NULLABLE_STRING = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "description": "ISO-8601 UTC, e.g. 2026-12-10T02:00:00Z"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


UNAUTHORIZED = _error("No valid token (missing, wrong, or the admin API is closed).")
TOO_MANY = _error(
    "No valid token, and this source was refused too often: retry after `Retry-After` "
    "seconds. A valid token is never refused so."
)
ADMIN = [{"bearer": []}]


def _admin(
    summary: str,
    ok: dict[str, Any],
    *,
    codes: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    op: str,
) -> dict[str, Any]:
    responses = {**ok, "401": UNAUTHORIZED, "429": TOO_MANY, **(codes or {})}
    operation: dict[str, Any] = {
        "operationId": op,
        "summary": summary,
        "security": ADMIN,
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "CheckState": {
        "type": "object",
        "required": ["check", "environment", "status"],
        "properties": {
            "check": {"type": "string"},
            "environment": NULLABLE_STRING,
            "status": {"enum": ["up", "down", "degraded", "unknown"]},
            "last_run": TIME,
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks", "daemon", "store", "outbox"],
        "properties": {
            "status": {"enum": ["ok", "degraded", "unhealthy", "stopping"]},
            "version": {"type": "string"},
            "checks": {"type": "array", "items": _ref("CheckState")},
            "daemon": {
                "type": "object",
                "properties": {
                    "pid": {"type": "integer"},
                    "rss_bytes": {"type": "integer"},
                    "cpu_percent": {"type": "number"},
                    "cpu_seconds": {"type": "number"},
                    "open_fds": {"type": ["integer", "null"]},
                    "threads": {"type": "integer"},
                    "uptime_seconds": {"type": "number"},
                },
            },
            "store": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "state": {"enum": ["ok", "degraded"]},
                    "pending_writes": {"type": "integer"},
                },
            },
            "outbox": {"type": "object", "properties": {"depth": {"type": "integer"}}},
            "last_reload": {
                "description": "The last reload's outcome (null before the first): a refused "
                "or rolled-back one leaves the previous configuration running.",
                "type": ["object", "null"],
                "required": ["at", "ok"],
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "ok": {"type": "boolean"},
                    "problems": {"type": "integer", "description": "How many problems."},
                    "added": {"type": "integer"},
                    "removed": {"type": "integer"},
                    "changed": {"type": "integer"},
                },
            },
        },
    },
    "Ready": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    },
    "Alert": {
        "type": "object",
        "required": ["id", "check", "environment", "rule", "severity", "status", "summary"],
        "properties": {
            "id": {"type": "string"},
            "check": {"type": "string"},
            "environment": NULLABLE_STRING,
            "rule": {"type": "string"},
            "severity": {"type": "string"},
            "status": {"enum": ["pending", "firing", "resolved"]},
            "summary": {"type": "string"},
            "started_at": TIME,
            "resolved_at": TIME,
            "metric": NULLABLE_STRING,
            "value": {"type": ["number", "null"]},
            "threshold": {"type": ["number", "null"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "runbook": NULLABLE_STRING,
            "flapping": {"type": "boolean"},
            "held": NULLABLE_STRING,
            "acknowledged": {"type": "boolean"},
            "acked_by": NULLABLE_STRING,
            "source": {"enum": ["check", "internal", "external"]},
            "fingerprint": {"type": "string", "description": "External alerts: label set hash."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "generator_url": NULLABLE_STRING,
            "expires_at": TIME,
        },
    },
    "PostableAlert": {
        "type": "object",
        "description": "One alert as Alertmanager's v2 API takes it (`postableAlert`).",
        "required": ["labels"],
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "startsAt": {"type": "string", "format": "date-time"},
            "endsAt": {"type": "string", "format": "date-time"},
            "generatorURL": {"type": "string", "format": "uri"},
        },
    },
    "Status": {
        "type": "object",
        "description": "Everything the daemon knows; see docs/api.md for each part.",
        "required": ["status", "checks", "alerts", "store", "outbox", "scheduler", "backups"],
        "properties": {
            "status": {"enum": ["ok", "degraded"]},
            "version": {"type": "string"},
            "started_at": TIME,
            "uptime_seconds": {"type": "number"},
            "reloads": {"type": "integer"},
            "last_reload": {
                "description": "The last reload's outcome, as in /health, with each problem "
                "(file, line, column, path, level, message) instead of their count.",
                "type": ["object", "null"],
            },
            "daemon": {"type": "object"},
            "checks": {"type": "array", "items": {"type": "object"}},
            "alerts": {"type": "array", "items": _ref("Alert")},
            "store": {"type": "object"},
            "outbox": {"type": "object"},
            "scheduler": {"type": "object"},
            "backups": {"type": "object"},
            "replicas": {"type": "array", "items": {"type": "object"}},
            "maintenance": {"type": "object"},
            "slos": {"type": ["array", "null"], "items": {"type": "object"}},
        },
    },
    "AckRequest": {
        "type": "object",
        "properties": {
            "by": {"type": "string", "description": "Who acknowledges (audit log)."},
            "comment": {"type": "string"},
        },
    },
    "AckResult": {
        "type": "object",
        "required": ["status", "alert"],
        "properties": {
            "status": {"enum": ["acknowledged", "already", "requested", "resolved"]},
            "alert": _ref("Alert"),
        },
    },
    "SilenceRequest": {
        "type": "object",
        "required": ["reason"],
        "description": "Give `matchers` and/or check, environment, rule, severity, labels; "
        "and one of `duration` or `ends_at`.",
        "properties": {
            "matchers": {
                "type": "array",
                "items": {"type": "string"},
                "examples": [["check=api-health", "environment=~prod.*"]],
            },
            "check": {"type": ["string", "array"], "items": {"type": "string"}},
            "environment": {"type": ["string", "array"], "items": {"type": "string"}},
            "rule": {"type": ["string", "array"], "items": {"type": "string"}},
            "severity": {"type": ["string", "array"], "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "duration": {"type": ["string", "number"], "examples": ["2h"]},
            "starts_at": {"type": ["string", "number"]},
            "ends_at": {"type": ["string", "number"]},
            "reason": {"type": "string"},
            "created_by": {"type": "string"},
        },
    },
    "Silence": {
        "type": "object",
        "required": ["id", "status", "matchers", "starts_at", "ends_at", "reason"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["pending", "active", "expired"]},
            "matchers": {"type": "array", "items": {"type": "string"}},
            "starts_at": TIME,
            "ends_at": TIME,
            "created_by": {"type": "string"},
            "created_at": TIME,
            "reason": {"type": "string"},
            "expired_by": NULLABLE_STRING,
            "open_alerts_matched": {"type": "integer"},
        },
    },
    "EventRequest": {
        "type": "object",
        "required": ["event"],
        "properties": {
            "event": {"type": "string", "examples": ["deploy"]},
            "version": {"type": "string"},
            "environment": {"type": "string"},
            "message": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    },
    "EventResult": {
        "type": "object",
        "required": ["event", "notifiers"],
        "properties": {
            "event": {"type": "string"},
            "notifiers": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Problem": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "file": {"type": "string"},
            "line": {"type": "integer"},
            "column": {"type": "integer"},
            "path": {"type": "string"},
            "level": {"enum": ["error", "warning"]},
            "message": {"type": "string"},
        },
    },
    "ReloadResult": {
        "type": "object",
        "required": ["reloaded"],
        "properties": {
            "reloaded": {"type": "boolean"},
            "added": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
            "changed": {"type": "array", "items": {"type": "string"}},
            "notes": {"type": "array", "items": {"type": "string"}},
            "problems": {"type": "array", "items": _ref("Problem")},
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["at", "action", "by"],
        "properties": {
            "at": {"type": "string"},
            "action": {"type": "string"},
            "by": NULLABLE_STRING,
            "source": NULLABLE_STRING,
        },
    },
    "Beat": {
        "type": "object",
        "properties": {
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "log": {"type": "string", "description": "Tail of the job's output (last 10 kB)."},
        },
    },
    "BeatResult": {
        "type": "object",
        "required": ["ok", "check", "status"],
        "properties": {
            "ok": {"type": "boolean"},
            "check": {"type": "string"},
            "environment": NULLABLE_STRING,
            "status": {"enum": ["start", "ok", "fail"]},
            "extract_problems": {"type": "object"},
            "runs_dropped": {
                "type": "integer",
                "description": "Open runs this start dropped (more than 100 at once).",
            },
            "note": {"type": "string"},
        },
    },
}

_STRING_ERRORS = {"400": _error("A parameter is not valid.")}


@cache
def document() -> dict[str, Any]:
    """Return the OpenAPI document."""
    beat_params = [
        _path("check", "Heartbeat check: `name` or `name@environment`."),
        _query("status", {"enum": ["start", "ok", "fail"]}, "What the job reports; default ok."),
        _query("exit", {"type": "integer"}, "The job's exit code; non-zero means fail."),
        _query("rid", {"type": "string"}, "Run id pairing `start` with its end."),
    ]
    beat = {
        "operationId": "heartbeat",
        "summary": "Record a heartbeat (healthchecks.io style).",
        "security": [{"bearer": []}, {"token": []}],
        "parameters": beat_params,
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": _ref("Beat")},
                "text/plain": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": _json(_ref("BeatResult"), "Beat recorded."),
            "400": _error(
                "A parameter or the body is not valid, or (with a valid token) the name is "
                "ambiguous."
            ),
            "401": _error("No valid token; the same answer whether the check exists or not."),
            "404": _error("No heartbeat check of that name (with a valid token only)."),
            "413": _error("Body larger than 100 kB."),
            "429": TOO_MANY,
            "422": _error("`metrics` or `log` of the wrong type."),
        },
    }
    beat_signal = {
        **beat,
        "operationId": "heartbeat_signal",
        "summary": "Record a heartbeat: `/start`, `/ok`, `/fail` or an exit code as the last "
        "path segment.",
        "parameters": [*beat_params, _path("signal", "start, ok, fail or an exit code.")],
    }
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Daemon health: 200 while it runs and its store takes writes.",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "Healthy."),
                    "503": _json(_ref("Health"), "The store refuses writes, or stopping."),
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "200 once the configuration is loaded and the store reachable.",
                "security": [],
                "responses": {
                    "200": _json(_ref("Ready"), "Ready."),
                    "503": _json(_ref("Ready"), "Not ready yet, or stopping."),
                },
            }
        },
        "/api/status": {
            "get": _admin(
                "Everything: checks, alerts, store, outbox, scheduler, backups, replicas.",
                {"200": _json(_ref("Status"), "The daemon's state.")},
                op="status",
            )
        },
        "/api/alerts": {
            "get": _admin(
                "Open alerts, or all recent ones.",
                {"200": _json({"type": "array", "items": _ref("Alert")}, "Alerts.")},
                params=[
                    _query("status", {"enum": ["open", "all"]}, "open (default) or all."),
                    _query("limit", {"type": "integer", "minimum": 1}, "At most this many."),
                ],
                codes={**_STRING_ERRORS, "503": _error("The store cannot be read.")},
                op="alerts",
            )
        },
        "/api/alerts/{alert_id}/ack": {
            "post": _admin(
                "Acknowledge an alert: escalation and repeats stop.",
                {
                    "200": _json(_ref("AckResult"), "Acknowledged (or already was)."),
                    "202": _json(_ref("AckResult"), "Another replica will apply it."),
                },
                params=[_path("alert_id", "The alert's id.")],
                body=_ref("AckRequest"),
                body_required=False,
                codes={
                    "400": _error("The body is not JSON."),
                    "404": _error("No alert with that id."),
                    "409": _json(_ref("AckResult"), "The alert is resolved."),
                    "413": _error("Body too large."),
                    "422": _error("A field has the wrong type."),
                    "503": _error("The store cannot be reached."),
                },
                op="ack",
            )
        },
        "/api/alerts/silences": {
            "get": _admin(
                "Silences: active and pending (default), or all.",
                {"200": _json({"type": "array", "items": _ref("Silence")}, "Silences.")},
                params=[_query("status", {"enum": ["active", "all"]}, "active or all.")],
                codes={**_STRING_ERRORS, "503": _error("The store cannot be read.")},
                op="silences",
            ),
            "post": _admin(
                "Silence matching alerts for a while.",
                {"201": _json(_ref("Silence"), "The new silence.")},
                body=_ref("SilenceRequest"),
                codes={
                    "400": _error("The body is not JSON."),
                    "413": _error("Body too large."),
                    "422": _error("The silence is not valid."),
                    "503": _error("The store cannot be reached."),
                },
                op="silence",
            ),
        },
        "/api/alerts/silences/{silence_id}": {
            "delete": _admin(
                "End a silence now.",
                {"200": _json(_ref("Silence"), "The silence, ended.")},
                params=[_path("silence_id", "The silence's id.")],
                codes={
                    "400": _error("The body is not JSON."),
                    "404": _error("No silence with that id."),
                    "413": _error("Body too large."),
                    "422": _error("A field has the wrong type."),
                    "503": _error("The store cannot be reached."),
                },
                op="expire_silence",
            )
        },
        "/api/heartbeat/{check}": {"post": beat},
        "/api/heartbeat/{check}/{signal}": {"post": beat_signal},
        "/api/events": {
            "post": _admin(
                "Post an event (deploy, rollback); it is routed like an alert.",
                {"200": _json(_ref("EventResult"), "The notifiers told.")},
                body=_ref("EventRequest"),
                codes={
                    "400": _error("The body is not JSON."),
                    "413": _error("Body too large."),
                    "422": _error("The event is not valid."),
                },
                op="event",
            )
        },
        "/api/v2/alerts": {
            "post": {
                "operationId": "post_alerts",
                "summary": "Alertmanager's v2 intake: Prometheus posts its alerts here; each "
                "is routed, grouped, silenced and escalated like watchkeeper's own.",
                "security": ADMIN,
                "description": "The admin token or `server.intake_token`. An alert is known "
                "by its labels; `endsAt` in the past resolves it, as does no resend before "
                "its `endsAt` or within `server.intake_resolve_timeout`.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": _ref("PostableAlert")}
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Taken (an empty body, as Alertmanager answers)."},
                    "400": _error("Not a list of alerts, or some malformed (the rest taken)."),
                    "401": UNAUTHORIZED,
                    "413": _error("Body larger than 1 MiB."),
                    "429": _error("Refused too often, or too many external alerts open."),
                },
            }
        },
        "/api/reload": {
            "post": _admin(
                "Reload monitor.yaml, validated first; an invalid file changes nothing.",
                {"200": _json(_ref("ReloadResult"), "Reloaded; what changed.")},
                codes={"422": _json(_ref("ReloadResult"), "Invalid; the old config runs on.")},
                op="reload",
            )
        },
        "/api/audit": {
            "get": _admin(
                "The audit log, newest first.",
                {"200": _json({"type": "array", "items": _ref("AuditEntry")}, "Entries.")},
                params=[
                    _query("since", {"type": "string"}, "How far back, e.g. 7d (default)."),
                    _query("limit", {"type": "integer", "minimum": 1}, "At most this many."),
                ],
                codes={**_STRING_ERRORS, "503": _error("The store cannot be read.")},
                op="audit",
            )
        },
    }
    signed = {
        "401": _error("The signature does not verify, is stale or was used before."),
        "429": _error("Refused too often from this source: retry after `Retry-After` seconds."),
    }
    paths["/api/integrations/slack/actions"] = {
        "post": {
            "operationId": "slack_actions",
            "summary": "A click on a Slack message's button (Acknowledge, Silence 1 h), "
            "signed with the app's signing secret (X-Slack-Signature).",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {"payload": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "Taken (or about an unknown alert: nothing done)."},
                **signed,
            },
        }
    }
    paths["/api/integrations/pagerduty"] = {
        "post": {
            "operationId": "pagerduty_webhook",
            "summary": "A PagerDuty V3 webhook (incident acknowledged, resolved, "
            "unacknowledged), signed with the subscription's secret (X-PagerDuty-Signature).",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["done"],
                        "properties": {"done": {"type": "string"}},
                    },
                    "Taken: what was done (`acknowledged`, `recorded`, `unknown alert`...).",
                ),
                **signed,
                "503": _error("The store cannot be reached; PagerDuty sends it again."),
            },
        }
    }
    paths["/api/admin/monitoring"] = {
        "get": {
            **paths["/api/status"]["get"],
            "operationId": "admin_monitoring",
            "summary": "The seed's name for /api/status.",
        }
    }
    paths["/api/health"] = {
        "get": {
            **paths["/health"]["get"],
            "operationId": "api_health",
            "summary": "The seed's name for /health.",
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "watchkeeper",
            "version": version(),
            "description": "The HTTP API of a running watchkeeper daemon. The status page "
            "(`/`), badges (`/badge/{check}.svg`), `/metrics` and the healthchecks.io-style "
            "ping URLs (`/ping/...`, plain text) are not JSON and are described in "
            "docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }
