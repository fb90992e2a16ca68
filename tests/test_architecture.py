"""The map in docs/architecture.md matches the code, and the plugin API stays where it is
documented."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
LONGEST_CLASS = 420  # lines; a class longer than this does more than one job

FILE_PATH = re.compile(r"(?<![\w/.-])((?:engine|schema|plugins)/[\w/]+\.py)")
DOTTED = re.compile(r"watchkeeper\.(?:engine|schema|plugins)(?:\.\w+)+")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_source_file_the_docs_name_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted({p for p in FILE_PATH.findall(text) if not (ROOT / p).is_file()})
    assert not missing, f"{doc.name} names files that are not there: {missing}"


def _importable(dotted: str) -> bool:
    """True when `dotted` is a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        target = module
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_every_dotted_path_in_docs_and_examples_imports() -> None:
    texts = [d.read_text() for d in DOCS]
    texts += [p.read_text() for p in (ROOT / "examples").rglob("*.py")]
    names = {m.rstrip(".") for text in texts for m in DOTTED.findall(text)}
    broken = sorted(n for n in names if not _importable(n))
    assert not broken, f"documented paths that do not import: {broken}"


def test_documented_plugin_paths_are_the_modules_themselves() -> None:
    from watchkeeper.engine import PUBLIC_PATHS

    for documented, real in PUBLIC_PATHS.items():
        assert importlib.import_module(documented) is importlib.import_module(real)
    from watchkeeper.engine.probe import Probe
    from watchkeeper.engine.run.probe import Probe as RealProbe

    assert Probe is RealProbe
    # the module keeps telling the truth about where it lives
    assert importlib.import_module("watchkeeper.engine.store").__spec__.name == (
        "watchkeeper.engine.state.store"
    )


def test_an_unknown_engine_module_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("watchkeeper.engine.no_such_module")


def test_the_engine_top_level_holds_at_most_a_dozen_modules() -> None:
    top = sorted(p.name for p in (ROOT / "engine").glob("*.py"))
    assert len(top) <= 12, top


def test_the_architecture_map_names_every_engine_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").exists())
    unnamed = [p for p in packages if f"engine/{p}/" not in text]
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"


def _long_classes() -> list[str]:
    found = []
    for folder in ("engine", "schema", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > LONGEST_CLASS:
                        found.append(f"{path.relative_to(ROOT)}:{node.name} ({length} lines)")
    return found


def test_no_class_does_the_work_of_a_subsystem() -> None:
    assert not _long_classes()
