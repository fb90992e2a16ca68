"""`python -m build` makes a clean wheel and sdist, and the wheel works in a fresh venv.

The build runs on a copy of the work tree as git sees it (what CI's fresh clone has), in a
temporary directory: nothing is written into the work tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.worktree import copy_worktree, git

PACKAGE_ROOTS = {
    "engine": "watchkeeper/engine",
    "plugins": "watchkeeper/plugins",
    "schema": "watchkeeper/schema",
}
DATA_FILES = [
    "watchkeeper/schema/monitor.schema.json",
    "watchkeeper/engine/api/templates/status.html",
    "watchkeeper/engine/api/static/status.css",
]


def build_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    # with it set, setuptools warns that it cannot byte-compile: not our warning to judge
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # the fresh venv must not see the work tree (its watchkeeper.egg-info would count as
    # "already installed")
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, str]:
    """Build the wheel and sdist; return them and the build's output."""
    root = tmp_path_factory.mktemp("build")
    source = copy_worktree(root / "watchkeeper")
    dist = root / "dist"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        cwd=root,
        env=build_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"python -m build took {time.perf_counter() - started:.1f}s")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    (wheel,) = dist.glob("watchkeeper-*.whl")
    (sdist,) = dist.glob("watchkeeper-*.tar.gz")
    return wheel, sdist, output


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_build_has_no_warnings(built):
    *_, output = built
    # file names are no message (plugins/probes/http_errors.py is added, not an error)
    files = re.compile(r"\S+\.(?:py|pyc|json|html|css|txt|cfg|toml|md|typed)\b'?")
    warnings = [
        line
        for line in output.splitlines()
        if re.search(r"warn|deprecat|error", files.sub("", line), re.IGNORECASE)
        and "copying" not in line
    ]
    assert not warnings, "\n".join(warnings)


def test_git_sees_every_package():
    """A package hidden by .gitignore is missing from every clone, wheel and CI run."""
    listed = set(
        git("ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).splitlines()
    )
    hidden = [
        str(init.relative_to(REPO))
        for folder in PACKAGE_ROOTS
        for init in sorted((REPO / folder).rglob("__init__.py"))
        if str(init.relative_to(REPO)) not in listed
    ]
    assert not hidden, (
        f"git ignores {hidden}: `git check-ignore -v {hidden[0]}` names the .gitignore rule"
    )


def source_packages() -> list[str]:
    """Every package in the source folders, as its path inside the wheel."""
    found = []
    for folder, target in PACKAGE_ROOTS.items():
        for init in sorted((REPO / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(REPO / folder).as_posix()
            found.append(target if relative == "." else f"{target}/{relative}")
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_holds_every_package_and_the_data_files(built):
    wheel, *_ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in source_packages() if f"{p}/__init__.py" not in names]
    assert not missing, f"packages missing from the wheel: {missing}"
    for required in (
        "watchkeeper/engine/cli",
        "watchkeeper/engine/api",
        "watchkeeper/engine/backups",
    ):
        assert f"{required}/__init__.py" in names, required
    assert [name for name in DATA_FILES if name not in names] == []
    assert not [name for name in names if name.startswith(("tests/", "docs/", "examples/"))]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_metadata(built):
    wheel, *_ = built
    archive = zipfile.ZipFile(wheel)
    info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(archive.read(info).decode())
    assert metadata["Name"] == "watchkeeper"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["License-Expression"] == "MIT"
    assert set(metadata.get_all("Provides-Extra")) >= {"s3", "apprise", "dev"}
    requires = metadata.get_all("Requires-Dist")
    assert any(r.startswith("obstore") and 'extra == "s3"' in r for r in requires), requires
    # every dependency has bounds: a fresh install resolves today and in a year
    for requirement in requires:
        spec = requirement.split(";")[0]
        assert ">=" in spec, f"no lower bound: {requirement}"
    points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "watchkeeper = watchkeeper.engine.cli:main" in points
    assert metadata.get_payload().lstrip().startswith("# watchkeeper")  # README.md


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_sdist_builds_the_same_package(built):
    _, sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    prefix = names[0].split("/")[0]
    for required in (
        "README.md",
        "pyproject.toml",
        "setup.py",
        "schema/monitor.schema.json",
        "engine/api/templates/status.html",
        "engine/backups/__init__.py",
    ):
        assert f"{prefix}/{required}" in names, required


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_installs_and_runs_in_a_fresh_venv(built, tmp_path):
    wheel, *_ = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    started = time.perf_counter()
    # dependencies come from the package index pip is configured with on this machine
    proc = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        cwd=tmp_path,  # `-m` puts the current folder on sys.path: never the work tree
        env=build_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(
        f"pip install of the wheel and its dependencies took {time.perf_counter() - started:.1f}s"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "check"],
        cwd=tmp_path,
        env=build_environment(),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    env = {**build_environment(), "NO_COLOR": "1"}
    version = subprocess.run(
        [str(bin_dir / "watchkeeper"), "--version"], capture_output=True, text=True, env=env
    )
    assert version.returncode == 0, version.stdout + version.stderr
    assert version.stdout == "watchkeeper 0.1.0\n"

    validate = subprocess.run(
        [str(bin_dir / "watchkeeper"), "validate", "examples/infinite-idea.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "is valid" in validate.stdout, validate.stdout
    # the installed copy, not the work tree, ran
    where = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import watchkeeper.engine; print(watchkeeper.engine.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=build_environment(),
    )
    assert where.stdout.startswith(str(venv)), where.stdout
