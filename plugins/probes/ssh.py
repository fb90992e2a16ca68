"""The `ssh` probe: an SSH server's banner, host key, login and optionally one command.

Without credentials the probe stops after the key exchange, before authentication
begins (as `ssh-keyscan` does), so the server logs no failed login. With a `host_key`
pin the key is checked during the key exchange, before any credential is sent.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import shlex
import time
from functools import cache
from typing import Any

from pydantic import Field, field_validator, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.plugins.probes.text_expect import TextExpect, quote
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

INSTALL = "pip install 'watchkeeper[ssh]'"
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
# the host key algorithms a pinned key of each type can be presented with
_RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


class SshOptions(ProbeOptions):
    """Connect to an SSH server; optionally log in, run a command and judge its output."""

    host: str = Field(description="Host name or address.")
    port: int = Field(22, ge=1, le=65535, description="TCP port.")
    username: str | None = Field(
        None, description="User to log in as; needs `password`, `private_key` or a key file."
    )
    password: Secret | None = Field(None, description="Password (or keyboard-interactive).")
    private_key: Secret | None = Field(
        None, description="Private key text (PEM or OpenSSH format) for public-key login."
    )
    private_key_file: str | None = Field(
        None, description="Path of a private key file for public-key login."
    )
    passphrase: Secret | None = Field(None, description="Passphrase of an encrypted private key.")
    command: str | None = Field(
        None, description="Command to run after logging in (by the user's shell)."
    )
    expect_status: int = Field(0, description="With command: the exit status that is good.")
    expect_output: TextExpect | None = Field(
        None, description="With command: what its standard output must contain or match."
    )
    host_key: str | None = Field(
        None,
        description="Pin the server's host key: an OpenSSH public key line "
        "(`ssh-ed25519 AAAA...`) or its `SHA256:` fingerprint.",
    )

    @field_validator("host_key")
    @classmethod
    def _pin(cls, value: str | None) -> str | None:
        if value is not None:
            host_key_pin(value)  # raises ValueError with what is wrong
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SshOptions:
        if self.private_key is not None and self.private_key_file is not None:
            raise ValueError("give either `private_key` or `private_key_file`, not both")
        credentials = (self.password, self.private_key, self.private_key_file)
        has_credentials = any(c is not None for c in credentials)
        if has_credentials and self.username is None:
            raise ValueError("`password`, `private_key` and `private_key_file` need `username`")
        if self.command is not None and not has_credentials:
            raise ValueError("`command` needs a login: `username` with `password` or a key")
        if self.expect_output is not None and self.command is None:
            raise ValueError("`expect_output` needs `command`")
        if self.passphrase is not None and self.private_key is self.private_key_file is None:
            raise ValueError("`passphrase` needs `private_key` or `private_key_file`")
        return self


def host_key_pin(value: str) -> tuple[str, str | None]:
    """Return (the SHA256 fingerprint, the key type or None) of a `host_key` option."""
    text = value.strip()
    if text.startswith("SHA256:"):
        if not _FINGERPRINT.match(text):
            raise ValueError("a SHA256 fingerprint is `SHA256:` and 43 base64 characters")
        return text.rstrip("="), None
    parts = text.split()
    wrong = "expected an OpenSSH public key line (ssh-ed25519 AAAA...) or a SHA256: fingerprint"
    if len(parts) < 2:
        raise ValueError(wrong)
    key_type, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError:
        raise ValueError(f"{wrong}; the key is not base64") from None
    # RFC 4253 6.6: the key blob starts with its own type name
    length = int.from_bytes(raw[:4], "big")
    if raw[4 : 4 + length].decode("ascii", errors="replace") != key_type or length == 0:
        raise ValueError(f"{wrong}; the key data is not a {key_type} key")
    return fingerprint(raw), key_type


def fingerprint(blob: bytes) -> str:
    """Return OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class SshProbe(Probe):
    """Check an SSH server: banner, host key, login, and a command's status and output."""

    type = "ssh"
    Options = SshOptions
    metrics = (
        Metric(
            "connect_time",
            "duration",
            "TCP connect and key exchange, and the login when credentials are given",
        ),
        Metric("command_time", "duration", "from starting `command` to its exit"),
    )

    async def open(self, ctx: OpenContext) -> None:
        # import now, not inside the first check's timeout; a missing extra is reported there
        try:
            _asyncssh()
        except ImportError:
            pass

    async def check(self, options: SshOptions, ctx: ProbeContext) -> Result:
        import anyio

        try:
            asyncssh = _asyncssh()
        except ImportError:
            return Result(ok=False, message=f"the ssh probe needs asyncssh: {INSTALL}")
        secrets = _secrets(options)
        target = _target(options)
        try:
            key = await _client_key(asyncssh, options, ctx)
        except _Failed as exc:
            return Result(ok=False, message=_clean(str(exc), secrets))
        pin, pinned_type = host_key_pin(options.host_key) if options.host_key else (None, None)
        login = key is not None or options.password is not None
        client = _client_class(asyncssh)(pin, stop_before_auth=not login)
        budget = time_budget(ctx.timeout)
        metrics: dict[str, float] = {}
        details: dict[str, Any] = {}
        conn = None
        start = time.perf_counter()
        try:
            with anyio.fail_after(budget):
                try:
                    conn = await asyncssh.connect(
                        options.host,
                        options.port,
                        # without a login the username is never sent (the run stops before)
                        username=options.username or "watchkeeper",
                        password=options.password.get_secret_value() if options.password else None,
                        client_keys=[key] if key is not None else None,
                        preferred_auth=_auth_methods(options, key),
                        # an empty trust list sends every key to the client's own check
                        known_hosts=([], [], []),
                        server_host_key_algs=_algorithms(pinned_type),
                        client_factory=lambda: client,
                        # the daemon's ~/.ssh config, keys and agent must not change the check
                        config=None,
                        agent_path=None,
                        login_timeout=budget + 5,  # the probe's own deadline comes first
                    )
                except _handshake_done(asyncssh):
                    pass
                metrics["connect_time"] = time.perf_counter() - start
                details.update(client.seen())
                if conn is not None and options.command is not None:
                    client.phase = "command"
                    start = time.perf_counter()
                    completed = await conn.run(
                        options.command, check=False, encoding="utf-8", errors="replace"
                    )
                    metrics["command_time"] = time.perf_counter() - start
        except TimeoutError:
            after = format_duration(ctx.timeout)
            return Result(
                ok=False,
                message=f"timed out after {after} {_DOING[client.phase]} {target}",
                metrics=metrics,
                details={**client.seen(), "timeout": True},
            )
        except (asyncssh.Error, OSError) as exc:
            message = _describe(asyncssh, exc, client, options, target, pin, pinned_type)
            return Result(
                ok=False,
                message=_clean(message, secrets),
                metrics=metrics,
                details=client.seen(),
            )
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                if conn is not None:
                    conn.close()
                    await conn.wait_closed()
                elif client.conn is not None:
                    client.conn.abort()  # cancelled or failed half-way: drop the socket
        message = f"{target}: {details.get('banner') or 'no banner'} in "
        message += f"{took(metrics['connect_time'])}, host key {client.fingerprint}"
        message += f" ({client.key_type}{', pinned' if pin else ''})"
        if login:
            message += f"; logged in as {options.username}"
        if options.command is None:
            return Result(ok=True, message=message, metrics=metrics, details=details)
        return _judge(completed, options, message, metrics, details, secrets)


