"""A backup that fails on a full disk leaves nothing behind in a local destination.

The destination is a real, tiny filesystem: a 256 KiB tmpfs mounted for the test (needs
root, or CAP_SYS_ADMIN; skipped with the reason otherwise). One backup does not fit at
all; another fits but for its manifest — the last file written, once a 0-byte
`.manifest.json.*.part` and empty folders were left there.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

SIZE = 256 * 1024
PAGE = 4096  # tmpfs counts whole pages

CONFIG = """
version: 1
state: {type: sqlite, path: state.db}
backups:
  destinations:
    disk: {type: local, path: disk}
  jobs:
    files:
      source: {type: files, paths: [monitor.yaml, data]}
      schedule: {cron: "0 2 * * *"}
      to: [disk]
"""


@pytest.fixture
def disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'refused'}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def leftovers(root) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(f for f in found if f != "filler")


def run_and_expect_failure(cli, disk) -> dict:
    result = cli("backup", "run", "files", "--format", "json")
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    [row] = result.json()
    assert row["status"] == "failed", row
    assert "No space left on device" in row["error"], row
    assert leftovers(disk) == []  # no empty folders, no .part file, no partial archive
    listed = cli("backup", "list", "--format", "json").json()
    assert [(r["id"], r["status"], r["destinations"]) for r in listed] == [
        (row["id"], "failed", [])
    ]
    return row


def test_a_backup_larger_than_the_disk_leaves_nothing(cli, write_config, tmp_path, disk):
    write_config(CONFIG)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(os.urandom(2 * SIZE))  # does not compress
    run_and_expect_failure(cli, disk)


def test_a_disk_full_at_the_manifest_leaves_nothing(cli, write_config, tmp_path, disk):
    """The archive and SHA256SUMS fit (one page each); the manifest, written last, not."""
    write_config(CONFIG)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.txt").write_text(uuid.uuid4().hex)
    (disk / "filler").write_bytes(b"\0" * (SIZE - 2 * PAGE))
    run_and_expect_failure(cli, disk)
    assert (disk / "filler").stat().st_size == SIZE - 2 * PAGE  # what was there stays
    # with room again the same job works, into the same destination
    (disk / "filler").unlink()
    again = cli("backup", "run", "files", "--format", "json")
    assert again.code == 0, again.output
    [row] = again.json()
    names = sorted(os.listdir(disk / "files" / row["id"]))
    assert names == ["SHA256SUMS", "files.tar.gz", "manifest.json"]
