"""Our adapter over obstore (still 0.x): the few object-store calls the s3 destination needs.

Everything obstore-specific lives here, imported lazily, so a new obstore release that
renames something is fixed in one file, and watchkeeper without the `s3` extra still loads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from watchkeeper.engine.backups.plugin import BackupError

INSTALL_HINT = "the s3 destination needs obstore: pip install 'watchkeeper[s3]'"


def _obstore() -> Any:
    try:
        import obstore
        import obstore.store
    except ImportError as exc:
        raise BackupError(INSTALL_HINT) from exc
    return obstore


class ObjectStore:
    """One bucket (and key prefix) of an S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        server_side_encryption: str | None = None,
        kms_key_id: str | None = None,
        allow_http: bool = False,
        part_size: int = 16 << 20,
        concurrency: int = 4,
    ):
        obstore = _obstore()
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        if session_token:
            config["session_token"] = session_token
        if server_side_encryption:
            config["server_side_encryption"] = server_side_encryption
        if kms_key_id:
            config["sse_kms_key_id"] = kms_key_id
        self.prefix = prefix
        self.part_size = part_size
        self.concurrency = concurrency
        self._obstore = obstore
        # the constructor also reads AWS_* variables (and instance roles), as the AWS tools
        # do; values given here win
        self.store = obstore.store.S3Store(
            bucket, config=config, client_options={"allow_http": allow_http}
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """Upload a stream; parts of `part_size` go up as a multipart upload.

        obstore aborts the multipart upload when the iterator raises, so a failed
        backup leaves no object behind.
        """
        await self._obstore.put_async(
            self.store,
            self._key(key),
            chunks,
            chunk_size=self.part_size,
            max_concurrency=self.concurrency,
        )

    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Iterate an object's bytes; FileNotFoundError when it does not exist."""
        result = await self._obstore.get_async(self.store, self._key(key))
        async for chunk in result.stream(min_chunk_size=chunk_size):
            yield bytes(chunk)

    async def list(self, prefix: str = "") -> list[str]:
        """Return the keys (without our prefix) starting with `prefix`."""
        found: list[str] = []
        stream = self._obstore.list(self.store, prefix=self._key(prefix) or None)
        async for batch in stream:
            for meta in batch:
                path = meta["path"]
                if path.startswith(self.prefix):
                    found.append(path[len(self.prefix) :])
        return sorted(k for k in found if k.startswith(prefix))

    async def delete(self, keys: list[str]) -> None:
        """Delete objects (missing ones are ignored by S3)."""
        if keys:
            await self._obstore.delete_async(self.store, [self._key(k) for k in keys])
