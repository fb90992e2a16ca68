"""Backups: where copies go, what is backed up when, how long it is kept, restore drills."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from watchkeeper.schema.base import ConfigModel, Name, PluginOptions, Secret, empty_dict, empty_list
from watchkeeper.schema.schedule import Schedule
from watchkeeper.schema.units import Duration


class SourceOptions(PluginOptions):
    """Base of a backup source's keys (`source: {type: postgres, ...}`)."""

    plugin_kind = "backup source"


class DestinationOptions(PluginOptions):
    """Base of a backup destination's keys (`destinations: {local: {type: local, ...}}`)."""

    plugin_kind = "backup destination"


class Retention(ConfigModel):
    """How long backups are kept; the last good backup is never deleted."""

    keep_days: int | None = Field(
        None, ge=1, description="Keep every backup younger than this many days."
    )
    keep_daily: int | None = Field(
        None, ge=1, description="Keep the newest backup of each of the last N days."
    )
    keep_weekly: int | None = Field(
        None, ge=1, description="Keep the newest backup of each of the last N ISO weeks."
    )
    keep_monthly: int | None = Field(
        None, ge=1, description="Keep the newest backup of each of the last N months."
    )

    @model_validator(mode="after")
    def _something(self) -> Retention:
        if not any((self.keep_days, self.keep_daily, self.keep_weekly, self.keep_monthly)):
            raise ValueError(
                "retention needs at least one of keep_days, keep_daily, keep_weekly, keep_monthly"
            )
        return self


class Encryption(ConfigModel):
    """Encrypt backups at rest to age recipients (the host cannot read them back)."""

    recipients: list[str] = Field(
        min_length=1, description="age public keys (`age1...`) or SSH public keys that may decrypt."
    )

    @field_validator("recipients")
    @classmethod
    def _parse(cls, recipients: list[str]) -> list[str]:
        # a typo in a key would otherwise surface only at 02:00, as a failed backup; keys
        # with another prefix are reported by the cross-reference check
        from pyrage import ssh, x25519

        for index, text in enumerate(recipients):
            try:
                if text.startswith("age1"):
                    x25519.Recipient.from_str(text.strip())
                elif text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
                    ssh.Recipient.from_str(text.strip())
            except Exception as exc:
                raise ValueError(
                    f"recipient {index + 1} is not a valid public key: {exc}"
                ) from None
        return recipients


class BackupJobBase(ConfigModel):
    """A scheduled backup: one source, one or more destinations."""

    schedule: Schedule = Field(description="When the backup runs.")
    to: list[Name] = Field(min_length=1, description="Destination names.")
    retention: Retention | None = Field(None, description="How long copies are kept.")
    grace: Duration = Field(7200.0, description="No good backup this long after a due run: alert.")
    severity: str = Field("high", description="Severity of a failed or overdue backup's alert.")
    timeout: Duration = Field(21600.0, description="Longest one run may take.")
    encrypt: Encryption | None = Field(None, description="Encrypt at rest (age format).")
    labels: dict[str, str] = Field(default_factory=empty_dict, description="Labels for routing.")


class Drill(ConfigModel):
    """A tested restoration: restore the latest backup into a scratch database and check it."""

    job: Name = Field(description="Backup job whose latest good backup is restored.")
    schedule: Schedule = Field(description="When the drill runs.")
    scratch_dsn: Secret | None = Field(
        None,
        description="Database server to restore into; "
        "a scratch database is created there and dropped "
        "after.",
    )
    scratch_dir: str | None = Field(None, description="Directory to restore file backups into.")
    verify: list[str] = Field(
        default_factory=empty_list,
        description="Checks to run against the restored copy (their DSN is pointed at it).",
    )
    min_rows: int | None = Field(
        None, ge=0, description="Fail when the restored database has fewer rows than this in all."
    )
    severity: str = Field("high", description="Severity of a failed drill's alert.")
    identity: str | None = Field(None, description="age identity file for encrypted backups.")
    timeout: Duration = Field(21600.0, description="Longest one drill may take.")
