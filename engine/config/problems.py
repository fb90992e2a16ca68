"""Problems found in monitor.yaml, each pointing at a file, line, column and key path."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.schema.text import shown  # noqa: F401 (quoted in problems everywhere)

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in a file: 1-based line and column."""

    file: str
    line: int
    column: int


@dataclass(slots=True)
class Problem:
    """One thing wrong (or worth a warning) in the configuration."""

    file: str
    line: int
    column: int
    path: str
    level: Level
    message: str

    @classmethod
    def at(cls, mark: Mark | None, path: str, message: str, level: Level = "error") -> Problem:
        if mark is None:
            return cls("", 0, 0, path, level, message)
        return cls(mark.file, mark.line, mark.column, path, level, message)

    def text(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: " if self.file else ""
        path = f"{self.path}: " if self.path else ""
        prefix = "warning: " if self.level == "warning" else ""
        return f"{where}{path}{prefix}{self.message}"

    def github(self) -> str:
        command = "error" if self.level == "error" else "warning"
        message = f"{self.path}: {self.message}" if self.path else self.message
        # GitHub workflow commands need %, CR and LF escaped in the message
        message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        if not self.file:
            return f"::{command}::{message}"
        return f"::{command} file={self.file},line={self.line},col={self.column}::{message}"


def about(number: float) -> str:
    """Return an estimate as people say it: whole from 1 up, halves rounded up (7.0866 -> 7,
    4.5 -> 5, 1234.5 -> 1,235), one significant figure below 1 (0.4762 -> 0.5)."""
    if abs(number) >= 1 or not number:
        whole = math.floor(abs(number) + 0.5)
        return f"{-whole if number < 0 else whole:,}"
    return f"{number:.1g}"


class ConfigError(Exception):
    """The configuration cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(p.text() for p in problems))


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Order problems by file, then position, errors before warnings at one place."""
    return sorted(problems, key=lambda p: (p.file, p.line, p.column, p.level != "error"))


def _masked(problem: Problem) -> Problem:
    path, message = REDACTOR.redact(problem.path), REDACTOR.redact(problem.message)
    if path is problem.path and message is problem.message:
        return problem  # nothing to mask (the usual case): no copy
    return replace(problem, path=path, message=message)


def render(problems: list[Problem], fmt: str) -> str:
    """Render problems as `text`, `json` (the validate shape) or `github` annotations."""
    # masked before escaping: an escaped secret (JSON, GitHub's %25) would no longer match
    problems = [_masked(p) for p in sort_problems(problems)]
    if fmt == "json":
        valid = not any(p.level == "error" for p in problems)
        return json.dumps({"valid": valid, "problems": [asdict(p) for p in problems]}, indent=2)
    if fmt == "github":
        return "\n".join(p.github() for p in problems)
    return "\n".join(p.text() for p in problems)
