"""`/ping/...`: healthchecks.io-style ping URLs, over real HTTP against a running daemon:
the crontab line from healthchecks' docs run by the real `curl`, runitor's protocol, run
ids, logs cut at 100 kB, 404s that tell nothing, ping ids, limits, secrets kept out of
sight, and an alert that fires on a missed beat and resolves on the next ping."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.receivers import HttpRecorder

pytestmark = pytest.mark.slow

PING_KEY = "pk_Zq81vLr0Wm3cTy7eHs2dNf"
PING_ID = "7c4f1a2e-93b8-4d61-a0f5-2e8b9c3d1f47"
ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "PING_KEY": PING_KEY, "NIGHTLY_PING_ID": PING_ID}
LIMIT = 100_000
CURL = shutil.which("curl")


def heartbeat(**extra) -> dict:
    return {"probe": "heartbeat", "expect_every": {"every": "1h"}, "flap_threshold": 1000, **extra}


def config(receiver: HttpRecorder, **server) -> dict:
    return {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "environments": {"prod": {}, "staging": {}},
        "server": {"admin_token": "${ADMIN_TOKEN}", **server},
        "checks": {
            "nightly-backup": heartbeat(max_runtime="30s"),
            "handed-out": heartbeat(ping_id="${NIGHTLY_PING_ID}"),
            "multi": heartbeat(environments=["prod", "staging"]),
            "missed": heartbeat(expect_every={"every": "2s"}, grace="1s"),
            "tcp": {"probe": "tcp", "host": "127.0.0.1", "port": 9, "schedule": {"every": "1h"}},
        },
        "notifiers": {
            "hook": {"type": "webhook", "url": receiver.url("/hook"), "retry_initial": "200ms"}
        },
        "routes": [
            {
                "match": {"check": "missed"},
                "notify": ["hook"],
                "group_wait": "0s",
                "group_interval": "1s",
            }
        ],
    }


@pytest.fixture(scope="module")
def receiver():
    with HttpRecorder() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def live(tmp_path_factory, receiver):
    directory = tmp_path_factory.mktemp("ping")
    with LiveDaemon(directory, config(receiver, ping_key="${PING_KEY}"), ENV) as daemon:
        yield daemon


def ping(live, path: str, method: str = "GET", **kwargs) -> httpx.Response:
    with httpx.Client(base_url=live.url, timeout=15) as client:
        return client.request(method, "/ping/" + path, **kwargs)


def curl(url: str, *extra: str) -> subprocess.CompletedProcess:
    """Run the line healthchecks' docs give, as a crontab would."""
    if CURL is None:
        pytest.skip("curl is not installed")
    command = [CURL, "-fsS", "-m", "10", "--retry", "5", "-o", "/dev/null", *extra, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def latest(live, key: str) -> dict:
    return live.daemon.runtime.latest.get(key) or {}


def beats(live, key: str) -> list:
    live.flush()

    async def read():
        return await live.daemon.store.read("beats", key, newest_first=True, limit=5)

    return live.call(read)


def fail_then_recover(live, check: str = "nightly-backup") -> None:
    """Bring a check down, so that a good ping has something to change."""
    assert ping(live, f"{PING_KEY}/{check}/fail").status_code == 200
    live.wait_status(check, "down")


def test_the_crontab_line_from_healthchecks_docs_works(live):
    fail_then_recover(live)
    done = curl(f"{live.url}/ping/{PING_KEY}/nightly-backup")
    assert done.returncode == 0, done.stderr
    live.wait_status("nightly-backup", "up")
    assert latest(live, "nightly-backup")["message"] == "beat received"
    answer = ping(live, f"{PING_KEY}/nightly-backup")
    assert (answer.status_code, answer.text) == (200, "OK")
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["ping-body-limit"] == str(LIMIT)
    assert beats(live, "nightly-backup")[0].data == {"status": "ok", "source": "ping"}


def test_a_wrong_key_makes_curl_fail_as_a_crontab_would_notice(live):
    done = curl(f"{live.url}/ping/{PING_KEY}x/nightly-backup")
    assert done.returncode == 22, done  # curl -f: the server answered an error
    assert "404" in done.stderr


def test_failure_by_fail_and_by_exit_status(live):
    body = b"dumping\npg_dump: connection refused"
    assert ping(live, f"{PING_KEY}/nightly-backup/fail", "POST", content=body).text == "OK"
    live.wait_status("nightly-backup", "down")
    assert latest(live, "nightly-backup")["message"].endswith("pg_dump: connection refused")
    assert ping(live, f"{PING_KEY}/nightly-backup/0").status_code == 200
    live.wait_status("nightly-backup", "up")
    assert ping(live, f"{PING_KEY}/nightly-backup/3", "POST", content=b"no space").text == "OK"
    live.wait_status("nightly-backup", "down")
    assert latest(live, "nightly-backup")["message"] == "reported failure (exit code 3): no space"
    assert ping(live, f"{PING_KEY}/nightly-backup/255").status_code == 200
    assert "exit code 255" in latest(live, "nightly-backup")["message"]
    too_big = ping(live, f"{PING_KEY}/nightly-backup/256")
    assert (too_big.status_code, too_big.text) == (400, "exit status must be 0-255")
    assert ping(live, f"{PING_KEY}/nightly-backup/ok").status_code == 404  # not healthchecks'
    assert ping(live, f"{PING_KEY}/nightly-backup/").status_code == 200  # a trailing slash
    live.wait_status("nightly-backup", "up")


def test_start_then_end_measures_the_run(live):
    assert ping(live, f"{PING_KEY}/nightly-backup/start").text == "OK"
    time.sleep(0.6)
    assert ping(live, f"{PING_KEY}/nightly-backup/0").text == "OK"
    live.wait_status("nightly-backup", "up")
    runtime = latest(live, "nightly-backup")["metrics"]["runtime"]
    assert 0.5 < runtime < 5
    assert latest(live, "nightly-backup")["message"].startswith("beat received after")


def test_overlapping_runs_are_paired_by_rid(live):
    assert ping(live, f"{PING_KEY}/nightly-backup/start?rid=first").status_code == 200
    time.sleep(0.8)
    assert ping(live, f"{PING_KEY}/nightly-backup/start?rid=second").status_code == 200
    time.sleep(0.2)
    assert ping(live, f"{PING_KEY}/nightly-backup?rid=second").status_code == 200
    wait_until(lambda: latest(live, "nightly-backup").get("metrics", {}).get("runtime"))
    assert latest(live, "nightly-backup")["metrics"]["runtime"] < 0.7
    assert ping(live, f"{PING_KEY}/nightly-backup/0?rid=first").status_code == 200
    wait_until(lambda: latest(live, "nightly-backup")["metrics"].get("runtime", 0) >= 0.9)
    assert ping(live, f"{PING_KEY}/nightly-backup?rid=" + "x" * 200).status_code == 400


def runitor(base: str, handle: str, command: str) -> int:
    """Do what `runitor -api-url BASE [-uuid ID | -ping-key KEY -slug SLUG] -- CMD` does:
    a start ping, the command with its output captured, then the exit status with the
    output as the body; each POST text/plain with the run's id (its bdd/runitor
    internal/api.go)."""
    rid = str(uuid.uuid4())
    headers = {"User-Agent": "runitor/v1.4.1 (+https://bdd.fi/x/runitor)"}
    with httpx.Client(headers=headers, timeout=5) as client:
        started = client.post(
            f"{base}/{handle}/start", params={"rid": rid}, headers={"Content-Type": "text/plain"}
        )
        assert started.status_code == 200
        # runitor sizes its output buffer from this header of the start ping's answer
        assert started.headers["ping-body-limit"] == str(LIMIT)
        run = subprocess.run(["sh", "-c", command], capture_output=True, timeout=30)
        output = run.stdout + run.stderr
        # success pings go to the handle itself, failures to the exit status
        path = f"{base}/{handle}" if run.returncode == 0 else f"{base}/{handle}/{run.returncode}"
        ended = client.post(
            path, params={"rid": rid}, content=output, headers={"Content-Type": "text/plain"}
        )
        assert (ended.status_code, ended.text) == (200, "OK")
    return run.returncode


def test_runitor_with_a_slug_and_with_a_ping_id(live):
    base = f"{live.url}/ping"
    code = runitor(base, f"{PING_KEY}/nightly-backup", "sleep 0.3; echo copying; exit 0")
    assert code == 0
    live.wait_status("nightly-backup", "up")
    assert latest(live, "nightly-backup")["metrics"]["runtime"] >= 0.3
    assert beats(live, "nightly-backup")[0].data["log"] == "copying\n"
    failing = "echo copying; echo 'tar: /srv: No space left on device' >&2; exit 2"
    assert runitor(base, f"{PING_KEY}/nightly-backup", failing) == 2
    live.wait_status("nightly-backup", "down")
    message = latest(live, "nightly-backup")["message"]
    assert message == "reported failure (exit code 2): tar: /srv: No space left on device"
    assert "runtime" in latest(live, "nightly-backup")["metrics"]
    assert runitor(base, PING_ID, "echo fine") == 0
    live.wait_status("handed-out", "up")
    assert runitor(base, f"{PING_KEY}/nightly-backup", "true") == 0
    live.wait_status("nightly-backup", "up")


def test_the_log_is_kept_and_a_long_one_cut_with_a_note(live):
    body = b"x" * 150_000 + "\nlast words: ünïcode".encode()
    assert ping(live, f"{PING_KEY}/nightly-backup/fail", "POST", content=body).text == "OK"
    live.wait_status("nightly-backup", "down")
    log = beats(live, "nightly-backup")[0].data["log"]
    assert len(log.encode()) <= LIMIT
    assert log.startswith(f"[the body was {len(body)} bytes: the first ")
    assert log.endswith("last words: ünïcode")
    assert latest(live, "nightly-backup")["message"].endswith("last words: ünïcode")
    whole = b"line one\nline two\n" * 100
    assert ping(live, f"{PING_KEY}/nightly-backup", "POST", content=whole).text == "OK"
    live.wait_status("nightly-backup", "up")
    assert beats(live, "nightly-backup")[0].data["log"] == whole.decode()


def test_log_keeps_an_entry_and_changes_nothing(live):
    ping(live, f"{PING_KEY}/nightly-backup")
    live.wait_status("nightly-backup", "up")
    assert ping(live, f"{PING_KEY}/nightly-backup/start?rid=open").status_code == 200
    before = dict(live.daemon.heartbeats.state["nightly-backup"])
    message = latest(live, "nightly-backup")["message"]
    answer = ping(live, f"{PING_KEY}/nightly-backup/log", "POST", content=b"halfway: 40%")
    assert (answer.status_code, answer.text) == (200, "OK")
    time.sleep(1.2)  # the tracker polls the store every second: give it the chance to misjudge
    assert live.daemon.heartbeats.state["nightly-backup"]["runs"] == before["runs"]
    assert live.daemon.heartbeats.state["nightly-backup"]["last_ok"] == before["last_ok"]
    assert latest(live, "nightly-backup")["message"] == message
    entry = beats(live, "nightly-backup#log")[0].data
    assert entry == {"status": "log", "log": "halfway: 40%", "source": "ping"}
    assert ping(live, f"{PING_KEY}/nightly-backup/0?rid=open").status_code == 200


def test_unknown_check_and_wrong_key_are_the_same_404(live):
    asked = [
        f"{PING_KEY[:-1]}X/nightly-backup",  # a wrong key, a real check
        f"{PING_KEY}/no-such-check",  # the right key, no such check
        f"{PING_KEY}/tcp",  # not a heartbeat
        f"{PING_KEY}/multi@nope",
        f"{PING_ID[:-1]}0",  # no such ping id
        f"{PING_ID}/nightly-backup",  # a ping id serves its own check only
        f"{PING_KEY}",
        f"{PING_KEY}/nightly-backup/start/more",
        "",
    ]
    answers = [ping(live, path, "POST", content=b"some log") for path in asked]
    answers += [ping(live, path) for path in asked[:2]]

    def shape(response: httpx.Response) -> tuple:
        headers = tuple(sorted((k, v) for k, v in response.headers.items() if k != "date"))
        return response.status_code, response.content, headers

    assert answers[0].status_code == 404
    assert answers[0].text == "not found"
    assert {shape(a) for a in answers[:-2]} == {shape(answers[0])}
    assert shape(answers[-1]) == shape(answers[-2])
    assert answers[-1].status_code == 404
    ambiguous = ping(live, f"{PING_KEY}/multi")
    assert ambiguous.status_code == 409
    assert ping(live, f"{PING_KEY}/multi@staging").text == "OK"


def test_head_works(live):
    fail_then_recover(live)
    answer = ping(live, f"{PING_KEY}/nightly-backup", "HEAD")
    assert answer.status_code == 200
    assert answer.content == b""
    live.wait_status("nightly-backup", "up")
    assert ping(live, f"{PING_KEY}/nightly-backup/fail", "HEAD").status_code == 200
    live.wait_status("nightly-backup", "down")
    assert ping(live, f"{PING_KEY}x/nightly-backup", "HEAD").status_code == 404
    ping(live, f"{PING_KEY}/nightly-backup", "HEAD")
    live.wait_status("nightly-backup", "up")


def test_a_ping_id_url_needs_no_key(live):
    assert ping(live, f"{PING_ID}/fail").text == "OK"
    live.wait_status("handed-out", "down")
    done = curl(f"{live.url}/ping/{PING_ID}")
    assert done.returncode == 0, done.stderr
    live.wait_status("handed-out", "up")
    assert ping(live, f"{PING_ID}/start").text == "OK"
    assert ping(live, f"{PING_ID}/7").text == "OK"
    live.wait_status("handed-out", "down")
    assert ping(live, f"{PING_KEY}/handed-out").text == "OK"  # the key serves every check
    live.wait_status("handed-out", "up")


def test_without_a_ping_key_only_ping_ids_answer(tmp_path, receiver):
    with LiveDaemon(tmp_path, config(receiver), ENV) as daemon:
        assert ping(daemon, f"{PING_KEY}/nightly-backup").status_code == 404
        assert ping(daemon, "/nightly-backup").status_code == 404
        assert ping(daemon, f"{PING_ID}/fail").text == "OK"
        daemon.wait_status("handed-out", "down")
        assert ping(daemon, PING_ID).text == "OK"
        daemon.wait_status("handed-out", "up")


def test_limits(tmp_path, receiver):
    with LiveDaemon(tmp_path, config(receiver, ping_key="${PING_KEY}"), ENV) as daemon:
        # a body declared past 10 MB is refused before a byte of it is read
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
            sock.sendall(
                f"POST /ping/{PING_KEY}/nightly-backup HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 20000000\r\n\r\n".encode()
            )
            head = sock.recv(4096).decode()
        assert head.startswith("HTTP/1.1 413"), head
        # refused pings spend the source's budget (120 at once, then one a second), as
        # refused heartbeats do
        began, statuses = time.monotonic(), []
        with httpx.Client(base_url=daemon.url, timeout=15) as client:
            while len(statuses) < 400 and 429 not in statuses:
                statuses.append(client.get(f"/ping/wrong-{len(statuses)}/x").status_code)
        elapsed = time.monotonic() - began
        assert statuses[-1] == 429
        assert set(statuses[:-1]) == {404}
        assert 120 <= len(statuses) - 1 <= 120 + elapsed + 1
        limited = ping(daemon, "wrong-key/nightly-backup")
        assert limited.status_code == 429
        assert limited.text == "too many refused calls; retry later"
        assert int(limited.headers["retry-after"]) >= 1
        assert ping(daemon, f"{PING_KEY}/no-such-check").status_code == 429  # the same answer
        # a good ping is served even from a source being limited
        assert ping(daemon, f"{PING_KEY}/nightly-backup").text == "OK"
        # at most 100 open runs: the 101st start drops the oldest
        for i in range(101):
            assert ping(daemon, f"{PING_KEY}/nightly-backup/start?rid=r{i}").status_code == 200
        state = daemon.daemon.heartbeats.state["nightly-backup"]
        assert len(state["runs"]) == 100
        assert "r0" not in state["runs"]
        assert state["runs_dropped"] == 1


def test_missed_beat_alerts_and_the_next_ping_resolves_it(live, receiver):
    def told(status: str) -> bool:
        return any(
            r.json()["status"] == status
            and any(a["check"] == "missed" and a["status"] == status for a in r.json()["alerts"])
            for r in receiver.requests
            if r.path == "/hook"
        )

    wait_until(lambda: told("firing"), 15, what="the missed beat's alert")
    alert = next(a for a in live.get("/api/alerts").json() if a["check"] == "missed")
    assert alert["rule"] == "up"
    assert "no beat" in alert["summary"]
    done = curl(f"{live.url}/ping/{PING_KEY}/missed")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: told("resolved"), 15, what="the alert's resolution")


