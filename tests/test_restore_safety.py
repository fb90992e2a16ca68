"""Restoring a backup someone else could write: crafted manifests and crafted tar archives.

Whoever can write to a backup destination (a bucket, a shared folder) can put any
manifest and any archive there, with checksums that match. These tests build such
backups by hand in a local destination — no catalog entry, so the destination's own
manifest is the reference, as after a lost state store — and drive `watchkeeper backup
restore ID --to DIR` and `backup verify ID` in fresh processes. Every refusal is one
`error:` line naming the member, exit 1, no traceback, and the whole working folder
(target and everything around it) is exactly as before.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import textwrap
from pathlib import Path

import anyio
import pytest

from watchkeeper.engine.backups import manifest as mf

JOB = "files"
BACKUP_ID = "files-20261205T020000Z"
ARCHIVE = "files.tar.gz"

LOG = re.compile(r"^\d{4}-\d\d-\d\dT\S+ (debug|info) ")  # the store's own log lines

CONFIG = """
version: 1
state: {type: sqlite, path: state.db}
backups:
  destinations:
    local: {type: local, path: backups}
  jobs:
    files:
      source: {type: files, paths: [monitor.yaml]}
      schedule: {cron: "0 2 * * *"}
      to: [local]
"""


# -- building backups by hand ---------------------------------------------------------------


def member(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o644,
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_700_000_000
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info, None


def archive(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def store_backup(
    root: Path,
    files: dict[str, bytes],
    *,
    recipient: str | None = None,
    names: dict[str, str] | None = None,
    job: str = JOB,
    backup_id: str = BACKUP_ID,
) -> None:
    """Write a complete backup folder into the local destination `root/backups`.

    `files` maps plain names to content (encrypted to `recipient` when given); `names`
    renames a file in the manifest (and stores its bytes where that name leads)."""
    folder = root / "backups" / JOB / BACKUP_ID
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for plain_name, content in files.items():
        stored = content
        name = plain_name
        plain_size = plain_sha = None
        if recipient is not None:
            import pyrage
            from pyrage import x25519

            stored = pyrage.encrypt(content, [x25519.Recipient.from_str(recipient)])
            name = plain_name + ".age"
            plain_size, plain_sha = len(content), hashlib.sha256(content).hexdigest()
        name = (names or {}).get(name, name)
        where = Path(os.path.normpath(folder / name.lstrip("/")))
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(stored)
        records.append(
            mf.FileRecord(
                name, len(stored), hashlib.sha256(stored).hexdigest(), plain_size, plain_sha
            )
        )
    manifest = mf.Manifest(
        id=backup_id,
        job=job,
        source="files",
        started_at=1_796_000_000.0,
        finished_at=1_796_000_001.0,
        files=records,
        recipients=[recipient] if recipient else [],
    )
    (folder / mf.SUMS).write_text(mf.sums_text(records))
    (folder / mf.MANIFEST).write_bytes(manifest.to_json())


def keypair(where: Path) -> tuple[str, Path]:
    from pyrage import x25519

    identity = x25519.Identity.generate()
    path = where / "key.txt"
    path.write_text(f"{identity}\n")
    return str(identity.to_public()), path


def snapshot(root: Path) -> dict[str, str]:
    """Everything under root (but the state store): what a restore may not change."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if rel.startswith("state.db"):
                continue
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def workdir(tmp_path, write_config):
    write_config(CONFIG)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim").write_text("original\n")
    return tmp_path


def assert_refused(result, fragment: str, *, action: str = "restored") -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not LOG.match(line)]
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith(f"error: backup {BACKUP_ID}: "), line
    assert fragment in line, line
    assert line.endswith(f"nothing was {action}"), line
    assert "✓" not in result.stdout


def restore_refused(cli, root: Path, fragment: str, *, extra: tuple[str, ...] = (), env=None):
    before = snapshot(root)
    result = cli("backup", "restore", BACKUP_ID, "--to", "out/target", *extra, env=env)
    assert_refused(result, fragment)
    assert snapshot(root) == before  # nothing outside, no target, no half-restored files
    assert (root / "outside" / "victim").read_text() == "original\n"
    return result


# -- crafted manifests ----------------------------------------------------------------------


