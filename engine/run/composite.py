"""Judging a composite check from its members' state.

A composite never runs: the runtime re-judges it when a member goes down or comes back up,
and until then what it shows is judged from its members' current state. The options are
the `composite` probe's (`of`, `failing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def members_of(instance: Any, instances: Mapping[str, Any]) -> list[str]:
    """Return the member instance keys a composite instance watches.

    `name@env` is that instance; a bare name is the instance of the composite's own
    environment when there is one, else every instance of that check.
    """
    members: list[str] = []
    for name in instance.options.of:
        if "@" in name:
            members.append(name)
            continue
        own = f"{name}@{instance.environment}" if instance.environment else None
        if own is not None and own in instances:
            members.append(own)
        else:
            # a located check is its judging instance, not its runs per location
            members.extend(k for k, i in instances.items() if i.check == name and i.parent is None)
    return members


def failing(options: Any, members: int, down: int) -> bool:
    """True when `down` of `members` is enough for the composite to be down."""
    if options.failing.at_least is not None:
        return down >= options.failing.at_least
    return members > 0 and down / members >= (options.failing.ratio or 1.0)


def judge(
    options: Any, members: list[str], down: Iterable[str], unknown: Iterable[str]
) -> tuple[str, str]:
    """Return a composite's (status, message) from its members' state.

    `unknown` members have not reported yet. Status `unknown` only while none has.
    """
    down_set, unknown_set = set(down), set(unknown)
    known = [m for m in members if m not in unknown_set]
    if not known:
        return "unknown", f"none of its {len(members)} checks has run yet"
    failed = [m for m in known if m in down_set]
    message = f"{len(known) - len(failed)} of {len(members)} up"
    if failed:
        message += f"; down: {', '.join(failed)}"
    waiting = [m for m in members if m in unknown_set]
    if waiting:
        message += f"; not run yet: {', '.join(waiting)}"
    return ("down" if failing(options, len(members), len(failed)) else "up"), message
