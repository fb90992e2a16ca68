"""Backups: scheduled dumps, exports and file archives, their catalog, retention,
encryption, verification, restore and restore drills (DESIGN.md ► backups).

`Backups` (in `service`) is the one object the daemon and the `backup` commands use.
"""

from __future__ import annotations

from watchkeeper.engine.backups.service import Backups, check_name

__all__ = ["Backups", "check_name"]
