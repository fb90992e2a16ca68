"""Rows in the redis state store: one sorted set per (stream, key), scored by row time.

Trimming old rows is housekeeping, in redis_store.py. Part of `RedisStore`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as aioredis

from watchkeeper.engine.state.store import Row
from watchkeeper.plugins.stores.redis_wire import _dumps, _loads

UID_LENGTH = 24


class RedisRows:
    """append, read, stream_keys: rows are members of a sorted set, a unique id then JSON.

    A part of `RedisStore` (redis_store.py), which supplies the prefix, the keys, the
    registered scripts and the calls that reach the server (`_run`, `_script`).
    """

    async def append(self, stream: str, rows: list[Row]) -> None:
        if not rows:
            self._check_open()
            return
        by_key: dict[str, dict[str, float]] = {}
        for row in rows:
            at = float(row.at)
            if not math.isfinite(at):
                raise ValueError(f"row time must be a finite number, not {row.at!r}")
            by_key.setdefault(row.key, {})[self._uid() + _dumps(row.data)] = at

        async def append(client: aioredis.Redis) -> None:
            async with client.pipeline(transaction=True) as pipe:
                for key, members in by_key.items():
                    pipe.zadd(self._rows_key(stream, key), members)
                pipe.sadd(self._keys_key(stream), *by_key)
                pipe.hincrby(f"{self.prefix}rowcount", stream, len(rows))
                await pipe.execute()

        await self._run(append)

    async def read(
        self,
        stream: str,
        key: str | None = None,
        *,
        since: float = 0.0,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Row]:
        if limit is not None and limit <= 0:
            self._check_open()
            return []
        low = repr(float(since))
        high = "+inf" if until is None else f"({float(until)!r}"
        start, num = (0, limit) if limit is not None else (None, None)

        def query(target: Any, name: str) -> Any:
            if newest_first:
                return target.zrevrangebyscore(name, high, low, start, num, withscores=True)
            return target.zrangebyscore(name, low, high, start, num, withscores=True)

        if key is not None:
            found = await self._run(lambda client: query(client, self._rows_key(stream, key)))
            return [Row(key, at, _loads(member[UID_LENGTH:])) for member, at in found]

        async def read_all(client: aioredis.Redis) -> list[tuple[str, list]]:
            keys = sorted(await client.smembers(self._keys_key(stream)))
            if not keys:
                return []
            self.round_trips += 1
            async with client.pipeline(transaction=False) as pipe:
                for name in keys:
                    query(pipe, self._rows_key(stream, name))
                return list(zip(keys, await pipe.execute(), strict=True))

        rows = [
            Row(name, at, _loads(member[UID_LENGTH:]))
            for name, found in await self._run(read_all)
            for member, at in found
        ]
        rows.sort(key=lambda row: row.at, reverse=newest_first)
        return rows if limit is None else rows[:limit]

    async def stream_keys(self, stream: str) -> list[str]:
        return list(await self._run(lambda client: client.smembers(self._keys_key(stream))))

    def _uid(self) -> str:
        """Return a unique, fixed-length row id: increasing nanoseconds, then our tag."""
        self._last_uid = max(self._last_uid + 1, time.time_ns())
        return f"{self._last_uid:016x}{self._tag}"
