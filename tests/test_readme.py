"""README.md: the set-up commands come first, its tour config is valid, its commands parse,
its comparison table is whole, and the links of the pages it leads to resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_cli_help import parse, shell_words
from tests.test_examples import dummy_value
from watchkeeper.engine.config.validation import validate

README = REPO / "README.md"
LINKED_PAGES = [
    README,
    REPO / "docs" / "ci.md",
    REPO / "docs" / "editors.md",
    REPO / "docs" / "operations.md",
    REPO / "docs" / "plugins.md",
    REPO / "examples" / "plugin-example" / "README.md",
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def text() -> str:
    return README.read_text()


def test_it_opens_with_two_sentences_then_the_two_set_up_commands():
    body = text().split("\n", 1)[1].lstrip("\n")
    intro, _, rest = body.partition("\n\n")
    assert len(re.findall(r"[.!?](?:\s|$)", intro)) == 2, intro
    _language, first_block = FENCE.search(rest).groups()
    assert rest.lstrip().startswith("```"), "the set-up commands come right after the intro"
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)


def tour() -> str:
    (block,) = [code for language, code in FENCE.findall(text()) if language == "yaml"]
    return block


def test_the_tour_config_is_valid_offline_and_strictly(tmp_path):
    path = tmp_path / "monitor.yaml"
    path.write_text(tour())
    offline = validate(path, env={})
    assert offline.valid, [p.text() for p in offline.errors]
    assert all("is not set" in p.message for p in offline.warnings)
    env = {name: dummy_value(name) for name in VARIABLE.findall(tour())}
    strict = validate(path, env=env, strict=True)
    assert strict.problems == [], [p.text() for p in strict.problems]
    assert strict.valid


def test_the_tour_starts_with_the_schema_comment():
    assert tour().splitlines()[0] == (REPO / "monitor.yaml").read_text().splitlines()[0]


def test_its_commands_parse():
    lines = [
        line
        for language, code in FENCE.findall(text())
        if language == "sh"
        for line in code.splitlines()
        if line.startswith("watchkeeper ")
    ]
    lines += re.findall(r"`(watchkeeper [^`]+)`", text())
    assert len(lines) >= 4
    for line in lines:
        parse(shell_words(line)[1:])


def test_the_comparison_table_covers_each_tool_on_every_row():
    rows = [line for line in text().splitlines() if line.startswith("| ")]
    (header,) = [row for row in rows if "watchkeeper |" in row and "Gatus" in row]
    for tool in ("Gatus", "Uptime Kuma", "healthchecks.io", "Alertmanager"):
        assert tool in header
    table = rows[rows.index(header) + 1 :]
    table = table[: next((i for i, row in enumerate(table) if "|" not in row), len(table))]
    body = [row for row in table if not row.startswith("| ---")]
    assert len(body) >= 8
    for row in body:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 6, row
        assert all(cells), row


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = heading.strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {slug(h) for h in headings}


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve_to_files_and_headings(page):
    problems = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not ours to check
            continue
        file, _, anchor = target.partition("#")
        destination = (page.parent / file).resolve() if file else page
        if not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading with that anchor")
    assert not problems, "\n".join(problems)


def test_the_slugs_are_githubs():
    assert slug("`watchkeeper route`") == "watchkeeper-route"
    assert slug("Sentry and the dead-man's switch") == "sentry-and-the-dead-mans-switch"
    assert slug("One pass for CI: `run --once`") == "one-pass-for-ci-run---once"
    assert Path(REPO / "docs" / "cli.md").is_file()


@pytest.mark.slow
def test_the_tour_commands_run_as_written_on_the_starter_config(tmp_path):
    """What the README tells a newcomer to type works on the monitor.yaml it ships."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(REPO / "monitor.yaml", tmp_path / "monitor.yaml")
    shutil.copytree(REPO / "schema", tmp_path / "schema")
    lines = [
        line
        for language, code in FENCE.findall(text())
        if language == "sh"
        for line in code.splitlines()
        if line.startswith("watchkeeper ") and " run" not in line
    ]
    assert len(lines) >= 4
    env = {k: v for k, v in os.environ.items() if k != "WATCHKEEPER_CONFIG"}
    for line in lines:
        words = shell_words(line.split("#")[0])
        done = subprocess.run(
            [sys.executable, "-m", "watchkeeper.engine", *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"


def test_the_licence_pyproject_names_is_there():
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text()
