"""Time the hot paths of engine/schedule/timetable.py: python bench/timetable.py"""

import time
from datetime import UTC, datetime, timedelta
from itertools import islice

from watchkeeper.engine.schedule import timetable


def timed(label: str, fn) -> None:
    began = time.perf_counter()
    fn()
    print(f"{label:<58} {1000 * (time.perf_counter() - began):8.1f} ms")


def main() -> None:
    start = datetime(2026, 10, 20, tzinfo=UTC)  # runs through Berlin's fall-back night
    berlin = timetable.CronSeries("*/1 * * * *", "Europe/Berlin", start=start)
    timed("10,000 fires of */1 * * * * in Europe/Berlin", lambda: list(islice(berlin, 10_000)))
    timed(
        "10,000 fires of */1 * * * * in UTC",
        lambda: list(islice(timetable.CronSeries("*/1 * * * *", start=start), 10_000)),
    )
    timed(
        "10,000 fires of an every: 60s series",
        lambda: list(islice(timetable.EverySeries(60, key="k", start=start), 10_000)),
    )
    timed(
        "1,000 series built (one croniter parse each)",
        lambda: [timetable.CronSeries(f"{i % 60} 2 * * *", start=start) for i in range(1000)],
    )
    exprs = [f"{i % 60} {i // 60 % 24} {i // 1440 + 1} * *" for i in range(10_000)]
    assert len(set(exprs)) == 10_000
    timed(
        "cron_error on 10,000 checks, 10,000 distinct expressions",
        lambda: [timetable.cron_error(e) for e in exprs],
    )
    timed(
        "cron_error on the same 10,000 again (cached)",
        lambda: [timetable.cron_error(e) for e in exprs],
    )
    before = [start + timedelta(hours=i) for i in range(1000)]
    timed(
        "1,000 previous_fire calls",
        lambda: [timetable.previous_fire("0 2 * * *", "Europe/Berlin", t) for t in before],
    )


if __name__ == "__main__":
    main()
