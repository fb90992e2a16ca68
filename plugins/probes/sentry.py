"""The `sentry` probe: new unresolved issues and event counts from Sentry's web API.

Three documented endpoints (https://docs.sentry.io/api/):

- `GET projects/{org}/{project}/` (Retrieve a Project) once per process, for the
  project's numeric id the other two take;
- `GET organizations/{org}/issues/` (List an Organization's Issues) with
  `query=<query> firstSeen:-<window>`, following the `Link` header's `next` cursor;
- `GET organizations/{org}/events/` (Query Discover Events in Table Format) with
  `field=count()` for the events in the window.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import Field, field_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import USER_AGENT, masked_url, network_reason, time_budget
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Duration, format_duration

PAGE_SIZE = 100
NAMED = 5
"""How many new issues the message names (title, event count, link); details list 20."""


class SentryOptions(ProbeOptions):
    """Ask Sentry for new unresolved issues and error counts of a project."""

    organization: str = Field(description="Organisation slug.")
    project: str = Field(description="Project slug.")
    auth_token: Secret = Field(
        description="Sentry auth token with project:read, event:read and org:read."
    )
    api_url: str = Field(
        "https://sentry.io/api/0/",
        description="API base URL (self-hosted Sentry: https://sentry.example.com/api/0/).",
    )
    environment: str | None = Field(None, description="Only this Sentry environment.")
    window: Duration = Field(86400.0, description="New issues first seen within this window.")
    query: str = Field("is:unresolved", description="Issue search query.")
    count_events: bool = Field(
        True, description="Also count the events of the window (the `events` metric)."
    )
    events_query: str = Field(
        "!event.type:transaction",
        description="Search query selecting the events counted (default: all but transactions).",
    )
    max_pages: int = Field(
        10, ge=1, le=100, description="Read at most this many pages of 100 issues."
    )

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http(s) URL such as https://sentry.io/api/0/")
        return value if value.endswith("/") else value + "/"

    @field_validator("window")
    @classmethod
    def _at_least_a_minute(cls, value: float) -> float:
        if value < 60:
            raise ValueError("Sentry counts in minutes: use a window of at least 1m")
        return value


class SentryError(Exception):
    """Sentry answered, but not with what the probe needs; the message says why."""


class SentryProbe(Probe):
    """Count a Sentry project's new issues and events within a window."""

    type = "sentry"
    Options = SentryOptions
    metrics = (
        Metric(
            "new_issues",
            "count",
            "issues matching `query` first seen within `window` "
            "(a lower bound when `max_pages` cut the list short)",
        ),
        Metric(
            "events",
            "count",
            "events matching `events_query` within `window` (with `count_events`)",
        ),
    )

    def __init__(self) -> None:
        self.client: Any = None
        self._project_ids: dict[tuple[str, str, str], str] = {}

    async def open(self, ctx: OpenContext) -> None:
        import httpx

        # one client for every sentry check of this process: its connection pool keeps
        # the TLS session to sentry.io between runs
        self.client = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def check(self, options: SentryOptions, ctx: ProbeContext) -> Result:
        import anyio
        import httpx

        if self.client is None:
            await self.open(OpenContext(base_dir=ctx.base_dir, log=ctx.log))
        api = _Api(self.client, options, time.perf_counter() + time_budget(ctx.timeout))
        where = f"{options.organization}/{options.project}"
        if options.environment:
            where += f" ({options.environment})"
        metrics: dict[str, float] = {}
        try:
            project_id = await self._project_id(api, options)
            issues, complete = await _new_issues(api, options, project_id)
            metrics["new_issues"] = float(len(issues))
            if options.count_events:
                metrics["events"] = float(await _events(api, options, project_id))
        except (TimeoutError, httpx.TimeoutException):
            return Result(
                ok=False,
                message=f"timed out after {format_duration(ctx.timeout)} waiting for "
                f"{api.shown(api.last)}",
                metrics=metrics,
                details={"timeout": True},
            )
        except (httpx.HTTPError, OSError, anyio.BrokenResourceError) as exc:
            reason = network_reason(exc) or str(exc) or type(exc).__name__
            return Result(
                ok=False,
                message=f"cannot reach Sentry at {api.shown('')}: {api.clean(reason)}",
                metrics=metrics,
            )
        except SentryError as exc:
            return Result(ok=False, message=f"{where}: {exc}", metrics=metrics)
        window = format_duration(options.window)
        count = f"{len(issues)}" if complete else f"at least {len(issues)}"
        noun = "issue" if len(issues) == 1 else "issues"
        message = f"{where}: {count} new {noun} in the last {window}"
        if "events" in metrics:
            events = int(metrics["events"])
            message += f", {events} event" + ("" if events == 1 else "s")
        if issues:
            shown = [_issue_line(i) for i in issues[:NAMED]]
            more = len(issues) - len(shown)
            message += ": " + "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        details: dict[str, Any] = {
            "issues": [_issue_detail(i) for i in issues[:20]],
            "project_id": project_id,
        }
        if not complete:
            details["truncated_at_pages"] = options.max_pages
        return Result(ok=True, message=message, metrics=metrics, details=details)

    async def _project_id(self, api: _Api, options: SentryOptions) -> str:
        key = (options.api_url, options.organization, options.project)
        cached = self._project_ids.get(key)
        if cached is not None:
            return cached
        path = f"projects/{_slug(options.organization)}/{_slug(options.project)}/"
        project, _ = await api.get(
            path, {}, what=f"project {options.organization}/{options.project}"
        )
        if not isinstance(project, dict) or "id" not in project:
            raise SentryError(f"unexpected answer from {api.shown(path)}: no project id")
        self._project_ids[key] = str(project["id"])
        return self._project_ids[key]


