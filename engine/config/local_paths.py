"""Local files monitor.yaml names that are not there: warnings for `validate`.

A backup of `monitor.yaml` that lives in `examples/`, a CA bundle spelt wrong, a state
file under a folder that does not exist: each fails only when the daemon gets to it,
hours after the config was merged. `validate` says so at once, as a warning (CI
checks out the repository, not the host's certificates) that `--strict` makes an
error. Relative paths are judged as the daemon uses them: against the config's folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from watchkeeper.engine.config import loader
from watchkeeper.engine.config.problems import Problem
from watchkeeper.engine.config.validation import mark_at

GLOB_CHARS = set("*?[")
CHECK_FILES = ("ca_bundle", "client_cert", "client_key", "private_key_file")
"""Options of probes that name a PEM file (a CA bundle, a client certificate or key, an
SSH private key)."""


def local_path_problems(
    config: Any, loaded: loader.Loaded, base_dir: Path | None = None
) -> list[Problem]:
    """Return a warning for each local path the configuration names that does not exist.

    `base_dir` is the config's folder (default: the folder of the first loaded file).
    """
    if base_dir is None:
        base_dir = Path(loaded.files[0]).resolve().parent if loaded.files else Path.cwd()
    problems = []
    for path, value, what in _named_paths(config):
        if not _checkable(value):
            continue
        full = Path(os.path.expanduser(value))
        relative = not full.is_absolute()
        full = base_dir / full if relative else full
        if what == "state":
            # the store creates its own folder; a missing parent is a typo
            folder = full.parent.parent
            if folder.is_dir():
                continue
            message = f"{value!r}: the folder {str(folder)!r} does not exist"
        elif full.exists() or full.is_symlink():
            continue
        else:
            message = f"{value!r} does not exist"
        if relative:
            message += f" (relative to {base_dir})"
        problems.append(Problem.at(mark_at(loaded, path), loader.dotted(path), message, "warning"))
    return problems


def _named_paths(config: Any) -> Iterator[tuple[tuple, str, str]]:
    """Yield (key path, value, kind) of every local path the configuration names."""
    for name, check in (getattr(config, "checks", None) or {}).items():
        # a model's fields are its __dict__: a key its probe lacks costs no exception
        values = vars(check)
        for field in CHECK_FILES:
            value = values.get(field)
            if isinstance(value, str):
                yield ("checks", name, field), value, "file"
    backups = getattr(config, "backups", None)
    for name, job in (getattr(backups, "jobs", None) or {}).items():
        source = job.source
        if getattr(source, "type", None) == "files":
            for index, value in enumerate(source.paths):
                if not GLOB_CHARS & set(value):  # a glob may rightly match nothing yet
                    yield ("backups", "jobs", name, "source", "paths", index), value, "file"
    state = getattr(config, "state", None)
    if getattr(state, "type", None) == "sqlite" and isinstance(getattr(state, "path", None), str):
        yield ("state", "path"), state.path, "state"


def _checkable(value: str) -> bool:
    # an unset ${VAR} is reported on its own; `:memory:`-style names are not files
    return bool(value) and "${" not in value and not value.startswith(":")
