"""Test plugin packages under tests/, installed for a daemon or CLI run to find."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = (
    "plugin_pkg",
    "plugin_pkg_dupe",
    "plugin_pkg_typo",
    "plugin_pkg_badopts",
    "plugin_pkg_blocking",
)


def install(package: Path, target: Path) -> None:
    """Install a one-module plugin package into `target` the way pip lays it out.

    Entry-point discovery reads only the module and its dist-info, which this writes from
    the package's own pyproject.toml in milliseconds. `pip install --target` needs a build
    backend: an isolated build fetches setuptools (~2.5 s a package, and the network),
    `--no-build-isolation` needs `wheel` in .venv. Never install into .venv itself:
    `schema --check` would then fail there.
    """
    pyproject = tomllib.loads((package / "pyproject.toml").read_text())
    project = pyproject["project"]
    target.mkdir(parents=True)
    for module in pyproject["tool"]["setuptools"]["py-modules"]:
        shutil.copy(package / f"{module}.py", target)
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items())
            for group, points in project["entry-points"].items()
        )
    )
    (info / "INSTALLER").write_text("tests\n")
    (info / "RECORD").write_text("")
