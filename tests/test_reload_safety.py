"""A reload never freezes, stops or kills the daemon (issue 15, finding 3).

Every reload path (SIGHUP, the file watcher, `POST /api/reload`) reads the config in a
child process under a time and a memory limit; applying it is all or nothing; and the
outcome shows in /health's `last_reload`. A real daemon probes a real HTTP server
throughout, and /health is polled while a hostile file is being read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, wait_until
from tests.daemon_harness import Daemon, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals and FIFOs")

ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "WATCHKEEPER_CONFIG_TIMEOUT": "6"}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def good(port: int | str, url: str, extra: str = "") -> str:
    return f"""\
version: 1
state: {{type: sqlite, path: state.db}}
engine: {{workers: 0}}
server: {{listen: "127.0.0.1:{port}", admin_token: "${{ADMIN_TOKEN}}"}}
checks:
  web:
    probe: http
    url: {url}/health
    schedule: {{every: 1s}}
    timeout: 2s
{extra}"""


def alias_bomb(port: int, url: str) -> str:
    """Nine levels of ten aliases: 10^9 strings once anything walks the data."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    body = "\n".join(" " * 10 + line for line in lines)
    return good(port, url) + f"    expect:\n      json:\n{body}\n"


def fifo_secret(port: int, url: str, fifo: Path) -> str:
    """A `${file:}` naming a FIFO nobody writes: opening it blocks for ever (unless the
    loader refuses FIFOs, which makes this a quick refusal instead)."""
    return good(port, url).replace(f"{url}/health", f"{url}/health?k=${{file:{fifo}}}")


class HealthPoller:
    """Poll /health in a thread; keep each answer's time and body."""

    def __init__(self, base: str):
        self.base = base
        self.times: list[float] = []
        self.bodies: list[dict] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get(self.base + "/health")
                    self.bodies.append(response.json())
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.times.append(time.monotonic() - started)
                time.sleep(0.1)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def last_reload(base: str) -> dict | None:
    return httpx.get(base + "/health", timeout=5).json().get("last_reload")


def reload_detail(base: str) -> dict | None:
    """The last reload as the admin API tells it: with the error and each problem."""
    return httpx.get(base + "/api/status", headers=AUTH, timeout=5).json().get("last_reload")


def refused_after(base: str, at: str | None, timeout: float = 40.0) -> dict:
    """Wait for a reload outcome newer than `at` that is a refusal (in /health); return
    it as the admin API tells it, after checking /health says no more than that."""

    def newer() -> dict | None:
        outcome = last_reload(base)
        if outcome and outcome.get("at") != at and outcome["ok"] is False:
            return outcome
        return None

    public = wait_until(newer, timeout, 0.2, what="a refused reload in /health")
    assert set(public) <= {"at", "ok", "problems"}, public  # no error text for anyone
    detail = reload_detail(base)
    assert detail["at"] == public["at"], (public, detail)
    detail["problems"] = public.get("problems", 0)
    return detail


