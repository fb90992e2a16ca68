"""What `watchkeeper plan` shows people: held runs, filters, the collapsed view at 80
columns, the config path after the command; and problems reported at O(1) each."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

PAUSED = """
version: 1
notifiers:
  console: {type: log}
checks:
  api:
    probe: tcp
    host: localhost
    port: 80
    schedule: {every: 1m}
  clock:
    probe: command
    argv: [date]
    schedule: {cron: "*/5 * * * *"}
  nightly:
    probe: tcp
    host: localhost
    port: 1
    schedule: {cron: "30 2 * * *"}
  elsewhere:
    probe: tcp
    host: localhost
    port: 2
    schedule: {cron: "45 2 * * *"}
maintenance:
  - name: db-window
    schedule: {cron: "0 2 * * SUN"}
    duration: 2h
    effect: pause
    checks: [api, clock, nightly]
    backups: [config]
  - name: quiet
    schedule: {cron: "0 2 * * SUN"}
    duration: 2h
    checks: [elsewhere]
backups:
  destinations:
    local: {type: local, path: backups}
  jobs:
    config:
      source: {type: files, paths: [monitor.yaml]}
      schedule: {cron: "0 3 * * *"}
      to: [local]
"""
SUNDAY = ("--from", "2026-06-07T00:00:00Z", "--next", "1d")  # 2026-06-07 is a Sunday


def rows_of(text: str) -> dict[str, str]:
    """Return the text rows of a plan keyed by `HH:MM:SS kind name`."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s+(\d\d:\d\d(?::\d\d)?)\s+(\S+)\s+(\S+)\s*(.*)$", line)
        if match:
            found[" ".join(match.group(1, 2, 3))] = match.group(4)
    return found


# --- pause windows hold runs (DESIGN.md Semantics ► Maintenance) ----------------------


def test_a_pause_window_holds_a_checks_and_a_backups_runs_in_text(cli, write_config):
    write_config(PAUSED)
    result = cli("plan", *SUNDAY)
    assert result.code == 0, result.output
    rows = rows_of(result.stdout)
    assert rows["02:00:00 maintenance db-window"] == "pause until 04:00"
    assert rows["02:00:00 maintenance quiet"] == "mute until 04:00"
    # each paused item runs once when the window ends
    assert rows["02:30:00 check nightly"] == "held; runs once at 04:00"
    assert rows["03:00:00 backup config"] == "held; runs once at 04:00"
    # repeating items: one row for the stretch held, with how many runs it holds
    assert rows["02:00:00 check clock"] == "24 runs held; runs once at 04:00"
    assert rows["02:00:15 check api"] == "120 runs held; runs once at 04:00"
    # a mute window holds no run; a pause window holds only what it covers
    assert rows["02:45:00 check elsewhere"] == ""


def test_expanded_text_marks_every_held_run_and_the_catch_up_once(cli, write_config):
    write_config(PAUSED)
    result = cli("plan", "--from", "2026-06-07T01:50:00Z", "--next", "3h", "--all")
    assert result.code == 0, result.output
    rows = rows_of(result.stdout)
    assert rows["01:55:00 check clock"] == ""
    assert rows["02:00:00 check clock"] == "held; runs once at 04:00"
    assert rows["02:05:00 check clock"] == "held until 04:00"
    assert rows["03:55:00 check clock"] == "held until 04:00"
    assert rows["04:00:00 check clock"] == ""
    assert result.stdout.count("runs once at 04:00") == 4  # clock, api, nightly, config


def test_json_rows_carry_held_until_the_end_of_the_window(cli, write_config):
    write_config(PAUSED)
    result = cli("plan", *SUNDAY, "--format", "json")
    assert result.code == 0, result.output
    rows = result.json()
    by_key = {(r["name"], r["at"][11:19]): r for r in rows}
    held = "2026-06-07T04:00:00+00:00"
    assert by_key["nightly", "02:30:00"]["held_until"] == held
    assert by_key["config", "03:00:00"]["held_until"] == held
    assert by_key["clock", "02:00:00"]["held_until"] == held
    assert by_key["clock", "03:55:00"]["held_until"] == held
    for free in [("clock", "01:55:00"), ("clock", "04:00:00"), ("elsewhere", "02:45:00")]:
        assert "held_until" not in by_key[free]
    # an `every` check is one row; held_until only when that first run is held
    later = cli("plan", "--from", "2026-06-07T02:10:00Z", "--next", "1h", "-f", "json")
    api = [r for r in later.json() if r["name"] == "api"]
    assert api == [
        {"kind": "check", "name": "api", "at": "2026-06-07T02:10:15+00:00", "every": "1m",
         "held_until": held},
    ]  # fmt: skip


