"""Reading backups back: find a backup's copies, verify them, restore one, list a
destination. How a copy is checked and restored is `verify.py` and `restore.py`.

Part of `Backups` (service.py).
"""

from __future__ import annotations

import logging
from typing import Any

from watchkeeper.engine.backups import encryption as enc
from watchkeeper.engine.backups import manifest as mf
from watchkeeper.engine.backups import restore as rs
from watchkeeper.engine.backups import verify as vf
from watchkeeper.engine.backups.catalog import is_good
from watchkeeper.engine.backups.pipeline import describe_error
from watchkeeper.engine.backups.plugin import BackupError

log = logging.getLogger("watchkeeper.backups")


class BackupReadBack:
    """Backups read back from their destinations: located, verified, restored, listed.

    A part of `Backups`, which supplies the configuration, catalog, sources and
    destinations used here.
    """

    async def locate(
        self, backup_id: str, *, only: str | None = None
    ) -> tuple[mf.Manifest, list[str]]:
        """Return a backup's reference manifest and the destinations to read it from.

        The catalog is the reference when it knows the id (a unique prefix will do); else
        every configured destination (or `only`) is searched for its manifest. Either way
        the manifest must pass `manifest.check` (else `manifest.Refused`).
        """
        entry = await self.catalog.resolve(backup_id)
        configured = self.config.backups.destinations
        if only is not None and only not in configured:
            raise BackupError(f"unknown destination {only!r} (configured: {', '.join(configured)})")
        if entry is not None:
            if not is_good(entry):
                raise BackupError(
                    f"backup {entry['id']} is {entry.get('status')}: it holds no copy"
                )
            names = [only] if only else [d for d in entry["destinations"] if d in configured]
            if not names:
                raise BackupError(
                    f"none of the destinations of {entry['id']} is configured any more"
                )
            reference = rs.manifest_of(entry)
            mf.check(reference)
            return reference, names
        reference: mf.Manifest | None = None
        holders: list[str] = []
        for name in [only] if only else list(configured):
            destinations = self.open_destinations([name])
            try:
                found = await rs.find_manifest(destinations[name], backup_id)
            except mf.Refused:
                raise
            except Exception as exc:
                log.warning(
                    "destination unreadable",
                    extra={"destination": name, "error": describe_error(exc)},
                )
                found = None
            finally:
                await self.close_destinations(destinations)
            if found is not None:
                reference = reference or found
                holders.append(name)
        if reference is not None:
            return reference, holders
        raise BackupError(f"no backup {backup_id!r} in the catalog or at any destination")

    async def verify(
        self, backup_id: str, *, identity: str | None = None, only: str | None = None
    ) -> tuple[mf.Manifest, list[vf.Finding]]:
        """Re-read a backup from each of its destinations and check every checksum.

        A manifest that fails `manifest.check` raises `BackupError("backup ID: ...;
        nothing was verified")`; archive members that break the restore checks are
        findings of their file.
        """
        try:
            reference, names = await self.locate(backup_id, only=only)
        except mf.Refused as exc:
            raise BackupError(rs.refusal(backup_id, exc, "verified")) from None
        identities = enc.load_identities(identity) if identity else None
        destinations = self.open_destinations(names)
        findings: list[vf.Finding] = []
        archives = self._archives(reference.source)
        try:
            for destination in destinations.values():
                try:
                    findings += await vf.verify_at(reference, destination, identities, archives)
                except Exception as exc:
                    findings.append(vf.Finding(destination.name, "*", False, describe_error(exc)))
        finally:
            await self.close_destinations(destinations)
        return reference, findings

    async def restore(
        self,
        backup_id: str,
        target: str,
        *,
        identity: str | None = None,
        only: str | None = None,
        clean: bool = False,
    ) -> dict[str, Any]:
        """Restore a backup into a database (DSN) or directory, from an intact copy."""
        try:
            reference, names = await self.locate(backup_id, only=only)
        except mf.Refused as exc:
            raise BackupError(rs.refusal(backup_id, exc, "restored")) from None
        identities = enc.load_identities(identity) if identity else None
        job = self.jobs.get(reference.job)
        source = self.source(reference.source)
        if job is not None and job.source.type == reference.source:
            options = job.source
        else:
            options = source.Options.model_construct()  # only restore-side defaults matter
        destinations = self.open_destinations(names)
        try:
            return await rs.restore(
                manifest=reference,
                source=source,
                options=options,
                destinations=list(destinations.values()),
                target=target,
                identities=identities,
                base_dir=self.base_dir,
                clean=clean,
            )
        finally:
            await self.close_destinations(destinations)

    def _archives(self, source_type: str) -> frozenset[str]:
        """Return the plain file names a source's backups hold as tar.gz archives."""
        try:
            return frozenset(getattr(self.source(source_type), "archives", ()))
        except Exception:
            return frozenset()

    async def list_destination(self, name: str) -> list[dict[str, Any]]:
        """Return the backups a destination holds, read from their manifests (no store)."""
        destinations = self.open_destinations([name])
        try:
            manifests = await rs.list_manifests(destinations[name])
        finally:
            await self.close_destinations(destinations)
        return [
            {
                "id": m.id,
                "job": m.job,
                "started_at": m.started_at,
                "finished_at": m.finished_at,
                "status": "ok",
                "size_bytes": m.size_bytes,
                "sha256": m.sha256,
                "destinations": [name],
                "encrypted": m.encrypted,
                "error": None,
            }
            for m in manifests
        ]
