"""The engine: config loading, scheduling, evaluation, alerting, backups, API and CLI.

Each stage lives in its own package (docs/architecture.md draws the map). The modules a
plugin imports were once at this package's top level and are documented there, so those
paths stay importable: `watchkeeper.engine.probe` is the very module object
`watchkeeper.engine.run.probe`, not a copy, and `isinstance` checks and monkeypatching
see one class.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType

# the plugin API's documented path -> where the module lives
PUBLIC_PATHS = {
    "watchkeeper.engine.probe": "watchkeeper.engine.run.probe",
    "watchkeeper.engine.declared_metrics": "watchkeeper.engine.run.declared_metrics",
    "watchkeeper.engine.notifier": "watchkeeper.engine.alerting.notifier",
    "watchkeeper.engine.notice": "watchkeeper.engine.alerting.notice",
    "watchkeeper.engine.templates": "watchkeeper.engine.alerting.templates",
    "watchkeeper.engine.action": "watchkeeper.engine.alerting.action",
    "watchkeeper.engine.backup_plugin": "watchkeeper.engine.backups.plugin",
    "watchkeeper.engine.store": "watchkeeper.engine.state.store",
    "watchkeeper.engine.redaction": "watchkeeper.engine.observe.redaction",
}


# a loader and a finder as the import system calls them (importlib.abc's base classes
# would import importlib.resources and tempfile: a tenth of `watchkeeper --version`)
class _PublicPathLoader:
    """Hands the import system the module at its real path instead of a new one."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the real module ran when it was imported under its own name; the import system
        # has just stamped the alias's spec on it, and its own is the one that tells truth
        module.__spec__ = self.real_spec


class _PublicPathFinder:
    def find_spec(self, fullname: str, path: object, target: object = None):
        real = PUBLIC_PATHS.get(fullname)
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _PublicPathLoader(real))


if not any(isinstance(finder, _PublicPathFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _PublicPathFinder())

# httpx imports its command line (click, rich, pygments: some 5 MB) with itself when they
# are installed; no watchkeeper process runs `httpx` as a command, so it gets the stub
# httpx keeps for when they are not
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
