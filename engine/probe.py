"""What a probe is: its class contract, its context and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from watchkeeper.schema.checks import ProbeOptions


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

    async def open(self, ctx: Any) -> None:
        """Prepare shared resources before the first check."""

    async def check(self, options: Any, ctx: Any) -> Result:
        """Run one check and return its result."""
        raise NotImplementedError(f"probe {self.type!r} does not implement check()")

    async def close(self) -> None:
        """Release shared resources at shutdown."""
