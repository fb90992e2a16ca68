"""How the API shows a check: its status, where it sorts, and composites judged from
their members.

`views.checks` (/api/status, the status page, the check pages), the list /health keeps
(health.py) and the badges each build their rows their own way, for their own cost, but
decide here: so they cannot come to disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from watchkeeper.engine.config.instances import split_key
from watchkeeper.engine.observe.status import judge_composites
from watchkeeper.engine.run.composite import members_of

BAD = frozenset(("down", "degraded"))
"""The statuses that make the daemon's overall status `degraded`."""
FETCH_ONE_BY_ONE = 32
"""Up to this many checks of other replicas, a badge reads their states one by one."""


def listed(instance: Any) -> bool:
    """True when an instance has a row of its own: a location's run shows under its check."""
    return instance.parent is None


def sources(runtime: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Return every instance the list shows (this replica's and others') and this
    replica's own."""
    instances = runtime.instances
    return getattr(runtime, "all_instances", None) or instances, instances


class LocalRuns:
    """What this replica's own runs say of its checks, read from the runtime once."""

    __slots__ = ("down", "firing", "latest")

    def __init__(self, runtime: Any):
        self.latest = runtime.latest.get
        self.down = runtime.instance_down
        # a set once, not `book.open_for` per check: that scans every open alert each time
        self.firing = {key for (key, _rule), a in runtime.book.open.items() if a.status == "firing"}

    def status(self, key: str) -> tuple[str, dict[str, Any]]:
        """Return an instance's status and its latest result (empty before its first run):
        `unknown` before it, `down` while its probe fails, `degraded` while a threshold
        alert fires, else `up`."""
        latest = self.latest(key) or {}
        if not latest:
            return "unknown", latest
        if self.down(key):
            return "down", latest
        return ("degraded" if key in self.firing else "up"), latest


def remote_status(state: Mapping[str, Any]) -> str:
    """Return the status of a check another replica runs, from its stored state."""
    if state.get("last_at") is None:
        return "unknown"
    up = (state.get("rules") or {}).get("up") or {}
    return "down" if up.get("active") else "up"


def place(key: str, check: str, environment: str | None, *, by_check: bool) -> Any:
    """Return where a row sorts: by instance key while this replica runs every check; by
    check, then environment, once other replicas' checks join the list."""
    return (check, environment or "") if by_check else key


def with_members(keys: Iterable[str], instances: Mapping[str, Any]) -> set[str]:
    """Return `keys` with the members of the composites among them, and their members in
    turn: every row judging those composites reads."""
    found: set[str] = set()
    todo = list(keys)
    while todo:
        key = todo.pop()
        if key in found:
            continue
        found.add(key)
        instance = instances.get(key)
        if instance is not None and instance.probe_type == "composite":
            todo.extend(members_of(instance, instances))
    return found


def judge(rows: Mapping[str, dict[str, Any]], instances: Mapping[str, Any], *, by_check: bool):
    """Judge the composites among `rows` (by instance key) from their members' rows, in
    place, as the whole list judges them.

    `rows` is the whole list, or a part of it holding `with_members` of its composites: a
    composite is judged in the list's order, so one whose member is a composite sees that
    member judged when it sorts before it, as it would in the whole list.
    """
    ordered = sorted(
        rows.items(),
        key=lambda kv: place(kv[0], kv[1]["check"], kv[1]["environment"], by_check=by_check),
    )
    judge_composites([row for _, row in ordered], instances)


def status_row(key: str, status: str, last_run: Any) -> dict[str, Any]:
    """Return the least row `judge` reads and writes."""
    check, environment = split_key(key)
    return {
        "check": check,
        "environment": environment,
        "status": status,
        "last_run": last_run,
        "ok": None,
        "message": None,
    }


class CheckNames:
    """Which instance keys show under each check's name, kept until the instances change
    (a reload replaces the mapping): a badge then finds its check without reading all."""

    def __init__(self) -> None:
        self._of: Mapping[str, Any] | None = None
        self._size = -1
        self._keys: dict[str, list[str]] = {}

    def keys(self, everything: Mapping[str, Any], check: str) -> list[str]:
        """Return the listed instance keys of `check`, in key order."""
        if everything is not self._of or len(everything) != self._size:
            found: dict[str, list[str]] = {}
            for key in sorted(everything):
                if listed(everything[key]):
                    found.setdefault(split_key(key)[0], []).append(key)
            self._of, self._size, self._keys = everything, len(everything), found
        return self._keys.get(check, [])


NAMES = CheckNames()


async def rows_of(daemon: Any, name: str) -> list[dict[str, Any]]:
    """Return the rows of `check` or `check@environment` with their statuses as the whole
    list shows them now, reading only those instances and what judging them needs."""
    runtime = daemon.runtime
    everything, instances = sources(runtime)
    check, environment = split_key(name)
    keys = [
        key
        for key in NAMES.keys(everything, check)
        if environment is None or split_key(key)[1] == environment
    ]
    if not keys:
        return []
    wanted = [k for k in with_members(keys, everything) if k in everything]
    wanted = [k for k in wanted if listed(everything[k])]
    local = LocalRuns(runtime)
    rows: dict[str, dict[str, Any]] = {}
    remote = []
    for key in wanted:
        if key in instances:
            status, latest = local.status(key)
            rows[key] = status_row(key, status, latest.get("at"))
        else:
            remote.append(key)
    states = await _states(daemon.store, remote)
    for key in remote:
        state = states.get(key) or {}
        rows[key] = status_row(key, remote_status(state), state.get("last_at"))
    if any(everything[k].probe_type == "composite" for k in rows):
        by_check = everything is not instances and any(k not in instances for k in everything)
        judge(rows, everything, by_check=by_check)
    return [rows[key] for key in keys]


async def _states(store: Any, keys: list[str]) -> dict[str, Any]:
    """Return the stored states of other replicas' checks (none when the store fails)."""
    if not keys:
        return {}
    try:
        if len(keys) > FETCH_ONE_BY_ONE:
            return await store.get_all("check_state")
        return {key: await store.get("check_state", key) for key in keys}
    except Exception:
        return {}
