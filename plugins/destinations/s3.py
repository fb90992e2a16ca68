"""The `s3` backup destination: AWS S3 and S3-compatible servers (optional extra)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field, field_validator

from watchkeeper.engine.backups.manifest import check_key
from watchkeeper.engine.backups.plugin import BackupDestination
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import DestinationOptions
from watchkeeper.schema.base import Secret
from watchkeeper.schema.units import Size

MIN_PART = 5 * 1024 * 1024


class S3Options(DestinationOptions):
    """Write backups to a bucket (install watchkeeper[s3])."""

    bucket: str = Field(description="Bucket name.")
    prefix: str = Field("", description="Key prefix, e.g. infinite-idea/.")
    region: str | None = Field(None, description="Region (default: from the environment).")
    endpoint_url: str | None = Field(
        None, description="S3-compatible server URL (MinIO, SeaweedFS, R2); empty = AWS."
    )
    access_key_id: Secret | None = Field(
        None, description="Access key (default: from the environment / instance role)."
    )
    secret_access_key: Secret | None = Field(None, description="Secret key.")
    server_side_encryption: Literal["AES256", "aws:kms"] | None = Field(
        None, description="Ask the server to encrypt objects at rest."
    )
    kms_key_id: str | None = Field(None, description="KMS key for aws:kms.")
    allow_http: bool = Field(False, description="Allow a plain-HTTP endpoint (local servers).")
    part_size: Size = Field(
        16 * 1024 * 1024,
        description="Size of one part of a multipart upload (at least 5MiB, S3's minimum); "
        "files larger than this are uploaded in parts.",
    )
    upload_concurrency: int = Field(
        4,
        ge=1,
        le=32,
        description="Parts uploaded at once; memory used is about part_size times this.",
    )

    @field_validator("part_size")
    @classmethod
    def _s3_minimum(cls, value: int) -> int:
        if value < MIN_PART:
            raise ValueError(f"expected at least 5MiB ({MIN_PART} bytes), S3's smallest part")
        return value


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


class S3Destination(BackupDestination):
    type = "s3"
    Options = S3Options
    _client: Any = None

    def describe(self) -> str:
        where = f"s3://{self.options.bucket}/{self.options.prefix}"
        return f"{where} at {self.options.endpoint_url}" if self.options.endpoint_url else where

    @property
    def client(self) -> Any:
        if self._client is None:
            from watchkeeper.plugins.destinations.objectstore import ObjectStore

            o = self.options
            self._client = ObjectStore(
                o.bucket,
                prefix=o.prefix,
                endpoint=o.endpoint_url or None,
                region=o.region,
                access_key_id=_secret(o.access_key_id),
                secret_access_key=_secret(o.secret_access_key),
                server_side_encryption=o.server_side_encryption,
                kms_key_id=o.kms_key_id,
                allow_http=o.allow_http,
                part_size=int(o.part_size),
                concurrency=o.upload_concurrency,
            )
        return self._client

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.client.put(check_key(key), chunks)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        async for chunk in self.client.get(check_key(key)):
            yield chunk

    async def list(self, prefix: str = "") -> list[str]:
        return await self.client.list(prefix)

    async def delete(self, keys: list[str]) -> None:
        await self.client.delete([check_key(k) for k in keys])


@hookimpl
def watchkeeper_backup_destinations():
    return [S3Destination]
