"""Who may call what: Bearer tokens compared in constant time, who to name in the audit,
and what refused calls cost: counted per source and minute, rate limited per source."""

from __future__ import annotations

import hmac
import ipaddress
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

# the plain text of a secret setting; auth compares tokens with it
from watchkeeper.engine.observe.redaction import secret_value


def same(given: str | None, expected: str) -> bool:
    """Compare a presented token with the expected one in constant time; '' never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(request: Request) -> str | None:
    """Return the token of an `Authorization: Bearer ...` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented(request: Request, *, query: bool = False) -> str | None:
    """Return the token a request carries: its Bearer header, or `?token=` where allowed."""
    token = bearer(request)
    if token is None and query:
        token = request.query_params.get("token") or None
    return token


def admin_token(daemon: Any) -> str:
    """Return the configured admin token ('' = the admin API is closed)."""
    return secret_value(daemon.config.server.admin_token)


def is_admin(request: Request, daemon: Any, *, query: bool = False) -> bool:
    """True when the request presents the admin token (never when none is configured)."""
    return same(presented(request, query=query), admin_token(daemon))


def client(request: Request) -> str:
    """Return the caller's address as the server saw it."""
    return request.client.host if request.client else "unknown"


def who(request: Request, by: Any = None) -> str:
    """Name the caller for the audit log: the body's `by`, else `token@address`."""
    if isinstance(by, str) and by.strip():
        return f"{by.strip()[:200]} (token@{client(request)})"
    return f"token@{client(request)}"


# -- refused calls --------------------------------------------------------------------------

OTHER = "other"
"""The bucket refused calls fold into once a window tracks as many sources as it may."""
DENIED_WINDOW = 60.0
DENIED_SOURCES = 100
DENIED_PATHS = 5
FAILURE_BURST = 120
FAILURE_RATE = 1.0
"""Refused calls a source may make at once, and per second after that (60 a minute)."""
LIMITED_SOURCES = 4096


def source_of(address: str) -> str:
    """Name the source refusals are counted under: the address, IPv6 by its /64 (one host
    usually holds a whole /64, so counting its addresses one by one would count nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Tally:
    first_at: float
    last_at: float
    count: int = 0
    paths: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


class Refusals:
    """Count refused calls per source and window: one audit row per source per window
    (`DENIED_WINDOW`), at most `DENIED_SOURCES` sources a window, the rest under `other`."""

    def __init__(
        self,
        window: float = DENIED_WINDOW,
        sources: int = DENIED_SOURCES,
        paths: int = DENIED_PATHS,
    ):
        self.window = window
        self.sources = sources
        self.paths = paths
        self.tallies: dict[str, _Tally] = {}
        self.opened: float | None = None  # monotonic start of the current window
        self.totals: dict[int, int] = {401: 0, 429: 0}  # since start, for /metrics

    def count(self, source: str, path: str, status: int, at: float, now: float) -> None:
        """Count one refusal (`at` wall-clock seconds, `now` monotonic seconds)."""
        if self.opened is None:
            self.opened = now
        tally = self.tallies.get(source)
        if tally is None:
            if len(self.tallies) >= self.sources:
                source = OTHER
                tally = self.tallies.get(OTHER)
            if tally is None:
                tally = self.tallies[source] = _Tally(first_at=at, last_at=at)
        tally.count += 1
        tally.last_at = at
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if len(tally.paths) < self.paths and path not in tally.paths:
            tally.paths.append(path[:200])
        self.totals[status] = self.totals.get(status, 0) + 1

    def due(self, now: float) -> bool:
        """True when the current window has run its time."""
        return self.opened is not None and now - self.opened >= self.window

    def close(self) -> list[tuple[str, dict[str, Any]]]:
        """End the window: return (who, audit details) per source, and start afresh."""
        rows = [
            (
                f"anonymous@{source}",
                {
                    "address": source,
                    "count": tally.count,
                    "first_at": _iso(tally.first_at),
                    "last_at": _iso(tally.last_at),
                    "path": tally.paths[0] if tally.paths else None,
                    "paths": tally.paths,
                    "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
                },
            )
            for source, tally in self.tallies.items()
        ]
        self.tallies = {}
        self.opened = None
        return rows


class FailureLimiter:
    """A token bucket per source for refused calls: `FAILURE_BURST` at once, then
    `FAILURE_RATE` a second. Only failures spend it: a valid token is never limited."""

    def __init__(
        self,
        burst: float = FAILURE_BURST,
        rate: float = FAILURE_RATE,
        sources: int = LIMITED_SOURCES,
    ):
        self.burst = burst
        self.rate = rate
        self.sources = sources
        self.buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)
        self._pruned = -math.inf

    def take(self, source: str, now: float) -> float:
        """Spend one failure of a source; return 0 when allowed, else seconds to wait."""
        if source not in self.buckets and len(self.buckets) >= self.sources:
            self._prune(now)
            if len(self.buckets) >= self.sources:
                source = OTHER  # a crowd of new sources shares one bucket
        tokens, then = self.buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens >= 1:
            self.buckets[source] = (tokens - 1, now)
            return 0.0
        self.buckets[source] = (tokens, now)
        return (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget sources whose bucket has filled up again (at most once a second)."""
        if now - self._pruned < 1.0:
            return
        self._pruned = now
        self.buckets = {
            source: (tokens, then)
            for source, (tokens, then) in self.buckets.items()
            if tokens + (now - then) * self.rate < self.burst
        }
