"""The manifest written beside every backup, so a destination can be read without the store.

A backup lives under `<job>/<id>/` at each destination: its data files, `manifest.json`
(every file's name, size and SHA-256, the job, the times, the source type, the
encryption recipients) and `SHA256SUMS` (the stock `sha256sum -c` format). The catalog's
`sha256` of a backup is the SHA-256 of that `SHA256SUMS` file, so one number vouches for
every file, and `sha256sum SHA256SUMS` on any copy shows it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
FORMAT = 1


@dataclass
class FileRecord:
    """One file of a backup as stored: size and SHA-256 of the bytes at rest."""

    name: str
    size: int
    sha256: str
    plain_size: int | None = None
    """Size before encryption (encrypted files only)."""
    plain_sha256: str | None = None
    """SHA-256 before encryption (encrypted files only): checked by verify --identity."""

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FileRecord:
        return cls(
            name=doc["name"],
            size=int(doc["size"]),
            sha256=doc["sha256"],
            plain_size=doc.get("plain_size"),
            plain_sha256=doc.get("plain_sha256"),
        )


@dataclass
class Manifest:
    """What `manifest.json` holds."""

    id: str
    job: str
    source: str
    started_at: float
    finished_at: float
    files: list[FileRecord]
    recipients: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """What the source reported (tables, row counts, pg_dump version...)."""

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(sums_text(self.files).encode()).hexdigest()

    def to_json(self) -> bytes:
        from watchkeeper.engine.backups.catalog import iso

        doc = {
            "format": FORMAT,
            "id": self.id,
            "job": self.job,
            "source": self.source,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "encryption": {"format": "age", "recipients": self.recipients}
            if self.recipients
            else None,
            "files": [f.public() for f in self.files],
            "info": self.info,
        }
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse manifest.json; ValueError when it is not one."""
        from watchkeeper.engine.backups.catalog import parse_iso

        try:
            doc = json.loads(data)
            encryption = doc.get("encryption") or {}
            return cls(
                id=doc["id"],
                job=doc["job"],
                source=doc["source"],
                started_at=parse_iso(doc["started_at"]),
                finished_at=parse_iso(doc["finished_at"]),
                files=[FileRecord.from_doc(f) for f in doc["files"]],
                recipients=list(encryption.get("recipients") or []),
                info=doc.get("info") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a watchkeeper manifest: {exc}") from None


def sums_text(files: list[FileRecord]) -> str:
    """Return the SHA256SUMS file of a backup's files (sorted by name)."""
    return "".join(f"{f.sha256}  {f.name}\n" for f in sorted(files, key=lambda f: f.name))


def folder(job: str, backup_id: str) -> str:
    """Return the key prefix of one backup at a destination."""
    return f"{job}/{backup_id}/"
