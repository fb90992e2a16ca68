"""The ssh probe against a real OpenSSH server started on loopback for these tests."""

from __future__ import annotations

import getpass
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from watchkeeper.engine.testing import TcpTestServer, check_once, free_port
from watchkeeper.plugins.probes.ssh import host_key_pin

SSHD = Path("/usr/sbin/sshd")
USER = getpass.getuser()  # a server not run as root lets only its own user log in
PASSWORD = "n0t-the-Pa55word-4711"


@dataclass
class Sshd:
    """A running sshd and the keys around it."""

    port: int
    home: Path
    log: Path

    def key(self, name: str) -> Path:
        return self.home / name

    def fingerprint(self, name: str) -> str:
        """Return ssh-keygen's SHA256 fingerprint of a public key file."""
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.key(name))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[1]

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        time.sleep(0.2)  # sshd writes its last lines as the connection ends
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def options(self, **more) -> dict:
        return {"host": "127.0.0.1", "port": self.port, **more}

    def login(self, **more) -> dict:
        return self.options(username=USER, private_key_file=str(self.key("client")), **more)


def keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"wk-test-{path.name}", "-f", str(path)],
        check=True,
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: apt-get install -y openssh-server")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is missing: apt-get install -y openssh-client")
    # sshd will not start without its privilege separation directory
    privsep = Path("/run/sshd")
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            pytest.skip(f"sshd cannot run here: cannot create {privsep} ({exc.strerror})")
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client", "stranger"):
        keygen(home / name)
    keygen(home / "rsa", "rsa")
    (home / "authorized_keys").write_text((home / "client.pub").read_text())
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        textwrap.dedent(
            f"""
            Port {port}
            ListenAddress 127.0.0.1
            HostKey {home / "host"}
            PidFile {home / "sshd.pid"}
            AuthorizedKeysFile {home / "authorized_keys"}
            PermitRootLogin yes
            PasswordAuthentication yes
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            LogLevel VERBOSE
            """
        )
    )
    log = home / "sshd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        if not _banner_within(port, 10, process):
            process.kill()
            process.wait()
            pytest.skip(f"sshd cannot run here: {log.read_text(errors='replace').strip()}")
        yield Sshd(port, home, log)
    finally:
        process.terminate()
        process.wait(10)


def _banner_within(port: int, seconds: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.1)
    return False


# --- through the CLI, as a user runs it ------------------------------------------------


@pytest.mark.slow
def test_banner_and_host_key_without_credentials(sshd, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          bastion:
            probe: ssh
            host: 127.0.0.1
            port: {sshd.port}
            thresholds: [{{metric: connect_time, above: 2s, severity: warning}}]
        """
    )
    offset = sshd.log_size()
    checked = cli("check", "bastion", "--format", "json")
    assert checked.code == 0, checked.output
    [row] = checked.json()
    assert row["ok"] is True
    assert set(row["metrics"]) == {"connect_time"}
    assert 0 < row["metrics"]["connect_time"] < 2
    fingerprint = sshd.fingerprint("host.pub")
    assert row["message"].startswith(f"127.0.0.1:{sshd.port}: SSH-2.0-OpenSSH_")
    assert row["message"].endswith(f", host key {fingerprint} (ssh-ed25519)")
    # the run stops after the key exchange: no login was tried, so none failed
    log = sshd.log_since(offset)
    assert "Failed" not in log, log
    assert "authenticating user" not in log, log


@pytest.mark.slow
def test_command_with_expected_output(sshd, cli, write_config, tmp_path):
    shutil.copy(sshd.key("client"), tmp_path / "monitor_key")
    write_config(
        f"""
        version: 1
        checks:
          backup-host:
            probe: ssh
            host: 127.0.0.1
            port: {sshd.port}
            username: {USER}
            private_key_file: monitor_key
            host_key: {sshd.fingerprint("host.pub")}
            command: echo watchkeeper-$((6 * 7))
            expect_output: {{regex: "^watchkeeper-42$", contains: watchkeeper}}
        """
    )
    checked = cli("check", "backup-host", "--format", "json")
    assert checked.code == 0, checked.output
    [row] = checked.json()
    assert row["ok"] is True, row["message"]
    assert set(row["metrics"]) == {"connect_time", "command_time"}
    assert 0 < row["metrics"]["command_time"] < 5
    assert f"(ssh-ed25519, pinned); logged in as {USER}; `echo` exited 0 in " in row["message"]


@pytest.mark.slow
def test_wrong_password_is_down_and_never_shown(sshd, cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          bastion:
            probe: ssh
            host: 127.0.0.1
            port: {sshd.port}
            username: {USER}
            password: ${{SSH_PASSWORD}}
        """
    )
    checked = cli("check", "bastion", "--format", "json", env={"SSH_PASSWORD": PASSWORD})
    assert checked.code == 1, checked.output
    [row] = checked.json()
    assert row["ok"] is False
    assert row["message"] == (
        f"authentication failed for {USER}@127.0.0.1:{sshd.port}: the server refused the password"
    )
    assert PASSWORD not in checked.output