GOOD_TAR = [member("monitor.yaml", b"version: 1\n")]


def test_a_manifest_naming_a_parent_path_is_refused_before_anything_is_written(cli, workdir):
    # the restore's private folder sits at tmp/deep/<x>: '../../x' would be tmp/x
    (workdir / "tmp" / "deep").mkdir(parents=True)
    store_backup(workdir, {ARCHIVE: archive(GOOD_TAR), "x": b"planted\n"}, names={"x": "../../x"})
    result = restore_refused(
        cli,
        workdir,
        "the manifest lists a file named '../../x'",
        env={"TMPDIR": str(workdir / "tmp" / "deep")},
    )
    assert "not a plain file name" in result.stderr
    assert not (workdir / "tmp" / "x").exists()


def test_a_manifest_naming_an_absolute_path_is_refused(cli, workdir):
    planted = str(workdir / "outside" / "planted")
    store_backup(workdir, {ARCHIVE: archive(GOOD_TAR), "x": b"planted\n"}, names={"x": planted})
    restore_refused(cli, workdir, f"the manifest lists a file named '{planted}'")
    assert not Path(planted).exists()
    verify = cli("backup", "verify", BACKUP_ID)
    assert_refused(verify, f"the manifest lists a file named '{planted}'", action="verified")


def test_verify_refuses_a_manifest_pointing_at_another_file_of_the_destination(cli, workdir):
    # '../../other' leads to backups/other: today a verify of it passes
    store_backup(workdir, {ARCHIVE: archive(GOOD_TAR), "x": b"x\n"}, names={"x": "../../x"})
    result = cli("backup", "verify", BACKUP_ID)
    assert_refused(result, "the manifest lists a file named '../../x'", action="verified")


def test_a_manifest_whose_job_is_a_path_is_refused(cli, workdir):
    store_backup(workdir, {ARCHIVE: archive(GOOD_TAR)}, job="../../outside")
    restore_refused(cli, workdir, "'../../outside'")


def test_a_catalog_entry_written_by_hand_is_checked_too(cli, workdir):
    """Someone with write access to the state store, not only to the bucket."""
    from watchkeeper.engine.backups.catalog import Catalog
    from watchkeeper.engine.config.validation import load_config
    from watchkeeper.engine.daemon import create_store
    from watchkeeper.engine.plugins import registry

    planted = str(workdir / "outside" / "planted")
    store_backup(workdir, {ARCHIVE: archive(GOOD_TAR), "x": b"planted\n"}, names={"x": planted})
    folder = workdir / "backups" / JOB / BACKUP_ID
    files = mf.Manifest.from_json((folder / mf.MANIFEST).read_bytes()).files
    (folder / mf.MANIFEST).unlink()  # the catalog alone names the files

    async def write_entry() -> None:
        validation = load_config(workdir / "monitor.yaml")
        store = create_store(validation.config, registry(), validation.base_dir)
        await store.open(role="client")
        try:
            await Catalog(store).put(
                {
                    "id": BACKUP_ID, "job": JOB, "source": "files", "status": "ok",
                    "started_at": 1_796_000_000.0, "finished_at": 1_796_000_001.0,
                    "destinations": ["local"], "encrypted": False, "recipients": [],
                    "files": [f.public() for f in files],
                }
            )  # fmt: skip
        finally:
            await store.close()

    anyio.run(write_entry)
    restore_refused(cli, workdir, f"the manifest lists a file named '{planted}'")