def _judge(
    completed: Any,
    options: SshOptions,
    message: str,
    metrics: dict[str, float],
    details: dict[str, Any],
    secrets: list[str],
) -> Result:
    """Judge the command's exit status and output."""
    program = _program(options.command or "")
    status = completed.exit_status
    stdout = completed.stdout or ""
    details["exit_status"] = status
    if completed.exit_signal:
        details["exit_signal"] = completed.exit_signal[0]
    if status != options.expect_status:
        if completed.exit_signal:
            how = f"was killed by {completed.exit_signal[0]}"
        else:
            how = f"exited with status {status}"
        text = f"{message}; {program} {how} (expected {options.expect_status})"
        tail = (completed.stderr or stdout).strip()
        if tail:
            text += f": {quote(tail)}"
        return Result(ok=False, message=_clean(text, secrets), metrics=metrics, details=details)
    if options.expect_output is not None:
        mismatch = options.expect_output.mismatch(stdout)
        if mismatch is not None:
            text = f"{message}; output of {program} {mismatch}: {quote(stdout.strip())}"
            return Result(ok=False, message=_clean(text, secrets), metrics=metrics, details=details)
    text = f"{message}; {program} exited {status} in {took(metrics['command_time'])}"
    return Result(ok=True, message=text, metrics=metrics, details=details)


_DOING = {
    "connect": "connecting to",
    "handshake": "in the SSH handshake with",
    "auth": "logging in to",
    "command": "waiting for the command on",
}


class _Failed(Exception):
    """A run that cannot start; its message is the result's."""


@cache
def _asyncssh() -> Any:
    import warnings

    # asyncssh still imports cryptography's DSA support, which warns on every import
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh
    # asyncssh logs each connection at INFO; the probe's result already says what matters
    logger = logging.getLogger("asyncssh")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return asyncssh


@cache
def _handshake_done(asyncssh: Any) -> type[Exception]:
    class HandshakeDone(asyncssh.DisconnectError):
        """Raised when authentication would begin: the key exchange is complete."""

    return HandshakeDone


