"""Wall-clock time for the engine, injectable so tests can run days in milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio


class Clock:
    """The real clock: `now()` in UNIX seconds, `sleep_until()` on the event loop."""

    def now(self) -> float:
        return time.time()

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    async def sleep_until(self, when: float) -> None:
        """Sleep until wall-clock time `when` (returns at once if it has passed)."""
        delay = when - self.now()
        if delay > 0:
            await anyio.sleep(delay)


class FakeClock(Clock):
    """A clock that only moves when told to, or when every sleeper waits on it.

    `sleep_until` returns as soon as the fake time reaches the target; `advance()` moves
    time forward and wakes sleepers in time order, so a scheduler under test runs through
    a week of fire times as fast as it can process them.
    """

    def __init__(self, start: float | datetime):
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._changed = anyio.Event()
        self._sleepers: list[float] = []

    def now(self) -> float:
        return self._now

    def set(self, when: float | datetime) -> None:
        self._now = when.timestamp() if isinstance(when, datetime) else float(when)
        self._changed.set()
        self._changed = anyio.Event()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    async def sleep_until(self, when: float) -> None:
        self._sleepers.append(when)
        try:
            while self._now < when:
                await self._changed.wait()
        finally:
            self._sleepers.remove(when)

    async def run_until(self, end: float | datetime) -> None:
        """Jump from one sleeper's wake time to the next until `end`, letting every task
        finish its work (all blocked) before each jump."""
        end = end.timestamp() if isinstance(end, datetime) else float(end)
        while True:
            await _all_blocked()
            upcoming = [t for t in self._sleepers if t > self._now]
            target = min(upcoming, default=end)
            if target >= end:
                self.set(end)
                await _all_blocked()
                return
            self.set(target)


async def _all_blocked() -> None:
    """Yield until every other task waits on something (anyio's own helper sleeps 100 ms
    between looks, which turns a simulated week into minutes)."""
    import asyncio

    this = asyncio.current_task()
    for _ in range(100_000):
        waiting = all(
            task is this or (task._fut_waiter is not None and not task._fut_waiter.done())
            for task in asyncio.all_tasks()
        )
        if waiting:
            return
        await asyncio.sleep(0)
