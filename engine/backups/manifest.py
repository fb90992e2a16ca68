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
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from watchkeeper.engine.backups.plugin import BackupError
from watchkeeper.schema.base import NAME_PATTERN

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
FORMAT = 1
AGE_SUFFIX = ".age"
_NAME = re.compile(NAME_PATTERN)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Refused(BackupError):
    """A backup that must not be read back: a manifest, key or archive member that could
    lead outside where it belongs. The message names the culprit; callers add which backup
    and that nothing was restored."""


def quote(text: Any) -> str:
    """Quote a name from a backup for a one-line message (long names shortened)."""
    text = str(text)
    return repr(text if len(text) <= 120 else f"{text[:70]}...{text[-40:]}")


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


def is_plain_name(name: Any) -> bool:
    """Whether `name` can only mean a file inside a backup's own folder."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and name.isprintable()
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and name not in (MANIFEST, SUMS)
    )


def check(manifest: Manifest) -> None:
    """Refuse a manifest (or catalog entry) whose names could lead anywhere but its folder.

    Checked before anything is downloaded: the job and id are names as monitor.yaml
    allows them, every file a plain file name (no `/`, no leading `.`, no `..`, no control
    characters) listed once, with a SHA-256 of 64 hex digits.
    """
    for what, value in (("job", manifest.job), ("backup id", manifest.id)):
        if not isinstance(value, str) or not _NAME.match(value) or len(value) > 200:
            raise Refused(f"the manifest names the {what} {quote(value)}, which is not a name")
    if not manifest.files:
        raise Refused("the manifest lists no files")
    seen: set[str] = set()
    for record in manifest.files:
        name = record.name
        if not is_plain_name(name):
            raise Refused(
                f"the manifest lists a file named {quote(name)}, which is not a plain file name"
            )
        plain = name.removesuffix(AGE_SUFFIX) if manifest.encrypted else name
        if name in seen or plain in seen or not is_plain_name(plain):
            raise Refused(f"the manifest lists the file {quote(name)} twice")
        seen.update((name, plain))
        if not isinstance(record.sha256, str) or not _SHA256.match(record.sha256):
            raise Refused(f"the manifest gives {quote(name)} an invalid SHA-256")
        if record.size < 0:
            raise Refused(f"the manifest gives {quote(name)} a negative size")


def check_key(key: str) -> str:
    """Return `key` when it is a relative path without `.`, `..` or empty parts; else raise.

    Destinations call it on every key they are handed, so a key built from a crafted
    manifest can never name an object outside the destination's root or prefix.
    """
    parts = key.split("/") if isinstance(key, str) else [""]
    if (
        not key
        or "\x00" in key
        or not key.isprintable()
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"unsafe key {quote(key)}: not a relative path of plain names")
    return key
