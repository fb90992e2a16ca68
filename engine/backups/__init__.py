"""Backups: scheduled dumps, exports and file archives, their catalog, retention,
encryption, verification, restore and restore drills (DESIGN.md ► backups).

`Backups` (in `service`) is the one object the daemon and the `backup` commands use. It
is imported on first use: the backup source plugins import `backups.postgres` while the
registry loads, and `validate` must not pay for the database client then.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Backups", "check_name"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from watchkeeper.engine.backups import service

        return getattr(service, name)
    raise AttributeError(name)
