"""The `websocket` probe: open a WebSocket, optionally send a message and judge the answer."""

from __future__ import annotations

import ssl
import time
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import (
    TlsContexts,
    certificate_expiry,
    masked_url,
    network_reason,
    time_budget,
    took,
)
from watchkeeper.plugins.probes.text_expect import MessageExpect, quote
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Size, format_duration

INSTALL = "pip install 'watchkeeper[websocket]'"
USER_AGENT = "watchkeeper"


class WebsocketOptions(ProbeOptions):
    """Open a WebSocket (ws:// or wss://); optionally send text and judge the answer."""

    url: str = Field(description="ws:// or wss:// URL to connect to.")
    headers: dict[str, Secret] = Field(
        default_factory=dict,
        description="Request headers of the opening handshake (values are secret).",
    )
    subprotocols: list[str] = Field(
        default_factory=list,
        description="Subprotocols offered (Sec-WebSocket-Protocol); the server must pick one.",
    )
    send: str | None = Field(None, description="Text message to send once connected.")
    expect: MessageExpect | None = Field(
        None,
        description="What the first message received (the answer to `send`) must contain, "
        "match or be.",
    )
    verify: bool = Field(True, description="wss://: verify the server's TLS certificate.")
    ca_bundle: str | None = Field(None, description="wss://: PEM file of CA certificates to trust.")
    client_cert: str | None = Field(
        None, description="wss://: PEM client certificate (mutual TLS)."
    )
    client_key: str | None = Field(None, description="wss://: PEM key of the client certificate.")
    max_size: Size = Field(1_048_576, description="Largest message accepted.")

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.lower().startswith(("ws://", "wss://")):
            raise ValueError("expected a ws:// or wss:// URL")
        return value


