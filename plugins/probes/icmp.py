"""The `icmp` probe: echo requests to a host (ping), round-trip times and packet loss.

Linux lets unprivileged users send echo requests through ICMP datagram sockets when
their group is in `net.ipv4.ping_group_range` (the kernel then fills in the identifier
and checksum and hands each socket only its own replies). Elsewhere, raw sockets do the
same for root or a process with CAP_NET_RAW; a raw socket sees every ICMP packet the
host receives, so replies are matched by identifier, sequence and a random token.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import Duration, format_duration

# the largest echo payload that fits in one IPv4 datagram (65535 - 20 - 8)
_MAX_PAYLOAD = 65507


class IcmpOptions(ProbeOptions):
    """Send ICMP echo requests to a host and wait for the replies."""

    host: str = Field(description="Host name or address to ping.")
    count: int = Field(3, ge=1, le=100, description="Echo requests to send.")
    interval: Duration = Field(0.2, description="Time between two echo requests (at least 10ms).")
    size: int = Field(56, ge=0, le=_MAX_PAYLOAD, description="Payload bytes of each echo request.")
    family: Literal["auto", "ipv4", "ipv6"] = Field(
        "auto",
        description="Address family: `auto` pings the first address the host name "
        "resolves to; `ipv4` or `ipv6` only that family.",
    )

    @field_validator("interval")
    @classmethod
    def _not_a_flood(cls, value: float) -> float:
        if value < 0.01:
            raise ValueError(f"interval must be at least 10ms, got {format_duration(value)}")
        return value


_FAMILIES = {"auto": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
_ECHO = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # (request, reply) types
_UNREACHABLE = {socket.AF_INET: 3, socket.AF_INET6: 1}
# ICMP destination unreachable codes, as ping words them
_UNREACHABLE_CODES = {
    socket.AF_INET: {
        0: "network unreachable",
        1: "host unreachable",
        2: "protocol unreachable",
        3: "port unreachable",
        4: "fragmentation needed",
        9: "network administratively prohibited",
        10: "host administratively prohibited",
        13: "communication administratively prohibited",
    },
    socket.AF_INET6: {
        0: "no route to destination",
        1: "communication administratively prohibited",
        3: "address unreachable",
    },
}


class _Failed(Exception):
    """A run that cannot go on; its message is the result's."""


@dataclass
class _Pings:
    """What one run sent and received."""

    sent: dict[int, float] = field(default_factory=dict)  # sequence -> when sent
    rtts: dict[int, float] = field(default_factory=dict)  # sequence -> round trip
    unreachable: str | None = None  # why a router or the kernel said the host is unreachable


class IcmpProbe(Probe):
    """Ping a host: round-trip times and packet loss."""

    type = "icmp"
    Options = IcmpOptions
    metrics = (
        Metric("rtt_min", "duration", "the fastest echo reply's round trip"),
        Metric("rtt_avg", "duration", "the average round trip of the replies"),
        Metric("rtt_max", "duration", "the slowest echo reply's round trip"),
        Metric("packet_loss", "ratio", "echo requests without a reply ÷ echo requests sent"),
    )

    async def check(self, options: IcmpOptions, ctx: ProbeContext) -> Result:
        import anyio

        deadline = time.perf_counter() + time_budget(ctx.timeout)
        after = format_duration(ctx.timeout)
        try:
            with anyio.fail_after(_left(deadline)):
                family, sockaddr = await _resolve(options.host, _FAMILIES[options.family])
        except TimeoutError:
            return Result(
                ok=False,
                message=f"timed out after {after} resolving {options.host}",
                details={"timeout": True},
            )
        except _Failed as exc:
            return Result(ok=False, message=str(exc))
        address = sockaddr[0]
        who = address if _same_address(options.host, address) else f"{options.host} ({address})"
        try:
            sock, kind = _open(family)
        except _Failed as exc:
            return Result(ok=False, message=str(exc))
        details: dict[str, object] = {"address": address, "socket": kind}
        with sock:
            try:
                pings = await _ping(sock, kind, family, sockaddr, options, deadline)
            except _Failed as exc:
                return Result(ok=False, message=f"cannot ping {who}: {exc}", details=details)
        sent, received = len(pings.sent), len(pings.rtts)
        details.update(sent=sent, received=received)
        metrics = {"packet_loss": (sent - received) / sent}
        if not received:
            # replies are awaited until the timeout: the reason, when a router gave one
            message = f"no reply from {who} to {_pings(sent)} ({pings.unreachable or ''}"
            message += "; " if pings.unreachable else ""
            message += f"timed out after {after})"
            if sent < options.count:
                message += f"; the timeout left time to send {sent} of {options.count}"
            details["timeout"] = True
            return Result(ok=False, message=message, metrics=metrics, details=details)
        rtts = list(pings.rtts.values())
        metrics.update(rtt_min=min(rtts), rtt_avg=sum(rtts) / len(rtts), rtt_max=max(rtts))
        message = f"{received} of {_pings(sent)} answered by {who}"
        if received < sent:
            message += f" ({metrics['packet_loss']:.0%} loss)"
        message += (
            f": rtt min {took(metrics['rtt_min'])}, avg {took(metrics['rtt_avg'])}, "
            f"max {took(metrics['rtt_max'])}"
        )
        return Result(ok=True, message=message, metrics=metrics, details=details)


