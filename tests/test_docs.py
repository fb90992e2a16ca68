"""The docs cannot drift: every config key and every CLI command and option is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer

from watchkeeper.engine.cli import app
from watchkeeper.engine.config import loader
from watchkeeper.engine.plugins import registry
from watchkeeper.schema.base import PluginOptions
from watchkeeper.schema.config import build_config_model

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONFIGURATION = DOCS / "configuration.md"
CLI = DOCS / "cli.md"

# the heading in configuration.md under which each kind's types have their own headings
TYPE_SECTIONS = {
    "probe": "Probes",
    "notifier": "Notifier types",
    "backup source": "Backup sources",
    "backup destination": "Backup destinations",
    "state store": "State stores",
    "action": "Action types",
}
BUILTIN = "watchkeeper.plugins."


class Section:
    """A markdown heading and the text under it, up to the next heading of its level."""

    def __init__(self, level: int, title: str, line: int):
        self.level = level
        self.title = title
        self.line = line
        self.body: list[str] = []
        self.children: list[Section] = []

    @property
    def text(self) -> str:
        return "\n".join(self.body + [c.text for c in self.children])

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def parse_sections(text: str) -> Section:
    """Return the heading tree of a markdown document (headings in code blocks ignored)."""
    root = Section(0, "", 0)
    stack = [root]
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            stack[-1].body.append(line)
            continue
        level = len(heading.group(1))
        while stack[-1].level >= level:
            stack.pop()
        section = Section(level, heading.group(2), number)
        section.body.append(line)
        stack[-1].children.append(section)
        stack.append(section)
    return root


def backticked(text: str) -> set[str]:
    """Return every `code span` of a markdown text."""
    return set(re.findall(r"`([^`\n]+)`", text))


def find(root: Section, title: str) -> Section | None:
    return next((s for s in root.walk() if s.title == title), None)


def builtin_types() -> dict[str, dict[str, type]]:
    """Return the built-in plugin types by kind (third-party test plugins left out)."""
    return {
        kind: {name: cls for name, cls in types.items() if cls.__module__.startswith(BUILTIN)}
        for kind, types in registry().types.items()
    }


def schema_properties(schema: dict) -> list[tuple[str, str]]:
    """Return (definition, key) for every property of every object in a JSON Schema."""
    found: list[tuple[str, str]] = []

    def visit(node, owner: str):
        if isinstance(node, dict):
            for key in node.get("properties", {}):
                found.append((owner, key))
            for key, value in node.items():
                if key in ("default", "examples", "const", "enum"):
                    continue  # values, not shapes
                if key == "$defs":
                    for name, definition in value.items():
                        visit(definition, name)
                else:
                    visit(value, owner)
        elif isinstance(node, list):
            for item in node:
                visit(item, owner)

    visit(schema, schema.get("title", "MonitorConfig"))
    return found


def own_fields(options: type) -> list[str]:
    """Return the keys a plugin's options add to those every plugin of its kind has."""
    base = next(
        c
        for c in options.__mro__[1:]
        if issubclass(c, PluginOptions) and c.__module__.startswith("watchkeeper.schema.")
    )
    return [
        f.alias or name for name, f in options.model_fields.items() if name not in base.model_fields
    ]


@pytest.fixture(scope="module")
def configuration() -> str:
    return CONFIGURATION.read_text()


def test_every_schema_key_is_documented(configuration):
    schema = build_config_model(builtin_types()).model_json_schema(by_alias=True)
    documented = backticked(configuration)
    missing = sorted(
        {f"{owner}.{key}" for owner, key in schema_properties(schema) if key not in documented}
    )
    assert not missing, (
        f"{CONFIGURATION.name} does not mention these keys of the schema as `key`: "
        + ", ".join(missing)
    )


def test_every_plugin_type_has_its_own_heading_with_its_keys(configuration):
    root = parse_sections(configuration)
    problems = []
    for kind, types in builtin_types().items():
        section = find(root, TYPE_SECTIONS[kind])
        if section is None:
            problems.append(f"no heading {TYPE_SECTIONS[kind]!r} for the {kind} types")
            continue
        for name, cls in sorted(types.items()):
            heading = next((c for c in section.walk() if c.title.split()[0] == f"`{name}`"), None)
            if heading is None:
                problems.append(
                    f"{kind} {name!r}: no heading `{name}` under {TYPE_SECTIONS[kind]!r}"
                )
                continue
            documented = backticked(heading.text)
            for key in own_fields(cls.Options):
                if key not in documented:
                    problems.append(
                        f"{kind} {name!r}: key `{key}` is not documented under its heading "
                        f"(line {heading.line})"
                    )
    assert not problems, "\n".join(problems)


