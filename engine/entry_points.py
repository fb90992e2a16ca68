"""Which entry-point groups the installed distributions declare, read cheaply.

Loading plugins from an entry-point group (pluggy's `load_setuptools_entrypoints`, and
pydantic's own plugins when it builds its first validator) has importlib.metadata parse
the metadata of every installed distribution: a tenth of `watchkeeper validate` of a
small file, for groups that nothing installed declares on most hosts. `declared_groups`
lists the section names of the same `entry_points.txt` files importlib.metadata reads,
found the way its path finder finds them; a group it does not list has no entry point,
so loading it can be skipped. Where the answer cannot be had so simply (a distribution
in a zip or an egg, a finder of distributions other than the standard one) it is None,
and every group is loaded as before.
"""

from __future__ import annotations

import functools
import os
import sys
from importlib.machinery import PathFinder

_METADATA_DIRS = (".dist-info", ".egg-info")
_UNREADABLE = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def declared_groups() -> frozenset[str] | None:
    """Return the entry-point groups some installed distribution declares, or None when
    only importlib.metadata can tell (a group may then be declared)."""
    return _declared(tuple(sys.path), tuple(sys.meta_path))


@functools.lru_cache(maxsize=4)  # the plugin manager and pydantic ask for the same path
def _declared(path: tuple[str, ...], meta_path: tuple[object, ...]) -> frozenset[str] | None:
    for finder in meta_path:
        if finder is not PathFinder and hasattr(finder, "find_distributions"):
            return None
    groups: set[str] = set()
    for entry in path:
        root = os.fspath(entry) or "."
        if os.path.basename(root).lower().endswith(".egg"):
            return None
        try:
            children = os.listdir(root)
        except OSError:
            if os.path.exists(root):
                return None  # a zip file: importlib.metadata looks inside it
            continue
        for child in children:
            if not child.lower().endswith(_METADATA_DIRS):
                continue
            try:
                with open(os.path.join(root, child, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except _UNREADABLE:
                continue
            except (OSError, UnicodeDecodeError):
                return None
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    groups.add(line.strip("[]"))
    return frozenset(groups)


def may_declare(group: str) -> bool:
    """True unless no installed distribution declares an entry point of `group`."""
    groups = declared_groups()
    return groups is None or group in groups
