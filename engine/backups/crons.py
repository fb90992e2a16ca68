"""Sentry Crons check-ins for backup jobs: in_progress, then ok or error.

Only when `sentry.dsn` is set; otherwise every call is a no-op. The check-ins go through
a private sentry-sdk client in its own scope (the daemon's own Sentry set-up, if any, is
left alone), in a worker thread, and a Sentry outage never fails a backup.
Monitor slug: `backup-<job>`; the monitor's schedule is sent along (crontab or interval)
so Sentry creates it on the first check-in.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

log = logging.getLogger("watchkeeper.backups.crons")

FLUSH_TIMEOUT = 5.0


def monitor_config(job: Any, default_tz: str) -> dict[str, Any]:
    """Return the Sentry monitor config of a job's schedule."""
    schedule = job.schedule
    config: dict[str, Any] = {
        "checkin_margin": max(1, int(job.grace // 60)),
        "max_runtime": max(1, int(job.timeout // 60)),
    }
    if schedule.cron:
        config["schedule"] = {"type": "crontab", "value": schedule.cron}
        config["timezone"] = schedule.timezone or default_tz
    else:
        minutes = max(1, round(float(schedule.every) / 60))
        config["schedule"] = {"type": "interval", "value": minutes, "unit": "minute"}
    return config


class Crons:
    """Check-ins to one Sentry DSN (or nowhere)."""

    def __init__(self, dsn: str | None, *, environment: str | None = None):
        self.dsn = dsn or None
        self.environment = environment
        self._client: Any = None

    def __bool__(self) -> bool:
        return self.dsn is not None

    def _get_client(self) -> Any:
        if self._client is None:
            import sentry_sdk
            from sentry_sdk import client as sdk_client

            # Client() renames the SDK process-wide after its integrations: keep it
            sdk_info = dict(sdk_client.SDK_INFO)
            try:
                self._client = sentry_sdk.Client(
                    self.dsn,
                    environment=self.environment,
                    default_integrations=False,
                    auto_enabling_integrations=False,
                    integrations=[],
                    send_client_reports=False,
                    release="",  # not None: that would run `git` to guess one
                )
            finally:
                sdk_client.SDK_INFO.clear()
                sdk_client.SDK_INFO.update(sdk_info)
        return self._client

    def _send(self, slug: str, status: str, check_in_id: str | None, duration: float | None,
              config: dict[str, Any] | None) -> str | None:  # fmt: skip
        import sentry_sdk
        from sentry_sdk.crons import capture_checkin

        client = self._get_client()
        with sentry_sdk.new_scope() as scope:
            scope.set_client(client)
            sent = capture_checkin(
                monitor_slug=slug,
                check_in_id=check_in_id,
                status=status,
                duration=duration,
                monitor_config=config,
            )
        client.flush(timeout=FLUSH_TIMEOUT)
        return sent

    async def checkin(self, slug: str, status: str, *, check_in_id: str | None = None,
                      duration: float | None = None,
                      config: dict[str, Any] | None = None) -> str | None:  # fmt: skip
        """Send one check-in; return its id (None when off or when it failed)."""
        if not self:
            return None
        try:
            return await anyio.to_thread.run_sync(
                self._send, slug, status, check_in_id, duration, config, abandon_on_cancel=True
            )
        except Exception:
            log.warning("Sentry check-in failed", exc_info=True, extra={"monitor": slug})
            return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close(timeout=FLUSH_TIMEOUT)
            self._client = None