# --- direct runs: each way the server can be wrong ---------------------------------------


@pytest.mark.slow
def test_wrong_exit_status_is_down(sshd):
    result = check_once("ssh", sshd.login(command="echo it broke >&2; exit 3"))
    assert not result.ok
    assert result.message.endswith("; `echo` exited with status 3 (expected 0): 'it broke'")
    assert result.details["exit_status"] == 3
    assert set(result.metrics) == {"connect_time", "command_time"}


@pytest.mark.slow
def test_expected_status_other_than_zero(sshd):
    result = check_once("ssh", sshd.login(command="exit 3", expect_status=3))
    assert result.ok, result.message
    assert re.search(r"; `exit` exited 3 in [\d.]+m?s$", result.message), result.message


@pytest.mark.slow
def test_output_that_does_not_match_is_down(sshd):
    result = check_once("ssh", sshd.login(command="echo hello", expect_output={"contains": "bye"}))
    assert not result.ok
    assert result.message.endswith("; output of `echo` does not contain 'bye': 'hello'")
    result = check_once("ssh", sshd.login(command="echo hello", expect_output={"regex": "^bye"}))
    assert result.message.endswith("; output of `echo` does not match /^bye/: 'hello'")


@pytest.mark.slow
def test_pinned_host_key_as_a_public_key_line(sshd):
    line = sshd.key("host.pub").read_text().strip()
    result = check_once("ssh", sshd.options(host_key=line))
    assert result.ok, result.message
    assert result.message.endswith(f"host key {sshd.fingerprint('host.pub')} (ssh-ed25519, pinned)")


@pytest.mark.slow
def test_pinned_wrong_host_key_is_down_before_any_credential(sshd):
    wrong = sshd.key("stranger.pub").read_text().strip()
    offset = sshd.log_size()
    result = check_once("ssh", sshd.options(username=USER, password=PASSWORD, host_key=wrong))
    assert not result.ok
    assert result.message == (
        f"host key mismatch for {USER}@127.0.0.1:{sshd.port}: the server presented "
        f"{sshd.fingerprint('host.pub')} (ssh-ed25519), "
        f"expected {sshd.fingerprint('stranger.pub')}"
    )
    assert result.details["host_key"] == sshd.fingerprint("host.pub")
    assert PASSWORD not in result.message
    log = sshd.log_since(offset)
    assert "Failed password" not in log, log
    assert "Accepted" not in log, log


@pytest.mark.slow
def test_pinned_key_type_the_server_lacks(sshd):
    rsa = sshd.key("rsa.pub").read_text().strip()
    result = check_once("ssh", sshd.options(host_key=rsa))
    assert not result.ok
    assert result.message.startswith(
        f"host key mismatch for 127.0.0.1:{sshd.port}: the server has no ssh-rsa host key"
    )


