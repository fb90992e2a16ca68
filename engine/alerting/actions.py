"""Run self-healing actions for escalation level 1, within their `limit`, and record them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.observe.redaction import REDACTOR

log = logging.getLogger("watchkeeper.actions")


class ActionRunner:
    """Run named actions from monitor.yaml; remember runs so `limit` can stop repeats."""

    def __init__(self, runtime: Any, base_dir: Path, config_path: Path | None = None):
        self.runtime = runtime
        self.base_dir = base_dir
        self.config_path = config_path
        self.plugins: dict[str, Any] = {}
        self._memory: dict[str, dict[str, Any]] = {}  # action name -> its recent runs

    async def run(self, name: str, alert: Alert, now: float) -> dict[str, Any]:
        """Run one action for an alert; return what happened (never raise)."""
        options = self.runtime.config.actions.get(name)
        if options is None:
            return {"name": name, "ok": False, "message": "no such action", "at": now}
        if options.limit is not None:
            runs = await self._runs(name, now - options.limit.within)
            if len(runs) >= options.limit.runs:
                message = (
                    f"not run: limit of {options.limit.runs} run(s) within "
                    f"{options.limit.within:g}s reached"
                )
                log.warning("action limited", extra={"action": name, "alert": alert.id})
                return {"name": name, "ok": False, "message": message, "at": now, "skipped": True}
        plugin = self.plugins.get(options.type)
        if plugin is None:
            plugin = self.plugins[options.type] = self.runtime.reg.get("action", options.type)()
        from watchkeeper.engine.alerting.action import ActionContext

        ctx = ActionContext(
            name=name,
            alert=alert,
            base_dir=self.base_dir,
            log=logging.getLogger(f"watchkeeper.action.{name}"),
            timeout=options.timeout,
            config_path=self.config_path,
        )
        start = anyio.current_time()
        try:
            with anyio.fail_after(options.timeout):
                outcome = await plugin.run(options, ctx)
            ok, message = bool(outcome.ok), outcome.message
        except TimeoutError:
            ok, message = False, f"timed out after {options.timeout:g}s"
        except Exception as exc:  # an action's failure is recorded, never the daemon's
            ok, message = False, f"{type(exc).__name__}: {exc}"
        record = {
            "name": name,
            "ok": ok,
            "message": REDACTOR.redact(message)[:500],
            "at": now,
            "duration": round(anyio.current_time() - start, 3),
        }
        await self._record(name, now)
        log.log(
            logging.INFO if ok else logging.WARNING,
            "action ran",
            extra={"action": name, "alert": alert.id, "ok": ok, "result": record["message"]},
        )
        return record

    async def _runs(self, name: str, since: float) -> list[float]:
        doc = await self._doc(name)
        return [t for t in doc.get("runs", []) if t > since]

    async def _doc(self, name: str) -> dict[str, Any]:
        if name not in self._memory:
            try:
                self._memory[name] = await self.runtime.store.get("action_runs", name) or {}
            except Exception:
                self._memory[name] = {}
        return self._memory[name]

    async def _record(self, name: str, now: float) -> None:
        doc = await self._doc(name)
        recent = [t for t in doc.get("runs", []) if t > now - 7 * 86400][-100:]
        runs = [*recent, now]
        doc = {"runs": runs}
        self._memory[name] = doc
        self.runtime.writer.put("action_runs", name, doc)
