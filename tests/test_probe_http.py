"""The http probe against real HTTP and HTTPS servers on loopback."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time

import anyio
import pytest
from pydantic import ValidationError

from watchkeeper.engine.testing import (
    HttpTestServer,
    TcpTestServer,
    check_once,
    make_certificates,
    open_probe,
    probe_options,
)
from watchkeeper.plugins.probes.http import TlsContexts, json_mismatch, masked_url


@pytest.fixture
def server():
    with HttpTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("pki"), valid_for=dt.timedelta(days=30))


@pytest.fixture
def https_server(certs):
    with HttpTestServer(certs.server_context()) as server:
        yield server


HEALTHY = {"status": "ok", "metrics": {"aiGenerationMs": 1500, "errorRate": 0.02}}


# --- status, body, headers -----------------------------------------------------------


def test_healthy_endpoint_reports_its_metrics(server):
    server.reply("/api/health", json=HEALTHY, headers={"X-Frame-Options": "DENY"})
    result = check_once(
        "http",
        {
            "url": server.url("/api/health"),
            "expect": {"status": 200, "json": {"status": "ok"}},
            "extract": {
                "ai_generation_time": {"path": "$.metrics.aiGenerationMs", "unit": "ms"},
                "app_error_rate": {"path": "$.metrics.errorRate", "unit": "ratio"},
            },
        },
        timeout=5,
    )
    assert result.ok, result.message
    assert result.message.startswith(f"HTTP 200 from {server.url('/api/health')} in ")
    assert result.metrics["status_code"] == 200
    assert 0 < result.metrics["response_time"] < 1
    assert result.metrics["body_size"] == len(json.dumps(HEALTHY))
    assert result.metrics["ai_generation_time"] == pytest.approx(1.5)
    assert result.metrics["app_error_rate"] == pytest.approx(0.02)
    assert "certificate_expiry" not in result.metrics


def test_default_accepts_2xx_and_3xx_only(server):
    server.reply("/created", 201)
    server.reply("/moved", 304)
    server.reply("/down", 503, json={"status": "down"})
    assert check_once("http", {"url": server.url("/created")}).ok
    assert check_once("http", {"url": server.url("/moved")}).ok
    result = check_once("http", {"url": server.url("/down")})
    assert not result.ok
    assert result.message == (
        f'HTTP 503 from {server.url("/down")} (expected 2xx or 3xx): {{"status": "down"}}'
    )
    assert result.metrics["status_code"] == 503


def test_expected_status_single_and_list(server):
    server.reply("/teapot", 418)
    url = server.url("/teapot")
    assert check_once("http", {"url": url, "expect": {"status": 418}}).ok
    assert check_once("http", {"url": url, "expect": {"status": [200, 418]}}).ok
    result = check_once("http", {"url": url, "expect": {"status": 200}})
    assert not result.ok
    assert result.message == f"HTTP 418 from {url} (expected 200)"
    result = check_once("http", {"url": url, "expect": {"status": [200, 204]}})
    assert result.message == f"HTTP 418 from {url} (expected one of 200, 204)"


def test_json_subset_mismatch_names_the_path(server):
    server.reply("/health", json={"status": "degraded", "checks": [{"db": "ok"}]})
    result = check_once(
        "http", {"url": server.url("/health"), "expect": {"json": {"status": "ok"}}}
    )
    assert not result.ok
    assert result.message == (
        f'HTTP 200 from {server.url("/health")}: JSON $.status is "degraded", expected "ok"'
    )
    result = check_once(
        "http",
        {"url": server.url("/health"), "expect": {"json": {"checks": [{"db": "ok"}]}}},
    )
    assert result.ok, result.message


def test_body_that_is_not_json(server):
    server.reply("/text", body="<html>fine</html>")
    result = check_once("http", {"url": server.url("/text"), "expect": {"json": {"a": 1}}})
    assert not result.ok
    assert "body is not JSON" in result.message


def test_body_regex_and_contains(server):
    server.reply("/page", body="Welcome to Infinite Idea, build 1234")
    url = server.url("/page")
    good = {"body_regex": r"build \d+", "body_contains": "Infinite Idea"}
    assert check_once("http", {"url": url, "expect": good}).ok
    result = check_once(
        "http", {"url": url, "expect": {"body_regex": r"^Error", "body_contains": "Goodbye"}}
    )
    assert not result.ok
    assert "body does not match /^Error/" in result.message
    assert "body does not contain 'Goodbye'" in result.message


def test_expected_headers_are_case_insensitive_with_exact_values(server):
    server.reply(
        "/secure",
        headers={"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"},
    )
    url = server.url("/secure")
    expect = {"headers": {"x-frame-options": "DENY", "X-CONTENT-TYPE-OPTIONS": "nosniff"}}
    assert check_once("http", {"url": url, "expect": expect}).ok
    result = check_once(
        "http",
        {
            "url": url,
            "expect": {
                "headers": {"X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "no-referrer"}
            },
        },
    )
    assert not result.ok
    assert "header X-Frame-Options is 'DENY' (expected 'SAMEORIGIN')" in result.message
    assert "header Referrer-Policy is missing (expected 'no-referrer')" in result.message


# --- the request ---------------------------------------------------------------------


def test_method_headers_json_body_and_basic_auth_are_sent(server):
    server.reply("/hook", 202)
    result = check_once(
        "http",
        {
            "url": server.url("/hook"),
            "method": "POST",
            "headers": {"X-Probe": "yes"},
            "json_body": {"ping": True},
            "auth": {"username": "monitor", "password": "hunter22"},
        },
    )
    assert result.ok, result.message
    request = server.requests[-1]
    assert request.method == "POST"
    assert request.headers["X-Probe"] == "yes"
    assert request.headers["Authorization"] == "Basic bW9uaXRvcjpodW50ZXIyMg=="
    assert request.headers["User-Agent"] == "watchkeeper"
    assert request.json() == {"ping": True}


def test_credentials_in_the_url_become_basic_auth(server):
    server.reply("/private")
    url = server.url("/private").replace("http://", "http://monitor:p%40ss-word@")
    result = check_once("http", {"url": url})
    assert result.ok, result.message
    assert server.requests[-1].headers["Authorization"] == "Basic bW9uaXRvcjpwQHNzLXdvcmQ="
    assert "p%40ss-word" not in result.message


def test_configured_headers_replace_the_defaults_whatever_their_case(server):
    server.reply("/")
    check_once("http", {"url": server.url("/"), "headers": {"user-agent": "uptime-bot/2"}})
    sent = {k.lower(): v for k, v in server.requests[-1].headers.items()}
    assert sent["user-agent"] == "uptime-bot/2"
    assert list(server.requests[-1].headers).count("User-Agent") == 0


def test_compressed_body_is_decoded(server):
    server.reply(
        "/gz",
        body=gzip.compress(json.dumps({"status": "ok"}).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    result = check_once("http", {"url": server.url("/gz"), "expect": {"json": {"status": "ok"}}})
    assert result.ok, result.message
    assert result.metrics["body_size"] == len(json.dumps({"status": "ok"}))
    assert "gzip" in server.requests[-1].headers["Accept-Encoding"]


def test_text_body_is_sent(server):
    server.reply("/echo")
    check_once("http", {"url": server.url("/echo"), "method": "PUT", "body": "hello"})
    assert server.requests[-1].method == "PUT"
    assert server.requests[-1].body == b"hello"


def test_body_and_json_body_together_are_a_config_error():
    with pytest.raises(ValidationError, match="either `body` or `json_body`"):
        probe_options("http", {"url": "http://x", "body": "a", "json_body": {"a": 1}})


def test_invalid_body_regex_is_a_config_error():
    with pytest.raises(ValidationError, match="body_regex"):
        probe_options("http", {"url": "http://x", "expect": {"body_regex": "("}})


# --- redirects -----------------------------------------------------------------------


def test_redirects_are_followed_by_default(server):
    server.reply("/old", redirect="/new")
    server.reply("/new", json={"status": "ok"})
    result = check_once("http", {"url": server.url("/old"), "expect": {"status": 200}})
    assert result.ok, result.message
    assert result.details["final_url"] == server.url("/new")
    assert [r.path for r in server.requests] == ["/old", "/new"]


def test_redirect_not_followed_when_disabled(server):
    server.reply("/old", redirect="/new")
    url = server.url("/old")
    result = check_once("http", {"url": url, "follow_redirects": False})
    assert result.ok
    assert result.metrics["status_code"] == 302
    result = check_once("http", {"url": url, "follow_redirects": False, "expect": {"status": 200}})
    assert result.message == f"HTTP 302 from {url} (expected 200)"


def test_too_many_redirects(server):
    server.reply("/loop", redirect="/loop")
    result = check_once("http", {"url": server.url("/loop"), "max_redirects": 3})
    assert not result.ok
    assert result.message == f"more than 3 redirects from {server.url('/loop')}"
    assert len(server.requests) == 4


def test_see_other_turns_post_into_get(server):
    server.reply("/submit", 303, redirect="/done")
    server.reply("/done")
    result = check_once("http", {"url": server.url("/submit"), "method": "POST", "body": "x"})
    assert result.ok, result.message
    assert [(r.method, r.path) for r in server.requests] == [("POST", "/submit"), ("GET", "/done")]


def test_credentials_do_not_follow_a_redirect_to_another_origin(server):
    with HttpTestServer() as other:
        other.reply("/landing")
        server.reply("/go", redirect=other.url("/landing"))
        result = check_once(
            "http",
            {"url": server.url("/go"), "auth": {"username": "u", "password": "secret-pw"}},
        )
        assert result.ok, result.message
        assert "Authorization" in server.requests[0].headers
        assert "Authorization" not in other.requests[0].headers


# --- timing and failures -------------------------------------------------------------


def test_hanging_server_times_out_with_the_phase(server):
    server.reply("/hang", hang=True)
    started = time.monotonic()
    result = check_once("http", {"url": server.url("/hang")}, timeout=1)
    elapsed = time.monotonic() - started
    assert not result.ok
    url = server.url("/hang")
    assert result.message == f"timed out after 1s waiting for the response from {url}"
    assert result.details["timeout"] is True
    assert elapsed < 1.5


def test_tls_handshake_that_never_happens_times_out_connecting():
    with TcpTestServer() as silent:  # accepts, never speaks TLS
        url = f"https://127.0.0.1:{silent.port}/"
        started = time.monotonic()
        result = check_once("http", {"url": url}, timeout=1)
    assert time.monotonic() - started < 1.5
    assert result.message == f"timed out after 1s connecting to {url}"


def test_slow_response_within_the_timeout_is_measured(server):
    server.reply("/slow", delay=0.3)
    result = check_once("http", {"url": server.url("/slow")}, timeout=2)
    assert result.ok
    assert 0.3 <= result.metrics["response_time"] < 1.5


def test_connection_refused():
    with HttpTestServer() as gone:
        url = gone.url("/x")
    result = check_once("http", {"url": url})
    assert not result.ok
    assert result.message == f"cannot connect to {url}: connection refused"


def test_password_in_url_never_reaches_the_message():
    with HttpTestServer() as gone:
        port = gone.port
    url = f"http://monitor:pa55w0rd-xyz@127.0.0.1:{port}/health?token=t0k3n-abc&x=1"
    result = check_once("http", {"url": url})
    assert not result.ok
    assert "pa55w0rd-xyz" not in result.message
    assert "t0k3n-abc" not in result.message
    assert f"http://monitor:**********@127.0.0.1:{port}/health?token=**********&x=1" in (
        result.message
    )


def test_masked_url_leaves_plain_urls_alone():
    assert masked_url("https://example.com/a?b=c") == "https://example.com/a?b=c"
    assert masked_url("https://u:p@h/x") == "https://u:**********@h/x"
    assert masked_url("https://h/x?api_key=k&q=1") == "https://h/x?api_key=**********&q=1"


def test_max_body_limits_what_is_read(server):
    server.reply("/big", body="x" * 10_000)
    result = check_once(
        "http", {"url": server.url("/big"), "max_body": "1KiB", "expect": {"body_contains": "x"}}
    )
    assert result.ok
    assert result.metrics["body_size"] == 1024
    assert result.details["truncated_at"] == 1024


def test_extraction_problem_is_reported_but_not_a_failure(server):
    server.reply("/health", json={"status": "ok", "metrics": {}})
    result = check_once(
        "http",
        {
            "url": server.url("/health"),
            "extract": {"gen": {"path": "$.metrics.aiGenerationMs", "unit": "ms"}},
        },
    )
    assert result.ok
    assert "gen" not in result.metrics
    assert "extract gen: $.metrics.aiGenerationMs not found" in result.message


def test_extract_regex_from_a_text_body(server):
    server.reply("/status", body="queue depth: 17\nlag: 250ms")
    result = check_once(
        "http",
        {
            "url": server.url("/status"),
            "extract": {
                "depth": {"regex": r"queue depth: (\d+)", "unit": "count"},
                "lag": {"regex": r"lag: (\d+)ms", "unit": "ms"},
            },
        },
    )
    assert result.metrics["depth"] == 17
    assert result.metrics["lag"] == pytest.approx(0.25)


# --- HTTPS ---------------------------------------------------------------------------


def test_untrusted_certificate_fails(https_server):
    https_server.reply("/")
    result = check_once("http", {"url": https_server.url("/")})
    assert not result.ok
    assert result.message.startswith(f"TLS certificate of {https_server.url('/')} is not trusted")


def test_ca_bundle_trusts_the_certificate_and_expiry_is_reported(https_server, certs):
    https_server.reply("/")
    result = check_once("http", {"url": https_server.url("/"), "ca_bundle": str(certs.ca)})
    assert result.ok, result.message
    expected = (certs.not_after - dt.datetime.now(dt.UTC)).total_seconds()
    assert result.metrics["certificate_expiry"] == pytest.approx(expected, abs=60)


def test_ca_bundle_relative_to_the_config_folder(https_server, certs):
    https_server.reply("/")
    result = check_once(
        "http",
        {"url": https_server.url("/"), "ca_bundle": certs.ca.name},
        base_dir=certs.ca.parent,
    )
    assert result.ok, result.message


def test_expiry_is_reported_without_verification(https_server, certs):
    https_server.reply("/")
    result = check_once("http", {"url": https_server.url("/"), "verify": False})
    assert result.ok, result.message
    expected = (certs.not_after - dt.datetime.now(dt.UTC)).total_seconds()
    assert result.metrics["certificate_expiry"] == pytest.approx(expected, abs=60)


def test_expired_certificate(tmp_path):
    expired = make_certificates(tmp_path, valid_for=dt.timedelta(hours=-1))
    with HttpTestServer(expired.server_context()) as server:
        server.reply("/")
        result = check_once("http", {"url": server.url("/"), "ca_bundle": str(expired.ca)})
        assert not result.ok
        assert "certificate has expired" in result.message
        result = check_once("http", {"url": server.url("/"), "verify": False})
        assert result.ok
        assert -3700 < result.metrics["certificate_expiry"] < -3500


def test_hostname_mismatch(tmp_path):
    other = make_certificates(tmp_path, hostnames=("other.example",))
    with HttpTestServer(other.server_context()) as server:
        server.reply("/")
        result = check_once("http", {"url": server.url("/"), "ca_bundle": str(other.ca)})
        assert not result.ok
        assert "not trusted" in result.message
        assert "127.0.0.1" in result.message


def test_client_certificate(certs):
    with HttpTestServer(certs.server_context(require_client_cert=True)) as server:
        server.reply("/")
        options = {"url": server.url("/"), "ca_bundle": str(certs.ca)}
        assert not check_once("http", options).ok
        result = check_once(
            "http",
            {**options, "client_cert": str(certs.client_cert), "client_key": str(certs.client_key)},
        )
        assert result.ok, result.message


def test_missing_ca_bundle_file(https_server, tmp_path):
    result = check_once(
        "http", {"url": https_server.url("/"), "ca_bundle": str(tmp_path / "nope.pem")}
    )
    assert not result.ok
    assert result.message.startswith(f"cannot load TLS files for {https_server.url('/')}")


def test_checks_with_the_same_tls_settings_share_one_ssl_context(https_server, certs, monkeypatch):
    https_server.reply("/")
    results = []
    builds = []
    build = TlsContexts._build

    def counting_build(self, *args):
        builds.append(args)
        return build(self, *args)

    monkeypatch.setattr(TlsContexts, "_build", counting_build)

    async def main():
        async with open_probe("http") as runner:
            options = {"url": https_server.url("/"), "ca_bundle": str(certs.ca)}

            async def one(options):
                results.append(await runner.check(options))

            async with anyio.create_task_group() as tg:  # all start before any is built
                for _ in range(20):
                    tg.start_soon(one, options)
                tg.start_soon(one, {"url": https_server.url("/"), "verify": False})
            return runner.probe.tls._contexts

    contexts = anyio.run(main)
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    # the CA bundle's and the unverified one (the default one only when a check needs it)
    assert len(contexts) == 2
    assert len(builds) == 2


# --- JSON subset matching ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"status": "ok"}, {"status": "ok", "extra": 1}),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 1, "d": 2}, "e": 3}}),
        ([1, 2], [1, 2, 3]),
        ([{"id": 1}], [{"id": 1, "name": "x"}]),
        ({"n": 1}, {"n": 1.0}),
        ({"v": None}, {"v": None}),
        ({}, {"anything": True}),
        ([], [1]),
        ("ok", "ok"),
    ],
)
def test_json_subset_matches(expected, actual):
    assert json_mismatch(expected, actual) is None


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        ({"status": "ok"}, {}, "$.status is missing"),
        ({"status": "ok"}, {"status": "OK"}, '$.status is "OK", expected "ok"'),
        ({"a": {"b": 1}}, {"a": [1]}, "$.a is a list, expected an object"),
        ({"a": [1, 2]}, {"a": [1]}, "$.a has 1 items, expected at least 2"),
        ([1, 2], [2, 1], "$[0] is 2, expected 1"),
        ({"flag": True}, {"flag": 1}, "$.flag is 1, expected true"),
        ({"count": 1}, {"count": True}, "$.count is true, expected 1"),
        ({"count": 1}, {"count": "1"}, '$.count is "1", expected 1'),
        ({"v": None}, {"v": 0}, "$.v is 0, expected null"),
        ({"a": [{"b": "x"}]}, {"a": [{"b": "y"}]}, '$.a[0].b is "y", expected "x"'),
        ({"a": 1}, [1], "$ is a list, expected an object"),
        ([1], {"0": 1}, "$ is an object, expected a list"),
    ],
)
def test_json_subset_mismatches(expected, actual, message):
    assert json_mismatch(expected, actual) == message