@cache
def _client_class(asyncssh: Any) -> type:
    done = _handshake_done(asyncssh)

    class Client(asyncssh.SSHClient):
        """Records the banner and host key; refuses a key that does not match the pin."""

        def __init__(self, pin: str | None, *, stop_before_auth: bool) -> None:
            self.pin = pin
            self.stop_before_auth = stop_before_auth
            self.phase = "connect"
            self.conn: Any = None
            self.banner: str | None = None
            self.fingerprint: str | None = None
            self.key_type: str | None = None

        def connection_made(self, conn: Any) -> None:
            self.conn = conn
            self.phase = "handshake"

        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            self.fingerprint = key.get_fingerprint("sha256")
            self.key_type = key.get_algorithm()
            return self.pin is None or self.fingerprint == self.pin

        def begin_auth(self, username: str) -> None:
            self.phase = "auth"
            if self.stop_before_auth:
                # the key exchange is complete: leave before sending any credential
                raise done(asyncssh.DISC_BY_APPLICATION, "health check done")

        def seen(self) -> dict[str, Any]:
            if self.banner is None and self.conn is not None:
                self.banner = self.conn.get_extra_info("server_version")
            seen: dict[str, Any] = {}
            if self.banner:
                seen["banner"] = self.banner
            if self.fingerprint:
                seen["host_key"] = self.fingerprint
                seen["host_key_type"] = self.key_type
            return seen

    return Client


async def _client_key(asyncssh: Any, options: SshOptions, ctx: ProbeContext) -> Any:
    """Load the private key, if one is given (decrypting it can take a while: a thread)."""
    import anyio

    passphrase = options.passphrase.get_secret_value() if options.passphrase else None
    if options.private_key is not None:
        text = options.private_key.get_secret_value()
        what = "private_key"

        def load() -> Any:
            return asyncssh.import_private_key(text, passphrase)
    elif options.private_key_file is not None:
        path = ctx.base_dir / options.private_key_file
        what = f"private_key_file {path}"

        def load() -> Any:
            return asyncssh.read_private_key(str(path), passphrase)
    else:
        return None
    try:
        return await anyio.to_thread.run_sync(load)
    except OSError as exc:
        raise _Failed(f"cannot read {what}: {exc.strerror or exc}") from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        raise _Failed(f"cannot use {what}: {exc}") from None


def _auth_methods(options: SshOptions, key: Any) -> tuple[str, ...]:
    methods: list[str] = []
    if key is not None:
        methods.append("publickey")
    if options.password is not None:
        methods += ["password", "keyboard-interactive"]
    return tuple(methods) or ("none",)


def _algorithms(key_type: str | None) -> tuple[str, ...]:
    """Offer only the pinned key's type, so a server holding several keys shows that one."""
    if key_type is None:
        return ()
    return _RSA_ALGORITHMS if key_type == "ssh-rsa" else (key_type,)


def _describe(
    asyncssh: Any,
    exc: BaseException,
    client: Any,
    options: SshOptions,
    target: str,
    pin: str | None,
    pinned_type: str | None,
) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        seen = f"{client.fingerprint} ({client.key_type})" if client.fingerprint else "another key"
        return f"host key mismatch for {target}: the server presented {seen}, expected {pin}"
    if isinstance(exc, asyncssh.PermissionDenied):
        tried = "key" if options.password is None else "password"
        if options.password is not None and (options.private_key or options.private_key_file):
            tried = "key and password"
        return f"authentication failed for {target}: the server refused the {tried}"
    if pinned_type and client.phase == "handshake" and client.fingerprint is None:
        # asked only for the pinned key's type, a server without one hangs up or refuses
        return (
            f"host key mismatch for {target}: the server has no {pinned_type} host key "
            "(it ended the key exchange when asked for one)"
        )
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"cannot start the command on {target}: {exc.reason}"
    if isinstance(exc, OSError) and client.phase == "connect":
        return f"cannot connect to {target}: {network_reason(exc) or exc}"
    if isinstance(exc, asyncssh.ConnectionLost | OSError):
        reason = network_reason(exc) if isinstance(exc, OSError) else None
        if reason is None and "banner" not in client.seen():
            reason = "no SSH banner received"
        return f"the connection closed {_DOING[client.phase]} {target}" + (
            f": {reason}" if reason else ""
        )
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return f"SSH {'handshake' if client.phase != 'command' else 'session'} with {target} " + (
        f"failed: {reason}"
    )


def _secrets(options: SshOptions) -> list[str]:
    values = [options.password, options.private_key, options.passphrase]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def _clean(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _program(command: str) -> str:
    """Name the command by its program only: its arguments may hold secrets."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return f"`{words[0]}`" if words else "the command"


def _target(options: SshOptions) -> str:
    host = f"[{options.host}]" if ":" in options.host else options.host
    user = f"{options.username}@" if options.username else ""
    return f"{user}{host}:{options.port}"


@hookimpl
def watchkeeper_probes():
    return [SshProbe]
