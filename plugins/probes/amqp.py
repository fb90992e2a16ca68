"""The `amqp` probe: connect to an AMQP 0-9-1 broker (RabbitMQ), optionally read a queue."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.plugins.probes.tls import tls_failure
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

INSTALL = "pip install 'watchkeeper[amqp]'"
PORTS = {"amqp": 5672, "amqps": 5671}


@dataclass(frozen=True)
class BrokerUrl:
    """What messages may show of an `amqp://` URL, and the password they must not."""

    shown: str
    user: str
    password: str
    vhost: str


def parse_url(url: str) -> BrokerUrl:
    """Parse `amqp[s]://user:password@host:port/vhost`; ValueError says why not.

    The errors never quote the URL: it holds the password.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port or PORTS.get(parts.scheme, 5672)
    except ValueError:
        raise ValueError("not a valid amqp:// URL (check the port and brackets)") from None
    if parts.scheme not in PORTS:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(f"expected an amqp:// or amqps:// URL, got {shown}")
    if not parts.hostname:
        raise ValueError("the URL names no host (amqp://user:password@host:5672/vhost)")
    if parts.path.count("/") > 1:
        raise ValueError("the URL's path is one vhost; write a / inside it as %2F")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    user = unquote(parts.username or "guest")  # the AMQP URI spec's and aiormq's default
    # as aiormq reads it: no path (or a bare /) is the default vhost "/"
    vhost = unquote(parts.path[1:]) or "/"
    user_part = f"{parts.username}@" if parts.username else ""
    return BrokerUrl(
        shown=f"{parts.scheme}://{user_part}{host}:{port}{parts.path or '/'}",
        user=user,
        password=unquote(parts.password or ""),
        vhost=vhost,
    )


class AmqpOptions(ProbeOptions):
    """Connect to an AMQP 0-9-1 broker, optionally read a queue (install watchkeeper[amqp])."""

    url: Secret = Field(
        description="amqp://user:password@host:5672/vhost, or amqps:// for TLS "
        "(?cafile=/path/ca.pem to trust a private CA)."
    )
    queue: str | None = Field(
        None,
        min_length=1,
        description="Queue to look up without creating it: down when it does not exist; "
        "reports its messages and consumers.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: Secret) -> Secret:
        parse_url(value.get_secret_value())
        return value


class AmqpProbe(Probe):
    """Connect to an AMQP 0-9-1 broker and read a queue's depth."""

    type = "amqp"
    Options = AmqpOptions
    metrics = (
        Metric("connect_time", "duration", "connect, negotiate TLS, log in and open the vhost"),
        Metric("messages", "count", "messages ready in `queue`, with a queue"),
        Metric("consumers", "count", "consumers of `queue`, with a queue"),
    )

    async def check(self, options: AmqpOptions, ctx: ProbeContext) -> Result:
        import anyio

        try:
            import aiormq
        except ImportError:
            return Result(ok=False, message=f"the amqp probe needs aiormq: {INSTALL}")
        _quiet_aiormq()

        url = options.url.get_secret_value()
        broker = parse_url(url)
        shown = broker.shown
        budget = time_budget(ctx.timeout)
        after = format_duration(ctx.timeout)
        metrics: dict[str, float] = {}
        conn = aiormq.Connection(url, client_properties={"connection_name": "watchkeeper"})
        doing = "connecting to"
        try:
            with anyio.fail_after(budget):
                start = time.perf_counter()
                await conn.connect()
                metrics["connect_time"] = time.perf_counter() - start
                if options.queue is not None:
                    doing = f"checking queue {options.queue!r} on"
                    channel = await conn.channel()
                    declared = await channel.queue_declare(options.queue, passive=True)
                    metrics["messages"] = float(declared.message_count or 0)
                    metrics["consumers"] = float(declared.consumer_count or 0)
        except TimeoutError:
            return Result(
                ok=False,
                message=f"timed out after {after} {doing} {shown}",
                metrics=metrics,
                details={"timeout": True},
            )
        except aiormq.exceptions.ChannelNotFoundEntity:
            message = f"{shown}: queue {options.queue!r} does not exist"
            return Result(ok=False, message=message, metrics=metrics)
        except aiormq.exceptions.AMQPChannelError as exc:
            reason = _clean(_channel_reason(exc), broker.password)
            return Result(
                ok=False,
                message=f"{shown}: checking queue {options.queue!r} failed: {reason}",
                metrics=metrics,
            )
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            reason = _clean(_reason(exc, broker), broker.password)
            if options.queue is None or "connect_time" not in metrics:
                message = f"cannot connect to {shown}: {reason}"
            else:
                message = f"{shown}: checking queue {options.queue!r} failed: {reason}"
            return Result(ok=False, message=message, metrics=metrics)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await conn.close()
        message = f"{shown}: connected in {took(metrics['connect_time'])}"
        if options.queue is not None:
            message += (
                f"; queue {options.queue!r} holds {metrics['messages']:.0f} messages "
                f"for {metrics['consumers']:.0f} consumers"
            )
        return Result(ok=True, message=message, metrics=metrics)


class _TransportErrors(logging.Filter):
    """Drop aiormq's own error line for a failed connect: the check's result says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


def _quiet_aiormq() -> None:
    logger = logging.getLogger("aiormq.connection")
    if not any(isinstance(f, _TransportErrors) for f in logger.filters):
        logger.addFilter(_TransportErrors())


def _reason(exc: BaseException, broker: BrokerUrl) -> str:
    """The plainest words for a failed connection, without a traceback."""
    import asyncio

    import aiormq

    errors = aiormq.exceptions
    if (tls := tls_failure(exc)) is not None:
        return tls
    if isinstance(exc, errors.ProbableAuthenticationError):
        return f"auth failed: the broker refused the login of user {broker.user!r}"
    if isinstance(exc, errors.AuthenticationError):
        return "auth failed: the broker and the client share no login mechanism"
    text = str(exc)
    if isinstance(exc, errors.IncompatibleProtocolError) or isinstance(
        exc.__cause__, asyncio.IncompleteReadError
    ):
        return "the server hung up mid-conversation (is it an AMQP 0-9-1 broker?)"
    if isinstance(exc, errors.InvalidFrameError) and "Connection.OpenOk" in text:
        # RabbitMQ answers Connection.Open with Connection.Close for an unknown vhost or
        # one the user may not use; aiormq keeps only the frame's type
        return (
            f"the broker refused vhost {broker.vhost!r} (it does not exist, or the user "
            "may not use it)"
        )
    if isinstance(exc, errors.ProtocolSyntaxError):
        # an AMQP 1.0 broker answers the 0-9-1 header with its own; anything else with
        # bytes that are no frame at all
        if "protocol header" in text:
            return "the server speaks another version of AMQP, not 0-9-1"
        return "not an AMQP 0-9-1 broker: its answer is no AMQP frame"
    if (plain := network_reason(exc)) is not None:
        return plain
    return text or type(exc).__name__


def _channel_reason(exc: BaseException) -> str:
    """The broker's reply text (`ACCESS_REFUSED - access to queue 'x' ...`)."""
    args = getattr(exc, "args", ())
    texts = [str(arg) for arg in args if isinstance(arg, str)]
    return texts[-1] if texts else type(exc).__name__


def _clean(text: str, password: str) -> str:
    text = " ".join(text.split())
    if password:
        text = text.replace(password, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [AmqpProbe]
