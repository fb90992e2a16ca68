"""Every probe type follows the probe author's contract (docs/probe-authors.md).

Parametrized over the registry, so a new probe is held to it as soon as it registers:
its class and options model are checked, its options travel to a worker process, and
each active probe is pointed at a target that never answers to see that it gives up
in time with a plain message, and lets a cancellation from outside through.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import typing
from pathlib import Path

import anyio
import pytest
from pydantic import ConfigDict, Field

from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.probe import Probe, Result
from watchkeeper.engine.run.worker import RunSpec, frame, read_frame
from watchkeeper.engine.testing import (
    HttpTestServer,
    SilentUdpServer,
    TcpTestServer,
    acheck_cancelled,
    check_once,
    contract_problems,
)
from watchkeeper.schema.checks import ProbeOptions

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-contract-value"
PROBES = registry().types["probe"]
ACTIVE = sorted(name for name, cls in PROBES.items() if not getattr(cls, "passive", False))
BUILTIN = "watchkeeper.plugins."

# Host probes read the machine they run on: nothing to hang on, they must just be quick.
QUICK = {"system", "env"}


class Targets:
    """Servers that never answer: a silent TCP port, a silent UDP port, hanging HTTP."""

    def __init__(self) -> None:
        self.tcp = TcpTestServer().start()
        self.udp = SilentUdpServer()
        self.http = HttpTestServer().start()
        self.http.reply("/hang", hang=True)
        self.http.reply("/api/0/projects/acme/web/", hang=True)

    def stop(self) -> None:
        self.http.stop()
        self.udp.stop()
        self.tcp.stop()

    def options(self, probe_type: str) -> dict | None:
        return hanging_options(
            probe_type,
            tcp_port=self.tcp.port,
            udp_address=self.udp.address,
            http_url=self.http.url,
        )


def hanging_options(
    probe_type: str, *, tcp_port: int, udp_address: str, http_url: typing.Callable[[str], str]
) -> dict | None:
    """Options pointing a probe at a target that never answers (None: unknown type)."""
    return {
        "http": {"url": http_url("/hang"), "headers": {"X-Api-Key": SECRET}},
        "tcp": {"host": "127.0.0.1", "port": tcp_port, "expect_regex": "^never"},
        "dns": {"name": "www.example.test", "resolvers": [udp_address]},
        "tls": {"host": "127.0.0.1", "port": tcp_port, "starttls": "smtp"},
        "postgres": {"dsn": f"postgresql://watch:{SECRET}@127.0.0.1:{tcp_port}/app"},
        "redis": {"url": f"redis://:{SECRET}@127.0.0.1:{tcp_port}/0"},
        "mqtt": {"url": f"mqtt://watch:{SECRET}@127.0.0.1:{tcp_port}"},
        "nats": {"url": f"nats://watch:{SECRET}@127.0.0.1:{tcp_port}"},
        "udp": {
            "host": udp_address.rpartition(":")[0],
            "port": int(udp_address.rpartition(":")[2]),
            "send": "ping",
        },
        "mysql": {"dsn": f"mysql://watch:{SECRET}@127.0.0.1:{tcp_port}/app"},
        "amqp": {"url": f"amqp://watch:{SECRET}@127.0.0.1:{tcp_port}/", "queue": "jobs"},
        "sentry": {
            "organization": "acme",
            "project": "web",
            "auth_token": SECRET,
            "api_url": http_url("/api/0/"),
        },
        "command": {"argv": ["sleep", "30"]},
        "system": {},
        "env": {"require": ["PATH"]},
        "ssh": {"host": "127.0.0.1", "port": tcp_port, "username": "watch", "password": SECRET},
        "websocket": {"url": f"ws://127.0.0.1:{tcp_port}/", "headers": {"Authorization": SECRET}},
        "grpc": {"target": f"127.0.0.1:{tcp_port}", "metadata": {"authorization": SECRET}},
        # TEST-NET-2 (RFC 5737) is never routed: no echo reply comes back
        "icmp": {"host": "198.51.100.1"},
        "smtp": {"host": "127.0.0.1", "port": tcp_port, "username": "watch", "password": SECRET},
        "imap": {"host": "127.0.0.1", "port": tcp_port, "username": "watch", "password": SECRET},
        "pop3": {"host": "127.0.0.1", "port": tcp_port, "username": "watch", "password": SECRET},
    }.get(probe_type)


@pytest.fixture(scope="module")
def targets():
    servers = Targets()
    yield servers
    servers.stop()


# options of the passive probes, which have no target
SAMPLES = {
    "heartbeat": {"expect_every": {"every": "1h"}, "token": SECRET},
    "composite": {"of": ["api", "web"], "failing": {"at_least": 2}},
}


def sample(probe_type: str) -> dict:
    if probe_type in SAMPLES:
        return SAMPLES[probe_type]
    found = hanging_options(  # the shapes only: no servers needed
        probe_type, tcp_port=1, udp_address="127.0.0.1:1", http_url=lambda p: f"http://x{p}"
    )
    if found is None:
        if not PROBES[probe_type].__module__.startswith(BUILTIN):
            pytest.skip(f"no sample options for the third-party probe {probe_type!r}")
        pytest.fail(f"add sample options for the built-in probe {probe_type!r} to this file")
    return found


# --- the class and its options -------------------------------------------------------------


@pytest.mark.parametrize("probe_type", sorted(PROBES))
def test_static_rules(probe_type):
    cls = PROBES[probe_type]
    assert cls.type == probe_type
    assert contract_problems(cls) == []
    if cls.__module__.startswith(BUILTIN):
        assert issubclass(cls, Probe)
        assert getattr(cls, "scope", "global") in ("global", "host")
        assert cls.metrics, "it declares its metrics (`metrics = (Metric(...), ...)`)"


@pytest.mark.parametrize("probe_type", sorted(PROBES))
def test_options_travel_to_a_worker(probe_type):
    """The executor pickles each check's options into its worker processes' frames."""
    import io

    options_class = PROBES[probe_type].Options
    parsed = options_class.model_validate(sample(probe_type))
    fields = {name: getattr(parsed, name) for name in options_class.model_fields}
    spec = RunSpec("c", probe_type, "c", None, 5.0, {}, options_class.model_construct(**fields))
    message = read_frame(io.BytesIO(frame(("load", {"c": spec}, []))))
    assert message[1]["c"].options.model_dump() == parsed.model_dump()


def test_plugin_modules_import_no_heavy_library():
    """`watchkeeper validate` loads every plugin: their libraries load when a check runs."""
    heavy = ["dns", "httpx", "psycopg", "redis", "psutil", "cryptography", "aiosmtplib"]
    heavy += ["aiomqtt", "paho", "nats"]
    heavy += ["aiomysql", "pymysql", "aiormq", "pamqp"]
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import watchkeeper.plugins.probes as probes
        for module in pkgutil.iter_modules(probes.__path__):
            importlib.import_module(f"{{probes.__name__}}.{{module.name}}")
        print(" ".join(m for m in {heavy!r} if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], "import these inside check() or open()"


# --- behaviour against targets that never answer ------------------------------------------


@pytest.mark.parametrize("probe_type", ACTIVE)
def test_gives_up_in_time_with_a_plain_message(probe_type, targets):
    options = targets.options(probe_type) or sample(probe_type)
    # a first run imports the probe's client library (asyncssh, grpcio...): a daemon pays
    # that once at start, and this test is about how long a run waits
    check_once(probe_type, options, timeout=0.05)
    start = time.perf_counter()
    result = check_once(probe_type, options, timeout=0.5)
    elapsed = time.perf_counter() - start
    assert isinstance(result, Result)
    assert SECRET not in result.message
    if probe_type in QUICK:
        assert elapsed < 0.5, f"a host probe should take milliseconds, took {elapsed:.2f}s"
        return
    assert not result.ok
    assert "timed out after 500ms" in result.message, result.message
    assert result.details.get("timeout") is True, "details carry timeout: true"
    assert elapsed < 1.0, f"gave up after {elapsed:.2f}s"


@pytest.mark.parametrize("probe_type", sorted(set(ACTIVE) - QUICK))
def test_lets_cancellation_through(probe_type, targets):
    options = targets.options(probe_type) or sample(probe_type)
    outcome = anyio.run(lambda: acheck_cancelled(probe_type, options, after=0.3))
    assert outcome.returned is None, "check() swallowed the cancellation and returned a result"
    assert outcome.cancelled
    assert outcome.elapsed < 1.3, f"check() took {outcome.elapsed:.2f}s to stop"


# --- the checks themselves catch offenders ---------------------------------------------------


class _Loose(ProbeOptions):
    model_config = ConfigDict(extra="allow")
    host: str
    api_token: str = Field("", description="A credential in plain text.")


class _Offender:
    type = "offender"
    Options = _Loose

    def __init__(self, needed):
        pass

    def check(self, options, ctx):
        return Result(ok=True)


class _Swallower(Probe):
    type = "swallower"
    Options = ProbeOptions

    async def check(self, options, ctx):
        try:
            await anyio.sleep(10)
        except BaseException:  # exactly what the contract forbids
            return Result(ok=False, message="cancelled?")
        return Result(ok=True)


def test_the_checks_catch_offenders():
    problems = contract_problems(_Offender)
    assert "`check` is not an async def" in problems
    assert "`open` is not an async def" in problems
    assert any(p.startswith("cannot be made without arguments: TypeError") for p in problems)
    assert "_Loose accepts unknown keys (use extra='forbid')" in problems
    assert "_Loose.host has no Field(description=...)" in problems
    assert "_Loose.api_token holds a credential: make it Secret" in problems
    outcome = anyio.run(lambda: acheck_cancelled("swallower", {}, probe=_Swallower()))
    assert outcome.returned is not None
    assert not outcome.cancelled


# --- the kit for plugin authors --------------------------------------------------------------


@pytest.mark.slow
def test_the_pytest_fixtures_for_plugin_authors(tmp_path):
    """`pytest_plugins = ["watchkeeper.engine.testing"]` gives the fixtures the guide names."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["watchkeeper.engine.testing"]\n')
    (tmp_path / "test_kit.py").write_text(
        textwrap.dedent(
            """
            from watchkeeper.engine.testing import check_once

            def test_kit(http_server, tcp_server, silent_udp, certificates):
                http_server.reply("/health", json={"status": "ok"})
                assert check_once("http", {"url": http_server.url("/health")}).ok
                silent = tcp_server()
                result = check_once("tcp", {"host": "127.0.0.1", "port": silent.port,
                                            "expect_regex": "x"}, timeout=0.3)
                assert result.details["timeout"]
                assert silent_udp.port > 0
                assert certificates.ca.exists()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_guide_example_runs(tmp_path):
    """docs/probe-authors.md's example plugin and its test run as printed."""
    import re

    guide = (REPO / "docs" / "probe-authors.md").read_text()
    blocks = dict(re.findall(r"```python\n# (\S+\.py)\n(.*?)```", guide, re.DOTALL))
    assert {"watchkeeper_ping.py", "test_ping.py"} <= set(blocks), "named example blocks"
    for name, text in blocks.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_ping.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