def test_secrets_are_never_shown(live):
    # a right key with an unknown check is refused: the refusal must not keep the key
    assert ping(live, f"{PING_KEY}/not-there").status_code == 404
    assert ping(live, PING_ID).status_code == 200
    audit = live.get("/api/audit").json()  # writes the refusals of this minute first
    denied = [e for e in audit if e["action"] == "denied"]
    paths = [p for e in denied for p in e.get("paths", []) if p.startswith("/ping/")]
    assert paths, denied
    assert all(p.startswith("/ping/*") for p in paths), paths
    shown = [
        live.get("/api/status").text,
        live.get("/api/alerts?status=all").text,
        str(audit),
        live.get("/", token=None).text,
        live.get("/checks/handed-out", token=None).text,
        live.get("/checks/handed-out").text,
        live.get("/metrics", token=None).text,
        live.get("/health", token=None).text,
    ]
    live.flush()

    async def stored_audit():
        return await live.daemon.store.read("audit", newest_first=True, limit=500)

    shown += [str(row.data) for row in live.call(stored_audit)]
    shown.append(live.logs.text)
    for text in shown:
        assert PING_KEY not in text
        assert PING_ID not in text
    # the access log saw the ping URLs, with the secrets masked
    assert "/ping/**********/nightly-backup" in live.logs.text
    assert "/ping/**********" in live.logs.text


