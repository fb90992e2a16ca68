"""The mqtt probe against the local Mosquitto (127.0.0.1:1883) and ones the tests start."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from watchkeeper.engine.run.declared_metrics import undeclared
from watchkeeper.engine.testing import (
    TcpTestServer,
    check_once,
    free_port,
    make_certificates,
    probe_options,
)
from watchkeeper.plugins.probes.mqtt import MqttProbe

SHARED = "mqtt://127.0.0.1:1883"
PASSWORD = "pr0be-s3cret-pass"


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def shared():
    if not listening(1883):
        pytest.skip("Mosquitto is not reachable at 127.0.0.1:1883 (apt-get install mosquitto)")
    return SHARED


class Mosquitto:
    """A mosquitto of the tests' own: password auth, an ACL, a plain and a TLS listener.

    Users: `probe` may read and write every topic; `reader` may only read, so what it
    publishes is accepted and dropped.
    """

    def __init__(self, directory: Path) -> None:
        self.certs = make_certificates(directory / "pki")
        self.port = free_port()
        self.tls_port = free_port()
        passwords = directory / "passwords"
        for user, password in (("probe", PASSWORD), ("reader", "reader-pass")):
            create = ["-c"] if not passwords.exists() else []
            subprocess.run(
                ["mosquitto_passwd", "-b", *create, str(passwords), user, password],
                check=True,
                capture_output=True,
            )
        acl = directory / "acl"
        acl.write_text("user probe\ntopic readwrite #\n\nuser reader\ntopic read #\n")
        config = directory / "mosquitto.conf"
        config.write_text(
            textwrap.dedent(
                f"""
                user {getpass.getuser()}
                persistence false
                log_dest stderr
                allow_anonymous false
                password_file {passwords}
                acl_file {acl}
                listener {self.port} 127.0.0.1
                listener {self.tls_port} 127.0.0.1
                certfile {self.certs.cert}
                keyfile {self.certs.key}
                """
            )
        )
        self.log = directory / "mosquitto.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not (listening(self.port) and listening(self.tls_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def url(self, user: str | None = "probe", password: str = PASSWORD, tls: bool = False):
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        userinfo = f"{user}:{password}@" if user else ""
        return f"{scheme}://{userinfo}127.0.0.1:{port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


# --- up ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_echo_through_the_shared_broker(shared, qos):
    result = check_once("mqtt", {"url": shared, "qos": qos}, check="orders-broker")
    assert result.ok, result.message
    assert result.message.startswith(
        "echo on watchkeeper/orders-broker/probe from mqtt://127.0.0.1:1883 in "
    )
    assert 0 < result.metrics["connect_time"] < 1
    assert 0 < result.metrics["round_trip_time"] < 1
    assert undeclared(MqttProbe, result) == []


def test_topic_of_ones_own(shared):
    result = check_once("mqtt", {"url": shared, "topic": "wk-tests/probe/custom"})
    assert result.ok, result.message
    assert result.message.startswith("echo on wk-tests/probe/custom from ")


@pytest.mark.slow
def test_credentials_in_the_url_or_as_options(broker):
    result = check_once("mqtt", {"url": broker.url()})
    assert result.ok, result.message
    assert f"from mqtt://probe@127.0.0.1:{broker.port} in " in result.message
    result = check_once(
        "mqtt", {"url": broker.url(user=None), "username": "probe", "password": PASSWORD}
    )
    assert result.ok, result.message


@pytest.mark.slow
def test_tls_with_the_ca_bundle_and_without_verifying(broker):
    url = broker.url(tls=True)
    result = check_once("mqtt", {"url": url, "ca_bundle": str(broker.certs.ca)})
    assert result.ok, result.message
    assert f"from mqtts://probe@127.0.0.1:{broker.tls_port} in " in result.message
    result = check_once("mqtt", {"url": url, "verify": False})
    assert result.ok, result.message


# --- down -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wrong_password_is_auth_failed_and_never_shown(broker):
    wrong = "wr0ng-s3cret"
    for options in (
        {"url": broker.url(password=wrong)},
        {"url": broker.url(user=None), "username": "probe", "password": wrong},
    ):
        result = check_once("mqtt", options)
        assert not result.ok
        assert result.message == (
            f"authentication failed at mqtt://probe@127.0.0.1:{broker.port}: not authorized"
        )
        assert wrong not in result.message


@pytest.mark.slow
def test_a_broker_that_never_delivers(broker):
    result = check_once(
        "mqtt", {"url": broker.url(user="reader", password="reader-pass")}, timeout=1
    )
    assert result.duration < 1.2  # the check itself; opening the probe imports the client
    assert not result.ok
    assert result.message == (
        f"no echo within 1s on watchkeeper/test/probe from mqtt://reader@127.0.0.1:{broker.port}: "
        "published, never delivered (does an ACL deny publishing or reading it?)"
    )
    assert result.details["timeout"] is True
    assert result.metrics["connect_time"] > 0


@pytest.mark.slow
def test_untrusted_certificate(broker):
    result = check_once("mqtt", {"url": broker.url(tls=True)})
    assert not result.ok
    assert result.message == (
        f"TLS certificate of mqtts://probe@127.0.0.1:{broker.tls_port} is not trusted: "
        "unable to get local issuer certificate"
    )
    assert PASSWORD not in result.message


def test_connection_refused():
    port = free_port()
    result = check_once("mqtt", {"url": f"mqtt://watch:{PASSWORD}@127.0.0.1:{port}"})
    assert not result.ok
    assert result.message == f"cannot connect to mqtt://watch@127.0.0.1:{port}: connection refused"


def test_silent_server_times_out():
    with TcpTestServer() as silent:
        result = check_once("mqtt", {"url": f"mqtt://127.0.0.1:{silent.port}"}, timeout=1)
    assert result.duration < 1.2  # the check itself; opening the probe imports the client
    assert result.message == f"timed out after 1s connecting to mqtt://127.0.0.1:{silent.port}"
    assert result.details["timeout"] is True


def test_without_the_library_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["aiomqtt"] = None  # as if watchkeeper[mqtt] were not installed
        from watchkeeper.engine.testing import check_once
        print(check_once("mqtt", {"url": "mqtt://127.0.0.1:1"}).message)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("the mqtt probe needs aiomqtt: pip install 'watchkeeper[mqtt]'")


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "url\n  Field required"),
        ({"url": f"http://u:{PASSWORD}@broker:1883"}, "url must start with mqtt:// or mqtts://"),
        ({"url": "mqtt://"}, "url has no host"),
        ({"url": "mqtt://broker:port"}, "url is not a valid URL"),
        ({"url": SHARED, "topic": "sensors/+/temp"}, "no + or # wildcards"),
        ({"url": SHARED, "topic": "sensors/#"}, "no + or # wildcards"),
        ({"url": SHARED, "qos": 3}, "Input should be 0, 1 or 2"),
        ({"url": SHARED, "verify": False}, "verify apply to mqtts:// URLs only"),
        ({"url": SHARED, "ca_bundle": "ca.pem"}, "ca_bundle apply to mqtts:// URLs only"),
        ({"url": SHARED, "client_id": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options(options, problem):
    with pytest.raises(ValidationError) as caught:
        probe_options("mqtt", options)
    assert problem in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_validate_through_the_cli(cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          wrong-scheme:
            probe: mqtt
            url: http://watch:{PASSWORD}@broker:1883
          no-url:
            probe: mqtt
            topic: a/b
          good:
            probe: mqtt
            url: mqtts://broker.example.com
            verify: false
            thresholds: [{{metric: round_trip_time, above: 500ms}}]
        """
    )
    result = cli("validate")
    assert result.code == 1, result.output
    assert "checks.wrong-scheme.url: url must start with mqtt:// or mqtts://" in result.output
    assert "checks.no-url.url: missing required key 'url'" in result.output
    assert "checks.good" not in result.output
    assert PASSWORD not in result.output


# --- through the CLI --------------------------------------------------------------------------


@pytest.mark.slow
def test_check_through_the_cli(shared, cli, write_config):
    closed = free_port()
    write_config(
        f"""
        version: 1
        checks:
          broker:
            probe: mqtt
            url: {shared}
            qos: 2
            thresholds: [{{metric: round_trip_time, above: 2s}}]
          broker-gone:
            probe: mqtt
            url: mqtt://watch:{PASSWORD}@127.0.0.1:{closed}
        """
    )
    result = cli("check", "--format", "json")
    assert result.code == 1, result.output
    rows = {row["check"]: row for row in result.json()}
    assert rows["broker"]["ok"], rows["broker"]["message"]
    assert rows["broker"]["message"].startswith("echo on watchkeeper/broker/probe from ")
    assert 0 < rows["broker"]["metrics"]["round_trip_time"] < 2
    assert rows["broker-gone"]["message"] == (
        f"cannot connect to mqtt://watch@127.0.0.1:{closed}: connection refused"
    )
    assert PASSWORD not in result.output
