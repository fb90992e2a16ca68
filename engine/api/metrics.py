"""Prometheus metrics of one daemon, in a registry of its own.

State (open alerts, outbox depth, lateness, backups) is read from the daemon when
Prometheus scrapes, by a custom collector; probe durations and results are counted as
they happen, through `runtime.result_handlers`, by probe type; deliveries through the
outbox's callbacks. Backups come from the store, so they are fetched (awaited) before each
scrape. The per-check series live in `check_series.py`, kept rendered between scrapes.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from watchkeeper.engine.api import views
from watchkeeper.engine.api.check_series import CheckSeries

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
ALERT_STATUSES = ("pending", "firing")
GZIP_FROM = 4096
"""Bodies at least this long are gzipped for a scraper that accepts it (Prometheus does)."""

# `*_created` series (when each counter and histogram came to be) double the series a
# scrape carries and tell nothing `watchkeeper_start_time_seconds` does not
disable_created_metrics()


class Metrics:
    """The metrics registry of one daemon, fed while it is attached."""

    def __init__(self, daemon: Any, refusals: Any = None):
        self.daemon = daemon
        self.refusals = refusals  # auth.Refusals of the API, when it serves
        self.registry = CollectorRegistry()
        self.durations = Histogram(
            "watchkeeper_probe_duration_seconds",
            "How long probe runs took, by probe type (all checks).",
            ["probe"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            "watchkeeper_probe_results",
            "Probe runs by probe type and outcome (ok = true/false; all checks).",
            ["probe", "ok"],
            registry=self.registry,
        )
        self.sent = Counter(
            "watchkeeper_notifications_sent",
            "Notices a receiver accepted, by notifier (since this process started).",
            ["notifier"],
            registry=self.registry,
        )
        self.gave_up = Counter(
            "watchkeeper_notifications_given_up",
            "Deliveries abandoned after `give_up_after`, by notifier.",
            ["notifier"],
            registry=self.registry,
        )
        self.backups: dict[str, Any] = {"jobs": {}}
        self.checks = CheckSeries(daemon, DURATION_BUCKETS)
        self.version = views.version()  # read from the package metadata: once
        self._probes: dict[tuple[str, bool], tuple[Any, Any]] = {}
        self.registry.register(_StateCollector(self))
        ProcessCollector(registry=self.registry)

    # -- feeding ----------------------------------------------------------------------------

    def attach(self) -> None:
        """Start counting results and deliveries."""
        self.daemon.runtime.result_handlers.append(self.observe)
        self.daemon.outbox.on_sent.append(self._sent)
        self.daemon.outbox.on_gave_up.append(self._gave_up)

    def detach(self) -> None:
        """Stop counting (the server stopped)."""
        for handlers, handler in (
            (self.daemon.runtime.result_handlers, self.observe),
            (self.daemon.outbox.on_sent, self._sent),
            (self.daemon.outbox.on_gave_up, self._gave_up),
        ):
            if handler in handlers:
                handlers.remove(handler)

    def observe(self, instance: Any, result: Any, at: float) -> None:
        """Count one probe result (a `runtime.result_handlers` listener)."""
        duration = max(0.0, float(result.duration))
        ok = bool(result.ok)
        children = self._probes.get((instance.probe_type, ok))
        if children is None:
            children = self._probes[(instance.probe_type, ok)] = (
                self.durations.labels(instance.probe_type),
                self.results.labels(instance.probe_type, "true" if ok else "false"),
            )
        children[0].observe(duration)
        children[1].inc()
        full = self.checks.full()
        if full:
            self.checks.observe(instance, ok, duration)
        if self.daemon.config.server.metrics != "off":
            # rendered now, a few microseconds a result, rather than all at once by a
            # scrape that finds thousands of new results (the first one finds them all)
            self.checks.warm(instance, full)

    async def _sent(self, delivery: Any, notice: Any) -> None:
        self.sent.labels(delivery.notifier).inc()

    async def _gave_up(self, delivery: Any) -> None:
        self.gave_up.labels(delivery.notifier).inc()

    # -- scraping ---------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetch what lives in the store; show every notifier, even before its first notice."""
        self.backups = await views.backups(self.daemon)
        for name in self.daemon.config.notifiers:
            self.sent.labels(name)
            self.gave_up.labels(name)

    async def exposition(self) -> bytes:
        """Return the Prometheus text exposition of everything."""
        await self.refresh()
        checks = await self.checks.exposition()
        return b"".join([generate_latest(self.registry), *checks])

    async def response(self, accept_encoding: str) -> tuple[bytes, dict[str, str]]:
        """Return the exposition and its headers, gzipped (off the event loop) when the
        scraper accepts it."""
        body = await self.exposition()
        if "gzip" not in accept_encoding.lower() or len(body) < GZIP_FROM:
            return body, {}
        import anyio.to_thread

        return await anyio.to_thread.run_sync(_gzip, body), {
            "content-encoding": "gzip",
            "vary": "accept-encoding",
        }


