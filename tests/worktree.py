"""A copy of the work tree as a fresh clone would have it: for builds and installs in tests.

Only the files git sees (tracked, or new and not ignored) are copied, so a file that
.gitignore hides from a commit is missing here too, as it would be in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path) -> str:
    """Run git with a throwaway identity and no user configuration; return its output."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def copy_worktree(destination: Path) -> Path:
    """Copy the files git sees in the work tree to `destination`; return it."""
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=REPO)
    destination.mkdir(parents=True)
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # listed but deleted in the work tree: left out
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def commit_worktree(destination: Path) -> str:
    """Copy the work tree into a new repository, commit it there, return the commit."""
    copy_worktree(destination)
    git("init", "--quiet", cwd=destination)
    git("add", "--all", "--force", cwd=destination)  # exactly the files copied
    git("commit", "--quiet", "--no-verify", "-m", "snapshot", cwd=destination)
    return git("rev-parse", "HEAD", cwd=destination)
