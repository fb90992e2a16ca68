"""engine/entry_points.py: the groups it reads are those importlib.metadata finds, and a
group it rules out (watchkeeper's, pydantic's) is one nothing installed declares."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from watchkeeper.engine import entry_points


def _groups_importlib_metadata_finds() -> set[str]:
    return {ep.group for dist in importlib.metadata.distributions() for ep in dist.entry_points}


def _dist(site: Path, name: str, text: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(text)


def test_every_group_importlib_metadata_finds_is_declared():
    found = _groups_importlib_metadata_finds()
    groups = entry_points.declared_groups()
    assert groups is not None  # a plain venv: answered without importlib.metadata
    assert found <= groups
    assert not entry_points.may_declare("watchkeeper-no-such-group")


def test_a_distribution_on_the_path_declares_its_groups(tmp_path, monkeypatch):
    _dist(tmp_path, "extra_plugin", "[watchkeeper-test-group]\nmine = extra_plugin\n")
    assert not entry_points.may_declare("watchkeeper-test-group")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert entry_points.may_declare("watchkeeper-test-group")
    assert "watchkeeper-test-group" in _groups_importlib_metadata_finds()


def test_a_zip_on_the_path_leaves_it_to_importlib_metadata(tmp_path, monkeypatch):
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", "[zipped-group]\nz = zipped\n")
    monkeypatch.syspath_prepend(str(archive))
    assert entry_points.declared_groups() is None
    assert entry_points.may_declare("zipped-group")
    assert entry_points.may_declare("anything")


PROBE = """
import json, sys
from watchkeeper.engine.config.validation import config_model
from pydantic.plugin import _loader
config_model(None, {"version": 1})
print(json.dumps(sorted(_loader._plugins)))
"""

PYDANTIC_PLUGIN = """
class Plugin:
    def new_schema_validator(self, *args, **kwargs):
        return None, None, None

plugin = Plugin()
"""


def _plugins_seen(env: dict[str, str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(proc.stdout)


def test_pydantic_is_told_it_has_no_plugins_only_when_none_is_installed(tmp_path):
    assert _plugins_seen({}) == []  # nothing declares the group here
    _dist(tmp_path, "pydantic_probe", "[pydantic]\nprobe = pydantic_probe_mod:plugin\n")
    (tmp_path / "pydantic_probe_mod.py").write_text(PYDANTIC_PLUGIN)
    # a pydantic plugin on the path is still found and loaded by pydantic itself
    assert _plugins_seen({"PYTHONPATH": str(tmp_path)}) == ["pydantic_probe_mod:plugin"]