class _Api:
    """GET requests to one Sentry API within one run's time budget."""

    def __init__(self, client: Any, options: SentryOptions, deadline: float):
        self.client = client
        self.options = options
        self.deadline = deadline
        self.token = options.auth_token.get_secret_value()
        self.last = ""

    def shown(self, path: str) -> str:
        return masked_url(self.options.api_url + path.split("?")[0])

    def clean(self, text: str) -> str:
        """Return text from Sentry or the network with the token masked."""
        return text.replace(self.token, MASK) if self.token else text

    async def get(
        self, path: str, params: dict[str, Any], *, what: str
    ) -> tuple[Any, dict[str, dict[str, str]]]:
        """Return the JSON body and the parsed Link header of a GET, or raise SentryError."""
        import anyio

        self.last = path
        left = self.deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError
        with anyio.fail_after(left):
            response = await self.client.get(
                self.options.api_url + path,
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=left,
            )
            body = await response.aread()
        code = response.status_code
        if code == 401:
            raise SentryError("Sentry rejected the auth token (HTTP 401)")
        if code == 403:
            raise SentryError(f"the auth token may not read {what} (HTTP 403{self._detail(body)})")
        if code == 404 and what.startswith("project "):
            raise SentryError(f"{what} was not found (HTTP 404{self._detail(body)})")
        if code == 429:
            raise SentryError("Sentry is rate limiting these requests (HTTP 429)")
        if not 200 <= code < 300:
            raise SentryError(f"HTTP {code} from {self.shown(path)}{self._detail(body)}")
        try:
            document = response.json()
        except ValueError:
            raise SentryError(f"{self.shown(path)} did not answer with JSON") from None
        return document, response.links

    def _detail(self, body: bytes) -> str:
        import json

        try:
            detail = json.loads(body).get("detail")
        except (ValueError, AttributeError):
            return ""
        if not isinstance(detail, str) or not detail:
            return ""
        detail = " ".join(detail.split())
        return ": " + self.clean(detail if len(detail) <= 200 else detail[:199] + "…")


async def _new_issues(
    api: _Api, options: SentryOptions, project_id: str
) -> tuple[list[dict[str, Any]], bool]:
    """Return the issues first seen within the window, and whether that is all of them."""
    period = sentry_period(options.window)
    params: dict[str, Any] = {
        "project": project_id,
        "query": f"{options.query} firstSeen:-{period}".strip(),
        "statsPeriod": period,
        "limit": PAGE_SIZE,
    }
    if options.environment:
        params["environment"] = options.environment
    path = f"organizations/{_slug(options.organization)}/issues/"
    issues: list[dict[str, Any]] = []
    for _ in range(options.max_pages):
        page, links = await api.get(path, params, what="its issues")
        if not isinstance(page, list):
            raise SentryError(f"unexpected answer from {api.shown(path)}: not a list of issues")
        issues += [issue for issue in page if isinstance(issue, dict)]
        following = links.get("next") or {}
        # only the cursor is taken from the link: the token goes to api_url and nowhere else
        if following.get("results") != "true" or not following.get("cursor"):
            return issues, True
        params = {**params, "cursor": following["cursor"]}
    return issues, False


async def _events(api: _Api, options: SentryOptions, project_id: str) -> int:
    params: dict[str, Any] = {
        "field": "count()",
        "project": project_id,
        "statsPeriod": sentry_period(options.window),
        "query": options.events_query,
    }
    if options.environment:
        params["environment"] = options.environment
    path = f"organizations/{_slug(options.organization)}/events/"
    document, _ = await api.get(path, params, what="its events")
    rows = document.get("data") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise SentryError(f"unexpected answer from {api.shown(path)}: no `data` rows")
    if not rows:
        return 0
    value = rows[0].get("count()") if isinstance(rows[0], dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise SentryError(f"unexpected answer from {api.shown(path)}: no count()")
    return int(value)


def sentry_period(seconds: float) -> str:
    """Write a window as Sentry writes periods: `14d`, `6h`, `90m` (minutes rounded up)."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _slug(text: str) -> str:
    return quote(text, safe="")


def _issue_line(issue: dict[str, Any]) -> str:
    """Name an issue for people: `WEB-1 ZeroDivisionError: … (12 events) https://…`."""
    title = " ".join(str(issue.get("title") or "").split())
    if len(title) > 80:
        title = title[:79] + "…"
    line = f"{issue.get('shortId') or issue.get('id')} {title}".strip()
    count = _count(issue.get("count"))
    if count is not None:
        line += f" ({count} event{'' if count == 1 else 's'})"
    link = issue.get("permalink")
    if isinstance(link, str) and urlsplit(link).scheme in ("http", "https") and " " not in link:
        line += f" {link}"
    return line


def _count(value: Any) -> int | None:
    """Sentry sends an issue's event count as a string ("12")."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _issue_detail(issue: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "shortId", "title", "level", "firstSeen", "lastSeen", "count", "permalink")
    return {key: issue[key] for key in keys if key in issue}


@hookimpl
def watchkeeper_probes():
    return [SentryProbe]
