"""What a local user can read: the files the daemon makes are its owner's alone."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from tests.conftest import run_cli

CONFIG = """
version: 1
state: {type: sqlite, path: private/state.db}
checks:
  clock: {probe: command, argv: [date, +%s], schedule: {every: 1m}}
notifiers:
  console: {type: log}
routes:
  - {match: {}, notify: [console]}
"""


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """Run the CLI as a shell with the common umask 022 would (its children inherit it)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_state_folder_and_file_are_private_whatever_the_umask(
    tmp_path, write_config, open_umask
):
    write_config(CONFIG)
    result = run_cli("run", "--once", cwd=tmp_path)
    assert result.code == 0, result.output
    folder = tmp_path / "private"
    assert _mode(folder) == 0o700
    made = [p for p in folder.iterdir()]
    assert any(p.name == "state.db" for p in made)
    for path in made:  # state.db, its -wal/-shm and the lock file
        assert _mode(path) & 0o077 == 0, f"{path.name} is {oct(_mode(path))}"


def test_an_existing_state_file_keeps_the_mode_its_operator_gave_it(
    tmp_path, write_config, open_umask
):
    write_config(CONFIG)
    (tmp_path / "private").mkdir(mode=0o750)
    os.chmod(tmp_path / "private", 0o750)
    state = tmp_path / "private" / "state.db"
    state.touch()
    os.chmod(state, 0o640)  # shared with an operators' group on purpose
    result = run_cli("run", "--once", cwd=tmp_path)
    assert result.code == 0, result.output
    assert _mode(state) == 0o640
    assert _mode(tmp_path / "private") == 0o750


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX modes")


def test_a_local_backup_is_the_owners_alone_whatever_the_umask(tmp_path, write_config, open_umask):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "data.txt").write_text("customer rows\n")
    write_config(
        """
        version: 1
        state: {type: sqlite, path: state/state.db}
        backups:
          destinations:
            local: {type: local, path: backups}
          jobs:
            app:
              source: {type: files, paths: [app]}
              schedule: {cron: "0 2 * * *"}
              to: [local]
        """
    )
    result = run_cli("backup", "run", "app", cwd=tmp_path)
    assert result.code == 0, result.output
    made = list((tmp_path / "backups").rglob("*"))
    assert any(p.name.startswith("files.tar.gz") for p in made), made
    for path in made:
        if path.is_dir():
            assert _mode(path) == 0o700, f"{path} is {oct(_mode(path))}"
        else:
            assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"
