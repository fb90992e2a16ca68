"""PyYAML, imported without compiling the one pattern that only its pure-Python reader uses.

Importing PyYAML compiles `yaml.reader.Reader.NON_PRINTABLE`, a class spanning every
printable range of Unicode, which `re` builds code point by code point in Python: a fifth
of what `watchkeeper validate` of a small file spends on its own start-up. monitor.yaml
is read by libyaml, which checks for unprintable characters itself, so the pattern is
compiled when first used instead (by PyYAML's pure-Python reader: `yaml.safe_load`, or
a host without libyaml).

    from watchkeeper.engine.config.pyyaml import yaml
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

NON_PRINTABLE = "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
"""The pattern as PyYAML writes it; another one (a new PyYAML) is compiled at import, as before."""


class DeferredPattern:
    """A compiled regular expression, compiled on first use."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self.flags = pattern, flags
        self._compiled: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.compiled, name)


def _import() -> Any:
    if "yaml" in sys.modules:
        return sys.modules["yaml"]
    compile_now = re.compile

    def deferring(pattern: Any, flags: int = 0) -> Any:
        if pattern == NON_PRINTABLE and flags == 0:
            return DeferredPattern(pattern)
        return compile_now(pattern, flags)

    re.compile = deferring  # type: ignore[assignment]
    try:
        import yaml
    finally:
        re.compile = compile_now
    return yaml


yaml = _import()
