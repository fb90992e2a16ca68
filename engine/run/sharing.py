"""One object for equal values: what ten thousand checks share is held once.

A validated config holds each check's values in objects of its own, though most checks
repeat one another: the same `expect:`, empty header map, labels. The frames sent to
workers carry one object for equal values (`Interner`), so a pickled frame refers to it
once and a worker unpickles one. Only values that are never changed after validation go
through here.
"""

from __future__ import annotations

from typing import Any

_SIMPLE = frozenset({str, int, float, bool, type(None), bytes})
_EMPTY = frozenset({dict, list, tuple, set, frozenset})


def value_key(value: Any, depth: int = 0) -> Any:
    """A hashable key equal for equal values (same types all the way down), or None when
    the value cannot be compared that way."""
    kind = type(value)
    if kind in _SIMPLE:
        return (kind, value)
    if depth > 8:
        return None
    if kind in _EMPTY and not value:
        return kind
    if kind is dict:
        items = []
        for k, v in value.items():
            key = value_key(v, depth + 1)
            if key is None or type(k) not in _SIMPLE:
                return None
            items.append((type(k), k, key))
        return (dict, tuple(items))
    if kind in (list, tuple):
        keys = tuple(value_key(v, depth + 1) for v in value)
        return None if None in keys else (kind, keys)
    fields = getattr(value, "__pydantic_fields_set__", None)
    if fields is not None:
        values = getattr(value, "__dict__", None)
        if values is None or getattr(value, "__pydantic_extra__", None):
            return None
        key = value_key(values, depth + 1)
        return None if key is None else (kind, key, frozenset(fields))
    secret = getattr(value, "get_secret_value", None)
    if secret is not None:
        return (kind, secret())
    return None


class Interner:
    """Hand back one object for equal values (the first one seen)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        try:
            key = value_key(value)
        except TypeError:  # an unhashable simple value
            return value
        if key is None:
            return value
        found = self.seen.setdefault(key, value)
        return found
