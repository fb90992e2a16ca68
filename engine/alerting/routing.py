"""Which routes a notice meets: first match wins unless a route says `continue: true`."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Subject:
    """What routes match on: an alert, an event, a task, an announcement."""

    kind: str = "alert"
    severity: str | None = None
    check: str | None = None
    environment: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    event: str | None = None
    rule: str | None = None


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def severity_matches(
    wanted: str | list[str] | None, severity: str | None, order: list[str]
) -> bool:
    """Match one severity, a list, or `>=high` / `<=low` by the declared order."""
    options = _as_list(wanted)
    if not options:
        return True
    if severity is None:
        return False
    rank = {name: i for i, name in enumerate(order)}
    mine = rank.get(severity)
    for option in options:
        option = option.strip()
        if option.startswith(">="):
            limit = rank.get(option[2:].strip())
            if mine is not None and limit is not None and mine <= limit:
                return True
        elif option.startswith("<="):
            limit = rank.get(option[2:].strip())
            if mine is not None and limit is not None and mine >= limit:
                return True
        elif option == severity:
            return True
    return False


def route_matches(route: Any, subject: Subject, severities: list[str]) -> bool:
    """True when every key the route's `match` gives holds for the subject."""
    match = route.match
    if match.kind is not None and match.kind != subject.kind:
        return False
    if match.event is not None and (
        subject.kind != "event" or subject.event not in _as_list(match.event)
    ):
        return False
    if not severity_matches(match.severity, subject.severity, severities):
        return False
    checks = _as_list(match.check)
    if checks:
        names = [subject.check or ""]
        if subject.check and subject.environment:
            names.append(f"{subject.check}@{subject.environment}")
        if not any(fnmatch.fnmatchcase(n, p) for n in names for p in checks):
            return False
    rules = _as_list(match.rule)
    if rules and not any(fnmatch.fnmatchcase(subject.rule or "", p) for p in rules):
        return False
    environments = _as_list(match.environment)
    if environments and subject.environment not in environments:
        return False
    return all(subject.labels.get(k) == v for k, v in match.labels.items())


def matching_routes(routes: list[Any], subject: Subject, severities: list[str]) -> list[int]:
    """Return the indexes of the routes a subject meets, in order."""
    found = []
    for index, route in enumerate(routes):
        if route_matches(route, subject, severities):
            found.append(index)
            if not route.continue_:
                break
    return found
