"""Start-up imports only what a command line needs: `--version` almost nothing, `validate`
the plugins its file names and not the other commands; the per-file model answers as
the whole one does."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import REPO
from watchkeeper.engine import plugins
from watchkeeper.engine.cli.grammar import command_named, config_first
from watchkeeper.engine.config import loader
from watchkeeper.engine.config.validation import config_model, translate_errors
from watchkeeper.engine.plugins import KINDS, builtin_type, registry


def imported_by(argv: list[str], cwd) -> tuple[int, str, set[str]]:
    """Run the console script's `main` with argv in a fresh interpreter; return its exit
    code, what it printed and the modules it had imported by the end."""
    code, out, _err, modules = ran(argv, cwd)
    return code, out, modules


def ran(argv: list[str], cwd) -> tuple[int, str, str, set[str]]:
    """`imported_by`, with what went to stderr too."""
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.argv = ["watchkeeper", *{argv!r}]
        from watchkeeper.engine.cli import main
        def report(code=0):
            sys.stdout.flush()
            sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n")
            sys.stderr.flush()
            real_exit(code)
        real_exit, os._exit = os._exit, report
        try:
            main()
        except SystemExit as exc:
            report(exc.code if isinstance(exc.code, int) else 1)
        report(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    err, _, modules = done.stderr.rpartition("\nMODULES ")
    return done.returncode, done.stdout, err, set(modules.split())


def test_version_imports_neither_typer_rich_pydantic_nor_the_engine(tmp_path):
    code, out, modules = imported_by(["--version"], tmp_path)
    assert code == 0
    assert out == f"watchkeeper {version('watchkeeper')}\n"
    heavy = {"typer", "rich", "pydantic", "yaml", "pluggy", "watchkeeper.engine.cli.root"}
    assert not heavy & modules, heavy & modules


def test_version_after_other_options_still_answers_through_typer(tmp_path):
    code, out, _modules = imported_by(["--log-level", "debug", "--version"], tmp_path)
    assert (code, out) == (0, f"watchkeeper {version('watchkeeper')}\n")


FILE = """\
version: 1
checks:
  web: {probe: http, url: "https://example.com", schedule: {cron: "*/5 * * * *"}}
  db: {probe: tcp, host: db.internal, port: 5432, tls: true}
notifiers:
  console: {type: log}
routes:
  - {match: {}, notify: [console]}
"""


def test_validate_imports_the_plugins_its_file_names_and_no_other_command(tmp_path):
    (tmp_path / "monitor.yaml").write_text(FILE)
    code, out, modules = imported_by(["validate"], tmp_path)
    assert code == 0, out
    assert "is valid" in out
    loaded = modules & set(plugins.DEFAULT_PLUGINS)
    assert loaded == {
        "watchkeeper.plugins.probes.http",
        "watchkeeper.plugins.probes.tcp",
        "watchkeeper.plugins.notifiers.log",
        "watchkeeper.plugins.stores.sqlite",  # the default store
    }
    commands = {m for m in modules if m.startswith("watchkeeper.engine.cli.")}
    assert commands == {"watchkeeper.engine.cli.validate_cmd"}  # not typer's command group
    # what a check runs on, the store's driver and the command line's libraries wait
    runtime = {"asyncio", "anyio", "sniffio", "ssl", "sqlite3", "concurrent.futures", "queue"}
    cli = {"typer", "click", "rich"}
    assert not (runtime | cli) & modules, (runtime | cli) & modules
    # croniter's import-time question runs no `file` subprocess (see schema/cron.py)
    assert "croniter" in modules
    assert "subprocess" not in modules
    # the log notifier's options need neither the notice model nor its templates
    notices = {
        "watchkeeper.engine.alerting.notice",
        "watchkeeper.engine.alerting.templates",
        "watchkeeper.plugins.notifiers.messages",
    }
    assert not notices & modules, notices & modules


def test_validate_of_dns_and_tcp_checks_does_not_load_the_http_probe(tmp_path):
    (tmp_path / "monitor.yaml").write_text(
        "version: 1\n"
        "checks:\n"
        "  resolver: {probe: dns, name: example.com, expect: {rcode: nxdomain}}\n"
        "  db: {probe: tcp, host: db.internal, port: 5432, tls: true}\n"
    )
    code, out, modules = imported_by(["validate"], tmp_path)
    assert code == 0, out
    assert "is valid" in out
    loaded = modules & set(plugins.DEFAULT_PLUGINS)
    assert loaded == {
        "watchkeeper.plugins.probes.dns",
        "watchkeeper.plugins.probes.tcp",
        "watchkeeper.plugins.stores.sqlite",
    }
    # the helpers dns and tcp share with http are imported when a check runs
    assert not {m for m in modules if m.startswith("watchkeeper.plugins.probes.http")}


# --- validate without typer ------------------------------------------------------------------

WARNED = """\
version: 1
server:
  admin_token: ${WK_LAZY_UNSET_TOKEN}
