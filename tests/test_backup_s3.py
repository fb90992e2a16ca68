"""The s3 destination against an S3-compatible server on loopback (see tests/s3_server.py):
a multipart upload of a file larger than the part size, server-side encryption, verify
catching a tampered object, retention deleting objects, listing from the bucket alone,
and a missing bucket making the job partial while the local copy is kept.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from tests.s3_server import s3_server  # noqa: F401  (the fixture)
from tests.test_backup_service import at, open_backups

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PART = 5 * 1024 * 1024


def config(server, bucket: str, *, extra_dest: str = "", job_extra: str = "") -> str:
    dest = server.destination_yaml(bucket, prefix="app/", part_size="5MiB", **_extra(extra_dest))
    return (
        textwrap.dedent(
            f"""
        version: 1
        state: {{type: sqlite, path: state.db}}
        backups:
          destinations:
            local: {{type: local, path: backups}}
            cloud: {dest}
          jobs:
            files:
              source: {{type: files, paths: [data/]}}
              schedule: {{cron: "0 2 * * *"}}
              to: [local, cloud]
        """
        )
        + job_extra
    )


def _extra(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


@pytest.fixture
def data(tmp_path):
    (tmp_path / "data").mkdir()
    # incompressible, so the archive itself is larger than two parts
    (tmp_path / "data" / "random.bin").write_bytes(os.urandom(2 * PART + 123_457))
    (tmp_path / "data" / "small.txt").write_text("hello\n")
    return tmp_path


async def test_s3_round_trip_with_multipart_and_server_side_encryption(data, s3_server):  # noqa: F811
    bucket = s3_server.new_bucket()
    h = await open_backups(
        data, config(s3_server, bucket, extra_dest="server_side_encryption=AES256")
    )
    try:
        entry = await h.backups.run_job("files")
        assert entry["status"] == "ok", entry["error"]
        assert entry["destinations"] == ["local", "cloud"]
        folder = f"app/files/{entry['id']}/"
        assert s3_server.keys(bucket) == sorted(
            folder + n for n in ("SHA256SUMS", "files.tar.gz", "manifest.json")
        )
        head = s3_server.client().head_object(Bucket=bucket, Key=folder + "files.tar.gz")
        assert head["ContentLength"] == entry["size_bytes"] > 2 * PART
        assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
        assert head.get("ServerSideEncryption") == "AES256"
        _, findings = await h.backups.verify(entry["id"], only="cloud")
        assert findings
        assert all(f.ok for f in findings), findings
        result = await h.backups.restore(entry["id"], str(data / "r"), only="cloud")
        assert result["from"] == "cloud"
        assert (data / "r" / "data" / "random.bin").read_bytes() == (
            data / "data" / "random.bin"
        ).read_bytes()
    finally:
        await h.close()


async def test_verify_catches_a_tampered_object(data, s3_server):  # noqa: F811
    bucket = s3_server.new_bucket()
    h = await open_backups(data, config(s3_server, bucket))
    try:
        entry = await h.backups.run_job("files")
        key = f"app/files/{entry['id']}/files.tar.gz"
        client = s3_server.client()
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[1000] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        _, findings = await h.backups.verify(entry["id"])
        bad = [(f.destination, f.file) for f in findings if not f.ok]
        assert bad == [("cloud", "files.tar.gz")]
    finally:
        await h.close()


async def test_a_missing_bucket_makes_the_job_partial_and_keeps_the_local_copy(
    data,
    s3_server,  # noqa: F811
):
    h = await open_backups(data, config(s3_server, "wk-no-such-bucket"))
    try:
        entry = await h.backups.run_job("files")
        assert entry["status"] == "partial", entry
        assert entry["destinations"] == ["local"]
        assert "cloud" in entry["failed_destinations"]
        alert = h.alert("backup:files", "failed")
        assert alert is not None
        assert "cloud" in alert.summary
        local = data / "backups" / "files" / entry["id"]
        assert (local / "manifest.json").exists()
    finally:
        await h.close()


async def test_retention_deletes_objects_and_listing_works_from_the_bucket(data, s3_server):  # noqa: F811
    bucket = s3_server.new_bucket()
    (data / "data" / "random.bin").write_bytes(b"small now")
    h = await open_backups(
        data, config(s3_server, bucket, job_extra="      retention: {keep_daily: 1}\n")
    )
    try:
        h.clock.set(at("2026-12-03T02:00:00"))
        first = await h.backups.run_job("files")
        h.clock.set(at("2026-12-04T02:00:00"))
        second = await h.backups.run_job("files")
        assert all(k.startswith(f"app/files/{second['id']}/") for k in s3_server.keys(bucket))
        assert await h.backups.catalog.get(first["id"]) is None
        listed = await h.backups.list_destination("cloud")
        assert [e["id"] for e in listed] == [second["id"]]
    finally:
        await h.close()


def test_the_s3_options_are_in_the_schema():
    from watchkeeper.plugins.destinations.s3 import S3Options

    options = S3Options(bucket="b", part_size="8MiB")
    assert options.part_size == 8 * 1024 * 1024
    with pytest.raises(ValueError, match="at least 5MiB"):
        S3Options(bucket="b", part_size="5MB")