# -- crafted archives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        pytest.param(
            [member("../../x", b"pwned\n")],
            "archive member '../../x' would be written outside",
            id="dotdot",
        ),
        pytest.param(
            [member("{root}/outside/victim", b"pwned\n")],
            "archive member '{root}/outside/victim' would be written outside",
            id="absolute",
        ),
        pytest.param(
            [
                member("link", kind=tarfile.SYMTYPE, linkname="{root}/outside"),
                member("link/victim", b"pwned\n"),
            ],
            "archive member 'link' is a symbolic link to '{root}/outside', outside",
            id="symlink-then-file",
        ),
        pytest.param(
            [
                member("sub", kind=tarfile.DIRTYPE),
                member("sub/up", kind=tarfile.SYMTYPE, linkname=".."),
                member("sub/up/victim", b"pwned\n"),
            ],
            "archive member 'sub/up/victim' would be written through the symbolic link 'sub/up'",
            id="file-through-inside-link",
        ),
        pytest.param(
            [
                member("here", kind=tarfile.SYMTYPE, linkname="."),
                member("escape", kind=tarfile.SYMTYPE, linkname="here/../../../outside"),
            ],
            "archive member 'escape' is a symbolic link to 'here/../../../outside', outside",
            id="symlink-via-symlink",
        ),
        pytest.param(
            [member("hard", kind=tarfile.LNKTYPE, linkname="{root}/outside/victim")],
            "archive member 'hard' is a hard link to '{root}/outside/victim'",
            id="hardlink-absolute",
        ),
        pytest.param(
            [member("hard", kind=tarfile.LNKTYPE, linkname="../../outside/victim")],
            "archive member 'hard' is a hard link to '../../outside/victim'",
            id="hardlink-dotdot",
        ),
        pytest.param(
            [member("null", kind=tarfile.CHRTYPE)],
            "archive member 'null' is a character device",
            id="chardev",
        ),
        pytest.param(
            [member("disk", kind=tarfile.BLKTYPE)],
            "archive member 'disk' is a block device",
            id="blockdev",
        ),
        pytest.param(
            [member("pipe", kind=tarfile.FIFOTYPE)],
            "archive member 'pipe' is a FIFO",
            id="fifo",
        ),
        pytest.param(
            [member("tool", b"#!/bin/sh\n", mode=0o4755)],
            "archive member 'tool' has the set-uid bit",
            id="setuid",
        ),
        pytest.param(
            [member("tool", b"#!/bin/sh\n", mode=0o2755)],
            "archive member 'tool' has the set-gid bit",
            id="setgid",
        ),
        pytest.param(
            [member("a.txt", b"one\n"), member("a.txt", b"two\n")],
            "archive member 'a.txt' appears twice",
            id="duplicate",
        ),
    ],
)
def test_a_crafted_archive_is_refused(cli, workdir, members, fragment):
    root = str(workdir)
    members = [
        member(
            info.name.replace("{root}", root),
            data or b"",
            kind=info.type,
            linkname=info.linkname.replace("{root}", root),
            mode=info.mode,
        )
        for info, data in [*GOOD_TAR, *members]
    ]
    store_backup(workdir, {ARCHIVE: archive(members)})
    restore_refused(cli, workdir, fragment.replace("{root}", root))


def test_verify_names_a_crafted_archive_member(cli, workdir):
    store_backup(workdir, {ARCHIVE: archive([*GOOD_TAR, member("../../x", b"pwned\n")])})
    result = cli("backup", "verify", BACKUP_ID)
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert (
        "✗ local: files.tar.gz — archive member '../../x' would be written outside the target"
        in result.stdout
    ), result.output


