"""Verify a backup: read every file back from each destination and check its checksum.

Per destination: `manifest.json` must describe the same files as the reference (the
catalog, else the first destination's manifest), `SHA256SUMS` must match them, and
every file's size and SHA-256 must match. With identities, encrypted files are also
decrypted on the fly and their plaintext SHA-256 checked. Files that are archives (a
files backup's tar.gz) have their members checked as they stream by, with the restore
checks (`archive.Checker`), whenever their content is readable: unencrypted, or with
identities. Nothing is written locally.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import anyio

from watchkeeper.engine.backups import encryption
from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups.archive import StreamCheck
from watchkeeper.engine.backups.pipeline import describe_error
from watchkeeper.engine.backups.plugin import BackupDestination, BackupError
from watchkeeper.engine.backups.restore import read_small


@dataclass
class Finding:
    """The verdict on one file at one destination."""

    destination: str
    file: str
    ok: bool
    problem: str | None = None
    size: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "file": self.file,
            "ok": self.ok,
            "problem": self.problem,
        }


async def _check_file(
    destination: BackupDestination,
    key: str,
    record: mf.FileRecord,
    identities: list[Any] | None,
    archive: bool = False,
) -> Finding:
    at_rest = hashlib.sha256()
    plain = hashlib.sha256()
    size = 0
    encrypted = bool(record.plain_sha256)
    decrypting = bool(identities and encrypted)
    scan = StreamCheck() if archive and (decrypting or not encrypted) else None

    async def plain_bytes(data: bytes) -> None:
        plain.update(data)
        if scan is not None:
            await scan.send(data)

    try:
        pipe = encryption.decrypter(identities or [], plain_bytes) if decrypting else None
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            if scan is not None:
                tg.start_soon(scan.run)
            if pipe is not None:
                tg.start_soon(pipe.run)
            try:
                async for chunk in destination.get(key):
                    at_rest.update(chunk)
                    size += len(chunk)
                    if pipe is not None:
                        await pipe.send(chunk)
                    elif scan is not None:
                        await scan.send(chunk)
            except Exception as exc:
                error = exc
            finally:
                with anyio.CancelScope(shield=True):
                    if pipe is not None:
                        pipe.close()
                        await pipe.done.wait()
                    if scan is not None:
                        scan.close()
        if error is not None:
            raise error
        if pipe is not None:
            await pipe.finish()
    except FileNotFoundError:
        return Finding(destination.name, record.name, False, "missing")
    except Exception as exc:
        return Finding(destination.name, record.name, False, describe_error(exc), size)
    if size != record.size:
        return Finding(
            destination.name, record.name, False, f"size {size} bytes, expected {record.size}", size
        )
    if at_rest.hexdigest() != record.sha256:
        return Finding(
            destination.name,
            record.name,
            False,
            f"sha256 {at_rest.hexdigest()}, expected {record.sha256}",
            size,
        )
    if decrypting and plain.hexdigest() != record.plain_sha256:
        return Finding(
            destination.name, record.name, False, "decrypted content does not match", size
        )
    if scan is not None and scan.problem is not None:
        return Finding(destination.name, record.name, False, scan.problem, size)
    return Finding(destination.name, record.name, True, None, size)


async def verify_at(
    reference: mf.Manifest,
    destination: BackupDestination,
    identities: list[Any] | None = None,
    archives: frozenset[str] | set[str] = frozenset(),
) -> list[Finding]:
    """Check one destination's copy of a backup against the reference manifest.

    `archives` names the plain files that are tar.gz archives (the source's `archives`):
    their members are checked too when their content is readable.
    """
    mf.check(reference)
    folder = mf.folder(reference.job, reference.id)
    findings: list[Finding] = []
    try:
        stored = mf.Manifest.from_json(await read_small(destination, folder + mf.MANIFEST))
        expected = {f.name: (f.size, f.sha256) for f in reference.files}
        got = {f.name: (f.size, f.sha256) for f in stored.files}
        findings.append(
            Finding(destination.name, mf.MANIFEST, True)
            if got == expected
            else Finding(
                destination.name,
                mf.MANIFEST,
                False,
                "lists other files or checksums than the catalog",
            )
        )
    except FileNotFoundError:
        findings.append(Finding(destination.name, mf.MANIFEST, False, "missing"))
    except (ValueError, BackupError) as exc:
        findings.append(Finding(destination.name, mf.MANIFEST, False, str(exc)))
    try:
        sums = (await read_small(destination, folder + mf.SUMS)).decode(errors="replace")
        ok = sums == mf.sums_text(reference.files)
        findings.append(
            Finding(destination.name, mf.SUMS, ok, None if ok else "differs from the catalog")
        )
    except FileNotFoundError:
        findings.append(Finding(destination.name, mf.SUMS, False, "missing"))
    for record in reference.files:
        plain_name = record.name.removesuffix(encryption.SUFFIX) if record.plain_sha256 else ""
        archive = (plain_name or record.name) in archives
        findings.append(
            await _check_file(destination, folder + record.name, record, identities, archive)
        )
    return findings