checks:
  api:
    probe: http
    url: https://user:lazy-hunter2@example.com/x
    schedule: {every: 1m}
    thresholds:
      - {metric: error_rate, window: 15m, above: 5%, severity: critical}
"""
INVALID = WARNED.replace("version: 1\n", "version: 1\nchekcs: {}\n").replace(
    "every: 1m", "every: 1m, cron: '61 * * * *'"
)


def test_validate_prints_the_same_through_typer_and_without_it(tmp_path):
    """Every format, valid and invalid files, warnings, --strict and an unreadable file:
    the line validate answers itself prints what typer's command prints, byte for byte."""
    (tmp_path / "warned.yaml").write_text(WARNED)
    (tmp_path / "invalid.yaml").write_text(INVALID)
    (tmp_path / "monitor.yaml").write_text(FILE)
    cases = [
        ("monitor.yaml", []),
        ("warned.yaml", []),
        ("warned.yaml", ["--strict", "--format", "github"]),
        ("invalid.yaml", []),
        ("invalid.yaml", ["--format=json"]),
        ("invalid.yaml", ["-f", "github", "--strict"]),
        ("gone.yaml", []),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [
            (
                pool.submit(ran, ["-c", name, "validate", *argv], tmp_path),
                # `-cFILE` is a form only typer reads: the same command, through typer
                pool.submit(ran, [f"-c{name}", "validate", *argv], tmp_path),
            )
            for name, argv in cases
        ]
        for (name, argv), (direct, through_typer) in zip(cases, runs, strict=True):
            direct, through_typer = direct.result(), through_typer.result()
            # (an unreadable file is reported through typer's command module either way)
            assert "typer" not in direct[3] or name == "gone.yaml"
            assert "typer" in through_typer[3]
            assert direct[:3] == through_typer[:3], (name, argv)
    outcomes = {
        (name, *argv): run.result()[:3] for (name, argv), (run, _) in zip(cases, runs, strict=True)
    }
    assert outcomes[("monitor.yaml",)] == (0, "✓ monitor.yaml is valid\n", "")
    assert outcomes[("warned.yaml",)][1].endswith("✓ warned.yaml is valid (2 warnings)\n")
    assert "lazy-hunter2" not in str(outcomes)
    assert outcomes[("invalid.yaml", "--format=json")][1].startswith('{\n  "valid": false')
    assert outcomes[("gone.yaml",)] == (2, "", "error: gone.yaml: no such file\n")


@pytest.mark.parametrize(
    ("argv", "read"),
    [
        (["validate"], ("monitor.yaml", "text", "info", [], "text", False)),
        (
            ["--log-format", "json", "--log-level=debug", "-c", "a.yaml", "validate", "--strict"],
            ("a.yaml", "json", "debug", [], "text", True),
        ),
        (
            ["--config=a.yaml", "validate", "b.yaml", "-f", "github", "c.yaml", "--format=json"],
            ("a.yaml", "text", "info", ["b.yaml", "c.yaml"], "json", False),
        ),
        # a `-c` after the command wins, as `config_first` moves it (engine/cli/grammar.py)
        (
            ["-c", "a.yaml", "validate", "--config", "b.yaml"],
            ("b.yaml", "text", "info", [], "text", False),
        ),
        # typer's to read or to explain
        (["validate", "--help"], None),
        (["validate", "-h"], None),
        (["--help", "validate"], None),
        (["validate", "--", "a.yaml"], None),
        (["validate", "-fjson"], None),
        (["-ca.yaml", "validate"], None),
        (["validate", "--format", "yaml"], None),
        (["validate", "--format"], None),
        (["validate", "-c"], None),
        (["validate", "--no-such-option"], None),
        (["validate", "-"], None),
        (["--log-level", "DEBUG", "validate"], None),
        (["--log-level", "debug", "validate", "--log-level", "info"], None),
        (["--strict", "validate"], None),
        (["plan", "validate"], None),
        (["-c", "validate"], None),
    ],
)
def test_the_lines_validate_answers_without_typer(argv, read, monkeypatch):
    from watchkeeper.engine.cli import validate_cmd

    monkeypatch.delenv("WATCHKEEPER_CONFIG", raising=False)
    parsed = validate_cmd._parse(argv)
    if read is None:
        assert parsed is None
        return
    config, log_format, log_level, files, fmt, strict = read
    assert parsed == (Path(config), log_format, log_level, [Path(f) for f in files], fmt, strict)


def test_validate_without_typer_reads_watchkeeper_config_as_click_does(monkeypatch):
    from watchkeeper.engine.cli import validate_cmd

    monkeypatch.setenv("WATCHKEEPER_CONFIG", "ci/other.yaml")
    assert validate_cmd._parse(["validate"])[0] == Path("ci/other.yaml")
    assert validate_cmd._parse(["-c", "a.yaml", "validate"])[0] == Path("a.yaml")
    monkeypatch.setenv("WATCHKEEPER_CONFIG", "")  # empty: no file given
    assert validate_cmd._parse(["validate"])[0] == Path("monitor.yaml")


def test_the_choices_validate_reads_are_the_ones_typer_offers():
    from watchkeeper.engine.cli import validate_cmd
    from watchkeeper.engine.cli.config_cmds import ValidateFormat
    from watchkeeper.engine.cli.grammar import LogFormat, LogLevel

    assert tuple(ValidateFormat) == validate_cmd.FORMATS
    assert tuple(LogFormat) == validate_cmd.LOG_FORMATS
    assert tuple(LogLevel) == validate_cmd.LOG_LEVELS


@pytest.mark.parametrize(
    "names",
    [
        "monitor.yaml",
        "ci/monitor.yaml, other.yaml",
        "ünï cödé ✓.yaml",
        "x" * 300 + ".yaml",
        "a b  c.yaml",
        "we[ir]d.yaml",
        "[bold]x.yaml",
        "emoji:smile:.yaml",
        "tab\there.yaml",
        "back\\slash.yaml",
        "bell\x07.yaml",
        "cr\rlf.yaml",
        "masked-lazy-s3cr3t-value.yaml",
    ],
)
@pytest.mark.parametrize(
    "markup", ["[green]✓[/] {} is valid (1 warning)", "[red]✗[/] {}: 2 errors"]
)
def test_the_summary_line_is_what_rich_writes(names, markup, capsys):
    from watchkeeper.engine.cli import validate_cmd
    from watchkeeper.engine.cli.console import console
    from watchkeeper.engine.observe.redaction import REDACTOR

    REDACTOR.add("lazy-s3cr3t-value")
    line = markup.format(names)
    console.print(line, markup=True)
    by_rich = capsys.readouterr()
    validate_cmd._say(line)
    assert capsys.readouterr() == by_rich
    assert "lazy-s3cr3t-value" not in by_rich.out


def test_help_lists_every_command_whatever_follows(tmp_path):
    code, out, _ = imported_by(["--help", "validate"], tmp_path)
    assert code == 0
    for name in ("validate", "run", "backup", "alerts", "report"):
        assert f" {name} " in out, name


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["validate"], "validate"),
        (["-c", "x.yaml", "--log-level", "debug", "run"], "run"),
        (["--config=x.yaml", "plan", "-c", "y.yaml"], "plan"),
        (["check", "-c", "x.yaml", "web"], "check"),
        (["--help", "validate"], None),
        (["--version", "run"], None),
        (["--install-completion"], None),
        (["-cx.yaml", "validate"], None),  # not recognised here: every command is loaded
        ([], None),
    ],
)
def test_the_command_a_line_runs(argv, named):
    assert command_named(config_first(argv)) == named