def test_documented_plugin_types_exist(configuration):
    """A heading for a type that no longer exists is as wrong as a missing one."""
    root = parse_sections(configuration)
    types = builtin_types()
    stale = []
    for kind, title in TYPE_SECTIONS.items():
        section = find(root, title)
        if section is None:
            continue
        for child in section.children:
            name = child.title.split()[0].strip("`")
            if name not in types.get(kind, {}):
                stale.append(f"{title}: `{name}` (line {child.line}) is not a built-in {kind}")
    assert not stale, "\n".join(stale)


def yaml_blocks(text: str) -> list[tuple[int, str]]:
    """Return (line, text) of every ```yaml block of a markdown document."""
    return [
        (text[: m.start()].count("\n") + 2, m.group(1))
        for m in re.finditer(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    ]


def test_yaml_examples_are_well_formed(configuration, tmp_path):
    """Every YAML example reads without a syntax error or a duplicate key."""
    problems = []
    for line, block in yaml_blocks(configuration):
        path = tmp_path / f"block-{line}.yaml"
        path.write_text(block)
        for problem in loader.load(path, env={}).errors:
            if problem.path.startswith("include"):
                continue  # the included files are not part of the example
            problems.append(f"{CONFIGURATION.name}:{line + problem.line - 1}: {problem.message}")
    assert not problems, "\n".join(problems)


def test_the_small_example_is_valid(configuration, cli, write_config):
    section = find(parse_sections(configuration), "A small monitor.yaml")
    assert section is not None
    [(_line, block)] = yaml_blocks(section.text)
    write_config(block)
    result = cli("validate", "--format", "json")
    assert result.code == 0, result.output
    assert all("is not set" in p["message"] for p in result.json()["problems"]), result.output


# --- docs/cli.md -------------------------------------------------------------------------


def commands(group: click.Group, prefix: str = "watchkeeper"):
    """Yield (command path, click command) for every command `--help` lists, recursively."""
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        yield path, command
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            yield from commands(command, path)


def option_names(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and not param.hidden:
            names += [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
    return [n for n in names if n != "--help"]


@pytest.fixture(scope="module")
def cli_doc() -> Section:
    return parse_sections(CLI.read_text())


@pytest.fixture(scope="module")
def cli_group() -> click.Group:
    return typer.main.get_command(app)  # type: ignore[return-value]


def command_section(root: Section, path: str) -> Section | None:
    return next((s for s in root.walk() if s.title == f"`{path}`"), None)


def test_every_command_is_documented(cli_doc, cli_group):
    missing = [path for path, _ in commands(cli_group) if command_section(cli_doc, path) is None]
    assert not missing, f"{CLI.name} has no heading `watchkeeper ...` for: " + ", ".join(missing)


def test_every_option_is_documented(cli_doc, cli_group):
    problems = []
    for path, command in commands(cli_group):
        section = command_section(cli_doc, path)
        if section is None:
            continue  # reported by test_every_command_is_documented
        documented = backticked(section.text)
        for option in option_names(command):
            if not any(span == option or span.startswith(option + " ") for span in documented):
                problems.append(f"{path}: option `{option}` (line {section.line})")
    global_section = find(cli_doc, "Global options")
    documented = backticked(global_section.text) if global_section else set()
    for option in option_names(cli_group):
        if not any(span == option or span.startswith(option + " ") for span in documented):
            problems.append(f"global option `{option}` is not under 'Global options'")
    assert not problems, f"undocumented in {CLI.name}:\n" + "\n".join(problems)


def test_help_lists_what_the_doc_checks(cli, cli_group):
    """The command tree walked above is the one `watchkeeper --help` shows."""
    result = cli("--help")
    assert result.code == 0, result.output
    listed = set(re.findall(r"^[│|] ([a-z][a-z-]*)\s{2,}", result.stdout, re.MULTILINE))
    top = {path.split()[1] for path, _ in commands(cli_group)}
    assert listed == top


# --- links between the docs ------------------------------------------------------------------


def heading_anchors(text: str) -> set[str]:
    """Return the anchors GitHub gives a document's headings (`-1`, `-2` for repeats)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        anchor = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


# the operations pages, which lean on the other pages' headings the most
LINKED_PAGES = ("running.md", "alerting.md", "scaling.md", "cli.md")


def test_links_between_docs_resolve():
    """A link to another page, or to a heading, must not break when a heading is renamed."""
    problems = []
    for page in (DOCS / name for name in LINKED_PAGES):
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
        for match in re.finditer(r"\]\(([^)\s]+)\)", text):
            link = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", link):
                continue  # https:, mailto:
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                problems.append(f"{page.name}: {link}: no such file")
            elif (
                anchor
                and target.suffix == ".md"
                and anchor not in heading_anchors(target.read_text())
            ):
                problems.append(f"{page.name}: {link}: no such heading in {target.name}")
    assert not problems, "broken links in docs/:\n" + "\n".join(problems)
