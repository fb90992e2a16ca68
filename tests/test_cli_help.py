"""`--help` reads like a man page: every command has examples, and every example parses."""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import pytest
import typer.main

from tests.conftest import CliResult, run_cli
from watchkeeper.engine.cli import app

ROOT = typer.main.get_command(app)


def walk(command, path: tuple[str, ...] = ()):
    """Yield (path, command) for the root and every command below it, groups included."""
    yield path, command
    if hasattr(command, "commands"):  # a group: typer ships its own click
        for name, sub in sorted(command.commands.items()):
            if not sub.hidden:
                yield from walk(sub, (*path, name))


COMMANDS = dict(walk(ROOT))


def command_id(path: tuple[str, ...]) -> str:
    return " ".join(("watchkeeper", *path))


def examples(text: str) -> list[str]:
    """Return the `watchkeeper ...` lines of a help text's Examples section."""
    _, found, tail = text.partition("Examples:")
    if not found:
        return []
    lines = (line.strip(" │|") for line in tail.splitlines())
    return [line.strip() for line in lines if line.strip().startswith("watchkeeper ")]


SIDE_EFFECTS = {"--install-completion"}
"""Options whose (eager) callbacks act while parsing: this one edits the shell's rc file."""


def parse(argv: list[str]) -> list[str]:
    """Parse a command line with the CLI's own parser, without running it; return its path."""
    acting = SIDE_EFFECTS & set(argv)
    if acting:  # only check that the root offers it: parsing would install completion
        offered = {opt for param in ROOT.params for opt in param.opts}
        assert acting <= offered, acting - offered
        return []
    ctx = ROOT.make_context("watchkeeper", argv)
    command = ROOT
    while hasattr(command, "commands"):
        # `protected_args` is private in newer click (typer vendors its own)
        args = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not args:
            break
        name, command, rest = command.resolve_command(ctx, args)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx.command_path.split()[1:]


def shell_words(line: str) -> list[str]:
    """Split an example as a shell would, up to a redirection or pipe."""
    words = shlex.split(line, comments=True)
    for index, word in enumerate(words):
        if word in {">", ">>", "|", "2>&1", "&&", ";"}:
            return words[:index]
    return words


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], CliResult]:
    """`watchkeeper ... --help` of every command, through the real CLI (a few at a time)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda path: run_cli(*path, "--help"), COMMANDS)
        return dict(zip(COMMANDS, results, strict=True))


def test_the_walk_finds_groups_and_their_commands():
    assert ("backup", "restore") in COMMANDS
    assert ("alerts",) in COMMANDS
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("path", COMMANDS, ids=command_id)
def test_help_has_a_description_and_examples(helps, path):
    result = helps[path]
    assert result.code == 0, result.output
    assert "Usage: watchkeeper" in result.stdout
    found = examples(result.stdout)
    assert found, (
        f"`{command_id(path)} --help` has no Examples: section with `watchkeeper ...` lines"
    )
    # the summary comes first: examples follow the prose, never replace it
    summary = result.stdout.split("Usage:", 1)[1].split("Examples:", 1)[0]
    assert len(summary.split("\n", 1)[1].strip()) > 20, result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=command_id)
def test_every_example_is_a_valid_command_line(path):
    """Each example names existing commands and options, with values they accept."""
    command = COMMANDS[path]
    lines = examples(command.help or "")
    assert lines, f"{command_id(path)}: its help text has no examples"
    for line in lines:
        argv = shell_words(line)[1:]
        try:
            parsed = parse(argv)
        except (typer.Exit, SystemExit) as exc:  # an eager option such as --version
            code = getattr(exc, "exit_code", getattr(exc, "code", 0))
            if code:
                pytest.fail(f"{command_id(path)}: example `{line}` exits {code}")
            continue
        except Exception as exc:
            pytest.fail(f"{command_id(path)}: example `{line}` does not parse: {exc}")
        # a command's examples run that command (a group's: it or one below it)
        assert parsed[: len(path)] == list(path), f"{command_id(path)}: example `{line}`"


def test_version(cli):
    result = cli("--version")
    assert result.code == 0, result.output
    assert result.stdout == f"watchkeeper {version('watchkeeper')}\n"


def test_shell_completion_completes_commands(cli):
    """What `--install-completion` wires into the shell: the CLI answers completions."""
    result = cli(
        env={
            "_WATCHKEEPER_COMPLETE": "complete_bash",
            "COMP_WORDS": "watchkeeper backup r",
            "COMP_CWORD": "2",
        }
    )
    assert result.code == 0, result.output
    assert set(result.stdout.split()) == {"run", "restore"}


def test_completion_options_are_offered(helps):
    text = helps[()].stdout
    assert "--install-completion" in text
    assert "--show-completion" in text
