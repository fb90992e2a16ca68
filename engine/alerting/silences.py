"""Ad hoc silences, as in Alertmanager: matchers, a time span, an author and a reason.

Silences live in the state store's `silences` collection (key = id), so the daemon, the
CLI and the API share them. A silence holds back the alerts it matches like a `mute`
maintenance window; it is never deleted by expiring, only ended, so `alerts silences
--all` still shows who silenced what.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FIELDS", "Matcher", "Silence", "add_silence", "expire_silence", "load_silences",
    "new_silence_id", "parse_matcher", "purge_silences", "silenced_by",
]  # fmt: skip

COLLECTION = "silences"
FIELDS = ("check", "environment", "rule", "severity", "instance")
"""Alert fields a matcher may name, besides `label:<name>`."""
ALIASES = {"env": "environment"}
_MATCHER = re.compile(
    r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[:.][A-Za-z0-9_./-]+)?)\s*"
    r"(?P<op>=~|!~|!=|==|=)\s*(?P<value>.*?)\s*$"
)
_OPS = {"=": (False, False), "==": (False, False), "!=": (False, True),
        "=~": (True, False), "!~": (True, True)}  # fmt: skip


def new_silence_id() -> str:
    """Return a fresh silence id: short, unguessable, easy to type after `alerts expire`."""
    return secrets.token_hex(6)


@dataclass
class Matcher:
    """One condition on an alert field: equal / not equal / regex (anchored) / not regex."""

    name: str  # check | environment | rule | severity | instance | label:<name>
    value: str
    regex: bool = False
    negative: bool = False

    def __post_init__(self) -> None:
        self.name = _field_name(self.name)
        if self.regex:
            try:
                self._pattern = re.compile(self.value)
            except re.error as exc:
                raise ValueError(
                    f"{self.name}: invalid regular expression {self.value!r}: {exc}"
                ) from None

    def matches(self, alert_fields: dict[str, Any]) -> bool:
        """Test the field (a missing one reads as the empty string, as in Alertmanager)."""
        if self.name.startswith("label:"):
            found = (alert_fields.get("labels") or {}).get(self.name[6:])
        else:
            found = alert_fields.get(self.name)
        text = "" if found is None else str(found)
        hit = bool(self._pattern.fullmatch(text)) if self.regex else text == self.value
        return hit != self.negative

    def __str__(self) -> str:
        op = {(False, False): "=", (False, True): "!=", (True, False): "=~", (True, True): "!~"}
        return f"{self.name}{op[self.regex, self.negative]}{self.value}"

    def to_doc(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "regex": self.regex,
                "negative": self.negative}  # fmt: skip


def _field_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name.startswith("labels."):
        name = "label:" + name[7:]
    if name in FIELDS or (name.startswith("label:") and len(name) > 6):
        return name
    raise ValueError(
        f"unknown matcher field {name!r}; expected one of {', '.join(FIELDS)} or label:<name>"
    )


def parse_matcher(text: str) -> Matcher:
    """Parse `check=api`, `check=~api-.*`, `label:team=web`, `severity!=low`, `severity!~x|y`."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(
            f"cannot read matcher {text!r}; expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX "
            "or NAME!~REGEX, e.g. check=api-health or label:team=web"
        )
    value = m["value"]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    regex, negative = _OPS[m["op"]]
    return Matcher(m["name"], value, regex=regex, negative=negative)


@dataclass
class Silence:
    """Hold back matching alerts from `starts_at` until `ends_at` (UNIX seconds)."""

    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str
    created_at: float
    reason: str
    expired_by: str | None = None
    updated_at: float | None = field(default=None)

    def validate(self) -> None:
        """Raise ValueError unless this silence can be stored."""
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if not any(not m.matches({}) for m in self.matchers):
            # Alertmanager's guard: matchers that all match an empty alert silence everything
            raise ValueError(
                "every matcher also matches an alert without that field, so the silence "
                "would hold back everything; add a matcher that needs a value "
                "(e.g. check=~.+ to silence every check on purpose)"
            )
        if not self.ends_at > self.starts_at:
            raise ValueError("a silence must end after it starts")
        if not self.reason.strip():
            raise ValueError("a silence needs a reason")

    def active(self, at: float) -> bool:
        """True while the silence holds alerts back."""
        return self.starts_at <= at < self.ends_at

    def state(self, at: float) -> str:
        """Return `pending`, `active` or `expired`."""
        if at < self.starts_at:
            return "pending"
        return "active" if at < self.ends_at else "expired"

    def matches(self, alert_fields: dict[str, Any]) -> bool:
        """True when every matcher holds for the alert's fields.

        `alert_fields` has check, environment, rule, severity, instance and labels; a
        missing `instance` is derived from check and environment.
        """
        if "instance" not in alert_fields and alert_fields.get("check"):
            env = alert_fields.get("environment")
            check = alert_fields["check"]
            alert_fields = {**alert_fields, "instance": f"{check}@{env}" if env else check}
        return all(m.matches(alert_fields) for m in self.matchers)

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["matchers"] = [m.to_doc() for m in self.matchers]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Silence:
        return cls(
            id=doc["id"],
            matchers=[Matcher(**m) for m in doc.get("matchers", [])],
            starts_at=float(doc["starts_at"]),
            ends_at=float(doc["ends_at"]),
            created_by=doc.get("created_by", ""),
            created_at=float(doc.get("created_at") or doc["starts_at"]),
            reason=doc.get("reason", ""),
            expired_by=doc.get("expired_by"),
            updated_at=doc.get("updated_at"),
        )

    def public(self, at: float) -> dict[str, Any]:
        """Return the JSON shape of the CLI and the API, with its state at `at`."""
        return {
            "id": self.id,
            "status": self.state(at),
            "matchers": [str(m) for m in self.matchers],
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "reason": self.reason,
            "expired_by": self.expired_by,
        }


def silenced_by(
    silences: Iterable[Silence], alert_fields: dict[str, Any], at: float
) -> Silence | None:
    """Return the active silence matching the alert that ends last, or None."""
    found = [s for s in silences if s.active(at) and s.matches(alert_fields)]
    return max(found, key=lambda s: (s.ends_at, s.id), default=None)


async def load_silences(store: Any) -> dict[str, Silence]:
    """Return every stored silence by id (expired ones included); unreadable ones skipped."""
    found = {}
    for key, doc in (await store.get_all(COLLECTION)).items():
        try:
            found[key] = Silence.from_doc(doc)
        except (KeyError, TypeError, ValueError):
            continue  # a silence written by a newer version with a matcher we cannot read
    return found


async def add_silence(store: Any, silence: Silence) -> None:
    """Validate and store a new silence (ValueError when it is not valid)."""
    silence.validate()
    await store.put(COLLECTION, {silence.id: silence.to_doc()})


async def expire_silence(store: Any, id: str, by: str, at: float) -> Silence:
    """End a silence now (a pending one never starts); KeyError when there is none."""
    doc = await store.get(COLLECTION, id)
    if doc is None:
        raise KeyError(id)
    silence = Silence.from_doc(doc)
    if silence.ends_at <= at:
        return silence  # already over: keep who and when it really ended
    silence.starts_at = min(silence.starts_at, at)
    silence.ends_at = at
    silence.expired_by = by
    silence.updated_at = at
    await store.put(COLLECTION, {id: silence.to_doc()})
    return silence


async def purge_silences(store: Any, before: float) -> int:
    """Delete silences that ended before `before`; return how many (for retention)."""
    old = [k for k, s in (await load_silences(store)).items() if s.ends_at < before]
    if old:
        await store.delete(COLLECTION, old)
    return len(old)


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
