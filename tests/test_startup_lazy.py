"""Start-up imports only what a command line needs: `--version` almost nothing, `validate`
the plugins its file names and not the other commands; the per-file model answers as
the whole one does."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from importlib.metadata import version

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
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    modules = done.stderr.rsplit("MODULES ", 1)[-1].split()
    return done.returncode, done.stdout, set(modules)


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
  web: {probe: http, url: "https://example.com"}
  db: {probe: tcp, host: db.internal, port: 5432}
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
    assert commands == {
        "watchkeeper.engine.cli.config_cmds",
        "watchkeeper.engine.cli.grammar",
        "watchkeeper.engine.cli.group",
        "watchkeeper.engine.cli.root",
    }
    assert "rich.table" not in modules  # only `plugins` draws a table


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
