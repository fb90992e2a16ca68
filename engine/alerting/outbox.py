"""The durable outbox: a notice is stored before it is sent and forgotten once accepted.

Exactly as DESIGN.md Semantics ► Outbox says: a delivery is written to the store first,
sent, and deleted when the receiver accepts it (2xx or the protocol's equivalent). A
failed send is retried with exponential backoff and jitter until the notifier's
`give_up_after`; then the outbox reports it so the other routes hear that this receiver
is failing. A crash between acceptance and deletion causes at most one resend, with the
same idempotency key. A firing notice still unsent when its alerts resolve collapses into
the resolved one (not for receivers that track incidents themselves, like PagerDuty).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import anyio

from watchkeeper.engine.alerting import events
from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import DeliveryError, NotifyContext
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.state.store import Row, StateStore

log = logging.getLogger("watchkeeper.outbox")

BACKOFF_START = 5.0
BACKOFF_MAX = 600.0
POLL_INTERVAL = 2.0
CLI_CLAIM = 120.0  # a CLI-enqueued delivery is the CLI's for this long, then anyone's
COLLECTION = "outbox"


@dataclass
class Delivery:
    """One notice on its way to one notifier."""

    id: str
    notifier: str
    notice: dict[str, Any]
    created_at: float
    next_at: float
    attempts: int = 0
    last_error: str | None = None
    status: str = "pending"  # pending | gave_up
    group: str | None = None
    owner: str | None = None
    """The replica that enqueued it; others send it only once that replica is gone."""
    firing: bool = False
    alert_ids: list[str] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Delivery:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


SentFn = Callable[[Delivery, Notice], Awaitable[None]]


def backoff(attempts: int, start: float = BACKOFF_START, limit: float = BACKOFF_MAX) -> float:
    """Seconds before the next attempt: doubling from `start` up to `limit`, jittered ±50%."""
    base = min(limit, start * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.5, 1.5)


class Outbox:
    """Store, send, retry and forget deliveries."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        config: Any,
        reg: Any,
        base_dir: Any,
        *,
        dry_run: bool = False,
        printer: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.clock = clock
        self.config = config
        self.reg = reg
        self.base_dir = base_dir
        self.dry_run = dry_run
        self.printer = printer or print
        self.pending: dict[str, Delivery] = {}
        self.memory_only: set[str] = set()  # deliveries the store has not accepted yet
        self.on_sent: list[SentFn] = []
        self.on_gave_up: list[Callable[[Delivery], Awaitable[None]]] = []
        self.sent_count = 0
        self.failed_count = 0
        self.inflight: set[str] = set()
        # the deliveries found in the store at start-up, kept after they are sent until
        # alerting has checked its restored groups against them (`queued`)
        self.found_at_start: dict[str, Delivery] | None = None
        self.notifiers: dict[str, Any] = {}
        self._wake = anyio.Event()
        self._to_delete: set[str] = set()  # accepted or dropped; removed from the store soon
        self.replica: str | None = None  # set when daemons share the store
        self.members: Callable[[], list[str]] = lambda: []
        self.limit = 10_000

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, notifier: str, notice: Notice, *, group: str | None = None) -> Delivery:
        """Store a delivery, then wake the sender. Never raises for a store outage."""
        now = self.clock.now()
        delivery = Delivery(
            id=f"{notice.id}:{notifier}",
            notifier=notifier,
            notice=notice.to_doc(),
            created_at=now,
            next_at=now,
            group=group,
            owner=self.replica,
            firing=bool(notice.firing),
            alert_ids=[a.id for a in notice.alerts],
        )
        # stored before the sender can see it: a delivery sent and deleted while its first
        # write was still under way would come back from the store and go out twice
        await self._persist(delivery)
        self.pending[delivery.id] = delivery
        self._wake.set()
        return delivery

    async def _persist(self, delivery: Delivery) -> None:
        try:
            await self.store.put(COLLECTION, {delivery.id: delivery.to_doc()})
            self.memory_only.discard(delivery.id)
        except Exception as exc:  # the store is down: keep it in memory and send anyway
            if delivery.id not in self.memory_only:
                log.error(
                    "outbox: store unreachable, delivery kept in memory",
                    extra={"delivery": delivery.id, "error": str(exc)},
                )
            self.memory_only.add(delivery.id)
            if len(self.memory_only) > self.limit:
                log.error("outbox: in-memory bound reached", extra={"limit": self.limit})

    def collapse(self, notifier: str, alert_ids: set[str]) -> bool:
        """Drop unsent firing deliveries to a notifier about only these alerts (now resolved);
        True when one was dropped. The caller sends one resolved notice in their place.

        Matching by alert rather than by group also catches a delivery a replica that died
        left behind for an alert this one has taken over.
        """
        dropped = False
        for delivery in list(self.pending.values()):
            if (
                delivery.notifier == notifier
                and delivery.firing
                and delivery.id not in self.inflight
                and delivery.status == "pending"
                and delivery.alert_ids
                and set(delivery.alert_ids) <= alert_ids
            ):
                self.pending.pop(delivery.id)
                self._forget_later(delivery)
                dropped = True
        return dropped

    def queued(
        self, group: str, notifier: str, *, since: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """What the notices of a group to a notifier, created after `since`, unsent or found
        in the store at start-up, say of each alert, by alert id: its status, severity and
        flapping in the latest of them. Acknowledgements are not counted: they say nothing
        new about the alert."""
        said: dict[str, dict[str, Any]] = {}
        candidates = {**(self.found_at_start or {}), **self.pending}
        waiting = [
            d
            for d in candidates.values()
            if d.group == group
            and d.notifier == notifier
            and (since is None or d.created_at > since)
        ]
        for delivery in sorted(waiting, key=lambda d: d.created_at):
            for item in delivery.notice.get("alerts", ()):
                if item.get("change") == "acknowledged":
                    continue
                said[item["id"]] = {
                    "status": item["status"],
                    "severity": item["severity"],
                    "flapping": bool(item.get("flapping")),
                }
        return said

    def forget_found_at_start(self) -> None:
        """Alerting has checked its restored groups: the sent ones need not be kept."""
        self.found_at_start = {}

    def has_pending(self, alert_id: str) -> bool:
        """True while a delivery about this alert waits to be sent."""
        return any(alert_id in d.alert_ids for d in self.pending.values())

    def _forget_later(self, delivery: Delivery) -> None:
        self._to_delete.add(delivery.id)
        self._wake.set()

    # -- sending ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Pick up deliveries left in the store (by a previous run, or the CLI)."""
        try:
            docs = await self.store.get_all(COLLECTION)
        except Exception:
            return
        members = self.members()
        found: dict[str, Delivery] = {}
        for key, doc in docs.items():
            if key not in self.pending and key not in self.inflight and key not in self._to_delete:
                delivery = Delivery.from_doc(doc)
                if delivery.status == "pending" and self._mine(delivery, members):
                    self.pending[key] = delivery
                    if self.found_at_start is None:
                        found[key] = delivery
        if self.found_at_start is None:
            self.found_at_start = found

    def _mine(self, delivery: Delivery, members: list[str]) -> bool:
        """Send a stored delivery only if it is ours, or its replica is gone (then the one
        replica that rendezvous hashing picks takes it)."""
        if (delivery.owner or "").startswith("cli:") and (
            self.clock.now() - delivery.created_at < CLI_CLAIM
        ):
            return False  # a command line is still delivering it itself
        if self.replica is None:
            return True
        if delivery.owner == self.replica:
            return True
        if delivery.owner in members:
            return False
        from watchkeeper.engine.state.replicas import owner

        return owner(members, delivery.id) == self.replica

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Send due deliveries until cancelled."""
        await self.load()
        task_status.started()
        last_poll = self.clock.now()
        async with anyio.create_task_group() as tg:
            while True:
                now = self.clock.now()
                if now - last_poll >= POLL_INTERVAL:
                    await self.load()
                    await self._retry_persist()
                    last_poll = now
                await self._delete_forgotten()
                for delivery in sorted(self.pending.values(), key=lambda d: d.next_at):
                    if delivery.next_at > now:
                        break
                    if delivery.id in self.inflight or delivery.status != "pending":
                        continue
                    self.inflight.add(delivery.id)
                    tg.start_soon(self._attempt, delivery, name=f"deliver {delivery.id}")
                due = [
                    d.next_at
                    for d in self.pending.values()
                    if d.id not in self.inflight and d.status == "pending"
                ]
                wait = min([*due, now + POLL_INTERVAL]) - self.clock.now()
                with anyio.move_on_after(max(0.0, wait)):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def drain(self, within: float) -> None:
        """Attempt every pending delivery now, once, waiting at most `within` seconds."""
        with anyio.move_on_after(within):
            async with anyio.create_task_group() as tg:
                for delivery in list(self.pending.values()):
                    if delivery.status == "pending" and delivery.id not in self.inflight:
                        self.inflight.add(delivery.id)
                        tg.start_soon(self._attempt, delivery)
        await self._delete_forgotten()

    async def _retry_persist(self) -> None:
        for key in list(self.memory_only):
            delivery = self.pending.get(key)
            if delivery is None:
                self.memory_only.discard(key)
            else:
                await self._persist(delivery)

    async def _delete_forgotten(self) -> None:
        if not self._to_delete:
            return
        keys = sorted(self._to_delete)
        try:
            await self.store.delete(COLLECTION, keys)
            self._to_delete -= set(keys)
        except Exception:
            pass  # deleted on a later pass; until then a restart would resend once

    def notifier_for(self, name: str) -> tuple[Any, Any] | None:
        options = self.config.notifiers.get(name)
        if options is None:
            return None
        plugin = self.notifiers.get(options.type)
        if plugin is None:
            plugin = self.notifiers[options.type] = self.reg.get("notifier", options.type)()
        return plugin, options

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            await self._send(delivery)
        finally:
            self.inflight.discard(delivery.id)
            self._wake.set()

    async def _send(self, delivery: Delivery) -> None:
        found = self.notifier_for(delivery.notifier)
        if found is None:  # the notifier was removed by a reload
            log.warning(
                "outbox: notifier no longer exists; delivery dropped",
                extra={"delivery": delivery.id, "notifier": delivery.notifier},
            )
            self.pending.pop(delivery.id, None)
            self._forget_later(delivery)
            return
        plugin, options = found
        notice = Notice.from_doc(delivery.notice)
        delivery.attempts += 1
        ctx = NotifyContext(
            name=delivery.notifier,
            log=logging.getLogger(f"watchkeeper.notify.{delivery.notifier}"),
            timeout=options.timeout,
            base_dir=self.base_dir,
            attempt=delivery.attempts,
        )
        try:
            if self.dry_run:
                self.printer(self.preview(delivery.notifier, notice, options))
            else:
                with anyio.fail_after(options.timeout):
                    await plugin.send(notice, options, ctx)
        except Exception as exc:
            await self._failed(delivery, options, exc)
            return
        # accepted: forget it first (a crash now means at most one resend), then tell
        self.pending.pop(delivery.id, None)
        self._forget_later(delivery)
        await self._delete_forgotten()
        self.sent_count += 1
        log.info(
            "notice sent",
            extra={
                "notifier": delivery.notifier,
                "notice": notice.id,
                "kind": notice.kind,
                "status": notice.status,
                "alerts": len(notice.alerts),
                "attempts": delivery.attempts,
            },
        )
        try:
            await self.store.append(
                "notices",
                [
                    Row(
                        key=delivery.notifier,
                        at=self.clock.now(),
                        data={
                            "notice": notice.id,
                            "kind": notice.kind,
                            "status": notice.status,
                            "title": notice.title,
                            "alerts": delivery.alert_ids,
                        },
                    )
                ],
            )
        except Exception:
            pass  # history only
        for callback in self.on_sent:
            await callback(delivery, notice)
        await events.emit(
            self.reg.manager, "watchkeeper_notice_sent", notifier=delivery.notifier, notice=notice
        )

    async def _failed(self, delivery: Delivery, options: Any, exc: Exception) -> None:
        self.failed_count += 1
        if isinstance(exc, TimeoutError):
            message = f"no answer within {options.timeout:g}s"
        else:
            message = REDACTOR.redact(str(exc) or type(exc).__name__)
        retryable = getattr(exc, "retryable", True) if isinstance(exc, DeliveryError) else True
        delivery.last_error = message
        now = self.clock.now()
        if not retryable or now - delivery.created_at >= options.give_up_after:
            delivery.status = "gave_up"
            log.error(
                "notice could not be delivered; giving up",
                extra={
                    "notifier": delivery.notifier,
                    "delivery": delivery.id,
                    "attempts": delivery.attempts,
                    "error": message,
                },
            )
            self.pending.pop(delivery.id, None)
            await self._persist(delivery)
            for callback in self.on_gave_up:
                await callback(delivery)
            return
        retry_after = getattr(exc, "retry_after", None)
        wait = backoff(delivery.attempts, options.retry_initial, options.retry_max)
        delivery.next_at = now + max(wait, float(retry_after or 0))
        log.warning(
            "notice delivery failed; will retry",
            extra={
                "notifier": delivery.notifier,
                "delivery": delivery.id,
                "attempts": delivery.attempts,
                "error": message,
                "retry_in": round(delivery.next_at - now, 1),
            },
        )
        await self._persist(delivery)

    def preview(self, name: str, notice: Notice, options: Any) -> str:
        """Render what would be sent (for --dry-run)."""
        plugin = self.notifiers.get(options.type)
        render = getattr(plugin, "preview", None)
        if callable(render):
            body = render(notice, options)
        else:
            lines = [notice.title]
            lines += [
                f"  [{a.status}] {a.severity} {a.check}"
                f"{'@' + a.environment if a.environment else ''}: {a.summary}"
                for a in notice.alerts
            ]
            if notice.text:
                lines.append(notice.text)
            lines += [f"  [ ] {item}" for item in notice.checklist]
            body = "\n".join(lines)
        return REDACTOR.redact(f"--- would send to {name} ({options.type}) ---\n{body}")
