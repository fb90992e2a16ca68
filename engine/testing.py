"""Helpers for testing probes, ours and third-party ones, the way the engine runs them.

    from watchkeeper.engine.testing import check_once

    result = check_once("http", {"url": "http://127.0.0.1:8000/health"}, timeout=2)
    assert result.ok and result.metrics["response_time"] < 1

The options go through the probe's own `Options` model (unknown keys are errors, units
parse) and the run goes through the engine's timeout and error handling.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.plugins import registry
from watchkeeper.engine.probe import OpenContext, Probe, ProbeContext, Result, run_probe


def probe_class(probe_type: str) -> type[Probe]:
    """Return the installed probe class for a type name."""
    return registry().get("probe", probe_type)


def probe_options(probe_type: str, options: dict[str, Any]) -> Any:
    """Validate options with the probe's own Options model."""
    return probe_class(probe_type).Options.model_validate(options)


async def acheck_once(probe_type: str, options: dict[str, Any], *, timeout: float = 10.0,
                      check: str = "test", environment: str | None = None,
                      base_dir: Path | str = ".", labels: dict[str, str] | None = None,
                      probe: Probe | None = None) -> Result:
    """Open a probe, run one check through the engine's runner, close it."""
    probe = probe or probe_class(probe_type)()
    log = logging.getLogger(f"watchkeeper.test.{probe_type}")
    parsed = probe_options(probe_type, options)
    await probe.open(OpenContext(base_dir=Path(base_dir), log=log))
    try:
        ctx = ProbeContext(check=check, environment=environment, timeout=timeout,
                           base_dir=Path(base_dir), log=log, labels=labels or {})
        return await run_probe(probe, parsed, ctx)
    finally:
        with anyio.CancelScope(shield=True):
            await probe.close()


def check_once(probe_type: str, options: dict[str, Any], **kwargs: Any) -> Result:
    """Run `acheck_once` from synchronous test code."""
    return anyio.run(lambda: acheck_once(probe_type, options, **kwargs))