def test_back_to_back_pause_windows_hold_until_the_last_ends(cli, write_config):
    overrun = (
        '  - name: overrun\n    schedule: {cron: "0 4 * * SUN"}\n    duration: 1h\n'
        "    effect: pause\n    backups: [config]\n"
    )
    write_config(PAUSED.replace("\nbackups:\n", "\n" + overrun + "backups:\n"))
    result = cli("plan", *SUNDAY, "--format", "json", "--kind", "backup")
    assert result.code == 0, result.output
    assert result.json()[0] == {
        "kind": "backup",
        "name": "config",
        "at": "2026-06-07T03:00:00+00:00",
        "held_until": "2026-06-07T05:00:00+00:00",
    }


# --- filters ------------------------------------------------------------------------------


def test_kind_filter_is_repeatable_and_comma_separated(cli, write_config):
    write_config(PAUSED)
    both = cli("plan", *SUNDAY, "-f", "json", "--kind", "backup,maintenance")
    assert both.code == 0, both.output
    assert {r["kind"] for r in both.json()} == {"backup", "maintenance"}
    repeated = cli("plan", *SUNDAY, "-f", "json", "--kind", "backup", "--kind", "maintenance")
    assert repeated.json() == both.json()
    text = cli("plan", *SUNDAY, "--kind", "check")
    assert "db-window" not in text.stdout
    assert "config" not in text.stdout
    assert "clock" in text.stdout
    wrong = cli("plan", "--kind", "checks")
    assert wrong.code == 2
    assert "--kind" in wrong.stderr


def test_check_filter_shows_the_check_and_the_windows_covering_it(cli, write_config):
    write_config(PAUSED)
    result = cli("plan", *SUNDAY, "-f", "json", "--check", "nightly")
    assert result.code == 0, result.output
    assert [(r["kind"], r["name"]) for r in result.json()] == [
        ("maintenance", "db-window"),
        ("check", "nightly"),
    ]
    other = cli("plan", *SUNDAY, "-f", "json", "--check", "elsewhere", "--check", "nightly")
    assert {r["name"] for r in other.json()} == {"db-window", "quiet", "nightly", "elsewhere"}
    unknown = cli("plan", "--check", "nightlly")
    assert unknown.code == 2
    assert "unknown check 'nightlly'" in unknown.stderr


def test_check_filter_takes_an_instance_name(cli, write_config):
    write_config("""
        version: 1
        notifiers:
          console: {type: log}
        environments:
          production: {base_url: https://example.com}
          staging: {base_url: https://staging.example.com}
        checks:
          web:
            probe: http
            url: ${env.base_url}/
            environments: [production, staging]
            schedule: {cron: "0 * * * *"}
        """)
    result = cli("plan", "--from", "2026-06-01T00:30:00Z", "--next", "1h", "-f", "json",
                 "--check", "web@staging")  # fmt: skip
    assert result.code == 0, result.output
    assert result.json() == [
        {"kind": "check", "name": "web", "environment": "staging",
         "at": "2026-06-01T01:00:00+00:00"},
    ]  # fmt: skip


# --- the view for people ------------------------------------------------------------------


def test_the_starter_config_is_a_screen_at_80_columns(cli):
    result = cli("plan", "--next", "7d", cwd=REPO, env={"COLUMNS": "80"})
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 40, result.stdout
    assert max(len(line) for line in lines) <= 80
    rows = rows_of(result.stdout)
    assert {key.split()[-1] for key in rows} == {"own-api", "host", "clock"}
    clock = next(v for k, v in rows.items() if k.endswith(" clock"))
    assert clock == "every 5m · 288 runs a day"
    assert "--all" in result.stdout


@pytest.mark.parametrize("config", ["monitor.yaml", "examples/infinite-idea.yaml"])
def test_names_are_never_broken_at_80_columns(cli, config):
    args = ("plan", config, "--from", "2026-12-01T00:00:00Z", "--next", "14d")
    listed = cli(*args, "--format", "json", cwd=REPO)
    assert listed.code == 0, listed.output
    names = {row["name"] for row in listed.json()} | {
        row["environment"] for row in listed.json() if "environment" in row
    }
    result = cli(*args, cwd=REPO, env={"COLUMNS": "80"})
    assert result.code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    words = set(result.stdout.split())
    assert names <= words, f"broken across lines: {sorted(names - words)}"