def test_validate_keeps_ping_ids_apart_and_never_prints_them(cli, write_config):
    write_config(
        f"""
        version: 1
        server:
          ping_key: {PING_KEY}
        environments: {{prod: {{}}, staging: {{}}}}
        checks:
          first: {{probe: heartbeat, expect_every: {{every: 1h}}, ping_id: {PING_ID}}}
          second: {{probe: heartbeat, expect_every: {{every: 1h}}, ping_id: {PING_ID}}}
          keyed: {{probe: heartbeat, expect_every: {{every: 1h}}, ping_id: {PING_KEY}}}
          short: {{probe: heartbeat, expect_every: {{every: 1h}}, ping_id: abc123}}
          shared:
            probe: heartbeat
            expect_every: {{every: 1h}}
            environments: [prod, staging]
            ping_id: 0a1b2c3d-93b8-4d61-a0f5-2e8b9c3d1f47
          per-env:
            probe: heartbeat
            expect_every: {{every: 1h}}
            environments: [prod, staging]
            ping_id: ${{env.ping_id}}
        """
    )
    result = cli("validate")
    assert result.code == 1, result.output
    out = result.output
    assert "checks.second.ping_id: check 'first' has the same ping_id" in out
    assert "checks.keyed.ping_id: ping_id is the same as server.ping_key" in out
    assert "checks.short.ping_id: ping_id must be 16-128 letters" in out
    assert "checks.shared.ping_id: a check with several environments needs a ping_id" in out
    assert "checks.per-env.ping_id: a check" not in out
    assert PING_ID not in out
    assert PING_KEY not in out
    assert "abc123" not in out


def test_watchkeeper_exec_still_reports_beside_the_pings(live):
    fail_then_recover(live)
    command = [str(Path(sys.executable).parent / "watchkeeper"), "exec", "nightly-backup"]
    done = subprocess.run(
        [*command, "--", "sh", "-c", "echo exec ran"],
        cwd=live.directory,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    live.wait_status("nightly-backup", "up")
    assert ping(live, f"{PING_KEY}/nightly-backup/fail").text == "OK"
    live.wait_status("nightly-backup", "down")