async def _resolve(host: str, family: int) -> tuple[int, tuple]:
    """Return the address family and socket address to ping; raise _Failed."""
    import anyio

    try:
        infos = await anyio.getaddrinfo(host, None, family=family, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _Failed(f"cannot resolve {host}: {reason[:1].lower()}{reason[1:]}") from None
    usable = [(info[0], info[4]) for info in infos if info[0] in _ECHO]
    if not usable:
        wanted = {socket.AF_INET: " IPv4", socket.AF_INET6: " IPv6"}.get(family, "")
        raise _Failed(f"cannot resolve {host}: no{wanted} address")
    return usable[0]


def _open(family: int) -> tuple[socket.socket, str]:
    """Open an ICMP socket: a datagram one where the kernel allows it, else a raw one."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    name = "ICMP" if family == socket.AF_INET else "ICMPv6"
    try:
        sock, kind = socket.socket(family, socket.SOCK_DGRAM, proto), "datagram"
    except OSError as datagram:
        if datagram.errno == errno.EAFNOSUPPORT:
            raise _Failed(f"cannot open an {name} socket: {network_reason(datagram)}") from None
        try:
            sock, kind = socket.socket(family, socket.SOCK_RAW, proto), "raw"
        except PermissionError:
            raise _Failed(
                f"cannot open an {name} socket: this user's group is not allowed "
                "unprivileged ping (sysctl net.ipv4.ping_group_range) and raw sockets "
                "need root or CAP_NET_RAW"
            ) from None
        except OSError as raw:
            raise _Failed(f"cannot open an {name} socket: {network_reason(raw)}") from None
    sock.setblocking(False)
    return sock, kind


async def _ping(
    sock: socket.socket,
    kind: str,
    family: int,
    sockaddr: tuple,
    options: IcmpOptions,
    deadline: float,
) -> _Pings:
    """Send `count` echo requests `interval` apart; collect replies until all are in."""
    import anyio

    # a raw socket hears every echo reply the host receives: ours carry this identifier
    # and token (a datagram socket's identifier is the kernel's, and only ours reach it)
    ident = random.getrandbits(16)
    token = os.urandom(8)
    payload = (token + bytes(i & 0xFF for i in range(options.size)))[: options.size]
    pings = _Pings()
    next_send = time.perf_counter()
    while True:
        now = time.perf_counter()
        if len(pings.sent) < options.count and now >= next_send:
            sequence = len(pings.sent) + 1
            packet = _echo_request(family, ident, sequence, payload)
            pings.sent[sequence] = time.perf_counter()
            try:
                sock.sendto(packet, sockaddr)
            except BlockingIOError:
                pass  # the send buffer is full: this one counts as lost
            except OSError as exc:
                if not pings.rtts:
                    raise _Failed(network_reason(exc) or str(exc)) from None
            next_send += options.interval
            continue
        if len(pings.rtts) == options.count or now >= deadline:
            return pings
        wake = deadline if len(pings.sent) == options.count else min(next_send, deadline)
        with anyio.move_on_after(max(wake - now, 0.0)):
            await anyio.wait_readable(sock)
        _receive(sock, kind, family, ident, payload[: len(token)], pings)


def _receive(
    sock: socket.socket, kind: str, family: int, ident: int, token: bytes, pings: _Pings
) -> None:
    """Read every packet waiting on the socket and record the replies to this run."""
    request, reply = _ECHO[family]
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        except OSError as exc:  # an ICMP error the kernel queued for a datagram socket
            pings.unreachable = network_reason(exc) or str(exc)
            continue
        received = time.perf_counter()
        if family == socket.AF_INET and kind == "raw":
            data = data[(data[0] & 0x0F) * 4 :] if data else b""  # raw IPv4 keeps the IP header
        if len(data) < 8:
            continue
        icmp_type, code, _, their_ident, sequence = struct.unpack("!BBHHH", data[:8])
        if icmp_type == _UNREACHABLE[family] and kind == "raw":
            if _quotes_ours(data[8:], family, ident, request):
                codes = _UNREACHABLE_CODES[family]
                pings.unreachable = codes.get(code, f"destination unreachable, code {code}")
            continue
        if icmp_type != reply or (kind == "raw" and their_ident != ident):
            continue
        if data[8 : 8 + len(token)] != token:
            continue
        sent = pings.sent.get(sequence)
        if sent is not None and sequence not in pings.rtts:
            pings.rtts[sequence] = received - sent


def _quotes_ours(quoted: bytes, family: int, ident: int, request: int) -> bool:
    """Return whether an unreachable message quotes one of this run's echo requests."""
    if family == socket.AF_INET:
        if not quoted:
            return False
        quoted = quoted[(quoted[0] & 0x0F) * 4 :]
    else:
        quoted = quoted[40:]  # the fixed IPv6 header
    if len(quoted) < 8:
        return False
    icmp_type, _, _, their_ident, _ = struct.unpack("!BBHHH", quoted[:8])
    return icmp_type == request and their_ident == ident


def _echo_request(family: int, ident: int, sequence: int, payload: bytes) -> bytes:
    request, _ = _ECHO[family]
    header = struct.pack("!BBHHH", request, 0, 0, ident, sequence)
    if family == socket.AF_INET6:
        return header + payload  # the kernel computes ICMPv6 checksums
    checksum = _checksum(header + payload)
    return struct.pack("!BBHHH", request, 0, checksum, ident, sequence) + payload


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _same_address(host: str, address: str) -> bool:
    return host.strip("[]").lower() == address.lower()


def _pings(n: int) -> str:
    return f"{n} ping" if n == 1 else f"{n} pings"


def _left(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.0)


@hookimpl
def watchkeeper_probes():
    return [IcmpProbe]
