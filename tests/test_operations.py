"""Operations: the systemd unit is valid and hardened, logs suit the journal, and
docs/operations.md covers the seed guide's procedures with commands that exist."""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.test_cli_help import parse, shell_words
from watchkeeper.engine.observe import logs
from watchkeeper.engine.observe.redaction import REDACTOR

UNIT = REPO / "docs" / "watchkeeper.service"
DOC = REPO / "docs" / "operations.md"
WATCHKEEPER = Path(sys.executable).parent / "watchkeeper"
JOURNAL_LINE = re.compile(r"^<[0-7]>\S")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def unit_file(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a systemd unit: sections of keys, each with every value it was given."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting outside any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a `Key=value` line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return unit_file(UNIT.read_text())


def test_the_unit_runs_the_daemon_and_reloads_with_sighup(unit):
    service = unit["Service"]
    (start,) = service["ExecStart"]
    assert shlex.split(start)[0].endswith("/bin/watchkeeper")
    assert shlex.split(start)[-1] == "run"
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Restart"] == ["on-failure"]
    assert "WATCHKEEPER_CONFIG=/etc/watchkeeper/monitor.yaml" in service["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_the_unit_is_hardened(unit):
    service = unit["Service"]
    assert service.get("DynamicUser") == ["yes"] or service.get("User") == ["watchkeeper"]
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",  # empty: no capability at all
        "StateDirectory": "watchkeeper",
        "StandardError": "journal",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], f"{key}={service.get(key)}"
    families = " ".join(service["RestrictAddressFamilies"]).split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    writable = " ".join(service["ReadWritePaths"]).split()
    assert "/var/lib/watchkeeper" in writable  # the state directory, where state.db lives


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str] | None:
    if shutil.which("systemd-analyze") is None:
        return None
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def installable_unit(tmp_path) -> Path:
    """The unit with ExecStart pointing at this checkout's watchkeeper (verify wants it)."""
    path = tmp_path / "watchkeeper.service"
    path.write_text(UNIT.read_text().replace("/opt/watchkeeper/bin/watchkeeper", str(WATCHKEEPER)))
    return path


def test_systemd_accepts_the_unit(installable_unit):
    proc = systemd_analyze("verify", str(installable_unit))
    if proc is None:
        pytest.skip("systemd-analyze is not installed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).strip() == "", proc.stdout + proc.stderr


def test_systemd_rates_the_sandbox_ok(installable_unit):
    proc = systemd_analyze("security", "--offline=true", "--no-pager", str(installable_unit))
    if proc is None or "--offline" in proc.stderr:
        pytest.skip("systemd-analyze security --offline is not available")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0, proc.stdout


# --- logs for the journal --------------------------------------------------------------

FAILING = """
    version: 1
    state: {type: sqlite, path: state.db}
    checks:
      broken: {probe: command, argv: ["false"], severity: high}
    notifiers:
      console: {type: log}
    routes:
      - match: {}
        notify: [console]
        group_wait: 0s
    """


def test_log_format_journal_writes_priorities_without_time_stamps(cli, write_config):
    write_config(FAILING)
    result = cli("--log-format", "journal", "run", "--once")
    assert result.code == 1, result.output  # the check fails
    lines = result.stderr.splitlines()
    assert lines, result.output
    assert all(JOURNAL_LINE.match(line) for line in lines), result.stderr
    assert not any(TIMESTAMP.search(line) for line in lines), result.stderr
    assert any(line.startswith("<4>warning alert firing ") for line in lines), result.stderr
    assert any(line.startswith("<6>info daemon stopped") for line in lines), result.stderr


def run_with_stderr_file(tmp_path: Path, journal_stream: str | None) -> str:
    """Run the daemon once with stderr going to a file, as systemd connects the journal."""
    (tmp_path / "monitor.yaml").write_text(FAILING.replace("\n    ", "\n").strip() + "\n")
    log = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "JOURNAL_"))}
    with log.open("w") as stderr:
        if journal_stream == "this file":
            stat = os.fstat(stderr.fileno())
            journal_stream = f"{stat.st_dev}:{stat.st_ino}"
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run(
            [str(WATCHKEEPER), "run", "--once"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            timeout=60,
        )
    return log.read_text()


def test_under_systemd_the_journal_format_is_chosen_by_itself(tmp_path):
    text = run_with_stderr_file(tmp_path, "this file")
    assert text, "nothing was logged"
    assert all(JOURNAL_LINE.match(line) for line in text.splitlines()), text
    assert not TIMESTAMP.search(text), text


def test_a_journal_stream_elsewhere_keeps_text_lines(tmp_path):
    """A wrapper that redirected stderr away from the journal gets time-stamped text."""
    text = run_with_stderr_file(tmp_path, "1:1")
    assert text, "nothing was logged"
    assert all(TIMESTAMP.match(line) for line in text.splitlines()), text


def test_journal_lines_prefix_every_line_and_mask_secrets():
    stream = io.StringIO()
    logs.setup("debug", "journal", stream=stream)
    secret = "journal-test-secret-0123456789"
    REDACTOR.add(secret)
    log = logs.get_logger("test")
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError:
        log.error("probe crashed", exc_info=True, extra={"check": "api"})
    log.debug("detail")
    log.critical("down")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<3>error probe crashed check=api"
    traceback = [line for line in lines if line.startswith("<3>") and line != lines[0]]
    assert traceback
    assert traceback[-1].startswith("<3>RuntimeError: boom with ")
    assert secret not in stream.getvalue()
    assert "<7>debug detail" in lines
    assert "<2>critical down" in lines
    logs.setup("info", "text")  # as the other tests expect it


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
    ],
)
def test_syslog_priorities(level, priority):
    assert logs.syslog_priority(level) == priority