def _gzip(body: bytes) -> bytes:
    # zlib lets go of the GIL while it compresses: the event loop runs meanwhile
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    return packer.compress(body) + packer.flush()


class _StateCollector:
    """Read the daemon's state at scrape time."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # built at collect time; nothing to check for clashes up front

    def collect(self) -> Iterator[Metric]:
        daemon = self.metrics.daemon
        info = GaugeMetricFamily("watchkeeper_info", "The running watchkeeper.", labels=["version"])
        info.add_metric([self.metrics.version], 1)
        yield info
        started = GaugeMetricFamily(
            "watchkeeper_start_time_seconds", "When the daemon started (UNIX seconds)."
        )
        started.add_metric([], views.started_at(daemon))
        yield started

        alerts = GaugeMetricFamily(
            "watchkeeper_alerts",
            "Open alerts by severity and status.",
            labels=["severity", "status"],
        )
        counts: dict[tuple[str, str], int] = {
            (s, st): 0 for s in daemon.config.severities for st in ALERT_STATUSES
        }
        for alert in daemon.runtime.book.open.values():
            key = (alert.severity, alert.status)
            counts[key] = counts.get(key, 0) + 1
        for (severity, status), count in sorted(counts.items()):
            alerts.add_metric([severity, status], count)
        yield alerts

        outbox = daemon.outbox
        failed = CounterMetricFamily(
            "watchkeeper_notifications_failed", "Delivery attempts that failed (all notifiers)."
        )
        failed.add_metric([], outbox.failed_count)
        yield failed
        depth = GaugeMetricFamily("watchkeeper_outbox_depth", "Deliveries waiting in the outbox.")
        depth.add_metric([], views.outbox_state(daemon)["depth"])
        yield depth

        lateness = daemon.scheduler.lateness
        # a summary: quantiles over recent runs, count and sum over all of them
        name = "watchkeeper_scheduler_lateness_seconds"
        late = Metric(name, "How late runs started after their scheduled time.", "summary")
        late.add_sample(name, {"quantile": "0.5"}, lateness.quantile(0.5))
        late.add_sample(name, {"quantile": "0.99"}, lateness.quantile(0.99))
        late.add_sample(name + "_count", {}, lateness.count)
        late.add_sample(name + "_sum", {}, lateness.total)
        yield late
        worst = GaugeMetricFamily(
            "watchkeeper_scheduler_lateness_max_seconds", "The latest any run started."
        )
        worst.add_metric([], lateness.worst)
        yield worst
        skipped = CounterMetricFamily(
            "watchkeeper_checks_skipped",
            "Runs skipped because the previous run of the same job was still going.",
        )
        skipped.add_metric([], views.skipped(daemon))
        yield skipped

        age = GaugeMetricFamily(
            "watchkeeper_backup_age_seconds",
            "Seconds since the latest good backup of each job finished.",
            labels=["job"],
        )
        size = GaugeMetricFamily(
            "watchkeeper_backup_size_bytes",
            "Size of the latest good backup of each job.",
            labels=["job"],
        )
        now = time.time()
        for job, entry in self.metrics.backups.get("jobs", {}).items():
            good = entry.get("last_good")
            if good is None:
                continue
            finished = views._number(good.get("finished_at"))
            if finished is not None:
                age.add_metric([job], max(0.0, now - finished))
            if good.get("size_bytes") is not None:
                size.add_metric([job], good["size_bytes"])
        yield age
        yield size

        degraded = GaugeMetricFamily(
            "watchkeeper_store_degraded",
            "1 while the state store refuses writes (they wait in memory), else 0.",
        )
        degraded.add_metric([], 1 if daemon.writer.degraded else 0)
        yield degraded
        yield from self._refusals()
        pending = GaugeMetricFamily(
            "watchkeeper_store_pending_writes", "State writes buffered for the store."
        )
        pending.add_metric([], daemon.writer.pending())
        yield pending

    def _refusals(self) -> Iterator[Metric]:
        refusals = self.metrics.refusals
        if refusals is None:
            return
        denied = CounterMetricFamily(
            "watchkeeper_api_denied",
            "API calls refused for a missing or wrong token (401), or because their source "
            "failed too often (429).",
            labels=["status"],
        )
        for status, count in sorted(refusals.totals.items()):
            denied.add_metric([str(status)], count)
        yield denied
        sources = GaugeMetricFamily(
            "watchkeeper_api_denied_sources",
            "Sources of refused calls counted in the current minute (capped; the rest "
            "share one bucket).",
        )
        sources.add_metric([], len(refusals.tallies))
        yield sources