def test_a_long_name_keeps_its_line_and_the_last_column_wraps(cli, write_config):
    long = "nightly-database-backup-verification"
    write_config(f"""
        version: 1
        notifiers:
          console: {{type: log}}
        maintenance:
          - name: {long}
            schedule: {{cron: "0 1 * * *"}}
            duration: 3h
            effect: pause
        checks:
          probe-of-the-primary-replica:
            probe: tcp
            host: localhost
            port: 1
            schedule: {{cron: "30 2 * * *"}}
        """)
    result = cli("plan", "--from", "2026-06-01T00:00:00Z", "--next", "1d", env={"COLUMNS": "80"})
    assert result.code == 0, result.output
    assert long in result.stdout.split()
    assert "probe-of-the-primary-replica" in result.stdout.split()
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_json_keeps_its_shape_a_row_per_cron_run(cli, write_config):
    write_config(PAUSED)
    plain = cli("plan", "--from", "2026-06-07T05:00:00Z", "--next", "1h", "-f", "json")
    expanded = cli("plan", "--from", "2026-06-07T05:00:00Z", "--next", "1h", "-f", "json", "--all")
    assert plain.code == 0, plain.output
    assert expanded.json() == plain.json()  # --all is the text view's; JSON lists every run
    rows = plain.json()
    assert sum(r["name"] == "clock" for r in rows) == 12
    assert [r for r in rows if r["name"] == "api"] == [
        {"kind": "check", "name": "api", "at": "2026-06-07T05:00:15+00:00", "every": "1m"}
    ]
    allowed = {"kind", "name", "environment", "at", "until", "every", "held_until"}
    assert all(set(r) <= allowed for r in rows)


# --- the config path after the command (DESIGN.md ► CLI) --------------------------------


def test_config_path_after_the_command(cli, write_config, tmp_path):
    path = write_config(PAUSED, name="conf/paused.yaml")
    before = cli("-c", str(path), "plan", *SUNDAY, "-f", "json")
    assert before.code == 0, before.output
    option = cli("plan", "-c", str(path), *SUNDAY, "-f", "json")
    argument = cli("plan", "conf/paused.yaml", *SUNDAY, "-f", "json")
    assert option.code == 0, option.output
    assert argument.code == 0, argument.output
    assert option.json() == before.json() == argument.json()
    both = cli("plan", "-c", str(path), str(tmp_path / "other.yaml"))
    assert both.code == 2
    assert "two config files" in both.stderr


# --- problems cost O(1) each (issue 16, item 4) ----------------------------------------


def test_each_problem_is_located_without_scanning_its_mapping(write_config, monkeypatch):
    """A mapping's entries are scanned once, however many problems point into it."""
    from watchkeeper.engine.config import loader
    from watchkeeper.engine.config import validation as config

    n = 600
    checks = "".join(
        f"  c{i}:\n    probe: tcp\n    host: localhost\n    port: 1\n"
        "    thresholds: [{metric: error_rate, window: 10m, above: 5%}]\n"
        for i in range(n)
    )
    path = write_config(
        "version: 1\ndefaults: {schedule: {every: 1m}}\nnotifiers:\n  console: {type: log}\n"
        "checks:\n" + checks
    )
    scanned = [0]

    class Entries(list):
        def __iter__(self):
            for entry in super().__iter__():
                scanned[0] += 1
                yield entry

    real_load = loader.load

    def load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        _file, node = loaded.marks.source(loaded.data["checks"])
        node.value = Entries(node.value)
        return loaded

    monkeypatch.setattr(loader, "load", load)
    result = config.validate(path)
    warnings = [p for p in result.problems if "one failed run" in p.message]
    assert len(warnings) == n
    assert [p.line for p in warnings] == [6 + 5 * i + 4 for i in range(n)]
    # once to index the mapping, not once per problem (n * n / 2 = 180,000 before)
    assert scanned[0] <= 2 * n


def test_run_counts_in_messages_are_rounded_for_people(cli, write_config):
    write_config("""
        version: 1
        notifiers:
          console: {type: log}
        checks:
          api:
            probe: tcp
            host: localhost
            port: 1
            schedule: {every: 2m7s}
            thresholds:
              - {metric: error_rate, window: 15m, above: 5%}
          sparse:
            probe: tcp
            host: localhost
            port: 2
            schedule: {every: 55s}
            thresholds:
              - {metric: error_rate, window: 4m, above: 50%}
        """)
    result = cli("validate")
    assert result.code == 0, result.output
    # 900 s / 127 s = 7.0866 runs
    assert (
        "checks.api.thresholds[0]: warning: one failed run moves error_rate by 14% over "
        "15m (about 7 runs), more than the 5.0% threshold"
    ) in result.stdout
    # 240 s / 55 s = 4.36 runs
    assert (
        "checks.sparse.thresholds[0]: warning: the window holds about 4 runs, fewer than "
        "min_samples (5)"
    ) in result.stdout
    assert not re.search(r"\d\.\d{3,}", result.stdout)
