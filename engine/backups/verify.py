"""Verify a backup: read every file back from each destination and check its checksum.

Per destination: `manifest.json` must describe the same files as the reference (the
catalog, else the first destination's manifest), `SHA256SUMS` must match them, and
every file's size and SHA-256 must match. With identities, encrypted files are also
decrypted on the fly and their plaintext SHA-256 checked. Nothing is written locally.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import anyio

from watchkeeper.engine.backup_plugin import BackupDestination, BackupError
from watchkeeper.engine.backups import encryption
from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups.pipeline import describe_error
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
) -> Finding:
    at_rest = hashlib.sha256()
    plain = hashlib.sha256()
    size = 0
    decrypting = bool(identities and record.plain_sha256)

    async def plain_bytes(data: bytes) -> None:
        plain.update(data)

    try:
        if decrypting:
            pipe = encryption.decrypter(identities or [], plain_bytes)
            error: Exception | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipe.run)
                try:
                    async for chunk in destination.get(key):
                        at_rest.update(chunk)
                        size += len(chunk)
                        await pipe.send(chunk)
                except Exception as exc:
                    error = exc
                finally:
                    pipe.close()
            if error is not None:
                raise error
            await pipe.finish()
        else:
            async for chunk in destination.get(key):
                at_rest.update(chunk)
                size += len(chunk)
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
    return Finding(destination.name, record.name, True, None, size)


async def verify_at(
    reference: mf.Manifest, destination: BackupDestination, identities: list[Any] | None = None
) -> list[Finding]:
    """Check one destination's copy of a backup against the reference manifest."""
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
        findings.append(await _check_file(destination, folder + record.name, record, identities))
    return findings