def cve_2025_4517_members(depth: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The published proof of concept: nested long directory names reached through a chain
    of symlinks make the real path longer than PATH_MAX, where os.path.realpath (and so
    tarfile's `data` filter) stops resolving; a link then climbs out of the target."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    found = []
    path = ""
    for step in steps:
        found.append(member(os.path.join(path, comp), kind=tarfile.DIRTYPE))
        found.append(member(os.path.join(path, step), kind=tarfile.SYMTYPE, linkname=comp))
        path = os.path.join(path, comp)
    linkpath = os.path.join(*steps, "l" * 254)
    found.append(member(linkpath, kind=tarfile.SYMTYPE, linkname="../" * len(steps)))
    # from the target: up `depth` folders to the test's folder, then into outside/
    found.append(
        member("escape", kind=tarfile.SYMTYPE, linkname=linkpath + "/.." * depth + "/outside")
    )
    found.append(member("escape/victim", b"pwned\n"))
    return found


def test_the_cve_2025_4517_symlink_chain_is_refused(cli, workdir):
    # the target is <workdir>/out/target: two folders below the test's folder
    store_backup(workdir, {ARCHIVE: archive([*GOOD_TAR, *cve_2025_4517_members(2)])})
    restore_refused(cli, workdir, "would be written through the symbolic link 'a'")


def test_an_encrypted_backup_gets_the_same_checks(cli, workdir):
    recipient, key = keypair(workdir)
    store_backup(
        workdir,
        {ARCHIVE: archive([*GOOD_TAR, member("../../x", b"pwned\n")])},
        recipient=recipient,
    )
    restore_refused(
        cli,
        workdir,
        "archive member '../../x' would be written outside",
        extra=("--identity", str(key)),
    )
    verify = cli("backup", "verify", BACKUP_ID, "--identity", str(key))
    assert verify.code == 1, verify.output
    assert "archive member '../../x' would be written outside" in verify.stdout


def test_an_encrypted_manifest_naming_a_path_is_refused(cli, workdir):
    recipient, key = keypair(workdir)
    planted = str(workdir / "outside" / "planted.age")
    store_backup(
        workdir,
        {ARCHIVE: archive(GOOD_TAR), "x": b"planted\n"},
        recipient=recipient,
        names={"x.age": planted},
    )
    restore_refused(
        cli,
        workdir,
        f"the manifest lists a file named '{planted}'",
        extra=("--identity", str(key)),
    )


# -- what is kept -----------------------------------------------------------------------------


SYM, HARD = tarfile.SYMTYPE, tarfile.LNKTYPE


def test_relative_symlinks_inside_the_target_are_restored(cli, workdir):
    store_backup(
        workdir,
        {
            ARCHIVE: archive(
                [
                    *GOOD_TAR,
                    member("releases/1/app.py", b"print('hi')\n", mode=0o755),
                    member("current", kind=tarfile.SYMTYPE, linkname="releases/1"),
                    member("releases/1/config", kind=SYM, linkname="../../monitor.yaml"),
                    member("logs/latest", kind=tarfile.SYMTYPE, linkname="app-2026.log"),
                    member("releases/1/app-copy.py", kind=HARD, linkname="releases/1/app.py"),
                ]
            )
        },
    )  # fmt: skip
    result = cli("backup", "restore", BACKUP_ID, "--to", "out/target")
    assert result.code == 0, result.output
    target = workdir / "out" / "target"
    assert os.readlink(target / "current") == "releases/1"
    assert (target / "current" / "app.py").read_text() == "print('hi')\n"
    assert (target / "releases/1/config").read_text() == "version: 1\n"
    assert os.readlink(target / "logs/latest") == "app-2026.log"  # dangling, but inside
    assert (target / "releases/1/app-copy.py").read_text() == "print('hi')\n"
    assert (target / "releases/1/app.py").stat().st_mode & 0o777 == 0o755
    assert not [p for p in target.iterdir() if p.name.startswith(".watchkeeper")]


def test_a_symlink_already_in_the_target_is_never_written_through(cli, workdir):
    store_backup(workdir, {ARCHIVE: archive([*GOOD_TAR, member("app/victim", b"pwned\n")])})
    target = workdir / "out" / "target"
    target.mkdir(parents=True)
    (target / "app").symlink_to(workdir / "outside")
    restore_refused(cli, workdir, "'app' in", extra=("--clean",))


def test_a_real_files_backup_still_round_trips(cli, workdir):
    app = workdir / "app"
    (app / "releases" / "7").mkdir(parents=True)
    (app / "releases" / "7" / "run.sh").write_text("#!/bin/sh\n")
    (app / "current").symlink_to("releases/7")
    (workdir / "monitor.yaml").write_text(
        textwrap.dedent(CONFIG).replace("paths: [monitor.yaml]", "paths: [monitor.yaml, app]")
    )
    run = cli("backup", "run", JOB, "--format", "json")
    assert run.code == 0, run.output
    [row] = run.json()
    assert cli("backup", "verify", row["id"]).code == 0
    restored = cli("backup", "restore", row["id"], "--to", "restored")
    assert restored.code == 0, restored.output
    assert (workdir / "restored" / "app" / "releases" / "7" / "run.sh").read_text() == "#!/bin/sh\n"
    again = cli("backup", "restore", row["id"], "--to", "restored")
    assert again.code == 1
    assert "already exist" in again.stderr
    assert cli("backup", "restore", row["id"], "--to", "restored", "--clean").code == 0
