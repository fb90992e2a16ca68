"""The `jsonl` notifier: append every notice to a file as one JSON line.

An audit trail of what was sent, or the input of a log shipper. Each line is the webhook
notifier's JSON with the time it was written and the notifier's name.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from watchkeeper.engine.notice import Notice
from watchkeeper.engine.notifier import DeliveryError, Notifier, NotifyContext
from watchkeeper.engine.redaction import REDACTOR
from watchkeeper.schema.alerting import NotifierOptions


class JsonLinesOptions(NotifierOptions):
    """Append each notice as one JSON line to a file."""

    path: str = Field(
        description="File to append to, created when missing; relative to monitor.yaml's folder."
    )


class JsonLinesNotifier(Notifier):
    type = "jsonl"
    Options = JsonLinesOptions

    async def send(self, notice: Notice, options: JsonLinesOptions, ctx: NotifyContext) -> None:
        import anyio

        path = Path(options.path)
        if not path.is_absolute():
            path = ctx.base_dir / path
        record: dict[str, Any] = {
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "notifier": ctx.name,
            # `notice_id` is the idempotency key: a resend after a crash repeats it
            **notice.webhook_payload(),
        }
        # the daemon masks secrets in what it prints and sends: so does every notifier
        line = json.dumps(REDACTOR.redact_obj(record), default=str) + "\n"
        try:
            await anyio.to_thread.run_sync(_append, path, line)
        except OSError as exc:
            # retryable: the outbox tries again (a full disk may be freed, a mount return)
            raise DeliveryError(f"jsonl `{ctx.name}`: cannot append to {path}: {exc}") from exc


def _append(path: Path, line: str) -> None:
    # one write() of a whole line in append mode: concurrent notices never interleave
    with path.open("a", encoding="utf-8") as file:
        file.write(line)
