"""The status page and badges: rendered on the server, no JavaScript, strict CSP, and seen
in a real headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

import re
import shutil
import sys
import time
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon
from tests.daemon_harness import Target

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"


def config(target: Target, **server) -> dict:
    soon = datetime.now(UTC) + timedelta(days=2)
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "environments": {"production": {}, "staging": {}},
        "server": {"admin_token": "${ADMIN_TOKEN}", "title": "Example <status>", **server},
        "checks": {
            "web": {
                "probe": "http",
                "url": f"{target.url}/health",
                "environments": ["production", "staging"],
                "schedule": {"every": "1s"},
                "timeout": "2s",
                "labels": {"team": "web"},
            },
            "db": {
                "probe": "tcp",
                "host": "127.0.0.1",
                "port": 9,
                "schedule": {"every": "1d"},
                "labels": {"team": "data"},
            },
        },
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"], "group_wait": "0s"}],
        "maintenance": [
            {
                "name": "db-upgrade",
                "start": soon.isoformat(),
                "end": (soon + timedelta(hours=2)).isoformat(),
                "checks": ["db"],
                "reason": "PostgreSQL 17",
            }
        ],
    }


@pytest.fixture
def live(tmp_path, target):
    with LiveDaemon(tmp_path, config(target), {"ADMIN_TOKEN": ADMIN_TOKEN}) as daemon:
        # both web instances have run: the headline counts only db as waiting
        daemon.wait_status("web@production", "up")
        daemon.wait_status("web@staging", "up")
        yield daemon


def page(live, path: str = "/") -> str:
    response = httpx.get(live.url + path)  # as the public sees it
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def check_block(html: str, name: str) -> str:
    match = re.search(
        rf'<li class="check" id="check-{re.escape(name)}".*?</li>\s*</ul>|'
        rf'<li class="check" id="check-{re.escape(name)}".*?(?=<li class="check")',
        html,
        re.DOTALL,
    )
    assert match, f"no check {name} on the page"
    return match.group(0)


def test_the_page_is_static_html_with_a_strict_policy(live):
    response = httpx.get(live.url + "/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'self'" in csp
    html = response.text
    assert 'http-equiv="refresh"' not in html  # no timed reload unless the reader asks
    assert 'href="/?refresh=30"' in html
    again = page(live, "/?refresh=30")
    assert '<meta http-equiv="refresh" content="30">' in again
    assert 'href="/"' in again  # the way back: stop auto-refresh
    assert 'href="/checks/web%40production?refresh=30"' in again  # the choice is carried
    assert "<script" not in html.lower()
    assert " style=" not in html  # inline styles would break under the policy
    assert "<title>Example &lt;status&gt;</title>" in html  # escaped, not markup
    assert httpx.get(live.url + "/static/status.css").headers["content-type"].startswith("text/css")


def test_checks_grouped_with_uptime_bars(live):
    live.flush()
    html = page(live)
    groups = re.findall(r'<div class="group">\s*<h3>(.*?)</h3>', html)
    assert groups == ["production", "staging", "Other"]
    block = check_block(html, "web@production")
    assert 'data-status="up"' in block
    assert block.count('<span class="d-') == 90
    assert 'class="d-up"' in block  # today, counted from raw results
    assert "100%" in block


def test_grouping_by_label(tmp_path, target):
    with LiveDaemon(
        tmp_path, config(target, group_by="label:team"), {"ADMIN_TOKEN": ADMIN_TOKEN}
    ) as live:
        html = page(live)
    assert re.findall(r'<div class="group">\s*<h3>(.*?)</h3>', html) == ["data", "web"]


def test_uptime_bars_use_rollups_then_raw_results(live):
    from watchkeeper.engine.state.store import Row

    today = datetime.now(UTC).date()
    rollups = [
        Row(
            key="web@staging",
            at=time.time() - n * 86400,
            data={
                "date": (today - timedelta(days=n)).isoformat(),
                "runs": 1000,
                "failures": failures,
            },
        )
        for n, failures in ((80, 0), (40, 5), (20, 50), (10, 500))
    ]
    earlier = datetime.combine(today - timedelta(days=3), datetime.min.time(), UTC).timestamp()
    results = [
        Row(key="web@staging", at=earlier + 60 * i, data={"ok": i % 4 != 0}) for i in range(8)
    ]

    async def seed() -> None:
        await live.daemon.store.append("rollups", rollups)
        await live.daemon.store.append("results", results)

    live.call(seed)
    live.wait_status("web@staging", "up")
    live.flush()  # today is counted from the daemon's own raw results
    html = page(live)
    bars = re.findall(r'<span class="(d-[a-z]+)" title="([^"]+)"', check_block(html, "web@staging"))
    by_date = {title.split(":")[0]: css for css, title in bars}

    def on(days_ago: int) -> str:
        return by_date[(today - timedelta(days=days_ago)).isoformat()]

    assert on(80) == "d-up"
    assert on(40) == "d-minor"  # 99.5%
    assert on(20) == "d-major"  # 95%
    assert on(10) == "d-down"  # 50%
    assert on(3) == "d-down"  # 6 of 8 from raw results: 75%
    assert on(60) == "d-none"
    assert on(0) == "d-up"
    assert "75% of 8 runs" in html


def test_incidents_with_their_timeline_and_maintenance(live, target):
    target.status = 503
    live.wait_status("web@production", "down")
    alert = next(a for a in live.get("/api/alerts").json() if a["check"] == "web")
    live.post(f"/api/alerts/{alert['id']}/ack", json={"by": "dana"})
    live.flush()
    html = page(live)
    assert 'id="incidents"' in html
    assert "fired" in html
    assert "dana" in html
    assert 'class="headline h-down"' in html
    assert "HTTP 503" not in html  # summaries may name internal hosts: admin only
    detailed = live.get("/").text
    assert "HTTP 503" in detailed
    assert 'data-status="down"' in check_block(html, "web@production")
    assert "db-upgrade" in html
    assert "PostgreSQL 17" in html
    target.status = 200
    live.wait_status("web@production", "up")
    live.wait_status("web@staging", "up")
    live.flush()
    html = page(live)
    assert "resolved" in html  # recently resolved incidents stay on the page a while


def test_slo_status_comes_from_the_slo_module_when_there_is_one(live, monkeypatch):
    fake = types.ModuleType("watchkeeper.engine.reports.slo")

    async def slo_status(daemon):
        return [
            {
                "slo": "api-availability",
                "check": "web",
                "environment": "production",
                "objective": 0.999,
                "sli": 0.9995,
                "budget_remaining": 0.5,
                "window_text": "30d",
                "status": "at-risk",
            },
            {
                "slo": "api-latency",
                "check": "web",
                "objective": 0.99,
                "sli": 0.3,
                "budget_remaining": -68.9,
                "window_text": "30d",
                "status": "breached",
            },
        ]

    fake.slo_status = slo_status
    monkeypatch.setitem(sys.modules, "watchkeeper.engine.reports.slo", fake)
    html = page(live)
    assert 'id="slos"' in html
    assert "api-availability" in html
    assert "99.9%" in html
    assert "99.95%" in html
    assert 'class="slo-at-risk"' in html
    assert "web@production" in html
    assert "exhausted (69.9× spent)" in html  # never "-6890% left"
    assert "-6890" not in html
    assert live.get("/api/status").json()["slos"][0]["slo"] == "api-availability"


def test_badges(live, target):
    up = httpx.get(live.url + "/badge/web@production.svg")
    assert up.status_code == 200
    assert up.headers["content-type"].startswith("image/svg+xml")
    assert ">up<" in up.text
    assert ">unknown<" in httpx.get(live.url + "/badge/db.svg").text
    missing = httpx.get(live.url + "/badge/nope.svg")
    assert missing.status_code == 404
    target.status = 503
    live.wait_status("web@staging", "down")
    assert ">down<" in httpx.get(live.url + "/badge/web.svg").text  # worst of its environments
    odd = httpx.get(live.url + "/badge/%3Cscript%3E.svg")
    assert "<script>" not in odd.text


def test_status_page_off(tmp_path, target):
    with LiveDaemon(
        tmp_path, config(target, status_page="off"), {"ADMIN_TOKEN": ADMIN_TOKEN}
    ) as live:
        assert httpx.get(live.url + "/").status_code == 404
        assert httpx.get(live.url + "/badge/db.svg").status_code == 404
        assert live.get("/").status_code == 404


# -- in a real browser ---------------------------------------------------------------------


def _browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return sync_playwright


def test_the_page_in_headless_chromium(live, target, tmp_path):
    from tests.test_status_page_browser import CHROMIUM_FLAGS

    sync_playwright = _browser()
    problems: list[str] = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        except Exception as exc:  # a machine where chromium cannot start
            pytest.skip(f"chromium cannot run here: {exc}")
        try:
            page_ = browser.new_page(viewport={"width": 1100, "height": 900})
            page_.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page_.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page_.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            response = page_.goto(live.url + "/", wait_until="load")
            assert response.status == 200
            assert page_.title() == "Example <status>"
            assert page_.locator("#check-web\\@production").get_attribute("data-status") == "up"
            background = page_.eval_on_selector(
                "#headline", "e => getComputedStyle(e).backgroundColor"
            )
            assert background not in ("rgba(0, 0, 0, 0)", "transparent")  # the CSS applied
            assert page_.locator("#check-web\\@production .bars span").count() == 90
            assert page_.locator("script").count() == 0

            target.status = 503
            live.wait_status("web@production", "down")
            page_.reload(wait_until="load")
            row = page_.locator("#check-web\\@production")
            assert row.get_attribute("data-status") == "down"
            assert row.locator(".status").inner_text().lower() == "down"
            assert "down" in page_.locator("#headline").inner_text().lower()
            assert page_.locator("#incidents article").count() >= 1
            page_.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'status-page.png'}")
        finally:
            browser.close()
    assert not problems, problems
    assert (tmp_path / "status-page.png").stat().st_size > 10_000


# -- the headline, the layout and the refresh ----------------------------------------------


def test_the_headline_tells_the_truth_about_waiting_checks(live):
    html = page(live)
    # db runs once a day and has not run yet: the page must not claim everything is up
    assert 'class="headline h-unknown"' in html
    assert "1 check is waiting for its first run" in html
    assert "All checks are up" not in html
    assert html.count(">Checks<") == 1  # one heading; checks without an environment: Other
    assert 'id="slos"' not in html  # no objectives, no empty section
    assert "waiting" in check_block(html, "db")


def test_descriptions_and_links_to_each_check(tmp_path, target):
    settings = config(target)
    settings["checks"]["web"]["description"] = "The public <web> site"
    with LiveDaemon(tmp_path, settings, {"ADMIN_TOKEN": ADMIN_TOKEN}) as live:
        html = page(live)
    block = check_block(html, "web@staging")
    assert '<p class="desc">The public &lt;web&gt; site</p>' in block
    assert '<a href="/checks/web%40staging">web@staging</a>' in block


# -- a check's page ------------------------------------------------------------------------


def test_a_check_page_with_its_chart_results_and_settings(live):
    live.flush()
    html = page(live, "/checks/web@production")
    assert "<script" not in html.lower()
    assert " style=" not in html
    assert '<svg class="chart-svg"' in html
    assert 'role="img"' in html
    assert re.search(r'<circle class="dot p50" cx="[\d.]+" cy="[\d.]+"', html)
    assert re.search(r'<circle class="dot p95"', html)
    assert '<a href="/checks/web%40production?range=24h" aria-current="page">' in html
    assert 'href="/checks/web%40production?range=7d"' in html
    assert "last 24 hours" in html
    assert re.search(
        r'<strong class="s-up">good</strong>\s*<span class="took"><span class="sr">'
        r"response time </span>\d+(\.\d+)?ms</span>",
        html,
    )
    assert "<dt>probe</dt><dd>http</dd>" in html
    assert "<dt>schedule</dt><dd>every 1s</dd>" in html
    assert "Probe messages are shown to the administrator only" in html
    assert "db-upgrade" not in html  # the window covers db only
    week = page(live, "/checks/web@production?range=7d")
    assert '<a href="/checks/web%40production?range=7d" aria-current="page">' in week
    assert len(re.findall(r"<tr><td>[\d-]+ \d\d:00</td>", week)) == 28  # six-hour periods
    month = page(live, "/checks/web@production?range=30d")
    assert '<title id="chart-title">Response time, last 30 days</title>' in month
    assert "PostgreSQL 17" in page(live, "/checks/db")  # its upcoming window


def test_thresholds_on_response_time_are_lines_on_the_chart(tmp_path, target):
    settings = config(target)
    settings["checks"]["web"]["thresholds"] = [
        {"metric": "response_time", "above": "100ms", "severity": "warning"},
        {"metric": "response_time", "above": "1h", "severity": "high"},
        {"metric": "status_code", "above": 499, "severity": "high"},
    ]
    target.hang = 0.05  # answers take about 50ms: a 100ms line is in range, 1h is not
    with LiveDaemon(tmp_path, settings, {"ADMIN_TOKEN": ADMIN_TOKEN}) as live:
        live.wait_status("web@staging", "up")
        live.flush()
        html = page(live, "/checks/web@staging")
    assert html.count('<line class="threshold"') == 1  # 1h is far above: listed, not drawn
    assert "warning: above 100ms</text>" in html
    assert "Not drawn, far above every value: high: above 1h" in html
    assert "<td>status_code</td><td>above 499</td>" in html


def test_the_30_day_chart_reads_the_daily_rollups(live):
    from watchkeeper.engine.state.rollups import Aggregate, day_start, instance_labels, rollup_basis
    from watchkeeper.engine.state.store import Row

    now = time.time()
    day = day_start(now) - 5 * 86400

    async def seed() -> None:
        daemon = live.daemon
        basis = rollup_basis(daemon.config, instance_labels(daemon.config, None))
        total = Aggregate()
        for i in range(100):
            total.add(day + i, {"ok": i != 0, "duration": 0.25 if i < 60 else 0.75}, False, [])
        data = total.rollup_data(day, basis, now)
        await daemon.store.append("rollups", [Row(key="web@staging", at=day, data=data)])
        await daemon.store.put("meta", {"rollups_done": {"through": day + 86400, "basis": basis}})

    live.call(seed)
    html = page(live, "/checks/web@staging?range=30d")
    date = datetime.fromtimestamp(day, UTC).date().isoformat()
    assert f"<tr><td>{date}</td><td>100</td><td>99%</td><td>250ms</td><td>750ms</td></tr>" in html


def test_an_unknown_check_is_a_404_page(live):
    response = httpx.get(live.url + "/checks/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "There is no check named" in response.text
    odd = httpx.get(live.url + "/checks/%3Cscript%3Ealert(1)")
    assert odd.status_code == 404
    assert "<script>" not in odd.text
    assert "&lt;script&gt;" in odd.text


def test_a_check_with_environments_lists_them(live):
    html = page(live, "/checks/web")
    assert 'href="/checks/web%40production"' in html
    assert 'href="/checks/web%40staging"' in html


def test_messages_only_for_the_admin_and_secrets_never(tmp_path, target):
    secret = "Zq8-check-header-secret-4471"
    settings = config(target)
    settings["checks"]["web"]["headers"] = {"Authorization": "Bearer ${WEB_API_TOKEN}"}
    settings["checks"]["web"]["runbook"] = "https://wiki.internal/runbooks/web"
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "WEB_API_TOKEN": secret}
    with LiveDaemon(tmp_path, settings, env) as live:
        target.status = 503
        live.wait_status("web@staging", "down")
        live.flush()
        public = page(live, "/checks/web@staging")
        admin = live.get("/checks/web@staging").text
        by_query = httpx.get(f"{live.url}/checks/web@staging?token={ADMIN_TOKEN}").text
    for html in (public, admin, by_query):
        assert secret not in html
    assert "HTTP 503" not in public
    assert "wiki.internal" not in public
    assert "<dt>headers</dt>" not in public
    assert "HTTP 503" in admin  # the probe's message, and the incident's summary
    assert "wiki.internal" in admin
    assert "<dt>headers</dt>" in admin
    assert "Bearer **********" in admin
    assert "<dt>url</dt>" in admin


def test_token_mode_guards_the_check_page_and_links_keep_the_token(tmp_path, target):
    with LiveDaemon(
        tmp_path, config(target, status_page="token"), {"ADMIN_TOKEN": ADMIN_TOKEN}
    ) as live:
        assert httpx.get(live.url + "/checks/web@staging").status_code == 401
        assert httpx.get(live.url + "/checks/web@staging?token=wrong").status_code == 401
        html = httpx.get(f"{live.url}/?token={ADMIN_TOKEN}").text
        link = re.search(r'<a href="(/checks/web%40staging\?token=[^"]+)">', html)
        assert link, "the link to a check's page must keep the token"
        followed = httpx.get(live.url + link.group(1).replace("&amp;", "&"))
        assert followed.status_code == 200
        assert 'href="/?token=' in followed.text
        # a token sent as a header is never written into the page
        assert ADMIN_TOKEN not in live.get("/").text
    with LiveDaemon(
        tmp_path, config(target, status_page="off"), {"ADMIN_TOKEN": ADMIN_TOKEN}
    ) as live:
        assert httpx.get(live.url + "/checks/web@staging").status_code == 404
