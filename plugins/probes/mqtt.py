"""The `mqtt` probe: publish to an MQTT broker and time the echo (optional extra `mqtt`)."""

from __future__ import annotations

import re
import ssl
import time
import uuid
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import TlsContexts, network_reason, time_budget, took
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

INSTALL = "pip install 'watchkeeper[mqtt]'"
PORTS = {"mqtt": 1883, "mqtts": 8883}


class MqttOptions(ProbeOptions):
    """Subscribe to a topic, publish a token to it and wait for the echo."""

    url: Secret = Field(
        description="mqtt://[user:password@]host[:1883] or mqtts:// for TLS (port 8883)."
    )
    username: Secret | None = Field(None, description="User name (instead of one in url).")
    password: Secret | None = Field(None, description="Password (instead of one in url).")
    topic: str | None = Field(
        None,
        description="Topic to publish to and subscribe to (default: watchkeeper/<check>/probe).",
    )
    qos: Literal[0, 1, 2] = Field(
        1, description="Quality of service of both directions: 0, 1 or 2."
    )
    verify: bool = Field(
        True, description="With mqtts: verify the certificate chain and the host name."
    )
    ca_bundle: str | None = Field(
        None,
        description="With mqtts: PEM file of CA certificates to trust (default: the system's).",
    )

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: Secret) -> Secret:
        # the URL may hold a password: say what is wrong without echoing it
        try:
            parts = urlsplit(value.get_secret_value())
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("url is not a valid URL (expected mqtt://host:1883)") from None
        if parts.scheme not in PORTS:
            raise ValueError("url must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("url has no host (expected mqtt://host:1883)")
        return value

    @field_validator("topic")
    @classmethod
    def _plain_topic(cls, value: str | None) -> str | None:
        if value is not None and (not value or "+" in value or "#" in value or "\0" in value):
            raise ValueError("topic must be a plain topic name: not empty, no + or # wildcards")
        return value

    @model_validator(mode="after")
    def _tls_only_with_mqtts(self) -> MqttOptions:
        tls_keys = {"verify", "ca_bundle"} & self.model_fields_set
        if tls_keys and not self.url.get_secret_value().startswith("mqtts://"):
            raise ValueError(f"{' and '.join(sorted(tls_keys))} apply to mqtts:// URLs only")
        return self


class MqttProbe(Probe):
    """Publish a unique token to a topic the probe subscribed to, and time its arrival."""

    type = "mqtt"
    Options = MqttOptions
    metrics = (
        Metric("connect_time", "duration", "connect (TCP, TLS with mqtts, CONNECT/CONNACK)"),
        Metric("round_trip_time", "duration", "from publishing the token to receiving it back"),
    )

    def __init__(self) -> None:
        self.tls = TlsContexts()

    async def open(self, ctx: OpenContext) -> None:
        # importing the client takes a while: not inside the first check's timeout
        try:
            import aiomqtt  # noqa: F401
        except ImportError:  # check() says which extra to install
            pass

    async def check(self, options: MqttOptions, ctx: ProbeContext) -> Result:
        try:
            import aiomqtt
            from aiomqtt.exceptions import MqttConnectError
        except ImportError:
            return Result(ok=False, message=f"the mqtt probe needs aiomqtt: {INSTALL}")
        import anyio

        broker = _Broker(options)
        shown = broker.shown
        topic = options.topic or _default_topic(ctx.check)
        budget = time_budget(ctx.timeout)
        deadline = time.perf_counter() + budget
        after = format_duration(ctx.timeout)
        tls_context = None
        if broker.tls:
            try:
                tls_context = await self.tls.get(
                    verify=options.verify,
                    ca_bundle=None
                    if options.ca_bundle is None
                    else ctx.base_dir / options.ca_bundle,
                )
            except (OSError, ssl.SSLError) as exc:
                return Result(
                    ok=False, message=f"cannot load the CA bundle {options.ca_bundle}: {exc}"
                )
        token = uuid.uuid4().hex
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=f"watchkeeper-{token[:16]}",
            # our own deadline below fires first and names the step that hung
            timeout=ctx.timeout + 1,
            tls_context=tls_context,
            tls_insecure=True if broker.tls and not options.verify else None,
        )
        # paho connects (TCP and TLS) in a thread that cannot be cancelled: bound it
        client._client.connect_timeout = budget
        metrics: dict[str, float] = {}
        step = "connect"
        connected = False
        try:
            with anyio.fail_after(budget):
                start = time.perf_counter()
                await client.__aenter__()
                connected = True
                metrics["connect_time"] = time.perf_counter() - start
                step = "subscribe"
                granted = await client.subscribe(topic, qos=options.qos)
                if any(_refused(code) for code in granted):
                    message = f"{shown} refused the subscription to {topic}"
                    return Result(ok=False, message=message, metrics=metrics)
                step = "publish"
                start = time.perf_counter()
                await client.publish(topic, token.encode(), qos=options.qos)
                step = "echo"
                async for received in client.messages:
                    if received.payload == token.encode():
                        metrics["round_trip_time"] = time.perf_counter() - start
                        break
                else:
                    raise aiomqtt.MqttError("the broker closed the connection")
        except TimeoutError:
            if step == "echo":
                message = (
                    f"no echo within {after} on {topic} from {shown}: published, never "
                    "delivered (does an ACL deny publishing or reading it?)"
                )
            else:
                message = f"timed out after {after} {_DOING[step]} {shown}"
            return Result(ok=False, message=message, metrics=metrics, details={"timeout": True})
        except MqttConnectError as exc:
            reason = _clean(exc, broker.password)
            if getattr(exc.rc, "value", exc.rc) in _AUTH_CODES:
                return Result(ok=False, message=f"authentication failed at {shown}: {reason}")
            return Result(ok=False, message=f"{shown} refused the connection: {reason}")
        except aiomqtt.MqttError as exc:
            tls_failure = _tls_failure(exc, shown)
            if tls_failure:
                return Result(ok=False, message=tls_failure)
            reason = _clean(exc, broker.password)
            if "timed out" in reason:
                message = f"timed out after {after} {_DOING[step]} {shown}"
                return Result(ok=False, message=message, metrics=metrics, details={"timeout": True})
            message = f"{_FAILED[step].format(shown=shown, topic=topic)}: {reason}"
            return Result(ok=False, message=message, metrics=metrics)
        finally:
            with anyio.CancelScope(shield=True):
                await _hang_up(client, connected, deadline)
        message = (
            f"echo on {topic} from {shown} in {took(metrics['round_trip_time'])} "
            f"(connected in {took(metrics['connect_time'])})"
        )
        return Result(ok=True, message=message, metrics=metrics)


_AUTH_CODES = {4, 5, 134, 135}
"""CONNACK codes for bad credentials: 4 and 5 in MQTT 3.1.1, 134 and 135 in MQTT 5."""
_DOING = {
    "connect": "connecting to",
    "subscribe": "subscribing at",
    "publish": "publishing to",
    "echo": "waiting for the echo from",
}
_FAILED = {
    "connect": "cannot connect to {shown}",
    "subscribe": "subscribing to {topic} at {shown} failed",
    "publish": "publishing to {topic} at {shown} failed",
    "echo": "waiting for the echo on {topic} from {shown} failed",
}


class _Broker:
    """Where to connect and as whom, read from the URL and the credential options."""

    def __init__(self, options: MqttOptions) -> None:
        parts = urlsplit(options.url.get_secret_value())
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or PORTS[parts.scheme]
        self.username = (
            options.username.get_secret_value()
            if options.username is not None
            else unquote(parts.username)
            if parts.username
            else None
        )
        self.password = (
            options.password.get_secret_value()
            if options.password is not None
            else unquote(parts.password)
            if parts.password
            else None
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        self.shown = f"{parts.scheme}://{user}{host}:{self.port}"


def _default_topic(check: str) -> str:
    # a check name may hold characters that are wildcards in a topic
    name = re.sub(r"[+#\0]", "_", check)
    return f"watchkeeper/{name}/probe"


def _refused(code: object) -> bool:
    """True for a SUBACK code that refuses the subscription (0x80 and above)."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80


async def _hang_up(client, connected: bool, deadline: float) -> None:
    """Disconnect politely when connected, then make sure the socket is closed."""
    import anyio
    from aiomqtt import MqttError

    if connected:
        with anyio.move_on_after(min(max(deadline - time.perf_counter(), 0.1), 1)):
            try:
                await client.__aexit__(None, None, None)
            except MqttError:  # the broker may be gone already: closing below is enough
                pass
    # a connect that was cancelled or failed half-way leaves paho's socket (and the
    # reader aiomqtt put on the event loop) open; paho's own close releases both
    paho = client._client
    if paho.socket() is not None:
        paho._sock_close()


def _tls_failure(exc: BaseException, shown: str) -> str | None:
    """Say why a TLS handshake failed, when it did (aiomqtt keeps the SSL error as context)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate of {shown} is not trusted: {cause.verify_message or cause}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake with {shown} failed: {cause.reason or cause}"
    return None


def _clean(exc: BaseException, password: str | None) -> str:
    """Return the plainest reason for a failure, with no password in it."""
    text = network_reason(exc) or str(exc) or type(exc).__name__
    # aiomqtt turns socket errors into text: "[Errno 111] Connection refused"
    errno = re.fullmatch(r"\[Errno -?\d+\] (.+)", text)
    if errno:
        text = errno.group(1)
    text = re.sub(r"^\[code:\d+\] ", "", text)
    text = " ".join(text.split())
    text = text[:1].lower() + text[1:]
    if password:
        text = text.replace(password, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [MqttProbe]
