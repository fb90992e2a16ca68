"""What a probe is: its class contract, its context and the result it returns."""

from __future__ import annotations

import logging
import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from watchkeeper.schema.checks import ProbeOptions


MetricKind = Literal["duration", "ratio", "bytes", "count", "number", "timestamp", "any"]
"""What a metric's number is: seconds, a ratio 0-1, bytes, a count of things, a plain
number, a Unix time in seconds, or `any` (its unit is known only at run time)."""

METRIC_KINDS: tuple[MetricKind, ...] = typing.get_args(MetricKind)


@dataclass(frozen=True, slots=True)
class Metric:
    r"""One metric a probe may report, e.g. `Metric("connect_time", "duration", "TCP connect")`.

    `labels` name the labels of its samples (`disk_usage` has `("path",)`). A metric whose
    names are known only at run time declares a regular expression as `pattern` instead of
    a `name`: `Metric(pattern=r"queue_\w+", kind="count", description="...")`.
    """

    name: str = ""
    kind: MetricKind = "number"
    description: str = ""
    labels: tuple[str, ...] = ()
    pattern: str = ""

    def __post_init__(self) -> None:
        if bool(self.name) == bool(self.pattern):
            raise ValueError("a Metric needs exactly one of `name` or `pattern`")
        if self.kind not in METRIC_KINDS:
            raise ValueError(
                f"metric {self.shown!r}: kind {self.kind!r} is not one of {', '.join(METRIC_KINDS)}"
            )
        if self.pattern:
            _compiled(self.pattern)  # a broken pattern fails where it is declared
        if isinstance(self.labels, str):
            raise ValueError(f"metric {self.shown!r}: labels must be a tuple of names")
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def shown(self) -> str:
        """The name, or the pattern as `/pattern/`."""
        return self.name or f"/{self.pattern}/"

    def matches(self, name: str) -> bool:
        """True when a reported metric name is this one (or matches its pattern)."""
        if self.name:
            return name == self.name
        return _compiled(self.pattern).fullmatch(name) is not None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(slots=True)
class Sample:
    """One instance of a labelled metric, e.g. disk_usage{path="/"} = 0.42."""

    name: str
    value: float
    labels: dict[str, str]


@dataclass(slots=True)
class Result:
    """The outcome of one probe run; metrics are numbers in base units."""

    ok: bool
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    duration: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def sample(self, name: str, value: float, **labels: str) -> None:
        """Add one instance of a labelled metric."""
        self.samples.append(Sample(name, float(value), labels))

    def flat_metrics(self) -> dict[str, float]:
        """Return plain and labelled metrics as one mapping (`disk_usage{path=/}`)."""
        flat = dict(self.metrics)
        for s in self.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            flat[f"{s.name}{{{labels}}}"] = s.value
        return flat


@dataclass(slots=True)
class ProbeContext:
    """What a probe gets besides its options, for one run of one check instance."""

    check: str
    """The check's name as written in monitor.yaml."""
    environment: str | None
    """The environment of this instance, or None."""
    timeout: float
    """Seconds this run may take; the engine cancels `check()` when they are up. Use a
    little less for a library's own timeout to report a precise message first."""
    base_dir: Path
    """The folder of monitor.yaml: relative paths in options are relative to it."""
    log: logging.Logger
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def instance(self) -> str:
        """`check@environment`, or the check's name."""
        return f"{self.check}@{self.environment}" if self.environment else self.check


@dataclass(slots=True)
class OpenContext:
    """What a probe's `open()` gets: where the config lives and a logger."""

    base_dir: Path
    log: logging.Logger


class Probe:
    """Base of probe plugins: a `type`, an `Options` model and `check()`.

    One probe object serves every check of its type. `open()` runs once before the first
    check (shared resources: an HTTP client, a connection pool per target), `close()` once
    at shutdown. `check()` is cancelled from outside when the check's timeout expires, so
    it must not swallow cancellation; blocking libraries run in `anyio.to_thread`.
    """

    type: ClassVar[str]
    Options: ClassVar[type[ProbeOptions]]
    scope: ClassVar[Literal["global", "host"]] = "global"
    """`host` probes watch the machine they run on and run on every replica."""
    passive: ClassVar[bool] = False
    """Passive probes (heartbeat, composite) are evaluated by the engine, not scheduled."""
    metrics: ClassVar[tuple[Metric, ...] | None] = None
    """Every metric `check()` may report. `validate` refuses thresholds on others; None
    (declares nothing) leaves thresholds on this probe unchecked, with a warning."""

    async def open(self, ctx: OpenContext) -> None:
        """Prepare shared resources before the first check."""

    async def check(self, options: Any, ctx: ProbeContext) -> Result:
        """Run one check and return its result."""
        raise NotImplementedError(f"probe {self.type!r} does not implement check()")

    async def close(self) -> None:
        """Release shared resources at shutdown."""


async def run_probe(probe: Probe, options: Any, ctx: ProbeContext) -> Result:
    """Run one check with its timeout enforced from outside; never raise.

    A probe's exception or overrun becomes a failed result naming what happened, so a
    broken plugin is that check's failure, never the daemon's.
    """
    import anyio

    start = anyio.current_time()
    try:
        # anyio.fail_after, without its generator wrapper (this runs for every check)
        with anyio.CancelScope(deadline=start + ctx.timeout) as scope:
            result = await probe.check(options, ctx)
        if scope.cancelled_caught and anyio.current_time() >= scope.deadline:
            raise TimeoutError
        if not isinstance(result, Result):
            result = Result(
                ok=False,
                message=f"probe {probe.type!r} returned {type(result).__name__}, not a Result",
            )
    except TimeoutError:
        result = Result(
            ok=False, message=f"timed out after {_seconds(ctx.timeout)}", details={"timeout": True}
        )
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:  # a probe's failure is the check's failure
        message = str(exc) or type(exc).__name__
        result = Result(
            ok=False,
            message=f"{type(exc).__name__}: {message}"
            if str(exc) and type(exc).__name__ not in message
            else message,
            details={"error": type(exc).__name__},
        )
        ctx.log.debug(
            "probe raised", exc_info=True, extra={"check": ctx.instance, "probe": probe.type}
        )
    result.duration = anyio.current_time() - start
    return result


def _seconds(value: float) -> str:
    from watchkeeper.schema.units import format_duration

    return format_duration(value)
