"""Daily rollups: equal to the raw figures they replace, idempotent, and enough on their own
once raw results are past retention. Histories are fabricated straight into a real SQLite
store, so every expected figure below is worked out by hand from how they were made.
"""

from __future__ import annotations

import math
import random
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.daemon import create_store
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.state.rollups import (
    DAY,
    DONE,
    STREAM,
    Aggregate,
    History,
    Sketch,
    exact_quantile,
    latest_rollups,
    roll_up,
    roll_up_day,
)
from watchkeeper.engine.state.store import Row

pytestmark = pytest.mark.anyio

T0 = 1_772_323_200.0  # 2026-03-01T00:00:00Z, a UTC midnight
MINUTE = 60.0


@pytest.fixture
def anyio_backend():
    return "asyncio"


# -- fabricated history (shared with test_slo.py and test_report.py) -----------------------


def latency(i: int) -> float:
    """Response time of run i: 90% 100ms, 8% 800ms, 2% 2.5s, by i mod 50.

    Cumulative shares are 90% and 98%, so p50 = 0.1, p95 = 0.8 and p99 = 2.5, and they
    stay so when a few runs are taken out.
    """
    r = i % 50
    return 0.1 if r < 45 else (0.8 if r < 49 else 2.5)


def result(i: int, ok: bool = True) -> dict[str, Any]:
    """The stored data of run i: a failed run has no response_time (it got no answer)."""
    if not ok:
        return {"ok": False, "duration": 10.0, "metrics": {}, "message": "timed out"}
    return {"ok": True, "duration": latency(i) + 0.01, "metrics": {"response_time": latency(i)}}


async def fabricate(
    store: Any,
    key: str,
    start: float,
    count: int,
    *,
    step: float = MINUTE,
    failing: set[int] | frozenset[int] = frozenset(),
    make=None,
) -> None:
    """Append `count` runs of `key` at start + i·step; runs in `failing` fail."""
    make = make or (lambda i, ok: result(i, ok))
    batch: list[Row] = []
    for i in range(count):
        batch.append(Row(key, start + i * step, make(i, i not in failing)))
        if len(batch) >= 20_000:
            await store.append("results", batch)
            batch = []
    if batch:
        await store.append("results", batch)