def test_every_command_is_registered_by_the_module_the_group_names():
    from watchkeeper.engine.cli import app
    from watchkeeper.engine.cli.group import COMMAND_MODULES

    registered = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    registered |= {g.name for g in app.registered_groups}
    assert registered == set(COMMAND_MODULES)
    for name, module in COMMAND_MODULES.items():
        source = (REPO / "engine" / "cli" / f"{module}.py").read_text()
        assert f'"{name}"' in source or f"def {name}(" in source, (name, module)


def test_each_builtin_module_provides_the_type_its_name_says():
    for module_name in plugins.DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        kind, type_name = builtin_type(module_name)
        provided = [cls.type for cls in getattr(module, KINDS[kind])()]
        assert provided == [type_name], module_name
        hooks = {n for n in vars(module) if n.startswith("watchkeeper_")}
        assert hooks == {KINDS[kind]}, module_name


def test_the_registry_knows_builtin_types_before_importing_them():
    reg = plugins.build_registry(plugins.create_manager(defer=True))
    probes = reg.types["probe"]
    assert {"http", "smtp"} <= set(probes)
    assert "nope" not in probes
    assert len(probes) == len(registry().types["probe"])
    assert reg.manager.get_plugin("watchkeeper.plugins.probes.smtp") is None
    smtp = probes["smtp"]
    assert smtp.type == "smtp"
    assert reg.manager.get_plugin("watchkeeper.plugins.probes.smtp") is not None
    assert reg.is_builtin("probe", "smtp")
    with pytest.raises(KeyError):
        probes["nope"]


