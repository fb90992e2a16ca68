"""The `udp` probe: send a datagram, time the reply and check what it says."""

from __future__ import annotations

import re
import socket
import time

from pydantic import Field, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.schema.base import ConfigModel
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

SHOWN = 120
"""Characters of a wrong reply quoted in the message."""


class UdpExpect(ConfigModel):
    """What the reply must be: one of exact, contains or regex."""

    exact: str | None = Field(None, description="The reply is exactly this text.")
    contains: str | None = Field(None, description="The reply contains this text.")
    regex: str | None = Field(
        None, description="A regular expression searched for in the reply (add ^…$ to anchor)."
    )

    @model_validator(mode="after")
    def _one(self) -> UdpExpect:
        given = [k for k in ("exact", "contains", "regex") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of exact, contains or regex, not {' and '.join(given)}")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex is not a valid regular expression: {exc}") from None
        return self


class UdpOptions(ProbeOptions):
    """Send one datagram and wait for the reply."""

    host: str = Field(min_length=1, description="Host name, IPv4 or IPv6 address.")
    port: int = Field(ge=1, le=65535, description="UDP port.")
    send: str | None = Field(None, min_length=1, description="Text to send, as UTF-8.")
    send_hex: str | None = Field(
        None, description="Bytes to send, written in hexadecimal (`fe ed 01`), instead of send."
    )
    expect: UdpExpect = Field(
        default_factory=UdpExpect, description="What the reply must be (default: any reply)."
    )

    @model_validator(mode="after")
    def _payload(self) -> UdpOptions:
        if (self.send is None) == (self.send_hex is None):
            raise ValueError("give one of send (text) or send_hex (hexadecimal bytes)")
        if self.send_hex is not None:
            try:
                payload = bytes.fromhex(self.send_hex)
            except ValueError:
                raise ValueError(f"send_hex is not hexadecimal: {self.send_hex[:40]!r}") from None
            if not payload:  # asyncio never sends an empty datagram
                raise ValueError("send_hex is empty: give at least one byte")
        return self

    def payload(self) -> bytes:
        """Return the datagram to send."""
        if self.send_hex is not None:
            return bytes.fromhex(self.send_hex)
        return (self.send or "").encode()


class _Reply:
    """Hand the first datagram (or the first error, such as ICMP port unreachable) to a future.

    An asyncio datagram protocol by its methods; asyncio itself is imported only when a
    check runs, so `validate` does not pay for it.
    """

    def __init__(self) -> None:
        import asyncio

        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: object) -> None:
        pass

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or ConnectionError("the socket closed"))


class UdpProbe(Probe):
    """Send a datagram, time the reply and match it against `expect`."""

    type = "udp"
    Options = UdpOptions
    metrics = (Metric("round_trip_time", "duration", "from sending the datagram to the reply"),)

    async def check(self, options: UdpOptions, ctx: ProbeContext) -> Result:
        import asyncio

        import anyio

        target = _target(options.host, options.port)
        budget = time_budget(ctx.timeout)
        loop = asyncio.get_running_loop()
        transport = None
        try:
            with anyio.fail_after(budget):
                # remote_addr connects the socket: the kernel then reports an ICMP port
                # unreachable as ECONNREFUSED, and drops datagrams from anyone else
                transport, protocol = await loop.create_datagram_endpoint(
                    _Reply, remote_addr=(options.host, options.port)
                )
                start = time.perf_counter()
                transport.sendto(options.payload())
                reply = await protocol.answer
        except TimeoutError:
            after = format_duration(ctx.timeout)
            return Result(
                ok=False,
                message=f"timed out after {after}: no reply from {target}",
                details={"timeout": True},
            )
        except socket.gaierror as exc:
            return Result(ok=False, message=f"cannot resolve {options.host}: {_reason(exc)}")
        except ConnectionRefusedError:
            return Result(ok=False, message=f"port unreachable: nothing listens on UDP {target}")
        except OSError as exc:
            return Result(ok=False, message=f"cannot reach {target}: {_reason(exc)}")
        finally:
            if transport is not None:
                transport.abort()
        elapsed = time.perf_counter() - start
        metrics = {"round_trip_time": elapsed}
        wrong = _mismatch(reply, options.expect)
        if wrong:
            message = f"{target} answered {_show(reply)}, {wrong}"
            return Result(ok=False, message=message, metrics=metrics)
        size = f"{len(reply)} byte" + ("" if len(reply) == 1 else "s")
        return Result(ok=True, message=f"{size} from {target} in {took(elapsed)}", metrics=metrics)


def _mismatch(reply: bytes, expect: UdpExpect) -> str | None:
    """Return how the reply fails `expect` (None when it holds)."""
    if expect.exact is not None and reply != expect.exact.encode():
        return f"expected exactly {expect.exact[:SHOWN]!r}"
    if expect.contains is not None and expect.contains.encode() not in reply:
        return f"expected it to contain {expect.contains[:SHOWN]!r}"
    text = reply.decode("utf-8", errors="replace")
    if expect.regex is not None and not re.search(expect.regex, text):
        return f"no match for /{expect.regex}/"
    return None


def _show(reply: bytes) -> str:
    """Quote a reply for a message: text as text, binary as hex, both cut short."""
    if not reply:
        return "an empty datagram"
    try:
        text = reply.decode("utf-8")
    except UnicodeDecodeError:
        cut = reply[: SHOWN // 2]
        return f"0x{cut.hex()}" + ("…" if len(reply) > len(cut) else "") + f" ({len(reply)} bytes)"
    return repr(text[:SHOWN]) + ("…" if len(text) > SHOWN else "")


def _reason(exc: OSError) -> str:
    return network_reason(exc) or str(exc) or type(exc).__name__


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@hookimpl
def watchkeeper_probes():
    return [UdpProbe]
