"""The sentry probe against a local HTTP server answering as Sentry's documented API does.

Shapes from https://docs.sentry.io/api/: Retrieve a Project, List an Organization's
Issues (paginated with `Link` headers, https://docs.sentry.io/api/pagination/) and
Query Discover Events in Table Format. The tests check the requests the probe makes
as closely as the answers it reads.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest
from pydantic import ValidationError

from watchkeeper.engine.testing import (
    HttpTestServer,
    RecordedRequest,
    Reply,
    check_once,
    fired_alerts,
    free_port,
    open_probe,
    probe_options,
)
from watchkeeper.plugins.probes.sentry import sentry_period

TOKEN = "sntrys_eyJpYXQiOjE3MDAwMDAwMDAsInRva2VuIjoic2VjcmV0In0_s3cr3tPart"
PROJECT = "/api/0/projects/acme/web/"
ISSUES = "/api/0/organizations/acme/issues/"
EVENTS = "/api/0/organizations/acme/events/"


def issue(number: int, title: str = "ZeroDivisionError: division by zero") -> dict:
    """One issue as the issues endpoints return it (trimmed to the usual keys)."""
    return {
        "id": str(4500 + number),
        "shortId": f"WEB-{number}",
        "title": title,
        "culprit": "app.views in checkout",
        "permalink": f"https://acme.sentry.io/issues/{4500 + number}/",
        "level": "error",
        "status": "unresolved",
        "isUnhandled": True,
        "count": "12",
        "userCount": 3,
        "firstSeen": "2026-11-26T20:01:02.000000Z",
        "lastSeen": "2026-11-26T20:41:02.000000Z",
        "project": {"id": "42", "name": "Web", "slug": "web"},
        "type": "error",
    }


def link(base: str, next_cursor: str, more: bool) -> str:
    return (
        f'<{base}?&cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
        f'<{base}?&cursor={next_cursor}>; rel="next"; results="{str(more).lower()}"; '
        f'cursor="{next_cursor}"'
    )


class FakeSentry(HttpTestServer):
    """Sentry's three endpoints; `pages` are the issue pages, linked with cursors."""

    def __init__(self, pages: list[list[dict]], events: int = 17):
        super().__init__()
        self.pages = pages
        self.reply(PROJECT, json={"id": "42", "slug": "web", "name": "Web", "status": "active"})
        self.reply(ISSUES, handler=self._issues)
        self.reply(
            EVENTS,
            json={
                "data": [{"count()": events}],
                "meta": {"fields": {"count()": "integer"}, "units": {"count()": None}},
            },
        )

    def _issues(self, request: RecordedRequest) -> Reply:
        cursor = request.query.get("cursor", ["0:0:0"])[0]
        index = int(cursor.split(":")[1]) // 100
        more = index + 1 < len(self.pages)
        body = self.pages[index] if index < len(self.pages) else []
        headers = {
            "Content-Type": "application/json",
            "Link": link(self.url(ISSUES), f"0:{(index + 1) * 100}:0", more),
        }
        return Reply(200, json.dumps(body).encode(), headers)

    def options(self, **extra) -> dict:
        return {
            "organization": "acme",
            "project": "web",
            "auth_token": TOKEN,
            "api_url": self.url("/api/0/"),
            **extra,
        }


@pytest.fixture
def sentry():
    servers = []

    def start(pages: list[list[dict]], events: int = 17) -> FakeSentry:
        servers.append(FakeSentry(pages, events).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_new_issues_and_events(sentry):
    server = sentry([[issue(1), issue(2)], [issue(3, "TypeError: x is undefined")]])
    result = check_once("sentry", server.options(environment="production", window="1h"))
    assert result.ok, result.message
    assert result.metrics == {"new_issues": 3, "events": 17}
    assert result.message == (
        "acme/web (production): 3 new issues in the last 1h, 17 events: "
        "WEB-1 ZeroDivisionError: division by zero (12 events) "
        "https://acme.sentry.io/issues/4501/; "
        "WEB-2 ZeroDivisionError: division by zero (12 events) "
        "https://acme.sentry.io/issues/4502/; "
        "WEB-3 TypeError: x is undefined (12 events) https://acme.sentry.io/issues/4503/"
    )
    assert [i["shortId"] for i in result.details["issues"]] == ["WEB-1", "WEB-2", "WEB-3"]
    assert result.details["issues"][0]["permalink"] == "https://acme.sentry.io/issues/4501/"

    paths = [r.path for r in server.requests]
    assert paths == [PROJECT, ISSUES, ISSUES, EVENTS]
    assert all(r.method == "GET" for r in server.requests)
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in server.requests)
    first, second = server.requests[1].query, server.requests[2].query
    assert first == {
        "project": ["42"],
        "environment": ["production"],
        "query": ["is:unresolved firstSeen:-1h"],
        "statsPeriod": ["1h"],
        "limit": ["100"],
    }
    assert second == {**first, "cursor": ["0:100:0"]}
    assert server.requests[3].query == {
        "field": ["count()"],
        "project": ["42"],
        "environment": ["production"],
        "statsPeriod": ["1h"],
        "query": ["!event.type:transaction"],
    }


