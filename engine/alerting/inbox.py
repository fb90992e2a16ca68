"""What the CLI and other replicas leave in the store for this daemon: acknowledgements,
silences, and the conditions of the check instances it owns."""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.escalation import Escalation
from watchkeeper.engine.alerting.holds import Holds


class Inbox:
    """Apply the requests written to the store."""

    def __init__(self, runtime: Any, holds: Holds, escalation: Escalation):
        self.runtime = runtime
        self.holds = holds
        self.escalation = escalation
        self._acks_seen: set[str] = set()
        self.replica: str | None = None  # set when daemons share the store

    async def poll(self) -> None:
        """Apply acks and silences written to the store by the CLI (or another replica)."""
        store = self.runtime.store
        try:
            acks = await store.get_all("acks")
            from watchkeeper.engine.alerting.silences import load_silences

            self.holds.silences = await load_silences(store)
        except Exception:
            return
        for alert_id, doc in acks.items():
            if alert_id in self._acks_seen:
                continue
            self._acks_seen.add(alert_id)
            alert = self.runtime.book.by_id.get(alert_id)
            if alert is not None and alert.acked_at is None and alert.open:
                await self.escalation.acknowledge(
                    alert_id, doc.get("by", "unknown"), doc.get("comment"), doc.get("at")
                )
        if self.replica is not None:
            await self._take_conditions(store)

    async def _take_conditions(self, store: Any) -> None:
        """Raise or clear the conditions other replicas handed to this one."""
        try:
            requests = await store.get_all("conditions")
        except Exception:
            return
        done = []
        for key, doc in sorted(requests.items(), key=lambda item: item[1].get("at", 0)):
            instance = key.rsplit("|", 1)[0]
            if not self.runtime.mine(instance):
                continue
            await self.runtime.condition(
                doc["rule"],
                active=doc["active"],
                severity=doc["severity"],
                summary=doc["summary"],
                check=doc["check"],
                environment=doc.get("environment"),
                labels=doc.get("labels"),
                runbook=doc.get("runbook"),
            )
            done.append(key)
        if done:
            await store.delete("conditions", done)
