"""The files source, verification and encryption: archive round trip, a tampered byte
caught by verify (naming the file and destination), age encryption round trip, and the
stock `age` tool decrypting our files (the disaster-recovery path).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import textwrap

import anyio
import pytest

from tests.test_backup_service import open_backups
from watchkeeper.engine.backups.plugin import BackupError

pytestmark = pytest.mark.anyio


def config(extra: str = "", paths: str = "[monitor.yaml, app/, 'notes/*.md']") -> str:
    return (
        textwrap.dedent(
            f"""
        version: 1
        state: {{type: sqlite, path: state.db}}
        backups:
          destinations:
            local: {{type: local, path: backups}}
            second: {{type: local, path: /{{second}}}}
          jobs:
            files:
              source: {{type: files, paths: {paths}, exclude: ["*.tmp"]}}
              schedule: {{cron: "0 2 * * *"}}
              to: [local, second]
        """
        )
        + extra
    )


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "app" / "sub").mkdir(parents=True)
    (tmp_path / "app" / "settings.ini").write_text("[app]\nmode = prod\n")
    (tmp_path / "app" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 4000)
    (tmp_path / "app" / "scratch.tmp").write_text("left out")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# a\n")
    (tmp_path / "notes" / "b.txt").write_text("not matched")
    (tmp_path / "second").mkdir()
    return tmp_path


async def harness_for(tree, extra: str = ""):
    return await open_backups(tree, config(extra).replace("/{second}", str(tree / "second")))


async def test_files_round_trip(tree):
    h = await harness_for(tree)
    try:
        entry = await h.backups.run_job("files")
        assert entry["status"] == "ok", entry
        assert entry["destinations"] == ["local", "second"]
        archive = tree / "backups" / "files" / entry["id"] / "files.tar.gz"
        with tarfile.open(archive) as tar:
            names = sorted(tar.getnames())
        assert names == ["app/settings.ini", "app/sub/data.bin", "monitor.yaml", "notes/a.md"]
        target = tree / "restored"
        result = await h.backups.restore(entry["id"], str(target))
        assert result["files"] == 4
        for name in names:
            assert (target / name).read_bytes() == (tree / name).read_bytes()
        # restoring over existing files needs --clean
        with pytest.raises(BackupError, match="already exist"):
            await h.backups.restore(entry["id"], str(target))
        await h.backups.restore(entry["id"], str(target), clean=True)
    finally:
        await h.close()


async def test_verify_reads_every_destination_and_names_a_tampered_file(tree):
    h = await harness_for(tree)
    try:
        entry = await h.backups.run_job("files")
        _, findings = await h.backups.verify(entry["id"])
        assert findings
        assert all(f.ok for f in findings)
        assert {f.destination for f in findings} == {"local", "second"}
        archive = tree / "second" / "files" / entry["id"] / "files.tar.gz"
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit
        archive.write_bytes(bytes(data))
        _, findings = await h.backups.verify(entry["id"])
        bad = [f for f in findings if not f.ok]
        assert [(f.destination, f.file) for f in bad] == [("second", "files.tar.gz")]
        assert "sha256" in bad[0].problem
        # a restore skips the damaged copy when an intact one exists
        result = await h.backups.restore(entry["id"], str(tree / "r"), only=None)
        assert result["from"] == "local"
        with pytest.raises(BackupError, match="does not match the manifest"):
            await h.backups.restore(entry["id"], str(tree / "r2"), only="second")
    finally:
        await h.close()


async def test_verify_and_restore_work_from_a_destination_without_the_store(tree):
    h = await harness_for(tree)
    try:
        entry = await h.backups.run_job("files")
        await h.backups.catalog.delete([entry["id"]])  # the store is lost
        listed = await h.backups.list_destination("second")
        assert [e["id"] for e in listed] == [entry["id"]]
        assert listed[0]["sha256"] == entry["sha256"]
        reference, findings = await h.backups.verify(entry["id"])
        assert reference.job == "files"
        assert all(f.ok for f in findings)
        result = await h.backups.restore(entry["id"], str(tree / "r"))
        assert (tree / "r" / "notes" / "a.md").read_text() == "# a\n"
        assert result["id"] == entry["id"]
    finally:
        await h.close()


def keypair(tmp_path):
    from pyrage import x25519

    identity = x25519.Identity.generate()
    path = tmp_path / "key.txt"
    path.write_text(f"# created for a test\n# public key: {identity.to_public()}\n{identity}\n")
    return str(identity.to_public()), path


async def test_encrypted_backups_round_trip_with_the_identity_only(tree):
    recipient, key = keypair(tree)
    extra = f"      encrypt: {{recipients: [{recipient}]}}\n"
    h = await harness_for(tree, extra)
    try:
        entry = await h.backups.run_job("files")
        assert entry["status"] == "ok", entry
        assert entry["encrypted"] is True
        [record] = entry["files"]
        assert record["name"] == "files.tar.gz.age"
        stored = tree / "backups" / "files" / entry["id"] / "files.tar.gz.age"
        assert stored.read_bytes().startswith(b"age-encryption.org/v1\n")
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == record["sha256"]
        assert record["plain_sha256"] != record["sha256"]
        # without the identity the host cannot read its own backup back
        with pytest.raises(BackupError, match="encrypted: pass --identity"):
            await h.backups.restore(entry["id"], str(tree / "r"))
        _, findings = await h.backups.verify(entry["id"], identity=str(key))
        assert all(f.ok for f in findings), findings
        result = await h.backups.restore(entry["id"], str(tree / "r"), identity=str(key))
        assert result["files"] == 4
        assert (tree / "r" / "app" / "sub" / "data.bin").read_bytes() == (
            tree / "app" / "sub" / "data.bin"
        ).read_bytes()
        # a wrong identity is refused clearly
        _, other = keypair(tree / "app")
        with pytest.raises(BackupError, match="decrypt"):
            await h.backups.restore(entry["id"], str(tree / "r3"), identity=str(other))
    finally:
        await h.close()


async def test_the_stock_age_tool_decrypts_our_files(tree):
    age = shutil.which("age")
    if age is None:
        pytest.skip("the `age` program is not installed (apt-get install -y age)")
    recipient, key = keypair(tree)
    h = await harness_for(tree, f"      encrypt: {{recipients: [{recipient}]}}\n")
    try:
        entry = await h.backups.run_job("files")
        stored = tree / "backups" / "files" / entry["id"] / "files.tar.gz.age"
        plain = tree / "plain.tar.gz"
        await anyio.run_process([age, "--decrypt", "-i", str(key), "-o", str(plain), str(stored)])
        assert hashlib.sha256(plain.read_bytes()).hexdigest() == entry["files"][0]["plain_sha256"]
        with tarfile.open(plain) as tar:
            assert "monitor.yaml" in tar.getnames()
        # and the other way round: age's own output is what pyrage reads
        encrypted = tree / "by-age.age"
        await anyio.run_process([age, "-r", recipient, "-o", str(encrypted), str(plain)])
        import pyrage

        from watchkeeper.engine.backups.encryption import load_identities

        assert pyrage.decrypt(encrypted.read_bytes(), load_identities(key)) == plain.read_bytes()
    finally:
        await h.close()


async def test_large_encrypted_file_streams(tree):
    """A file larger than every buffer passes through encryption and back intact."""
    recipient, key = keypair(tree)
    big = tree / "app" / "big.bin"
    big.write_bytes(b"".join(hashlib.sha256(str(i).encode()).digest() * 32768 for i in range(24)))
    h = await harness_for(tree, f"      encrypt: {{recipients: [{recipient}]}}\n")
    try:
        entry = await h.backups.run_job("files")
        assert entry["status"] == "ok"
        await h.backups.restore(entry["id"], str(tree / "r"), identity=str(key))
        assert (tree / "r" / "app" / "big.bin").read_bytes() == big.read_bytes()
    finally:
        await h.close()


async def test_a_missing_path_fails_the_run(tree):
    h = await open_backups(
        tree,
        config(paths="[monitor.yaml, nowhere.txt]").replace("/{second}", str(tree / "second")),
    )
    try:
        entry = await h.backups.run_job("files")
        assert entry["status"] == "failed"
        assert "nowhere.txt: no such file or folder" in entry["error"]
    finally:
        await h.close()