def test_defaults_ask_for_a_day_in_every_environment(sentry):
    server = sentry([[]], events=0)
    result = check_once("sentry", server.options())
    assert result.ok, result.message
    assert result.metrics == {"new_issues": 0, "events": 0}
    assert result.message == "acme/web: 0 new issues in the last 1d, 0 events"
    issues = server.requests[1].query
    assert "environment" not in issues
    assert issues["query"] == ["is:unresolved firstSeen:-1d"]
    assert issues["statsPeriod"] == ["1d"]


def test_own_queries_and_no_event_count(sentry):
    server = sentry([[issue(7)]])
    result = check_once(
        "sentry",
        server.options(query="is:unresolved level:fatal", count_events=False, window="90m"),
    )
    assert result.metrics == {"new_issues": 1}
    assert result.message.startswith("acme/web: 1 new issue in the last 1h30m: WEB-7 ")
    assert [r.path for r in server.requests] == [PROJECT, ISSUES]
    assert server.requests[1].query["query"] == ["is:unresolved level:fatal firstSeen:-90m"]


def test_pages_are_capped(sentry):
    server = sentry([[issue(n)] for n in range(5)])
    result = check_once("sentry", server.options(max_pages=2, count_events=False))
    assert result.metrics["new_issues"] == 2
    assert result.message.startswith("acme/web: at least 2 new issues in the last 1d")
    assert result.details["truncated_at_pages"] == 2
    assert len([r for r in server.requests if r.path == ISSUES]) == 2


def test_only_the_cursor_is_taken_from_the_link_header(sentry):
    """The token goes to api_url only, whatever host a Link header names."""
    server = sentry([[issue(1)], [issue(2)]])
    original = server.routes[ISSUES].handler

    def elsewhere(request: RecordedRequest) -> Reply:
        reply = original(request)
        reply.headers["Link"] = reply.headers["Link"].replace(server.url(""), "https://evil.test")
        return reply

    server.reply(ISSUES, handler=elsewhere)
    result = check_once("sentry", server.options(count_events=False))
    assert result.metrics["new_issues"] == 2
    assert server.requests[-1].query["cursor"] == ["0:100:0"]


def test_project_id_is_looked_up_once_per_process(sentry):
    server = sentry([[issue(1)]])

    async def twice():
        async with open_probe("sentry") as runner:
            return [await runner.check(server.options()) for _ in range(2)]

    results = anyio.run(twice)
    assert all(r.ok for r in results)
    assert [r.path for r in server.requests].count(PROJECT) == 1
    assert results[1].details["project_id"] == "42"


@pytest.mark.parametrize(
    ("path", "status", "body", "message"),
    [
        (PROJECT, 401, {"detail": "Invalid token"}, "Sentry rejected the auth token (HTTP 401)"),
        (
            PROJECT,
            404,
            {"detail": "The requested resource does not exist"},
            "project acme/web was not found (HTTP 404: The requested resource does not exist)",
        ),
        (
            ISSUES,
            403,
            {"detail": f"Token {TOKEN} lacks event:read"},
            "the auth token may not read its issues (HTTP 403: Token ********** lacks event:read)",
        ),
        (EVENTS, 429, {}, "Sentry is rate limiting these requests (HTTP 429)"),
        (ISSUES, 400, {"detail": "Invalid query"}, "HTTP 400 from {url}: Invalid query"),
        (EVENTS, 200, {"rows": []}, "unexpected answer from {url}: no `data` rows"),
    ],
)
def test_errors_name_the_problem_never_the_token(sentry, path, status, body, message):
    server = sentry([[issue(1)]])
    server.reply(path, status, json=body)
    result = check_once("sentry", server.options())
    assert not result.ok
    assert result.message == "acme/web: " + message.format(url=server.url(path))
    assert TOKEN not in result.message
    assert TOKEN not in repr(result.details)


