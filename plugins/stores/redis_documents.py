"""Documents in the redis state store: one hash per collection, fenced writes by epoch.

Part of `RedisStore` (redis_store.py).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from watchkeeper.engine.state.store import FencedWrite
from watchkeeper.plugins.stores.redis_wire import _dumps, _loads


class RedisDocuments:
    """put, get, get_all, delete, insert_once: a collection is a hash of JSON documents.

    A part of `RedisStore` (redis_store.py), which supplies the prefix, the keys, the
    registered scripts and the calls that reach the server (`_run`, `_script`).
    """

    async def put(
        self, collection: str, docs: dict[str, dict[str, Any]], *, epoch: int | None = None
    ) -> None:
        if not docs:
            self._check_open()
            return
        texts = {key: _dumps(doc) for key, doc in docs.items()}
        if epoch is None:

            async def put(client: aioredis.Redis) -> None:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.hset(self._doc_key(collection), mapping=texts)
                    pipe.sadd(f"{self.prefix}collections", collection)
                    await pipe.execute()

            await self._run(put)
            return
        args: list[Any] = [int(epoch), collection]
        for key, text in texts.items():
            args += [key, text]
        keys = [self._doc_key(collection), self._epoch_key(collection)]
        keys.append(f"{self.prefix}collections")
        fenced = await self._script("put_fenced", keys, args)
        if fenced:
            raise FencedWrite(collection, sorted(fenced))

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        text = await self._run(lambda client: client.hget(self._doc_key(collection), key))
        return None if text is None else _loads(text)

    async def get_all(self, collection: str) -> dict[str, dict[str, Any]]:
        found = await self._run(lambda client: client.hgetall(self._doc_key(collection)))
        return {key: _loads(text) for key, text in found.items()}

    async def delete(self, collection: str, keys: list[str], *, epoch: int | None = None) -> None:
        if not keys:
            self._check_open()
            return
        keys = list(dict.fromkeys(keys))
        if epoch is None:

            async def delete(client: aioredis.Redis) -> None:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.hdel(self._doc_key(collection), *keys)
                    pipe.hdel(self._epoch_key(collection), *keys)
                    await pipe.execute()

            await self._run(delete)
            return
        hashes = [self._doc_key(collection), self._epoch_key(collection)]
        fenced = await self._script("delete_fenced", hashes, [int(epoch), *keys])
        if fenced:
            raise FencedWrite(collection, sorted(fenced))

    async def insert_once(self, collection: str, key: str, doc: dict[str, Any]) -> bool:
        text = _dumps(doc)

        async def insert_once(client: aioredis.Redis) -> bool:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(self._doc_key(collection), key, text)
                pipe.sadd(f"{self.prefix}collections", collection)
                inserted, _ = await pipe.execute()
            return bool(inserted)

        return await self._run(insert_once)
