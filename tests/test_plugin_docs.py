"""docs/plugins.md cannot drift from the hooks: one section per hook, its exact signature."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from watchkeeper.engine import hookspecs
from watchkeeper.engine.plugins import KINDS

DOC = REPO / "docs" / "plugins.md"
HEADING = re.compile(r"^(#{2,4}) (.+?)\s*$", re.MULTILINE)
SIGNATURE_HEADING = re.compile(r"^`(watchkeeper_\w+)\((.*)\)(?: -> .+)?`$")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
NOT_CALLED = "**Not called yet:**"


def hooks() -> dict[str, object]:
    """Every hook specification, by name (pluggy marks them with `watchkeeper_spec`)."""
    return {
        name: function
        for name, function in vars(hookspecs).items()
        if callable(function) and hasattr(function, f"{hookspecs.PROJECT}_spec")
    }


def annotation(value: object) -> str:
    # hookspecs uses `from __future__ import annotations`: annotations are their source text
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature(function) -> str:
    """`watchkeeper_result(check: str, environment: str | None, result: Result) -> None`."""
    sig = inspect.signature(function)
    params = ", ".join(
        p.name if p.annotation is p.empty else f"{p.name}: {annotation(p.annotation)}"
        for p in sig.parameters.values()
    )
    returns = (
        "" if sig.return_annotation is sig.empty else f" -> {annotation(sig.return_annotation)}"
    )
    return f"{function.__name__}({params}){returns}"


def sections(text: str) -> dict[str, str]:
    """Map each heading to its text, up to the next heading of the same or a higher level."""
    found = list(HEADING.finditer(text))
    out = {}
    for index, match in enumerate(found):
        level = len(match.group(1))
        end = len(text)
        for later in found[index + 1 :]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        out[match.group(2)] = text[match.end() : end]
    return out


@pytest.fixture(scope="module")
def doc() -> dict[str, str]:
    return sections(DOC.read_text())


def hook_sections(doc: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Hook name -> (heading without backticks, section text) for every signature heading."""
    out = {}
    for heading, body in doc.items():
        match = SIGNATURE_HEADING.match(heading)
        if match:
            out[match.group(1)] = (heading.strip("`"), body)
    return out


def test_hooks_are_found():
    assert "watchkeeper_result" in hooks()
    assert signature(hooks()["watchkeeper_result"]) == (
        "watchkeeper_result(check: str, environment: str | None, result: Result) -> None"
    )


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_has_a_section_headed_by_its_exact_signature(doc, name):
    expected = signature(hooks()[name])
    documented = hook_sections(doc).get(name)
    assert documented is not None, (
        f"{DOC.name} has no section for hook {name}; add the heading\n### `{expected}`"
    )
    heading, _ = documented
    assert heading == expected, (
        f"the signature of {name} drifted:\n  {DOC.name}:      {heading}\n"
        f"  hookspecs.py: {expected}"
    )


def test_every_signature_heading_names_a_hook(doc):
    unknown = sorted(set(hook_sections(doc)) - set(hooks()))
    assert not unknown, f"{DOC.name} documents hooks that do not exist: {unknown}"


@pytest.mark.parametrize("name", sorted(hooks()))
def test_each_hook_says_when_it_is_called_and_shows_an_implementation(doc, name):
    _, body = hook_sections(doc).get(name, ("", ""))
    assert "**Called**" in body, f"{name}: say when it is called"
    examples = PYTHON_BLOCK.findall(body)
    assert any("@hookimpl" in code and f"def {name}(" in code for code in examples), (
        f"{name}: show an implementation (a ```python block with @hookimpl def {name}(...))"
    )


def emitted(name: str) -> bool:
    """Whether the engine calls an event hook (by its name, as `events.emit` takes it)."""
    engine = REPO / "engine"
    return any(
        f'"{name}"' in path.read_text()
        for path in engine.rglob("*.py")
        if path.name != "hookspecs.py"
    )


EVENT_HOOKS = sorted(set(hooks()) - set(KINDS.values()))


@pytest.mark.parametrize("name", EVENT_HOOKS)
def test_not_called_yet_notes_match_the_engine(doc, name):
    """A section says the hook is not called yet exactly while the engine does not call it."""
    _, body = hook_sections(doc).get(name, ("", ""))
    if emitted(name):
        assert NOT_CALLED not in body, f"the engine calls {name} now: drop the note in {DOC.name}"
    else:
        assert NOT_CALLED in body, f"the engine never calls {name}: say so in {DOC.name}"


def test_provider_hooks_are_the_plugin_kinds():
    assert set(KINDS.values()) <= set(hooks())


def test_python_examples_are_valid_python():
    for code in PYTHON_BLOCK.findall(DOC.read_text()):
        ast.parse(textwrap.dedent(code))


@pytest.mark.parametrize(
    "topic",
    [
        "Registration",
        "Writing a probe",
        "Writing a notifier",
        "Writing an action",
        "Writing a backup source or destination",
        "Writing a state store",
        "Testing plugins",
    ],
)
def test_each_kind_of_plugin_has_a_section(doc, topic):
    assert topic in doc, f"{DOC.name} has no '## {topic}' section"


def test_it_points_at_the_contracts_and_the_tools(doc):
    text = DOC.read_text()
    for needle in (
        "probe-authors.md",
        "tests/test_store_contract.py",
        "[project.entry-points.watchkeeper]",
        "WATCHKEEPER_DISABLE_PLUGINS",
        "watchkeeper plugins",
        "watchkeeper.engine.pytest_plugin",
        "examples/plugin-example",
    ):
        assert needle in text, needle
    assert Path(REPO / "docs" / "probe-authors.md").is_file()
