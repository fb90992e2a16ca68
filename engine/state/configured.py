"""The state store a config asks for, made from the plugin that provides its type."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watchkeeper.engine.plugins import Registry
    from watchkeeper.engine.state.store import StateStore


def create_store(config: Any, reg: Registry, base_dir: Path) -> StateStore:
    """Instantiate the configured state store (not yet opened)."""
    options = config.state
    return reg.get("state store", options.type)(options, base_dir=base_dir)