@pytest.mark.slow
def test_wrong_key_is_down_and_never_shown(sshd):
    text = sshd.key("stranger").read_text()
    result = check_once(
        "ssh", sshd.options(username=USER, private_key=text, command="echo never runs")
    )
    assert not result.ok
    assert result.message == (
        f"authentication failed for {USER}@127.0.0.1:{sshd.port}: the server refused the key"
    )
    body = [line for line in text.splitlines() if line and "PRIVATE KEY" not in line]
    assert not any(line in result.message for line in body)


@pytest.mark.slow
def test_key_text_works_as_well_as_a_key_file(sshd):
    text = sshd.key("client").read_text()
    result = check_once("ssh", sshd.options(username=USER, private_key=text, command="true"))
    assert result.ok, result.message


def test_closed_port_is_refused():
    port = free_port()
    result = check_once("ssh", {"host": "127.0.0.1", "port": port})
    assert not result.ok
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


@pytest.mark.slow
def test_silent_server_times_out_in_the_handshake():
    with TcpTestServer() as silent:
        result = check_once("ssh", {"host": "127.0.0.1", "port": silent.port}, timeout=1)
    assert not result.ok
    assert result.message == f"timed out after 1s in the SSH handshake with 127.0.0.1:{silent.port}"
    assert result.details["timeout"] is True


def test_a_server_that_is_not_ssh():
    def http(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with TcpTestServer(http) as server:
        result = check_once("ssh", {"host": "127.0.0.1", "port": server.port})
    assert not result.ok
    assert result.message == (
        f"the connection closed in the SSH handshake with 127.0.0.1:{server.port}: "
        "no SSH banner received"
    )


def test_unreadable_key_file(tmp_path):
    options = {"host": "127.0.0.1", "username": "ops", "private_key_file": "missing_key"}
    result = check_once("ssh", options, base_dir=tmp_path)
    assert not result.ok
    assert result.message == (
        f"cannot read private_key_file {tmp_path / 'missing_key'}: No such file or directory"
    )
    garbage = "not-a-key-but-a-secret-0815"
    result = check_once("ssh", {"host": "127.0.0.1", "username": "ops", "private_key": garbage})
    assert result.message == "cannot use private_key: Invalid private key"


# --- options ---------------------------------------------------------------------------


def test_fingerprints_are_openssh_s(tmp_path):
    keygen(tmp_path / "k")
    line = (tmp_path / "k.pub").read_text()
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert host_key_pin(line) == (out.split()[1], "ssh-ed25519")
    assert host_key_pin(out.split()[1]) == (out.split()[1], None)


def test_validate_names_each_bad_option(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          no-host:
            probe: ssh
          command-without-login:
            probe: ssh
            host: a.example
            command: uptime
          password-without-user:
            probe: ssh
            host: a.example
            password: pw
          both-keys:
            probe: ssh
            host: a.example
            username: ops
            private_key: text
            private_key_file: id_ed25519
          bad-pin:
            probe: ssh
            host: a.example
            host_key: SHA256:short
          not-a-key:
            probe: ssh
            host: a.example
            host_key: ssh-ed25519 bm90IGEga2V5
        """
    )
    checked = cli("validate")
    assert checked.code == 1
    out = checked.stdout
    assert "checks.no-host.host: missing required key 'host'" in out
    assert "`command` needs a login: `username` with `password` or a key" in out
    assert "`password`, `private_key` and `private_key_file` need `username`" in out
    assert "give either `private_key` or `private_key_file`, not both" in out
    assert "a SHA256 fingerprint is `SHA256:` and 43 base64 characters" in out
    assert "the key data is not a ssh-ed25519 key" in out


def test_missing_library_names_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["asyncssh"] = None  # as if the extra were not installed
        from watchkeeper.engine.testing import check_once
        print(check_once("ssh", {"host": "127.0.0.1"}).message)
        """
    )
    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.stdout.strip() == (
        "the ssh probe needs asyncssh: pip install 'watchkeeper[ssh]'"
    ), done.stderr
