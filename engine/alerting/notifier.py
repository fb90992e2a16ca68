"""What a notifier is: the class contract for delivering one notice to a receiver."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from watchkeeper.schema.alerting import NotifierOptions


@dataclass(slots=True)
class NotifyContext:
    """What a notifier gets besides the notice and its options."""

    name: str
    """The notifier's name in monitor.yaml (`alerts`, `dev-team`)."""
    log: logging.Logger
    timeout: float
    """Seconds one delivery attempt may take (the engine cancels it after)."""
    base_dir: Path
    attempt: int = 1
    """1 for the first attempt; resends after a failure or a crash count up."""


class DeliveryError(Exception):
    """The receiver did not accept a notice; the outbox retries it later."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Notifier:
    """Base of notifier plugins: a `type`, an `Options` model and `send()`.

    `send()` returns once the receiver accepted the notice (2xx or the protocol's
    equivalent) and raises DeliveryError otherwise. It receives the notice's idempotency
    key and passes it on where the receiver supports one, so a resend after a crash is
    recognised as the same notice.
    """

    type: ClassVar[str]
    Options: ClassVar[type[NotifierOptions]]
    groups: ClassVar[bool] = True
    """False for receivers that track incidents themselves (one event per alert)."""

    async def send(self, notice: Any, options: Any, ctx: NotifyContext) -> None:
        """Deliver one notice; return when accepted, raise DeliveryError when not."""
        raise NotImplementedError(f"notifier {self.type!r} does not implement send()")
