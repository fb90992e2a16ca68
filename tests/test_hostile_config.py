"""A config author can write anything: what `validate` accepts must not freeze the daemon.

Each hostile config is refused by `validate` with one problem at `file:line:col`, and by
`check`, `run --once` and `plan` with the same line: quickly, exit 1, no traceback.
Every CLI call has a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.engine.config import validation as config_mod

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 20  # seconds per CLI call: every refusal here takes about one
# the documented bounds (docs/configuration.md, "Limits")
ALIAS_EXPANSION_LIMIT = 100_000  # values aliases may add (for a file this small)
FILE_READ_LIMIT = 64 * 1024  # bytes a ${file:...} reference may read
INCLUDE_FILE_LIMIT = 1000  # files the include globs may match
COMMANDS = [("validate",), ("check",), ("run", "--once"), ("plan",)]


def refused(cli, args, where: str, message: str, *, code: int = 1):
    """Run a command; it must exit `code` promptly, naming `where` and `message`."""
    result = cli(*args, timeout=TIMEOUT)
    assert result.code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(where)]
    assert lines, result.output
    assert any(message in line for line in lines), result.output
    return result


# --- alias bombs -------------------------------------------------------------------------

BOMB = """
version: 1
checks:
  x:
    probe: tcp
    host: 127.0.0.1
    port: 9
    labels: {a: &a [x, x, x, x, x, x, x, x, x, x]}
    tags:
      - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      - &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
      - &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
      - &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
      - &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
    description: *i
"""


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_alias_bomb_is_refused_at_the_alias(cli, write_config, args):
    write_config(BOMB)
    result = refused(
        cli,
        args,
        "monitor.yaml:17:18:",
        f"alias '*i' expands to more than {ALIAS_EXPANSION_LIMIT} values",
    )
    assert result.output.count("expands to more than") == 1, result.output


def test_recursive_alias_is_refused(cli, write_config):
    write_config(
        """
        version: 1
        checks:
          x:
            probe: tcp
            host: 127.0.0.1
            port: 9
            tags: &loop [a, *loop]
        """
    )
    refused(cli, ("validate",), "monitor.yaml:7:21:", "alias '*loop' is inside the value")


def test_deep_nesting_is_one_problem(cli, write_config):
    write_config("version: 1\nchecks: " + "[" * 990 + "]" * 990 + "\n")
    refused(cli, ("validate",), "monitor.yaml:2:", "lists and mappings nest too deeply")


def test_aliases_that_stay_small_still_work(cli, write_config):
    write_config(
        """
        version: 1
        defaults: &d {timeout: 5s}
        checks:
          x: &x {probe: tcp, host: 127.0.0.1, port: 9, labels: &l {team: web}}
          y: {<<: *x, labels: *l}
        """
    )
    result = cli("validate", timeout=TIMEOUT)
    assert result.code == 0, result.output


# --- ${file:...} -------------------------------------------------------------------------

FILE_CONFIG = """
version: 1
checks:
  a:
    probe: tcp
    host: 127.0.0.1
    port: 9
    description: "${{file:{path}}}"