BROKEN = [
    "checks:\n  web: {probe: http, url: https://example.com, schedul: {every: 5m}}\n",
    "checks:\n  web: {probe: http, url: 42, timeout: soon}\n",
    "checks:\n  db: {probe: tcp, host: db, port: 99999}\n  web: {probe: http}\n",
    "checks:\n  web: {probe: htp, url: https://example.com}\n",
    "checks:\n  web: {url: https://example.com}\n",
    "checks:\n  web: [http]\n",
    "notifiers:\n  hook: {type: webhook, url: https://example.com, secret: 3, colour: red}\n",
    "state: {type: sqlite, path: 3, retention: never}\n",
    "state: {type: postgres}\n",
    "backups:\n  destinations: {here: {type: local}}\n  jobs: {j: {source: {type: files}}}\n",
]


@pytest.mark.parametrize("text", BROKEN)
def test_the_model_for_a_file_reports_what_the_whole_model_does(tmp_path, text):
    path = tmp_path / "monitor.yaml"
    path.write_text("version: 1\n" + text)
    loaded = loader.load(path)
    reports = []
    for model in (config_model(), config_model(None, loaded.data)):
        try:
            model.model_validate(loaded.data)
        except Exception as exc:  # pydantic's ValidationError
            reports.append([p.text() for p in translate_errors(exc, loaded, model)])
        else:
            reports.append([])
    whole, own = reports
    assert whole, "each of these files is invalid"
    assert own == whole