@pytest.mark.parametrize("how", ["sighup", "api"])
@pytest.mark.parametrize("hostile", ["alias bomb", "fifo"])
def test_a_hostile_file_is_refused_while_the_daemon_keeps_answering_and_probing(
    tmp_path, target, how, hostile
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "monitor.yaml"
    config.write_text(good(port, target.url))
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    with Daemon(tmp_path, env=ENV) as daemon:
        wait_until(lambda: target.hits >= 1, 15, what="a first probe")
        before = last_reload(base)
        assert before is None
        text = alias_bomb(port, target.url) if hostile == "alias bomb" else None
        config.write_text(text or fifo_secret(port, target.url, fifo))
        hits = target.hits
        answer: dict = {}
        began = time.monotonic()
        with HealthPoller(base) as poller:
            if how == "sighup":
                daemon.signal(signal.SIGHUP)
            else:

                def call() -> None:
                    response = httpx.post(base + "/api/reload", headers=AUTH, timeout=60)
                    answer["status"], answer["body"] = response.status_code, response.json()

                caller = threading.Thread(target=call, daemon=True)
                caller.start()
            outcome = refused_after(base, None)
            took = time.monotonic() - began
            if how == "api":
                caller.join(60)
                assert answer["status"] == 422, answer
                problems = answer["body"]["problems"]
                assert problems
                assert {"file", "line", "column", "path", "message"} <= set(problems[0])
        assert daemon.proc.poll() is None, daemon.log
        assert not poller.failures, poller.failures
        assert poller.times  # /health answered throughout (a quick refusal allows few polls)
        assert max(poller.times) < 1.0, sorted(poller.times)[-5:]
        print(
            f"/health during the reload: {len(poller.times)} answers, max {max(poller.times):.3f}s"
        )
        if took > 2.5:  # the check runs every second: a long reload must not stop it
            assert target.hits > hits, f"no probe in the {took:.1f} s the reload took"
        assert outcome["ok"] is False
        assert outcome["error"]
        assert outcome["problems"] >= 1
        # the admin API says the same, with each problem
        status = httpx.get(base + "/api/status", headers=AUTH, timeout=5).json()
        assert status["last_reload"]["ok"] is False
        assert status["last_reload"]["problems"][0]["message"]
        hits = target.hits
        wait_until(lambda: target.hits >= hits + 2, 10, what="probes after the reload")
        assert "reload rejected" in daemon.log


def test_a_config_whose_applying_fails_is_refused_and_a_good_one_clears_it(tmp_path, target):
    # `every: 0.0001s` is a schedule the timetable cannot build; validate refuses it now
    # (issue 16: validate and the scheduler agree), so the refusal comes from the child's
    # validation. Applying that fails is `test_a_failure_while_applying_rolls_everything_back`.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "monitor.yaml"
    config.write_text(good(port, target.url))
    broken = good(port, target.url).replace("every: 1s", "every: 0.0001s")
    broken += f"  other:\n    probe: http\n    url: {target.url}/other\n"
    with Daemon(tmp_path, env=ENV) as daemon:
        wait_until(lambda: target.hits >= 1, 15, what="a first probe")
        config.write_text(broken)
        daemon.signal(signal.SIGHUP)
        outcome = refused_after(base, None)
        assert "`every` must be at least 1ms" in outcome["error"]
        assert "monitor.yaml:9:" in outcome["error"]  # where, as validate says it
        assert daemon.proc.poll() is None, daemon.log
        status = httpx.get(base + "/api/status", headers=AUTH, timeout=5).json()
        assert [c["check"] for c in status["checks"]] == ["web"]  # still the old config
        hits = target.hits
        wait_until(lambda: target.hits >= hits + 2, 10, what="probes on the old config")
        # the API says the same, in its own shape
        response = httpx.post(base + "/api/reload", headers=AUTH, timeout=60)
        assert response.status_code == 422
        problem = response.json()["problems"][0]
        assert "`every` must be at least 1ms" in problem["message"]
        assert problem["line"] == 9
        # a good file clears it
        config.write_text(good(port, target.url).replace("every: 1s", "every: 2s"))
        response = httpx.post(base + "/api/reload", headers=AUTH, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["changed"] == ["web"]
        outcome = last_reload(base)
        assert outcome["ok"] is True
        assert "error" not in outcome


def test_a_failure_while_applying_rolls_everything_back(tmp_path, target):
    """Something raising half-way through applying (after the runtime switched) puts the
    runtime, the scheduler and the rest back on the previous configuration."""
    port = "{PORT}"  # LiveDaemon's own
    text = good(port, target.url).replace("${ADMIN_TOKEN}", ADMIN_TOKEN)
    with LiveDaemon(tmp_path, text, {"ADMIN_TOKEN": ADMIN_TOKEN}) as live:
        daemon = live.daemon
        wait_until(lambda: target.hits >= 1, 15, what="a first probe")
        old_instance = daemon.runtime.instances["web"]
        old_job = daemon.scheduler.jobs["check:web"]
        calls = []
        real_apply = daemon.backups.apply

        def failing(config, **kwargs):
            calls.append(config)
            if len(calls) == 1:
                raise RuntimeError("backups cannot take this")
            return real_apply(config, **kwargs)

        daemon.backups.apply = failing
        live.write(
            good(port, target.url, f"  other:\n    probe: http\n    url: {target.url}/o\n")
            .replace("${ADMIN_TOKEN}", ADMIN_TOKEN)
            .replace("every: 1s", "every: 3s")
        )
        response = live.post("/api/reload")
        assert response.status_code == 422, response.text
        message = response.json()["problems"][0]["message"]
        assert "backups cannot take this" in message
        assert len(calls) == 2  # applied, then rolled back

        def state():
            rt = daemon.runtime
            return (
                sorted(rt.instances),
                sorted(rt.all_instances),
                sorted(daemon.scheduler.jobs),
                daemon.scheduler.jobs["check:web"].target is rt.instances["web"],
                rt.evaluators["web"].instance is rt.instances["web"],
                daemon.config.checks["web"].schedule.every,
            )

        assert live.call(state) == (["web"], ["web"], ["check:web"], True, True, 1.0)
        assert daemon.runtime.instances["web"] is old_instance
        job = daemon.scheduler.jobs["check:web"]
        # the old schedule again (a fresh job on it: `every` is phase-locked, same times)
        assert job.target is old_instance
        assert not job.cancelled
        assert job.next_at - old_job.next_at in (0.0, 1.0, 2.0, 3.0)
        health = live.get("/health", token=None).json()
        assert health["last_reload"]["ok"] is False
        hits = target.hits
        wait_until(lambda: target.hits >= hits + 2, 10, what="probes on the old config")
        # the same file again, now that applying works: accepted, and the failure cleared
        response = live.post("/api/reload")
        assert response.status_code == 200, response.text
        assert response.json()["added"] == ["other"]
        assert live.get("/health", token=None).json()["last_reload"]["ok"] is True


@pytest.mark.parametrize("how", ["sighup", "api"])
def test_reading_past_the_time_limit_is_refused(tmp_path, target, how):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "monitor.yaml"
    config.write_text(good(port, target.url))
    with Daemon(tmp_path, env={**ENV, "WATCHKEEPER_CONFIG_TIMEOUT": "4"}) as daemon:
        wait_until(lambda: target.hits >= 1, 15, what="a first probe")
        # legal but slow to read: far more checks than four seconds can check
        many = "".join(
            f"  c{i}:\n    probe: tcp\n    host: 127.0.0.1\n    port: 9\n    enabled: false\n"
            for i in range(200_000)
        )
        config.write_text(good(port, target.url, many))
        started = time.monotonic()
        with HealthPoller(base) as poller:
            if how == "sighup":
                daemon.signal(signal.SIGHUP)
                outcome = refused_after(base, None)
                error = outcome["error"]
            else:
                response = httpx.post(base + "/api/reload", headers=AUTH, timeout=60)
                assert response.status_code == 422
                error = response.json()["problems"][0]["message"]
        assert time.monotonic() - started < 30
        assert error == (
            "reading the config took longer than 4 s; the previous configuration keeps running"
        ), error
        assert max(poller.times) < 1.0
        assert daemon.proc.poll() is None


def test_start_up_past_the_time_limit_exits_1_with_one_line(tmp_path, target):
    config = tmp_path / "monitor.yaml"
    config.write_text(good(free_port(), target.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(ENV, WATCHKEEPER_CONFIG_TIMEOUT="0.05", COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "watchkeeper.engine", "-c", str(config), "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "reading the config took longer than 0.05 s; nothing was started" in lines[0]


def test_a_refused_file_never_shows_a_secret_it_names(tmp_path, target):
    # the secret first appears in the refused file: the daemon has never registered it
    secret = "tok-sekrit5678-refused"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "monitor.yaml"
    config.write_text(good(port, target.url))
    env = {**ENV, "OTHER_TOKEN": secret}
    with Daemon(tmp_path, env=env) as daemon:
        wait_until(lambda: target.hits >= 1, 15, what="a first probe")
        config.write_text(good(port, target.url).replace("timeout: 2s", "timeout: ${OTHER_TOKEN}"))
        response = httpx.post(base + "/api/reload", headers=AUTH, timeout=60)
        assert response.status_code == 422
        assert "timeout" in response.text
        health = httpx.get(base + "/health", timeout=5).text
        status = httpx.get(base + "/api/status", headers=AUTH, timeout=5).text
        assert "checks.web.timeout" in status
        for shown in (response.text, health, status, daemon.log):
            assert secret not in shown
        assert "reload rejected" in daemon.log
    # and a start on that file says why without it
    from tests.conftest import run_cli

    started = run_cli("run", "--once", cwd=tmp_path, env=env)
    assert started.code == 1, started.output
    assert "checks.web.timeout" in started.output
    assert secret not in started.output
