"""Fetch a backup back from a destination, check it, decrypt it, hand it to its source.

Files are downloaded into a private temporary directory while their SHA-256 is computed;
a file whose size or checksum differs from the reference manifest stops the restore
before anything touches the target. Encrypted files are then decrypted with the
operator's identity (and their plaintext checksum checked too). The reference is the
catalog when it knows the backup, else the `manifest.json` at the destination, so a
restore works from a destination alone after the state store is lost.

Whoever can write to a destination can write any manifest, so it is checked
(`manifest.check`) before anything is downloaded: every file name must be a plain name
inside the backup's own folder. A refusal raises `BackupError("backup ID: ...; nothing
was restored")`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.backups import encryption
from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups.pipeline import describe_error
from watchkeeper.engine.backups.plugin import (
    BackupDestination,
    BackupError,
    BackupSource,
    RestoreContext,
)

log = logging.getLogger("watchkeeper.backups")


async def read_small(destination: BackupDestination, key: str, limit: int = 16 << 20) -> bytes:
    """Read a small object whole (a manifest); refuse one larger than `limit`."""
    data = bytearray()
    async for chunk in destination.get(key):
        data += chunk
        if len(data) > limit:
            raise BackupError(f"{key} at {destination.name} is larger than {limit} bytes")
    return bytes(data)


async def find_manifest(destination: BackupDestination, backup_id: str) -> mf.Manifest | None:
    """Find and read a backup's manifest at a destination by id, without the catalog.

    Only `<job>/<id>/manifest.json` counts; the manifest must name that job and id, and
    pass `manifest.check` (else `manifest.Refused`).
    """
    job = None
    for key in await destination.list(""):
        parts = key.split("/")
        if len(parts) == 3 and parts[1:] == [backup_id, mf.MANIFEST]:
            job = parts[0]
            break
    if job is None:
        return None
    key = mf.folder(job, backup_id) + mf.MANIFEST
    try:
        found = mf.Manifest.from_json(await read_small(destination, key))
    except ValueError as exc:
        raise mf.Refused(f"{key} at {destination.name} is {exc}") from None
    if found.id != backup_id or found.job != job:
        raise mf.Refused(
            f"the manifest at {destination.name}:{key} describes backup {mf.quote(found.id)} "
            f"of the job {mf.quote(found.job)}"
        )
    mf.check(found)
    return found


async def list_manifests(destination: BackupDestination) -> list[mf.Manifest]:
    """Read every backup manifest a destination holds (for `backup list --from-destination`)."""
    found = []
    for key in await destination.list(""):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == mf.MANIFEST:
            try:
                manifest = mf.Manifest.from_json(await read_small(destination, key))
                mf.check(manifest)
                if manifest.job != parts[0] or manifest.id != parts[1]:
                    raise ValueError("the manifest names another job or id than its folder")
                found.append(manifest)
            except (ValueError, BackupError) as exc:
                log.warning("unreadable manifest", extra={"key": key, "error": str(exc)})
    found.sort(key=lambda m: m.started_at, reverse=True)
    return found


def manifest_of(entry: dict[str, Any]) -> mf.Manifest:
    """Return the reference manifest of a catalog entry (`manifest.Refused` if malformed)."""
    try:
        return mf.Manifest(
            id=entry["id"],
            job=entry["job"],
            source=entry.get("source") or "",
            started_at=entry.get("started_at") or 0.0,
            finished_at=entry.get("finished_at") or 0.0,
            files=[mf.FileRecord.from_doc(f) for f in entry.get("files") or []],
            recipients=list(entry.get("recipients") or []),
            info=entry.get("info") or {},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise mf.Refused(f"the catalog entry is not a backup record ({exc})") from None


async def fetch(
    manifest: mf.Manifest,
    destination: BackupDestination,
    staging: Path,
    identities: list[Any] | None,
) -> dict[str, Path]:
    """Download, check and decrypt every file of a backup; return plain name -> local path."""
    folder = mf.folder(manifest.job, manifest.id)
    if manifest.encrypted and not identities:
        raise BackupError(
            "the backup is encrypted: pass --identity FILE (the age identity of one of "
            f"its recipients: {', '.join(r[:16] + '...' for r in manifest.recipients)})"
        )
    mf.check(manifest)  # every name is a plain file name: staging / name stays in staging
    files: dict[str, Path] = {}
    for record in manifest.files:
        path = staging / record.name
        if path.parent != staging:
            raise mf.Refused(f"the manifest lists a file named {mf.quote(record.name)}")
        digest = hashlib.sha256()
        size = 0
        handle = await anyio.to_thread.run_sync(lambda p=path: open(p, "wb"))  # noqa: SIM115
        try:
            async for chunk in destination.get(folder + record.name):
                digest.update(chunk)
                size += len(chunk)
                await anyio.to_thread.run_sync(handle.write, chunk)
        except FileNotFoundError:
            raise BackupError(f"{record.name} is missing at {destination.name}") from None
        finally:
            handle.close()
        if size != record.size or digest.hexdigest() != record.sha256:
            raise BackupError(
                f"{record.name} at {destination.name} does not match the manifest "
                f"(size {size} vs {record.size}, sha256 {digest.hexdigest()[:12]} vs "
                f"{record.sha256[:12]})"
            )
        if record.name.endswith(encryption.SUFFIX) and manifest.encrypted:
            plain = staging / record.name[: -len(encryption.SUFFIX)]
            await anyio.to_thread.run_sync(encryption.decrypt_file, path, plain, identities)
            path.unlink()
            if record.plain_sha256:
                got = await anyio.to_thread.run_sync(_sha256_file, plain)
                if got != record.plain_sha256:
                    raise BackupError(
                        f"{record.name}: decrypted content does not match the manifest"
                    )
            files[plain.name] = plain
        else:
            files[record.name] = path
    return files


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def restore(
    *,
    manifest: mf.Manifest,
    source: BackupSource,
    options: Any,
    destinations: list[BackupDestination],
    target: str,
    identities: list[Any] | None,
    base_dir: Path,
    clean: bool = False,
) -> dict[str, Any]:
    """Restore a backup into `target` from the first destination that yields it intact.

    A manifest or archive that breaks the restore checks raises `BackupError("backup ID:
    <what>; nothing was restored")`, whichever destination it came from.
    """
    try:
        mf.check(manifest)
        return await _restore(
            manifest=manifest,
            source=source,
            options=options,
            destinations=destinations,
            target=target,
            identities=identities,
            base_dir=base_dir,
            clean=clean,
        )
    except mf.Refused as exc:
        raise BackupError(refusal(manifest.id, exc, "restored")) from None


def refusal(backup_id: str, exc: BaseException, action: str) -> str:
    """Return the one line naming a refused backup: `backup ID: <what>; nothing was ...`."""
    shown = backup_id if mf.is_plain_name(backup_id) else mf.quote(backup_id)
    return f"backup {shown}: {exc}; nothing was {action}"


async def _restore(
    *,
    manifest: mf.Manifest,
    source: BackupSource,
    options: Any,
    destinations: list[BackupDestination],
    target: str,
    identities: list[Any] | None,
    base_dir: Path,
    clean: bool,
) -> dict[str, Any]:
    problems = []
    with tempfile.TemporaryDirectory(prefix="watchkeeper-restore-") as staging:
        files = None
        used = None
        for destination in destinations:
            try:
                files = await fetch(manifest, destination, Path(staging), identities)
                used = destination
                break
            except mf.Refused:
                raise
            except BackupError as exc:
                if "encrypted" in str(exc) or "decrypt" in str(exc):
                    raise
                problems.append(str(exc))
            except Exception as exc:
                problems.append(f"{destination.name}: {describe_error(exc)}")
        if files is None or used is None:
            raise BackupError(
                "no destination yielded an intact copy: " + ("; ".join(problems) or "none given")
            )
        ctx = RestoreContext(
            job=manifest.job,
            base_dir=base_dir,
            log=logging.getLogger(f"watchkeeper.backups.{manifest.source}"),
            clean=clean,
        )
        facts = await source.restore(options, files, target, ctx)
    return {
        "id": manifest.id,
        "job": manifest.job,
        "from": used.name,
        "skipped": problems,
        "notes": ctx.notes,
        **(facts or {}),
    }