class WebsocketProbe(Probe):
    """Open a WebSocket; time the handshake and the answer to a message."""

    type = "websocket"
    Options = WebsocketOptions
    metrics = (
        Metric("connect_time", "duration", "TCP connect, TLS (wss://) and the opening handshake"),
        Metric(
            "round_trip_time",
            "duration",
            "from sending `send` (or connecting) to the first message received "
            "(with `send` or `expect`)",
        ),
        Metric(
            "certificate_expiry",
            "duration",
            "until the server certificate's `notAfter`; negative once expired; `wss://` only",
        ),
    )

    def __init__(self) -> None:
        self.tls = TlsContexts()

    async def open(self, ctx: OpenContext) -> None:
        # import now, not inside the first check's timeout; a missing extra is reported there
        try:
            _websockets()
        except ImportError:
            pass

    async def check(self, options: WebsocketOptions, ctx: ProbeContext) -> Result:
        import anyio

        try:
            client, errors = _websockets()
        except ImportError:
            return Result(ok=False, message=f"the websocket probe needs websockets: {INSTALL}")
        shown = masked_url(options.url)
        secure = options.url.lower().startswith("wss://")
        context = None
        if secure:
            try:
                context = await self.tls.get(
                    verify=options.verify,
                    ca_bundle=_path(options.ca_bundle, ctx),
                    client_cert=_path(options.client_cert, ctx),
                    client_key=_path(options.client_key, ctx),
                )
            except (OSError, ssl.SSLError) as exc:
                return Result(ok=False, message=f"cannot load TLS files for {shown}: {exc}")
        headers = {name: value.get_secret_value() for name, value in options.headers.items()}
        secrets = [v for v in headers.values() if v]
        metrics: dict[str, float] = {}
        details: dict[str, Any] = {"url": shown}
        phase = "connecting to"
        ws = None
        start = time.perf_counter()
        try:
            with anyio.fail_after(time_budget(ctx.timeout)):
                ws = await client.connect(
                    options.url,
                    additional_headers=headers,
                    subprotocols=options.subprotocols or None,
                    ssl=context,
                    user_agent_header=USER_AGENT,
                    proxy=None,  # the daemon's proxy variables must not change the check
                    open_timeout=None,  # the probe's own deadline applies
                    ping_interval=None,
                    close_timeout=1,
                    compression=None,
                    max_size=options.max_size,
                )
                metrics["connect_time"] = time.perf_counter() - start
                expiry = _expiry(ws) if secure else None
                if expiry is not None:
                    metrics["certificate_expiry"] = expiry
                if ws.subprotocol:
                    details["subprotocol"] = ws.subprotocol
                elif options.subprotocols:
                    offered = ", ".join(options.subprotocols)
                    message = f"{shown} accepted none of the subprotocols offered ({offered})"
                    return Result(ok=False, message=message, metrics=metrics, details=details)
                answer = None
                if options.send is not None or options.expect is not None:
                    phase = "waiting for a message from"
                    start = time.perf_counter()
                    if options.send is not None:
                        await ws.send(options.send)
                    answer = await ws.recv()
                    metrics["round_trip_time"] = time.perf_counter() - start
        except TimeoutError:
            after = format_duration(ctx.timeout)
            return Result(
                ok=False,
                message=f"timed out after {after} {phase} {shown}",
                metrics=metrics,
                details={**details, "timeout": True},
            )
        except (errors.WebSocketException, OSError) as exc:
            message = _clean(_describe(errors, exc, shown, phase), secrets)
            if isinstance(exc, errors.InvalidStatus):
                details["status_code"] = exc.response.status_code
            return Result(ok=False, message=message, metrics=metrics, details=details)
        finally:
            if ws is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await ws.close()
        message = f"{shown}: connected in {took(metrics['connect_time'])}"
        if ws.subprotocol:
            message += f" ({ws.subprotocol})"
        if answer is None:
            return Result(ok=True, message=message, metrics=metrics, details=details)
        if isinstance(answer, bytes):
            details["binary"] = True
            text = answer.decode("utf-8", errors="replace")
        else:
            text = answer
        message += f", answer in {took(metrics['round_trip_time'])}"
        mismatch = options.expect.mismatch(text) if options.expect is not None else None
        if mismatch is not None:
            message = f"{shown}: the answer {mismatch}: {quote(text)}"
            return Result(
                ok=False, message=_clean(message, secrets), metrics=metrics, details=details
            )
        return Result(ok=True, message=_clean(message, secrets), metrics=metrics, details=details)


@cache
def _websockets() -> tuple[Any, Any]:
    import websockets.asyncio.client as client
    import websockets.exceptions as errors

    return client, errors


def _describe(errors: Any, exc: BaseException, shown: str, phase: str) -> str:
    if isinstance(exc, errors.InvalidStatus):
        response = exc.response
        return (
            f"{shown} refused the WebSocket handshake: "
            f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        )
    if isinstance(exc, errors.InvalidURI):
        return f"invalid WebSocket URL {shown}"
    if isinstance(exc, errors.ConnectionClosed):
        received = exc.rcvd
        if received is None:
            return f"{shown} closed the connection before answering (no close frame)"
        reason = f" {received.reason!r}" if received.reason else ""
        return f"{shown} closed the connection (code {received.code}{reason}) before answering"
    if isinstance(exc, errors.InvalidHandshake):
        return f"WebSocket handshake with {shown} failed: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {shown} is not trusted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {shown} failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        reason = network_reason(exc) or str(exc)
        if not reason and isinstance(exc, ConnectionResetError):
            reason = "connection reset by peer"
        return f"cannot connect to {shown}: {reason or type(exc).__name__}"
    return f"WebSocket to {shown} failed: {exc}"


def _expiry(ws: Any) -> float | None:
    ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport else None
    return certificate_expiry(ssl_object)


def _path(value: str | None, ctx: ProbeContext) -> Path | None:
    return None if value is None else ctx.base_dir / Path(value).expanduser()


def _clean(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [WebsocketProbe]
