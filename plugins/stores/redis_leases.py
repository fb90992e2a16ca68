"""Leases in the redis state store: granted, renewed and listed by scripts timed by the
server's clock, each grant with a fencing epoch from one store-wide counter.

Part of `RedisStore` (redis_store.py).
"""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.state.store import Lease
from watchkeeper.plugins.stores.redis_wire import _dumps, _loads


class RedisLeases:
    """acquire, release, leases: hashes of holder, epoch, expiry and data by lease name.

    A part of `RedisStore` (redis_store.py), which supplies the prefix, the keys, the
    registered scripts and the calls that reach the server (`_run`, `_script`).
    """

    async def acquire(
        self, name: str, holder: str, ttl: float, data: dict[str, Any] | None = None
    ) -> Lease | None:
        text = "" if data is None else _dumps(data)
        keys = [*self._lease_keys(), f"{self.prefix}epoch"]
        args = [name, holder, repr(float(ttl)), "0" if data is None else "1", text]
        granted = await self._script("acquire", keys, args)
        if granted is None:
            return None
        epoch, expires_at, stored = granted
        return Lease(name, holder, int(epoch), float(expires_at), _loads(stored))

    async def release(self, name: str, holder: str) -> None:
        await self._script("release", self._lease_keys(), [name, holder])

    async def leases(self, prefix: str = "") -> list[Lease]:
        flat = await self._script("leases", self._lease_keys(), [prefix])
        found = [
            Lease(flat[i], flat[i + 1], int(flat[i + 2]), float(flat[i + 3]), _loads(flat[i + 4]))
            for i in range(0, len(flat), 5)
        ]
        return sorted(found, key=lambda lease: lease.name)
