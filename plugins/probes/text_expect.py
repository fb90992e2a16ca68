"""What a text answer (a command's output, a websocket message) must look like."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from watchkeeper.schema.base import ConfigModel

QUOTED = 120
"""Characters of an answer quoted in a message when it does not match."""


class TextExpect(ConfigModel):
    """Text the answer must contain, or a regular expression it must match; both may be given."""

    contains: str | None = Field(None, description="Text the answer must contain.")
    regex: str | None = Field(
        None, description="A regular expression that must match somewhere in the answer."
    )

    @model_validator(mode="after")
    def _valid(self) -> TextExpect:
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex is not a valid regular expression: {exc}") from None
        if not self.given():
            raise ValueError("give at least one of " + ", ".join(self.keys()))
        return self

    def keys(self) -> tuple[str, ...]:
        return ("contains", "regex")

    def given(self) -> bool:
        return any(getattr(self, key) is not None for key in self.keys())

    def mismatch(self, text: str) -> str | None:
        """Return what the answer lacks (`does not contain 'ok'`), or None when it matches."""
        if self.contains is not None and self.contains not in text:
            return f"does not contain {self.contains!r}"
        if self.regex is not None and not re.search(self.regex, text):
            return f"does not match /{self.regex}/"
        return None


class MessageExpect(TextExpect):
    """Text the message must contain, match, or be exactly; every given key must hold."""

    exact: str | None = Field(None, description="The whole message, exactly.")

    def keys(self) -> tuple[str, ...]:
        return ("contains", "regex", "exact")

    def mismatch(self, text: str) -> str | None:
        if self.exact is not None and text != self.exact:
            return f"is not exactly {self.exact!r}"
        return super().mismatch(text)


def quote(text: str, limit: int = QUOTED) -> str:
    """Quote an answer for a message, cut at `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")