# --- docs/operations.md ----------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "Installing as a service",
        "Logs and the journal",
        "Upgrading",
        "Daily, weekly and monthly tasks",
        "Troubleshooting",
        "Backup failures",
        "Recovery procedures",
        "Escalation",
        "Alert channels and emergency contacts",
    ],
)
def test_the_page_has_a_section_for(topic):
    assert f"\n## {topic}\n" in DOC.read_text()


SEED_PROCEDURES = [
    # the guide's checklists, troubleshooting and recovery steps, each as the page names it
    "check Sentry for new errors",
    "verify backup completion",
    "test backup restoration",
    "review and rotate API keys",
    "conduct a disaster recovery drill",
    "### High error rate",
    "### Slow performance",
    "**Database connectivity**",
    "**Storage permissions**",
    "**Disk space**",
    "**Database recovery.**",
    "**Application recovery.**",
    "Level 2 — development team",
    "Level 3 — infrastructure team",
    "on-call engineer",
]


@pytest.mark.parametrize("phrase", SEED_PROCEDURES)
def test_the_page_maps_the_seed_procedure(phrase):
    assert phrase in DOC.read_text()


def command_lines() -> list[str]:
    """Every `watchkeeper ...` or `wk ...` command the page shows, in code or backticks."""
    text = DOC.read_text()
    found = re.findall(r"`((?:wk|watchkeeper) [^`]+)`", text)
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S):
        found += [line for line in block.splitlines() if line.startswith(("wk ", "watchkeeper "))]
    return found


def test_every_command_on_the_page_parses():
    lines = command_lines()
    assert len(lines) > 30
    problems = []
    for line in lines:
        words = shell_words(line.split("  #")[0])
        argv = words[1:]
        if words[0] == "wk":  # the page's wrapper adds the config
            argv = ["-c", "/etc/watchkeeper/monitor.yaml", *argv]
        try:
            parse(argv)
        except SystemExit as exc:
            if exc.code:
                problems.append(f"{line}: exit {exc.code}")
        except Exception as exc:
            problems.append(f"{line}: {exc}")
    assert not problems, "\n".join(problems)


def test_the_wrapper_on_the_page_runs_the_cli(tmp_path):
    """The `wk` script as printed, with its paths pointed here, reaches watchkeeper."""
    (block,) = [
        b
        for b in re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), re.M | re.S)
        if "/usr/local/bin/wk" in b
    ]
    script = (
        block.replace("sudo -u watchkeeper ", "")
        .replace("/etc/watchkeeper/watchkeeper.env", str(tmp_path / "watchkeeper.env"))
        .replace("/opt/watchkeeper/bin/watchkeeper", str(WATCHKEEPER))
        .replace("/etc/watchkeeper/monitor.yaml", str(REPO / "monitor.yaml"))
    )
    (tmp_path / "watchkeeper.env").write_text("ADMIN_API_KEY=placeholder\n")
    (tmp_path / "wk").write_text(script)
    proc = subprocess.run(
        ["sh", str(tmp_path / "wk"), "validate", "--strict"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid" in proc.stdout


def test_the_page_links_resolve():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", DOC.read_text()):
        assert (DOC.parent / target).exists(), target


def test_version_answers(tmp_path):
    result = run_cli("--version", cwd=tmp_path)
    assert result.code == 0
    assert result.stdout.startswith("watchkeeper ")
