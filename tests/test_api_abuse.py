"""The API under abuse, over real HTTP against a running daemon: floods of refused calls,
heartbeats opening endless runs, name probing and hostile bodies (issue 15, finding 5;
docs/api.md ► Limits)."""

from __future__ import annotations

import json
import socket
import uuid

import httpx
import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

BEAT_TOKEN = "beat-T0ken-abuse-31c7"
ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "BEAT_TOKEN": BEAT_TOKEN}
CONFIG = {
    "version": 1,
    "state": {"type": "sqlite", "path": "state.db"},
    "engine": {"workers": 0},
    "environments": {"prod": {}, "staging": {}},
    "server": {"admin_token": "${ADMIN_TOKEN}"},
    "checks": {
        "job": {
            "probe": "heartbeat",
            "expect_every": {"every": "1h"},
            "max_runtime": "1h",
            "token": "${BEAT_TOKEN}",
            "flap_threshold": 1000,
        },
        "multi": {
            "probe": "heartbeat",
            "expect_every": {"every": "1h"},
            "environments": ["prod", "staging"],
            "token": "${BEAT_TOKEN}",
        },
        "tcp": {"probe": "tcp", "host": "127.0.0.1", "port": 9, "schedule": {"every": "1h"}},
    },
}
ONE_SOURCE = "127.0.0.77"  # the flood comes from an address of its own on the loopback


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveDaemon(tmp_path_factory.mktemp("abuse"), CONFIG, ENV) as daemon:
        yield daemon


def from_address(live, address: str, token: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=live.url, transport=transport, headers=headers, timeout=15)


