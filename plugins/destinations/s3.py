"""The `s3` backup destination: AWS S3 and S3-compatible servers (optional extra)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchkeeper.engine.backup_plugin import BackupDestination
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import DestinationOptions
from watchkeeper.schema.base import Secret


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


class S3Destination(BackupDestination):
    type = "s3"
    Options = S3Options


@hookimpl
def watchkeeper_backup_destinations():
    return [S3Destination]