def config_text(state: str = "state.db", extra: str = "", retention: str = "30d") -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        state: {{type: sqlite, path: {state}, retention: {retention}}}
        engine: {{workers: 0}}
        checks:
          api: {{probe: http, url: "http://127.0.0.1:9/health", schedule: {{every: 1m}}}}
        """
    ) + textwrap.dedent(extra)


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    return load_config(path)


def open_store(validation: Any) -> Any:
    return create_store(validation.config, registry(), validation.base_dir)


async def eventually(condition, timeout: float = 10.0) -> None:
    """Wait until an async condition holds (a daemon task's work, done in store threads)."""
    import anyio

    with anyio.fail_after(timeout):
        while not await condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def iso(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


# -- the sketch ---------------------------------------------------------------------------


def test_sketch_quantiles_are_within_one_percent_and_merge():
    rng = random.Random(7)
    values = [rng.lognormvariate(-1.5, 1.0) for _ in range(20_000)] + [0.0] * 50
    first, second = Sketch(), Sketch()
    for n, value in enumerate(values):
        (first if n % 2 else second).add(value)
    first.merge(Sketch.from_data(second.to_data()))  # through the stored form
    ordered = sorted(values)
    for q in (0.001, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = exact_quantile(ordered, q)
        assert first.quantile(q) == pytest.approx(exact, rel=0.01, abs=1e-9), q
    assert Sketch().quantile(0.5) is None


# -- rollups ------------------------------------------------------------------------------


async def test_rollups_of_completed_days_equal_the_raw_figures(tmp_path):
    # a mute window over 02:00-04:00 of day 1 takes 120 runs out, 60 of them failed
    mute_start, mute_end = T0 + DAY + 2 * 3600, T0 + DAY + 4 * 3600
    validation = load(
        tmp_path,
        config_text(
            extra=f"""\
            slos:
              latency: {{check: api, metric: response_time, below: 2s, objective: 97%}}
            maintenance:
              - {{name: upgrade, start: "{iso(mute_start)}", end: "{iso(mute_end)}", checks: [api]}}
            """
        ),
    )
    store = open_store(validation)
    await store.open()
    try:
        # three days at one run a minute; day 0 has 7 failures, day 1 fails 60 times
        # inside the mute window and 3 times outside it
        failing = {100, 101, 102, 103, 104, 105, 106}
        failing |= {1440 + 120 + n for n in range(60)} | {1440 + 600, 1440 + 601, 1440 + 602}
        await fabricate(store, "api", T0, 3 * 1440, failing=failing)
        now = T0 + 2 * DAY + 12 * 3600  # noon of day 2: days 0 and 1 are complete
        done = await roll_up(store, validation.config, now=now)
        assert done == ["2026-03-01", "2026-03-02"]
        assert (await store.get(*DONE))["through"] == T0 + 2 * DAY
        rows = await store.read(STREAM, "api")
        assert [r.at for r in rows] == [T0, T0 + DAY]
        day0, day1 = (r.data for r in rows)

        # worked out by hand: day 0 has 1440 runs, 7 failed; 1433 answered, of which
        # i mod 50 = 49 (2.5s) for 28 runs (none failed), 45..48 (0.8s) for 112
        assert day0["day"] == "2026-03-01"
        assert (day0["runs"], day0["failures"], day0["muted_runs"]) == (1440, 7, 0)
        assert day0["uptime"] == pytest.approx(1 - 7 / 1440)
        assert day0["latency"] == {
            "p50": 0.1, "p95": 0.8, "p99": 2.5, "samples": 1433, "source": "response_time"
        }  # fmt: skip
        assert day0["slo"] == {"response_time<=2.0": {"good": 1433 - 28, "bad": 28}}
        rt = day0["metrics"]["response_time"]
        assert (rt["count"], rt["min"], rt["max"]) == (1433, 0.1, 2.5)
        # day 1: the 120 muted runs (i = 1560..1679) count apart, their 60 failures too;
        # of 1320 counted runs 3 failed; 2.5s runs: 29 in the day (1449..2849) minus the
        # 2 muted (1599, 1649)
        assert (day1["runs"], day1["failures"]) == (1320, 3)
        assert (day1["muted_runs"], day1["muted_failures"]) == (120, 60)
        assert day1["slo"] == {"response_time<=2.0": {"good": 1317 - 27, "bad": 27}}

        # and a History reading only raw results gives the same figures for each day
        raw = History(store, validation.config)  # not refreshed: knows of no rollups
        rolled = History(store, validation.config)
        await rolled.refresh()
        for day, data in ((T0, day0), (T0 + DAY, day1)):
            from_raw = await raw.aggregate("api", day, day + DAY, now=now)
            from_rollup = await rolled.aggregate("api", day, day + DAY, now=now)
            assert from_raw.exact
            assert not from_rollup.exact
            for agg in (from_raw, from_rollup):
                assert (agg.runs, agg.failures, agg.muted_runs) == (
                    data["runs"], data["failures"], data["muted_runs"]
                )  # fmt: skip
                assert agg.slo == {s: [c["good"], c["bad"]] for s, c in data["slo"].items()}
                stat = agg.metric_stats()["response_time"]
                assert stat["avg"] == pytest.approx(data["metrics"]["response_time"]["avg"])
            assert from_raw.percentiles() == {k: data["latency"][k] for k in ("p50", "p95", "p99")}
            for name, value in from_rollup.percentiles().items():
                assert value == pytest.approx(data["latency"][name], rel=0.01)
        assert rolled.rows_read == 2  # the two rollup rows, no raw result

        # the status page's daily bars: two rolled-up days in one read, then today's raw
        bars = History(store, validation.config)
        await bars.refresh()
        daily = await bars.daily("api", T0, now, now=now)
        assert [(day, agg.runs, agg.failures) for day, agg in daily] == [
            ("2026-03-01", 1440, 7), ("2026-03-02", 1320, 3), ("2026-03-03", 720, 0)
        ]  # fmt: skip
        assert bars.rows_read == 2 + 720
    finally:
        await store.close()


async def test_rolling_up_is_idempotent_and_a_recomputed_day_replaces_the_old(tmp_path):
    validation = load(tmp_path, config_text())
    store = open_store(validation)
    await store.open()
    try:
        await fabricate(store, "api", T0, 2 * 1440, failing={10})
        now = T0 + DAY + 3600
        assert await roll_up(store, validation.config, now=now) == ["2026-03-01"]
        assert await roll_up(store, validation.config, now=now + 60) == []
        # too early: day 1 ends at T0 + 2d and settles for ten minutes after
        assert await roll_up(store, validation.config, now=T0 + 2 * DAY + 300) == []
        assert len(await store.read(STREAM)) == 1

        # a late result for day 0, then a recomputation of that day: the newer row wins
        await store.append("results", [Row("api", T0 + 30.0, result(0, ok=False))])
        assert await roll_up_day(store, validation.config, T0, now=now + 120) == 1
        rows = await store.read(STREAM, "api")
        assert len(rows) == 2
        assert latest_rollups(rows)[T0]["runs"] == 1441
        history = History(store, validation.config)
        await history.refresh()
        agg = await history.aggregate("api", T0, T0 + DAY, now=now)
        assert (agg.runs, agg.failures) == (1441, 2)
    finally:
        await store.close()


async def test_a_new_metric_slo_re_rolls_the_days_raw_results_still_cover(tmp_path):
    validation = load(tmp_path, config_text(retention="2d"))
    store = open_store(validation)
    await store.open()
    try:
        await fabricate(store, "api", T0, 4 * 1440)
        now = T0 + 4 * DAY + 3600
        assert len(await roll_up(store, validation.config, now=now)) == 4
        assert (await store.read(STREAM, "api"))[-1].data["slo"] == {}

        validation = load(
            tmp_path,
            config_text(
                retention="2d",
                extra="""\
                slos:
                  latency: {check: api, metric: response_time, below: 1s, objective: 97%}
                """,
            ),
        )
        # raw results reach back to day 2, 01:00: only day 3 is whole in them and is
        # re-rolled (its 2.5s runs: i = 4349..5749, 29 of them); the others keep what they had
        assert await roll_up(store, validation.config, now=now) == ["2026-03-04"]
        latest = latest_rollups(await store.read(STREAM, "api"))
        assert latest[T0 + 3 * DAY]["slo"] == {"response_time<=1.0": {"good": 1411, "bad": 29}}
        assert latest[T0 + 2 * DAY]["slo"] == {}
    finally:
        await store.close()


async def test_rollups_beyond_raw_retention_still_give_the_90_day_uptime(tmp_path):
    validation = load(
        tmp_path,
        config_text(
            extra="""\
            slos:
              latency: {check: api, metric: response_time, below: 2s, objective: 97%}
            """
        ),
    )
    store = open_store(validation)
    await store.open()
    try:
        # 90 days at one run every 5 minutes (288 a day); 45 failures spread over them
        failing = {n * 571 for n in range(45)}
        runs = 90 * 288
        await fabricate(store, "api", T0, runs, step=300.0, failing=failing)
        now = T0 + 90 * DAY  # midnight: the 90-day window is whole days
        before = await History(store, validation.config).aggregate("api", now - 90 * DAY, now)
        assert (before.runs, before.failures) == (runs, 45)
        assert before.uptime == pytest.approx(1 - 45 / 25920)

        assert len(await roll_up(store, validation.config, now=now)) == 89  # day 89 settles
        trimmed = await store.trim("results", now - 30 * DAY)
        assert trimmed == 60 * 288
        history = History(store, validation.config)
        await history.refresh()
        after = await history.aggregate("api", now - 90 * DAY, now, now=now)
        assert (after.runs, after.failures) == (runs, 45)
        assert after.uptime == before.uptime
        assert after.slo == before.slo
        assert after.percentiles()["p95"] == pytest.approx(0.8, rel=0.01)
        assert history.rows_read == 89 + 288  # 89 rollup rows and the last day's raw runs

        # a window starting inside a day past raw retention takes that whole day
        widened = await history.aggregate("api", now - 89.5 * DAY, now, now=now)
        assert widened.runs == runs
    finally:
        await store.close()


async def test_rollups_are_pruned_after_their_retention(tmp_path):
    validation = load(tmp_path, config_text().replace("retention: 30d", "rollup_retention: 5d"))
    store = open_store(validation)
    await store.open()
    try:
        await fabricate(store, "api", T0, 10 * 24, step=3600.0)
        now = T0 + 10 * DAY + 3600
        assert len(await roll_up(store, validation.config, now=now)) == 10
        kept = await store.read(STREAM, "api")
        assert [r.at for r in kept] == [T0 + d * DAY for d in range(6, 10)]
    finally:
        await store.close()


async def test_hours_are_cached_and_only_the_hour_under_way_is_read_again(tmp_path):
    validation = load(tmp_path, config_text())
    store = open_store(validation)
    await store.open()
    try:
        await fabricate(store, "api", T0, 6 * 60)
        history = History(store, validation.config, cache_hours=True)
        await history.refresh()
        now = T0 + 5 * 3600 + 1800
        first = await history.aggregate("api", T0, now, now=now)
        assert first.runs == 330
        assert history.rows_read == 330
        again = await history.aggregate("api", T0, now + 60, now=now + 60)
        assert again.runs == 331
        assert history.rows_read == 330 + 31  # the half hour under way, read again
    finally:
        await store.close()


def test_aggregate_counts_muted_runs_apart_and_ignores_non_numbers():
    agg = Aggregate()
    agg.add(1.0, {"ok": True, "duration": 0.5, "metrics": {"hit_rate": 0.9, "up": True}}, False, [])
    agg.add(2.0, {"ok": False, "duration": 3.0, "metrics": {"hit_rate": 0.5}}, True, [])
    agg.add(3.0, {"ok": True, "duration": 0.25, "metrics": {"hit_rate": 0.7}}, False, [])
    assert (agg.runs, agg.failures, agg.muted_runs, agg.muted_failures) == (2, 0, 1, 1)
    assert agg.metric_stats() == {
        "hit_rate": {"avg": pytest.approx(0.8), "min": 0.7, "max": 0.9, "samples": 2}
    }
    assert agg.latency_source == "duration"
    assert agg.percentiles() == {"p50": 0.25, "p95": 0.5, "p99": 0.5}
    assert (agg.first_at, agg.last_at) == (1.0, 3.0)
    assert math.isclose(agg.uptime, 1.0)


async def test_the_daemon_task_rolls_up_at_start_and_then_every_interval(tmp_path):
    import anyio

    from watchkeeper.engine.alerting.maintenance import Maintenance
    from watchkeeper.engine.schedule.clock import FakeClock
    from watchkeeper.engine.state import rollups

    validation = load(tmp_path, config_text())
    store = open_store(validation)
    await store.open()
    clock = FakeClock(T0 + DAY + 3600)
    daemon = SimpleNamespace(
        store=store, config=validation.config, clock=clock,
        maintenance=Maintenance(validation.config), runtime=None,
    )  # fmt: skip
    try:
        await fabricate(store, "api", T0, 3 * 1440)
        async with anyio.create_task_group() as tg:
            await tg.start(rollups.run, daemon)
            await eventually(lambda: store.get(*DONE))
            assert (await store.get(*DONE))["through"] == T0 + DAY
            await clock.run_until(T0 + 2 * DAY + 3600)  # a day later, a few rounds on

            async def next_day() -> bool:
                return (await store.get(*DONE))["through"] == T0 + 2 * DAY

            await eventually(next_day)
            tg.cancel_scope.cancel()
    finally:
        await store.close()


@pytest.mark.parametrize(("retention", "refused"), [("1d", True), ("47h", True), ("2d", False)])
def test_a_retention_too_short_for_the_day_rollup_is_refused(cli, tmp_path, retention, refused):
    """A day's rollup is made from its raw results once the day is over: a retention
    shorter than that would prune them first, and the day's uptime would be lost."""
    (tmp_path / "monitor.yaml").write_text(config_text(retention=retention))
    result = cli("validate")
    assert (result.code != 0) == refused, result.output
    if refused:
        assert "monitor.yaml:2:" in result.output
        assert "state.retention: must be at least 2d" in result.output