def test_not_json(sentry):
    server = sentry([[]])
    server.reply(PROJECT, body="<html>login</html>")
    result = check_once("sentry", server.options())
    assert result.message == f"acme/web: {server.url(PROJECT)} did not answer with JSON"


def test_hanging_api_times_out_with_the_endpoint_named(sentry):
    server = sentry([[]])
    server.reply(ISSUES, hang=True)
    start = time.perf_counter()
    result = check_once("sentry", server.options(), timeout=1)
    assert time.perf_counter() - start < 1.5
    assert result.message == f"timed out after 1s waiting for {server.url(ISSUES)}"
    assert result.details["timeout"] is True


def test_unreachable():
    port = free_port()
    options = {"organization": "acme", "project": "web", "auth_token": TOKEN}
    result = check_once("sentry", {**options, "api_url": f"http://127.0.0.1:{port}/api/0"})
    assert not result.ok
    assert result.message == (
        f"cannot reach Sentry at http://127.0.0.1:{port}/api/0/: connection refused"
    )


def test_options():
    base = {"organization": "acme", "project": "web", "auth_token": TOKEN}
    parsed = probe_options("sentry", {**base, "api_url": "https://sentry.example.com/api/0"})
    assert parsed.api_url == "https://sentry.example.com/api/0/"
    assert TOKEN not in repr(parsed)
    with pytest.raises(ValidationError, match="at least 1m"):
        probe_options("sentry", {**base, "window": "30s"})
    with pytest.raises(ValidationError, match="expected an http"):
        probe_options("sentry", {**base, "api_url": "sentry.io"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        probe_options("sentry", {**base, "token": "x"})


@pytest.mark.parametrize(
    ("seconds", "period"),
    [(60, "1m"), (90, "2m"), (3600, "1h"), (5400, "90m"), (86400, "1d"), (14 * 86400, "14d")],
)
def test_sentry_period(seconds, period):
    assert sentry_period(seconds) == period


def test_thresholds_on_both_metrics(sentry):
    server = sentry([[issue(1), issue(2)]], events=250)
    result = check_once("sentry", server.options(window="1h"))
    rules = [
        {"metric": "new_issues", "above": 0, "severity": "warning"},
        {"metric": "events", "above": 100, "severity": "high"},
    ]
    alerts = {a.rule: a for a in fired_alerts(result, rules)}
    assert alerts["new_issues"].summary == "new_issues is 2, above the warning threshold 0"
    assert alerts["events"].severity == "high"
    assert alerts["events"].summary == "events is 250, above the high threshold 100"


@pytest.mark.slow
def test_evaluation_through_a_config_and_the_cli(sentry, cli, write_config):
    server = sentry([[issue(1), issue(2)], [issue(3)]], events=17)
    write_config(
        f"""
        version: 1
        checks:
          sentry-errors:
            probe: sentry
            organization: acme
            project: web
            environment: production
            auth_token: ${{SENTRY_AUTH_TOKEN}}
            api_url: {server.url("/api/0/")}
            window: 1h
            thresholds:
              - {{metric: new_issues, above: 0, severity: warning}}
              - {{metric: events, above: 100, severity: high}}
        notifiers:
          console: {{type: log}}
        routes:
          - match: {{}}
            notify: [console]
        """
    )
    env = {"SENTRY_AUTH_TOKEN": TOKEN}
    checked = cli("check", "sentry-errors", "--format", "json", env=env)
    ran = cli("--log-level", "debug", "run", "--once", "--dry-run", env=env)
    assert checked.code == 0, checked.output
    [row] = checked.json()
    assert row["metrics"] == {"new_issues": 3, "events": 17}
    assert row["message"].startswith("acme/web (production): 3 new issues in the last 1h")
    assert ran.code == 0, ran.output
    assert "sentry-errors: new_issues 3 above 0 (warning)" in ran.stdout  # the headline
    assert "sentry-errors: events" not in ran.stdout  # 17 events: under the high threshold
    assert TOKEN not in checked.output
    assert TOKEN not in ran.output
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in server.requests)
