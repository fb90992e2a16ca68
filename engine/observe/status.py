"""What the store says about the checks and alerts right now (for `status` and the API)."""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.alerting.alerts import Alert
from watchkeeper.engine.config.instances import expand, split_key
from watchkeeper.engine.plugins import registry
from watchkeeper.engine.run.locations import seen_of
from watchkeeper.engine.state.configured import create_store


async def read_status(validation: Any) -> dict[str, Any]:
    """Open the store as a client and summarise checks and open alerts."""
    reg = registry()
    config = validation.config
    store = create_store(config, reg, validation.base_dir)
    await store.open(role="client")
    instances = expand(config, reg)
    try:
        states = await store.get_all("check_state")
        alert_docs = await store.get_all("alerts")
        stats = await store.stats()
        replicas = []
        if getattr(store, "shared", False):
            from watchkeeper.engine.state.replicas import replica_status

            replicas = await replica_status(store)
        # host-scoped checks under replicas are stored once per replica: `host~a`, `host~b`
        keys = []
        for key in sorted(instances):
            if instances[key].parent is not None:
                continue  # a location's run shows under its check
            per_replica = sorted(k for k in states if k.startswith(key + "~"))
            keys += [(key, k) for k in per_replica] or [(key, key)]
        messages = {}
        for _key, stored in keys:
            latest = await store.read("results", stored, newest_first=True, limit=1)
            if latest:
                messages[stored] = latest[0].data.get("message")
    finally:
        await store.close()
    alerts = [Alert.from_doc(d) for d in alert_docs.values()]
    open_alerts = sorted((a for a in alerts if a.open), key=lambda a: a.started_at)
    checks = []
    for key, stored in keys:
        instance = instances[key]
        state = states.get(stored) or {}
        up = (state.get("rules") or {}).get("up") or {}
        mine = [a for a in open_alerts if a.instance == stored]
        if state.get("last_at") is None:
            status = "unknown"
        elif up.get("active"):
            status = "down"
        elif any(a.status == "firing" for a in mine):
            status = "degraded"
        else:
            status = "up"
        check, environment = split_key(stored)
        row = {
            "check": check,
            "environment": environment,
            "status": status,
            "probe": instance.probe_type,
            "last_run": state.get("last_at"),
            "ok": state.get("last_ok"),
            "message": messages.get(stored),
            "alerts": [a.id for a in mine],
        }
        if stored != key:
            row["replica"] = stored.split("~", 1)[1]
        if instance.locations is not None:
            live = {r.get("location") for r in replicas} if replicas else set()
            row["locations"] = [
                seen_of(loc, states.get(run), live=loc in live).public()
                for loc, run in zip(instance.locations.from_, instance.location_keys, strict=True)
            ]
        checks.append(row)
    judge_composites(checks, instances)
    return {
        "checks": checks,
        "alerts": [a.public() for a in open_alerts],
        "store": stats,
        "replicas": replicas,
    }


def _row_key(row: dict[str, Any]) -> str:
    key = row["check"] + (f"@{row['environment']}" if row["environment"] else "")
    return key + (f"~{row['replica']}" if row.get("replica") else "")


def judge_composites(rows: list[dict[str, Any]], instances: dict[str, Any]) -> None:
    """Show each composite as its members' state makes it (in place).

    A composite is judged by the engine only when a member goes down or comes back, so
    until then it has no result of its own; and a composite that is not down says how
    many members are up. A composite whose own alert fires keeps its `down`/`degraded`.
    """
    from watchkeeper.engine.run.composite import judge, members_of

    by_key = {_row_key(row): row for row in rows}
    for row in rows:
        instance = instances.get(_row_key(row))
        if instance is None or instance.probe_type != "composite":
            continue
        if row["status"] not in ("unknown", "up"):
            continue
        members = members_of(instance, instances)
        seen = {m: by_key.get(m) for m in members}
        unknown = [m for m, r in seen.items() if r is None or r["status"] == "unknown"]
        down = [m for m, r in seen.items() if r is not None and r["status"] == "down"]
        status, message = judge(instance.options, members, down, unknown)
        if row["status"] == "up" and status == "down":
            continue  # its members fell just now: the engine's own judgement follows
        row["status"], row["message"] = status, message
        if status != "unknown":
            row["ok"] = status == "up"
            runs = [r["last_run"] for r in seen.values() if r and r.get("last_run") is not None]
            if row.get("last_run") is None and runs:
                row["last_run"] = max(runs)