"""


def _file_config(write_config, path) -> str:
    write_config(FILE_CONFIG.format(path=path))
    return f"${{file:{path}}}"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_file_reference_to_a_fifo_does_not_block(cli, write_config, tmp_path, args):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    ref = _file_config(write_config, fifo)
    refused(cli, args, "monitor.yaml:7:18:", f"{ref} is not a regular file")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: "/dev/zero", "is not a regular file"),
        (lambda tmp: tmp, "is not a regular file"),  # a directory
        (lambda tmp: _write(tmp / "big", b"x" * 1_000_000), "is larger than 64 KiB"),
        (lambda tmp: _write(tmp / "bin", b"\x7fELF\x02\x01\x00\x00\xff\xfe"), "is not UTF-8 text"),
        (lambda tmp: _write(tmp / "nul", b"token\x00\x00"), "is not UTF-8 text"),
    ],
    ids=["dev-zero", "directory", "1MB", "binary", "nul-bytes"],
)
def test_file_reference_to_something_not_a_small_text_file(
    cli, write_config, tmp_path, make, message
):
    ref = _file_config(write_config, make(tmp_path))
    refused(cli, ("validate",), "monitor.yaml:7:18:", f"checks.a.description: {ref} {message}")
    refused(cli, ("check",), "monitor.yaml:7:18:", f"{ref} {message}")


def test_file_reference_just_under_the_limit_is_read(cli, write_config, tmp_path):
    path = _write(tmp_path / "ok", b"y" * (FILE_READ_LIMIT - 1) + b"\n")
    _file_config(write_config, path)
    result = cli("validate", timeout=TIMEOUT)
    assert result.code == 0, result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_file_reference_to_an_unreadable_file(cli, write_config, tmp_path):
    path = _write(tmp_path / "secret", b"s3cret\n")
    path.chmod(0)
    ref = _file_config(write_config, path)
    refused(cli, ("check",), "monitor.yaml:7:18:", f"{ref} cannot be read: Permission denied")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- include globs -----------------------------------------------------------------------


def test_include_of_the_whole_disk_is_bounded(cli, write_config):
    write_config(
        """
        version: 1
        include: ['/**/*.yaml']
        """
    )
    result = refused(cli, ("validate",), "monitor.yaml:2:11: include[0]:", "'/**/*.yaml'")
    assert "more than" in result.output, result.output
    refused(cli, ("run", "--once"), "monitor.yaml:2:11: include[0]:", "'/**/*.yaml'")


def test_include_matching_too_many_files(cli, write_config, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(INCLUDE_FILE_LIMIT + 1):
        (parts / f"p{i:05}.yaml").write_text("checks: {}\n")
    write_config(
        """
        version: 1
        include: [parts/*.yaml]
        """
    )
    refused(
        cli,
        ("validate",),
        "monitor.yaml:2:11: include[0]:",
        f"'parts/*.yaml' matches more than {INCLUDE_FILE_LIMIT} files",
    )


def test_include_of_a_fifo_does_not_block(cli, write_config, tmp_path):
    (tmp_path / "parts").mkdir()
    os.mkfifo(tmp_path / "parts" / "more.yaml")
    write_config(
        """
        version: 1
        include: ['parts/*.yaml']
        """
    )
    refused(cli, ("validate",), "monitor.yaml:2:11: include[0]:", "not a regular file")


@pytest.mark.parametrize("args", [("validate",), ("check",), ("plan",), ("run", "--once")])
def test_a_config_path_naming_a_fifo_or_a_device_does_not_block(cli, tmp_path, args):
    fifo = tmp_path / "monitor.fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        result = cli("-c", path, *args, timeout=TIMEOUT)
        assert result.code == 2, result.output
        assert result.output.strip() == f"error: {path}: cannot read: not a regular file"


def test_recursive_include_within_bounds_still_works(cli, write_config):
    write_config(
        "checks:\n  deep: {probe: tcp, host: 127.0.0.1, port: 9}\n", "conf/a/b/c/deep.yaml"
    )
    write_config(
        """
        version: 1
        include: ['conf/**/*.yaml']
        """
    )
    result = cli("validate", timeout=TIMEOUT)
    assert result.code == 0, result.output


# --- timezones ---------------------------------------------------------------------------

EXPECTED = "(expected an IANA name such as Europe/Berlin)"
ODD_ZONES = {
    "300-chars": ('"' + "A" * 300 + '"', f"unknown timezone '{'A' * 39}\u2026' {EXPECTED}"),
    "dotdot": ("../../etc/passwd", f"unknown timezone '../../etc/passwd' {EXPECTED}"),
    "absolute": ("/etc/passwd", f"unknown timezone '/etc/passwd' {EXPECTED}"),
    "nul": ('"Europe/\\0Berlin"', f"unknown timezone 'Europe/\\x00Berlin' {EXPECTED}"),
    "control": ('"Europe/\\x01\\x7f"', f"unknown timezone 'Europe/\\x01\\x7f' {EXPECTED}"),
    "bidi": ('"Europe/\\u202eBerlin"', "unknown timezone 'Europe/\\u202eBerlin' "),
    "folder": ("Europe", "unknown timezone 'Europe'; did you mean 'Europe/"),
}


@pytest.mark.parametrize(("zone", "message"), ODD_ZONES.values(), ids=ODD_ZONES.keys())
def test_odd_timezone_is_one_clear_problem(cli, write_config, zone, message):
    write_config(f"version: 1\ndefaults:\n  timezone: {zone}\n")
    result = refused(cli, ("validate",), "monitor.yaml:3:13: defaults.timezone:", message)
    line = next(x for x in result.output.splitlines() if x.startswith("monitor.yaml:3:13"))
    assert len(line) < 200, line
    assert line.isprintable(), line
    refused(cli, ("plan",), "monitor.yaml:3:13: defaults.timezone:", message)


def test_long_timezone_in_a_schedule(cli, write_config):
    write_config(
        f"""
        version: 1
        checks:
          a:
            probe: tcp
            host: 127.0.0.1
            port: 9
            schedule: {{cron: "0 * * * *", timezone: {"Z" * 300}}}
        """
    )
    for args in COMMANDS:
        refused(cli, args, "monitor.yaml:7:45:", "unknown timezone 'ZZZ")


# --- crons that never fire ---------------------------------------------------------------

NEVER = "1 1 */100 * MON#4"
NEVER_MESSAGE = f"cron '{NEVER}' never fires (no run in the next 5 years)"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_never_firing_check_schedule(cli, write_config, args):
    write_config(
        f"""
        version: 1
        checks:
          a:
            probe: tcp
            host: 127.0.0.1
            port: 9
            schedule: {{cron: "{NEVER}"}}
        """
    )
    refused(cli, args, "monitor.yaml:7:22: checks.a.schedule.cron:", NEVER_MESSAGE)


def test_never_firing_backup_schedule(cli, write_config):
    write_config(
        f"""
        version: 1
        backups:
          destinations:
            local: {{type: local, path: backups}}
          jobs:
            config:
              source: {{type: files, paths: [monitor.yaml]}}
              schedule: {{cron: "{NEVER}"}}
              to: [local]
        """
    )
    where = "monitor.yaml:8:24: backups.jobs.config.schedule.cron:"
    for args in (("validate",), ("plan",), ("run", "--once")):
        refused(cli, args, where, NEVER_MESSAGE)


def test_never_firing_maintenance_window(cli, write_config):
    write_config(
        f"""
        version: 1
        maintenance:
          - name: never
            schedule: {{cron: "{NEVER}"}}
            duration: 1h
        """
    )
    for args in (("validate",), ("plan",)):
        refused(cli, args, "monitor.yaml:4:22: maintenance[0].schedule.cron:", NEVER_MESSAGE)


def test_never_firing_task_and_heartbeat(cli, write_config):
    write_config(
        f"""
        version: 1
        notifiers:
          console: {{type: log}}
        tasks:
          review:
            schedule: {{cron: "0 0 */31 2 MON#5"}}
            notify: [console]
            checklist: [look]
        checks:
          beat:
            probe: heartbeat
            expect_every: {{cron: "{NEVER}"}}
        """
    )
    result = refused(cli, ("validate",), "monitor.yaml:6:22: tasks.review.schedule.cron:", "never")
    assert f"monitor.yaml:12:26: checks.beat.expect_every.cron: {NEVER_MESSAGE}" in result.output


# --- anything at all: the loader and validation only ever report problems -----------------

EXAMPLES = [*sorted(REPO.glob("examples/*.yaml")), REPO / "monitor.yaml"]
_WORK = Path(tempfile.mkdtemp(prefix="wk-hostile-"))


def _outcome(text: bytes) -> None:
    path = _WORK / "monitor.yaml"
    path.write_bytes(text)
    result = config_mod.validate(path, env={})
    if result.config is not None and not result.errors:
        return
    assert result.errors or result.config is None
    for problem in result.problems:
        assert problem.message, problem
        if problem.file:
            assert problem.line >= 1, problem
            assert problem.column >= 1, problem


def _mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(rng.randrange(len(lines)), lines[i])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + rng.choice(YAMLISH) + lines[i][cut:]
        elif op == 4:
            lines[i] = lines[i].replace(" ", "", 1) if rng.random() < 0.5 else " " + lines[i]
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)] + "\n"
    return "".join(lines)


YAMLISH = [
    ":", "- ", "{", "}", "[", "]", ",", "&a ", "*a", "<<: *a", "!!str ", "!!python/name:os", "#",
    "'", '"', "|", ">", "\t", "${X}", "${env.k}", "${file:nothing}", "$${", "\n  ", "? ", "---\n",
    "...", "~", "null", "1e999", "0x1F", "2026-01-01", "1h", "85%", "@daily", "\x00", "\ufeff",
]  # fmt: skip


@settings(max_examples=70, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    _outcome(data)


@settings(max_examples=70, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(YAMLISH) | st.text(max_size=8), max_size=60))
def test_random_yamlish_text_never_raises(pieces):
    _outcome(("version: 1\n" + "".join(pieces)).encode("utf-8", "surrogatepass"))


@settings(max_examples=70, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(EXAMPLES), st.randoms(use_true_random=False))
def test_mutated_examples_never_raise(example, rng):
    _outcome(_mutate(example.read_text(), rng).encode("utf-8", "surrogatepass"))
