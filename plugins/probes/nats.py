"""The `nats` probe: a round trip through a NATS server, and JetStream figures (extra `nats`)."""

from __future__ import annotations

import ssl
import time
import uuid
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import TlsContexts, network_reason, time_budget, took
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

INSTALL = "pip install 'watchkeeper[nats]'"
SCHEMES = ("nats", "tls")


class NatsOptions(ProbeOptions):
    """Connect, send a message to our own inbox, and read JetStream figures."""

    url: Secret = Field(
        description="nats://[user:password@]host[:4222], nats://token@host, or tls:// for TLS."
    )
    username: Secret | None = Field(None, description="User name (instead of one in url).")
    password: Secret | None = Field(None, description="Password (instead of one in url).")
    token: Secret | None = Field(None, description="Authentication token (instead of one in url).")
    stream: str | None = Field(
        None, description="JetStream stream whose message count to report; down if missing."
    )
    consumer: str | None = Field(
        None, description="With stream: a consumer of it whose pending count to report."
    )
    verify: bool = Field(
        True, description="With tls: verify the certificate chain and the host name."
    )
    ca_bundle: str | None = Field(
        None, description="With tls: PEM file of CA certificates to trust (default: the system's)."
    )

    @field_validator("url")
    @classmethod
    def _nats_url(cls, value: Secret) -> Secret:
        # the URL may hold a password or a token: say what is wrong without echoing it
        try:
            parts = urlsplit(value.get_secret_value())
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("url is not a valid URL (expected nats://host:4222)") from None
        if parts.scheme not in SCHEMES:
            raise ValueError("url must start with nats:// or tls://")
        if not parts.hostname:
            raise ValueError("url has no host (expected nats://host:4222)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NatsOptions:
        if self.consumer is not None and self.stream is None:
            raise ValueError("consumer needs stream: the stream the consumer reads")
        tls_keys = {"verify", "ca_bundle"} & self.model_fields_set
        if tls_keys and not self.url.get_secret_value().startswith("tls://"):
            raise ValueError(f"{' and '.join(sorted(tls_keys))} apply to tls:// URLs only")
        return self


class _Abandon(Exception):
    """Stops nats-py from retrying a server that failed: one check is one attempt."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class NatsProbe(Probe):
    """Time a message to the probe's own inbox; read a stream's and a consumer's counts."""

    type = "nats"
    Options = NatsOptions
    metrics = (
        Metric("connect_time", "duration", "connect (TCP, TLS with tls://, INFO/CONNECT)"),
        Metric(
            "round_trip_time", "duration", "from publishing to the probe's inbox to receiving it"
        ),
        Metric("stream_messages", "count", "messages in `stream` (with `stream`)"),
        Metric(
            "consumer_pending", "count", "messages `consumer` has yet to deliver (with `consumer`)"
        ),
    )

    def __init__(self) -> None:
        self.tls = TlsContexts()

    async def open(self, ctx: OpenContext) -> None:
        # importing the client takes a while: not inside the first check's timeout
        try:
            import nats  # noqa: F401
        except ImportError:  # check() says which extra to install
            pass

    async def check(self, options: NatsOptions, ctx: ProbeContext) -> Result:
        try:
            import nats
        except ImportError:
            return Result(ok=False, message=f"the nats probe needs nats-py: {INSTALL}")
        import anyio
        from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

        url = options.url.get_secret_value()
        shown, hidden = _describe(url, options)
        budget = time_budget(ctx.timeout)
        after = format_duration(ctx.timeout)
        secure = url.startswith("tls://")
        extra = {}
        if secure:
            try:
                extra["tls"] = await self.tls.get(
                    verify=options.verify,
                    ca_bundle=None
                    if options.ca_bundle is None
                    else ctx.base_dir / options.ca_bundle,
                )
            except (OSError, ssl.SSLError) as exc:
                return Result(
                    ok=False, message=f"cannot load the CA bundle {options.ca_bundle}: {exc}"
                )
        for key, secret in (("user", options.username), ("password", options.password)):
            if secret is not None:
                extra[key] = secret.get_secret_value()
        if options.token is not None:
            extra["token"] = options.token.get_secret_value()

        connecting = True
        later: list[BaseException] = []  # what the server says after connecting (-ERR ...)

        async def on_error(exc: BaseException) -> None:
            if connecting:
                raise _Abandon(exc)
            later.append(exc)

        metrics: dict[str, float] = {}
        step = "connect"
        client = nats.NATS()
        try:
            with anyio.fail_after(budget):
                start = time.perf_counter()
                try:
                    await client.connect(
                        servers=[url],
                        name="watchkeeper",
                        connect_timeout=budget,
                        allow_reconnect=False,
                        error_cb=on_error,
                        **extra,
                    )
                finally:  # errors from here on (while closing, too) are only recorded
                    connecting = False
                metrics["connect_time"] = time.perf_counter() - start
                # nats-py speaks TLS only when the server asks for it, whatever the URL
                if secure and not client._server_info.get("tls_required"):
                    message = f"{shown} answered in plain text: the server has no TLS"
                    return Result(ok=False, message=message, metrics=metrics)
                step = "round trip"
                inbox = client.new_inbox()
                subscription = await client.subscribe(inbox, max_msgs=1)
                token = uuid.uuid4().hex.encode()
                start = time.perf_counter()
                await client.publish(inbox, token)
                received = await subscription.next_msg(timeout=budget)
                metrics["round_trip_time"] = time.perf_counter() - start
                if received.data != token:
                    message = f"{shown} delivered something else to the probe's inbox"
                    return Result(ok=False, message=message, metrics=metrics)
                if options.stream is not None:
                    step = "stream"
                    jetstream = client.jetstream(timeout=budget)
                    stream = await jetstream.stream_info(options.stream)
                    metrics["stream_messages"] = float(stream.state.messages)
                    if options.consumer is not None:
                        step = "consumer"
                        consumer = await jetstream.consumer_info(options.stream, options.consumer)
                        metrics["consumer_pending"] = float(consumer.num_pending or 0)
        except TimeoutError:
            message = f"timed out after {after} {_DOING[step]} {shown}"
            if later:
                message += f" (the server said: {_clean(later[-1], hidden)})"
            return Result(ok=False, message=message, metrics=metrics, details={"timeout": True})
        except _Abandon as exc:
            return Result(ok=False, message=_connect_failure(exc.cause, shown, after, hidden))
        except NotFoundError:
            if step == "stream":
                message = f"stream {options.stream} not found at {shown}"
            else:
                message = (
                    f"consumer {options.consumer} of stream {options.stream} not found at {shown}"
                )
            return Result(ok=False, message=message, metrics=metrics)
        except (nats.errors.NoRespondersError, ServiceUnavailableError):
            message = f"JetStream is not enabled at {shown} (nothing answered for {options.stream})"
            return Result(ok=False, message=message, metrics=metrics)
        except APIError as exc:
            reason = exc.description or f"error {exc.err_code or exc.code}"
            message = f"reading the {step} {getattr(options, step)} at {shown} failed: {reason}"
            return Result(ok=False, message=message, metrics=metrics)
        except (nats.errors.Error, OSError) as exc:
            message = f"{_FAILED[step].format(shown)}: {_clean(exc, hidden)}"
            return Result(ok=False, message=message, metrics=metrics)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await client.close()
        message = f"round trip through {shown} in {took(metrics['round_trip_time'])}"
        if "stream_messages" in metrics:
            message += f"; stream {options.stream}: {metrics['stream_messages']:.0f} messages"
        if "consumer_pending" in metrics:
            message += f", {options.consumer}: {metrics['consumer_pending']:.0f} pending"
        return Result(ok=True, message=message, metrics=metrics)


_DOING = {
    "connect": "connecting to",
    "round trip": "waiting for the round trip through",
    "stream": "reading the stream from",
    "consumer": "reading the consumer from",
}
_FAILED = {
    "connect": "cannot connect to {}",
    "round trip": "the round trip through {} failed",
    "stream": "reading the stream from {} failed",
    "consumer": "reading the consumer from {} failed",
}


def _connect_failure(cause: BaseException, shown: str, after: str, hidden: list[str]) -> str:
    reason = _clean(cause, hidden)
    if isinstance(cause, TimeoutError):
        return f"timed out after {after} connecting to {shown}"
    if "authorization violation" in reason.lower():
        return f"authentication failed at {shown}: authorization violation"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate of {shown} is not trusted: {cause.verify_message or reason}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake with {shown} failed: {cause.reason or reason}"
    return f"cannot connect to {shown}: {reason}"


def _describe(url: str, options: NatsOptions) -> tuple[str, list[str]]:
    """Return (the URL for messages, with no credentials; the secrets to keep out of text)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    hidden = [s.get_secret_value() for s in (options.password, options.token) if s is not None]
    user = ""
    if options.username is not None:
        user = options.username.get_secret_value()
    elif parts.username and parts.password:
        user = parts.username
    elif parts.username:  # a lone user name in a NATS URL is a token
        hidden.append(parts.username)
    if parts.password:
        hidden.append(parts.password)
    shown = f"{parts.scheme}://{user + '@' if user else ''}{host}:{parts.port or 4222}"
    return shown, hidden


def _clean(exc: BaseException, hidden: list[str]) -> str:
    """Return the plainest reason for a failure, with no credential in it."""
    text = network_reason(exc) or str(exc) or type(exc).__name__
    text = text.removeprefix("nats: ").strip().strip("'")
    text = " ".join(text.split())
    text = text[:1].lower() + text[1:]
    for secret in hidden:
        text = text.replace(secret, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [NatsProbe]