def raw_post(live, address: str, path: str) -> bytes:
    """POST from a given loopback address on a plain socket; return the status line."""
    with socket.create_connection(("127.0.0.1", live.port), 10, (address, 0)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        return sock.makefile("rb").readline()


def metric(live, name: str) -> float:
    text = live.get("/metrics", token=None).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


def no_tracebacks(live) -> None:
    assert "Traceback" not in live.logs.text
    assert "API request failed" not in live.logs.text


# -- no enumeration of heartbeat names ------------------------------------------------------


def test_known_and_unknown_heartbeats_answer_alike_without_a_valid_token(live):
    for token in (None, "wrong-token", ADMIN_TOKEN + "x"):
        answers = {}
        for name in ("job", "nope", "multi", "tcp", "multi@nope", "job/start"):
            response = live.post(f"/api/heartbeat/{name}", token=token)
            headers = {k: v for k, v in response.headers.items() if k != "date"}
            answers[name] = (response.status_code, response.content, headers)
        assert len(set(map(repr, answers.values()))) == 1, answers
        assert answers["nope"][0] == 401
    # a valid token may learn that a name does not exist
    assert live.post("/api/heartbeat/nope", token=ADMIN_TOKEN).status_code == 404
    assert live.post("/api/heartbeat/nope", token=BEAT_TOKEN).status_code == 404
    assert live.post("/api/heartbeat/multi", token=ADMIN_TOKEN).status_code == 400


# -- hostile bodies -------------------------------------------------------------------------


DEEP = b"[" * 100_000
ZEROS = b"0" * 400
HOSTILE = {
    "invalid JSON": b"{nope",
    "deep nesting": DEEP,
    "deep nesting in an object": b'{"metrics": ' + DEEP,
    "not UTF-8": b'{"event": "deploy", "by": "\xff\xfe\xfa"}',
    "UTF-16": '{"event": "deploy"}'.encode("utf-16"),
    "NaN": b'{"event": "deploy", "metrics": {"x": NaN}, "duration": NaN, "n": NaN}',
    "Infinity": b'{"event": "deploy", "metrics": {"x": -Infinity}, "starts_at": Infinity}',
    "huge float": b'{"event": "deploy", "metrics": {"x": 1e999}, "duration": 1e999}',
    "huge int": b'{"event": "deploy", "metrics": {"x": 1%s}, "duration": 1%s}' % (ZEROS, ZEROS),
    "far future": b'{"check": "job", "starts_at": 1e300, "duration": "1h", "metrics": {}}',
    "far duration": b'{"check": "job", "duration": 1e300}',
    "strings": b'{"event": ["deploy"], "metrics": {"x": "1"}, "check": {"a": 1}, "by": 5}',
    "a list": b"[1, 2, 3]",
    "many metrics": json.dumps({"metrics": {f"m{i}": i for i in range(2000)}}).encode(),
}
TARGETS = [
    ("/api/heartbeat/job", BEAT_TOKEN),
    ("/api/events", ADMIN_TOKEN),
    ("/api/alerts/silences", ADMIN_TOKEN),
    ("/api/alerts/0123456789ab/ack", ADMIN_TOKEN),
]


def assert_one_line_error(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), what
    assert b"\n" not in response.content.strip(), what
    body = response.json()
    assert isinstance(body.get("error"), str), what
    assert 0 < len(body["error"]) < 300, what
    assert "Traceback" not in body["error"], what


@pytest.mark.parametrize(("path", "token"), TARGETS)
def test_hostile_bodies_answer_a_one_line_4xx(live, path, token):
    with live.client(token) as client:
        for what, body in HOSTILE.items():
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            if response.status_code < 400:  # a beat keeps any other body as its log
                assert path == TARGETS[0][0], what
                assert what in ("a list", "far future", "far duration"), what
                continue
            assert_one_line_error(response, f"{path}: {what}")
    no_tracebacks(live)


def test_bodies_past_the_limit_are_413(live):
    """1 MB for the admin API, 100 kB for heartbeats; declared or streamed."""
    for path, token in TARGETS:
        limit = 100 * 1024 if path.startswith("/api/heartbeat") else 1 << 20
        with live.client(token) as client:
            fits = client.post(path, content=b"{" + b" " * (limit - 2) + b"}")
            assert fits.status_code != 413, path
            big = client.post(path, content=b"x" * (limit + 1))
            assert big.status_code == 413, path
            assert_one_line_error(big, path)
            assert client.post(path, content=b"[" * (10 << 20)).status_code == 413, path
            chunked = client.post(path, content=iter([b"[" * 65536] * 160))  # no length given
            assert chunked.status_code == 413, path
            assert_one_line_error(chunked, path)
    no_tracebacks(live)


# -- heartbeats that never finish -----------------------------------------------------------


def test_open_runs_are_bounded_and_the_drop_is_reported(live):
    with live.client(BEAT_TOKEN) as client:
        for n in range(1000):
            answer = client.post(f"/api/heartbeat/job?status=start&rid=r{n:04d}")
            assert answer.status_code == 200, answer.text
        assert answer.json().get("runs_dropped") == 1
    live.flush()

    async def stored():
        return await live.daemon.store.get("heartbeats", "job")

    doc = live.call(stored)
    assert len(doc["runs"]) == 100
    assert "r0999" in doc["runs"]
    assert "r0899" not in doc["runs"]  # the oldest went
    assert len(json.dumps(doc)) < 8 * 1024
    assert doc["runs_dropped"] == 900
    warnings = [r for r in live.logs.records if "open runs dropped" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    # the next result says so, once
    assert live.post("/api/heartbeat/job?rid=r0999", token=BEAT_TOKEN).status_code == 200
    message = wait_until(lambda: (live.daemon.runtime.latest.get("job") or {}).get("message"))
    assert "900 open runs dropped (more than 100 at once)" in message
    live.post("/api/heartbeat/job?rid=r0998", token=BEAT_TOKEN)
    wait_until(lambda: "dropped" not in live.daemon.runtime.latest["job"]["message"])


# -- floods of refused calls ----------------------------------------------------------------


def test_a_flood_of_refused_acks_leaves_a_handful_of_audit_rows(live):
    before = metric(live, "watchkeeper_api_denied_total")
    codes: dict[int, int] = {}
    with from_address(live, ONE_SOURCE) as anonymous, from_address(live, ONE_SOURCE) as owner:
        for _ in range(2000):
            response = anonymous.post(f"/api/alerts/{uuid.uuid4().hex}/ack")
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json() == {"error": "too many refused calls; retry later"}
        assert set(codes) == {401, 429}, codes
        assert codes[401] <= 200  # the rate limit answers the rest
        # someone else's failures never lock out a valid token, even from the same address
        owner.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        assert owner.get("/api/status").status_code == 200

    assert metric(live, "watchkeeper_api_denied_total") - before >= 2000
    entries = live.get("/api/audit?since=1h").json()
    flood = [e for e in entries if e["action"] == "denied" and e.get("address") == ONE_SOURCE]
    assert 1 <= len(flood) <= 3, flood
    assert sum(e["count"] for e in flood) == 2000
    assert flood[0]["by"] == f"anonymous@{ONE_SOURCE}"
    assert 1 <= len(flood[0]["paths"]) <= 5
    assert {"first_at", "last_at"} <= set(flood[0])

    live.flush()
    result = run_cli("audit", "--since", "1h", "--format", "json", cwd=live.directory)
    assert result.code == 0, result.output
    from_cli = [
        e for e in result.json() if e["action"] == "denied" and e.get("address") == ONE_SOURCE
    ]
    assert sum(e["count"] for e in from_cli) == 2000
    no_tracebacks(live)


def test_many_sources_fold_into_one_bucket(live):
    sources = [f"127.0.{n // 250 + 10}.{n % 250 + 1}" for n in range(300)]
    for address in sources:
        assert raw_post(live, address, "/api/alerts/x/ack").startswith(b"HTTP/1.1 401 ")
    assert metric(live, "watchkeeper_api_denied_sources") <= 101
    entries = live.get("/api/audit?since=1h").json()
    rows = [e for e in entries if e["action"] == "denied" and e.get("address") in sources]
    other = [e for e in entries if e["action"] == "denied" and e.get("address") == "other"]
    assert len(rows) <= 200  # at most 100 a window; the test may straddle two
    assert other
    assert sum(e["count"] for e in rows + other) >= 300


def test_guessing_the_admin_token_on_the_public_status_page_is_refused_and_limited(live):
    with from_address(live, "127.0.0.91") as client:
        statuses = [client.get("/", params={"token": f"guess{n}"}).status_code for n in range(130)]
        assert statuses[0] == 401
        assert 429 in statuses  # the same limit as the admin API's
        assert client.get("/").status_code == 200  # the public page itself is unchanged
