"""The status page and a check's page as people see them: headless Chromium, axe-core
(WCAG 2.1 AA), no sideways scrolling on a phone, light and dark schemes, screenshots.

axe-core is vendored in tests/assets/axe.min.js (MPL-2.0, its licence header intact):
the test needs no network.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.daemon_harness import Target

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"
WIDTHS = (320, 360, 1280)
LONG_WORD = "x" * 500
BLOCKING = ("critical", "serious")


def config(target: Target) -> dict:
    fail = f"import sys; print('{LONG_WORD}'); sys.exit(3)"
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "environments": {"production": {}, "staging": {}},
        "server": {"admin_token": "${ADMIN_TOKEN}", "title": "Example status"},
        "checks": {
            "web": {
                "probe": "http",
                "description": "The public web site, from the outside",
                "url": f"{target.url}/health",
                "environments": ["production", "staging"],
                "schedule": {"every": "1s"},
                "timeout": "2s",
                "thresholds": [
                    {"metric": "response_time", "above": "50ms", "severity": "warning"},
                    {"metric": "response_time", "above": "2s", "severity": "high"},
                ],
            },
            "batch": {
                "probe": "command",
                "description": "Nightly batch " + "y" * 300,  # one long unbroken word
                "argv": [sys.executable, "-c", fail],
                "schedule": {"every": "1s"},
                "severity": "warning",
            },
            "nightly": {
                "probe": "tcp",
                "description": "Waits for its first run",
                "host": "127.0.0.1",
                "port": 9,
                "schedule": {"every": "1d"},
            },
        },
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"], "group_wait": "0s"}],
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    target = Target()
    # answers in some 30 ms whatever the machine's load, so the chart's scale is known:
    # the 50ms threshold is drawn on it and the 2s one, over 4x every value, is listed
    target.hang = 0.03
    directory = tmp_path_factory.mktemp("daemon")
    with LiveDaemon(directory, config(target), {"ADMIN_TOKEN": ADMIN_TOKEN}) as daemon:
        daemon.wait_status("web@production", "up")
        daemon.wait_status("batch", "down")
        wait_until(lambda: daemon.get("/api/alerts").json(), 15, what="the batch incident")
        daemon.flush()
        yield daemon
    target.close()


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        except Exception as exc:  # a machine where chromium cannot start
            pytest.skip(f"chromium cannot run here: {exc}")
        try:
            yield browser
        finally:
            browser.close()


def audit(page) -> list[dict]:
    """Run axe-core in the page; return its violations (id, impact, nodes)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate("() => axe.run(document).then(r => r.violations)")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
            "count": len(v["nodes"]),
        }
        for v in found
    ]


def widths(page) -> dict:
    return page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
    )


TOKEN = "token=" + quote(ADMIN_TOKEN)
PAGES = {
    "status": "/",
    "status-admin": f"/?{TOKEN}",
    "check": "/checks/web@production",
    "check-30d": "/checks/web@production?range=30d",
    "check-failing-admin": f"/checks/batch?{TOKEN}",
    "check-waiting": "/checks/nightly",
    "check-environments": "/checks/web",
    "missing": "/checks/no-such-check",
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_pass_axe_and_fit_a_phone(live, chromium, scheme, tmp_path):
    problems: list[str] = []
    report: dict[str, list] = {}
    shots: list[Path] = []
    for width in WIDTHS:
        context = chromium.new_context(
            viewport={"width": width, "height": 900}, color_scheme=scheme
        )
        try:
            page = context.new_page()
            current = {"name": ""}

            def console(message, current=current, problems=problems) -> None:
                expected = current["name"] == "missing" and "status of 404" in message.text
                if message.type in ("error", "warning") and not expected:
                    problems.append(f"{current['name']}: console {message.type}: {message.text}")

            page.on("console", console)
            page.on("requestfailed", lambda r, found=problems: found.append(f"failed: {r.url}"))
            for name, path in PAGES.items():
                current["name"] = name
                response = page.goto(live.url + path, wait_until="load")
                expected = 404 if name == "missing" else 200
                assert response.status == expected, (name, response.status)
                size = widths(page)
                if size["scroll"] > size["inner"]:
                    problems.append(f"{name} at {width}px scrolls sideways: {size}")
                shot = tmp_path / f"{name}-{width}-{scheme}.png"
                page.screenshot(path=str(shot), full_page=True)
                shots.append(shot)
                if width in (360, 1280):
                    violations = audit(page)
                    report[f"{name}@{width}"] = violations
                    problems += [
                        f"{name} at {width}px: {v['impact']} {v['id']} ({v['count']} nodes) "
                        f"{v['nodes']}"
                        for v in violations
                        if v["impact"] in BLOCKING
                    ]
        finally:
            context.close()
    for shot in shots:
        print(f"screenshot: {shot}")
    print(json.dumps(report, indent=1))
    assert not problems, "\n".join(problems)


def test_the_opt_in_refresh_can_be_stopped(live, chromium):
    context = chromium.new_context(viewport={"width": 360, "height": 800})
    try:
        page = context.new_page()
        page.goto(live.url + "/", wait_until="load")
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
        page.get_by_role("link", name="every 30 s").click()
        page.wait_for_url("**/?refresh=30")
        assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
        # the choice follows the reader to a check's page and back
        page.locator("#check-web\\@production a").click()
        assert "refresh=30" in page.url
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        page.get_by_role("link", name="Stop auto-refresh").click()
        assert "refresh" not in page.url
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
        # the refresh is the only thing axe may say about a page that reloads itself
        page.goto(live.url + "/?refresh=30", wait_until="load")
        found = [v for v in audit(page) if v["impact"] in BLOCKING]
        assert [v["id"] for v in found] in ([], ["meta-refresh"]), found
    finally:
        context.close()


def test_the_chart_is_drawn_and_styled(live, chromium, tmp_path):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(live.url + "/checks/web@production", wait_until="load")
        chart = page.locator("svg.chart-svg")
        assert chart.get_attribute("role") == "img"
        assert page.locator("#chart-desc").text_content().startswith("Response time over")
        assert page.locator("svg.chart-svg circle.p50").count() >= 1
        assert page.locator("svg.chart-svg line.threshold").count() == 1  # 2s is off the chart
        stroke = page.eval_on_selector(
            "svg.chart-svg line.threshold", "e => getComputedStyle(e).strokeDasharray"
        )
        assert stroke not in ("none", "")  # the stylesheet reached the SVG under the CSP
        box = chart.bounding_box()
        assert box
        assert box["width"] > 600
        chart.screenshot(path=str(tmp_path / "chart.png"))
        print(f"screenshot: {tmp_path / 'chart.png'}")
    finally:
        context.close()
