"""The vercel_blob destination against a strict stand-in of Vercel Blob's API (see
tests/vercel_blob_server.py): `backup run`, `list`, `verify` and `restore` through the CLI
with the token from BLOB_READ_WRITE_TOKEN, a multipart upload, retention deleting blobs,
the prefix, a wrong token, 5xx answers retried and, past the retries, failing cleanly.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from tests import vercel_blob_server as stand_in
from tests.test_backup_service import at, open_backups
from tests.vercel_blob_server import MIN_PART, TOKEN

pytestmark = [pytest.mark.slow]

_blob_server = stand_in._blob_server  # the fixtures
blob_server = stand_in.blob_server

WRONG_TOKEN = "vercel_blob_rw_wkStand1n_" + "wrongwrongwrong" * 2


def config(server, *, dest: str | None = None, job_extra: str = "") -> str:
    dest = dest or server.destination_yaml("app/", part_size="5MiB")
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


@pytest.fixture
def data(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.txt").write_text("hello\n")
    return tmp_path


def big(data) -> bytes:
    # incompressible, so the archive itself spans three parts
    payload = os.urandom(2 * MIN_PART + 123_457)
    (data / "data" / "random.bin").write_bytes(payload)
    return payload


def test_run_list_verify_restore_through_the_cli_with_a_multipart_upload(
    cli, write_config, data, blob_server
):
    payload = big(data)
    dest = blob_server.destination_yaml("app/", token=None, part_size="5MiB")
    write_config(config(blob_server, dest=dest))
    env = {"BLOB_READ_WRITE_TOKEN": TOKEN}

    run = cli("backup", "run", "files", "--format", "json", env=env)
    assert run.code == 0, run.output
    [row] = run.json()
    assert row["status"] == "ok", row
    assert row["destinations"] == ["local", "cloud"]
    folder = f"app/files/{row['id']}/"
    assert sorted(blob_server.blobs) == [
        folder + n for n in ("SHA256SUMS", "files.tar.gz", "manifest.json")
    ]
    assert len(blob_server.blobs[folder + "files.tar.gz"][0]) == row["size_bytes"] > 2 * MIN_PART
    # the archive went up in three parts, the small files in one PUT each
    assert len(blob_server.calls("mpu-create")) == 1
    parts = blob_server.calls("mpu-upload")
    assert sorted(int(p.headers["x-mpu-part-number"]) for p in parts) == [1, 2, 3]
    assert [p.size for p in sorted(parts, key=lambda p: p.headers["x-mpu-part-number"])] == [
        MIN_PART,
        MIN_PART,
        row["size_bytes"] - 2 * MIN_PART,
    ]
    assert len(blob_server.calls("mpu-complete")) == 1
    assert {p.query["pathname"] for p in blob_server.calls("put")} == {
        folder + "SHA256SUMS",
        folder + "manifest.json",
    }

    # read back from the store alone: no catalog, the local copy gone
    (data / "state.db").unlink()
    import shutil

    shutil.rmtree(data / "backups")
    listed = cli("backup", "list", "--from-destination", "cloud", "--format", "json", env=env)
    assert listed.code == 0, listed.output
    assert [r["id"] for r in listed.json()] == [row["id"]]
    verify = cli("backup", "verify", row["id"], "--from", "cloud", env=env)
    assert verify.code == 0, verify.output
    assert "cloud" in verify.stdout
    restored = cli("backup", "restore", row["id"], "--to", "out", "--from", "cloud", env=env)
    assert restored.code == 0, restored.output
    assert (data / "out" / "data" / "random.bin").read_bytes() == payload
    assert (data / "out" / "data" / "small.txt").read_text() == "hello\n"
    downloads = blob_server.calls("download")
    assert downloads
    assert all(d.query.get("cache") == "0" for d in downloads)  # origin, not a CDN copy
    for result in (run, listed, verify, restored):
        assert TOKEN not in result.output
        assert "s3cr3t" not in result.output


def test_verify_catches_a_changed_blob(cli, write_config, data, blob_server):
    write_config(config(blob_server))
    [row] = cli("backup", "run", "files", "--format", "json").json()
    assert row["status"] == "ok", row
    key = f"app/files/{row['id']}/files.tar.gz"
    body, stamp = blob_server.blobs[key]
    changed = bytearray(body)
    changed[len(changed) // 2] ^= 0xFF
    blob_server.blobs[key] = (bytes(changed), stamp)
    bad = cli("backup", "verify", row["id"], "--format", "json")
    assert bad.code == 1, bad.output
    assert [(f["destination"], f["file"]) for f in bad.json()["files"] if not f["ok"]] == [
        ("cloud", "files.tar.gz")
    ]


def test_a_wrong_token_fails_the_destination_clearly_and_never_shows_the_token(
    cli, write_config, data, blob_server
):
    write_config(config(blob_server, dest=blob_server.destination_yaml("app/", token=WRONG_TOKEN)))
    result = cli("backup", "run", "files", "--format", "json")
    assert result.code == 1, result.output
    [row] = result.json()
    assert row["status"] == "partial"
    assert row["destinations"] == ["local"]
    error = row["error"]
    assert error.startswith("destination failed: cloud: vercel blob put: access denied")
    assert "access denied: check the destination's token" in error
    assert "403 forbidden" in error
    assert WRONG_TOKEN not in result.output
    assert "wrongwrong" not in result.output
    assert not blob_server.blobs
    # refused at once: a 403 is not retried
    assert all(c.headers["x-api-blob-request-attempt"] == "0" for c in blob_server.calls())


def test_no_token_at_all_names_the_variable(cli, write_config, data, blob_server):
    write_config(config(blob_server, dest=blob_server.destination_yaml("app/", token=None)))
    result = cli("backup", "run", "files", "--format", "json", env={"BLOB_READ_WRITE_TOKEN": ""})
    [row] = result.json()
    assert row["status"] == "partial"
    assert "no token: set BLOB_READ_WRITE_TOKEN" in row["error"]
    assert blob_server.calls() == []


@pytest.mark.anyio
async def test_5xx_answers_are_retried(data, blob_server):
    h = await open_backups(data, config(blob_server))
    try:
        blob_server.fail_next(503, 502)
        entry = await h.backups.run_job("files")
        assert entry["status"] == "ok", entry
        attempts = [c.headers["x-api-blob-request-attempt"] for c in blob_server.calls("put")]
        assert attempts[:3] == ["0", "1", "2"]  # the first PUT, answered 503, 502, then 200
    finally:
        await h.close()


@pytest.mark.anyio
async def test_a_5xx_past_the_retries_fails_cleanly(data, blob_server):
    big(data)
    dest = blob_server.destination_yaml("app/", part_size="5MiB", retries="1")
    h = await open_backups(data, config(blob_server, dest=dest))
    try:
        blob_server.fail_always("mpu-upload", 500)
        entry = await h.backups.run_job("files")
        assert entry["status"] == "partial", entry
        assert entry["destinations"] == ["local"]
        error = entry["failed_destinations"]["cloud"]
        assert "multipart part" in error
        assert "HTTP 500" in error
        assert "after 2 attempts" in error
        # the upload was never completed: no blob of the archive (nor anything else)
        assert blob_server.calls("mpu-complete") == []
        assert not blob_server.blobs
        assert TOKEN not in error
    finally:
        await h.close()


@pytest.mark.anyio
async def test_retention_deletes_blobs_and_the_prefix_is_honoured(data, blob_server):
    # another application's blob in the same store, outside our prefix
    blob_server.blobs["app-other/files/keep.bin"] = (b"not ours", "2026-01-01T00:00:00.000Z")
    blob_server.blobs["avatars/a.png"] = (b"png", "2026-01-01T00:00:00.000Z")
    blob_server.page_size = 2  # several pages: the cursor is followed
    h = await open_backups(
        data, config(blob_server, job_extra="      retention: {keep_daily: 1}\n")
    )
    try:
        h.clock.set(at("2026-12-03T02:00:00"))
        first = await h.backups.run_job("files")
        assert first["status"] == "ok", first
        h.clock.set(at("2026-12-04T02:00:00"))
        second = await h.backups.run_job("files")
        assert second["status"] == "ok", second
        ours = sorted(p for p in blob_server.blobs if p.startswith("app/"))
        assert ours == [
            f"app/files/{second['id']}/{n}" for n in ("SHA256SUMS", "files.tar.gz", "manifest.json")
        ]
        assert "app-other/files/keep.bin" in blob_server.blobs
        assert "avatars/a.png" in blob_server.blobs
        assert await h.backups.catalog.get(first["id"]) is None
        [deleted] = blob_server.calls("delete")
        assert deleted.size > 0
        listed = await h.backups.list_destination("cloud")
        assert [e["id"] for e in listed] == [second["id"]]
        assert any("cursor" in c.query for c in blob_server.calls("list"))
        assert all(c.query.get("prefix", "").startswith("app/") for c in blob_server.calls("list"))
    finally:
        await h.close()


def test_the_vercel_blob_options():
    from watchkeeper.plugins.destinations.vercel_blob import API_URL, VercelBlobOptions

    options = VercelBlobOptions()
    assert options.access == "private"
    assert options.api_url == API_URL == "https://vercel.com/api/blob"
    assert options.part_size == 8 * 1024 * 1024
    assert options.token is None  # read from BLOB_READ_WRITE_TOKEN when used
    with pytest.raises(ValueError, match="at least 5MiB"):
        VercelBlobOptions(part_size="4MiB")
    with pytest.raises(ValueError, match="without '//'"):
        VercelBlobOptions(prefix="a//b/")
    shown = repr(VercelBlobOptions(token=TOKEN))
    assert TOKEN not in shown
