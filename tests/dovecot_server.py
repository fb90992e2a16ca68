"""Dovecot for tests: a real IMAP and POP3 server with its own config, ports and folders.

    with DovecotServer(tmp_path, certs) as server:     # started; stopped at the end
        server.imap, server.imaps, server.pop3, server.pop3s   # ports on 127.0.0.1
        USER, PASSWORD                                  # the one account it knows

`dovecot -F -c <config>` runs in the foreground with its base_dir, state and log in the
given folder, a passwd-file with one user, TLS from the certificates given (or none
with `tls=False`: then it offers no STARTTLS), no delay after a failed login and no
penalty for one. Mail processes run as `nobody`, so the user's mail folder lives in a
world-traversable temporary folder of its own. `DovecotUnavailable` says why it could
not start (not installed, not root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from watchkeeper.engine.testing import free_port

USER = "alice"
PASSWORD = "pa55-w0rd-of-alice"
NOBODY = 65534

CONFIG = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = {ssl}
{ssl_files}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
# the login processes run chrooted as dovenull; auth and the master as root read {dir}
default_internal_user = root
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/users
}}
userdb {{
  driver = static
  args = uid={nobody} gid={nobody} home={mail}/%u
}}
mail_location = maildir:~/Maildir
service anvil {{
  # no growing delay for logins after a failed one: tests fail logins on purpose
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"""


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed or cannot run here: skip the test."""


class DovecotServer:
    """A dovecot of its own on free ports of 127.0.0.1."""

    def __init__(self, directory: Path, certs: Any = None, *, tls: bool = True):
        self.dir = Path(directory)
        self.certs = certs
        self.tls = tls
        self.imap, self.imaps, self.pop3, self.pop3s = (free_port() for _ in range(4))
        self.process: subprocess.Popen | None = None
        self.mail: Path | None = None

    def start(self) -> DovecotServer:
        program = shutil.which("dovecot") or next(
            (p for p in ("/usr/sbin/dovecot",) if os.path.exists(p)), None
        )
        if program is None:
            raise DovecotUnavailable(
                "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
            )
        if os.geteuid() != 0:
            raise DovecotUnavailable("dovecot needs root here: its processes switch users")
        for name in ("run", "state"):
            (self.dir / name).mkdir(parents=True, exist_ok=True)
        self.mail = Path(tempfile.mkdtemp(prefix="wk-dovecot-mail-"))
        self.mail.chmod(0o755)
        os.chown(self.mail, NOBODY, NOBODY)
        (self.dir / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        ssl_files = ""
        if self.tls:
            ssl_files = f"ssl_cert = <{self.certs.cert}\nssl_key = <{self.certs.key}\n"
            if os.path.exists("/usr/share/dovecot/dh.pem"):
                ssl_files += "ssl_dh = </usr/share/dovecot/dh.pem\n"
        config = self.dir / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                dir=self.dir,
                mail=self.mail,
                nobody=NOBODY,
                ssl="yes" if self.tls else "no",
                ssl_files=ssl_files,
                imap=self.imap,
                imaps=self.imaps if self.tls else 0,
                pop3=self.pop3,
                pop3s=self.pop3s if self.tls else 0,
            )
        )
        self.process = subprocess.Popen(
            [program, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                problem = (self.process.stderr.read() if self.process.stderr else "") + self.log()
                self.stop()
                raise DovecotUnavailable(f"dovecot did not start: {problem.strip()[-500:]}")
            if _answers(self.imap) and _answers(self.pop3):
                return self
            time.sleep(0.05)
        self.stop()
        raise DovecotUnavailable(f"dovecot did not listen within 15s: {self.log()[-500:]}")

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.mail is not None:
            shutil.rmtree(self.mail, ignore_errors=True)
            self.mail = None

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(port: int) -> bool:
    """Return whether something on the port sends a greeting line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(64).startswith((b"* OK", b"+OK"))
    except OSError:
        return False
