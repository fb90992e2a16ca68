"""Quoting what a person wrote inside a message about it."""

from __future__ import annotations


def shown(text: object, limit: int = 40) -> str:
    """Return a value as it may be quoted in a message: control and invisible characters
    escaped, and cut to about `limit` characters (a 300-character or binary value written
    where a name belongs would otherwise swamp, or garble, the line that reports it)."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
