"""`validate` warns about local files monitor.yaml names that are not there."""

from __future__ import annotations

import textwrap

BACKUP = """\
    version: 1
    backups:
      destinations: {local: {type: local, path: backups}}
      jobs:
        config:
          source: {type: files, paths: [monitor.yaml, "logs/*.log", %s]}
          schedule: {cron: "0 2 * * *"}
          to: [local]
    """


def write(folder, text, name="monitor.yaml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(result):
    return [(p["path"], p["level"], p["message"], p["line"]) for p in result.json()["problems"]]


def test_a_missing_backup_path_is_a_warning_relative_to_the_config_folder(cli, tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    config = write(folder, BACKUP % "monitor.yml")
    result = cli("-c", str(config), "validate", "--format", "json")
    assert result.code == 0, result.output
    assert problems(result) == [
        (
            "backups.jobs.config.source.paths[2]",
            "warning",
            f"'monitor.yml' does not exist (relative to {folder})",
            6,
        )
    ]
    # what exists, and a glob that matches nothing yet, say nothing
    assert not any("paths[0]" in p[0] or "paths[1]" in p[0] for p in problems(result))


def test_strict_makes_it_an_error(cli, tmp_path):
    write(tmp_path, BACKUP % "monitor.yml")
    result = cli("validate", "--strict")
    assert result.code == 1
    assert "monitor.yaml:6:" in result.output
    assert "backups.jobs.config.source.paths[2]: 'monitor.yml' does not exist" in result.output


def test_the_seed_example_backs_up_itself_wherever_it_is_run_from(cli, tmp_path):
    """`paths: [monitor.yaml]` in examples/infinite-idea.yaml pointed at nothing."""
    from tests.test_examples import SEED_EXAMPLE, dummy_environment

    env = dummy_environment(SEED_EXAMPLE)
    result = cli("-c", str(SEED_EXAMPLE), "validate", "--strict", "--format", "json", env=env)
    assert result.code == 0, result.output
    assert result.json()["problems"] == []


def test_tls_files_of_probes(cli, tmp_path):
    (tmp_path / "ca.pem").write_text("")
    write(
        tmp_path,
        """\
        version: 1
        checks:
          web:
            probe: http
            url: https://example.com
            ca_bundle: ca.pem
            client_cert: certs/client.pem
            client_key: /no/such/client.key
          mail:
            probe: tls
            host: example.com
            ca_bundle: certs/ca.pem
          db:
            probe: tcp
            host: example.com
            port: 5432
            tls: true
            ca_bundle: ~/no-such-ca-wk.pem
        """,
    )
    result = cli("validate", "--format", "json")
    assert result.code == 0, result.output
    found = {p[0]: p[2] for p in problems(result)}
    assert found == {
        "checks.web.client_cert": f"'certs/client.pem' does not exist (relative to {tmp_path})",
        "checks.web.client_key": "'/no/such/client.key' does not exist",
        "checks.mail.ca_bundle": f"'certs/ca.pem' does not exist (relative to {tmp_path})",
        "checks.db.ca_bundle": "'~/no-such-ca-wk.pem' does not exist",
    }


def test_the_sqlite_state_folder_must_be_creatable(cli, tmp_path):
    write(
        tmp_path, "version: 1\nstate: {type: sqlite, path: /no-such-dir-wk/watchkeeper/state.db}\n"
    )
    result = cli("validate", "--format", "json")
    assert problems(result) == [
        (
            "state.path",
            "warning",
            "'/no-such-dir-wk/watchkeeper/state.db': the folder '/no-such-dir-wk' does not exist",
            2,
        )
    ]
    # the store creates its own folder: a fresh `.watchkeeper/` is fine
    write(tmp_path, "version: 1\nstate: {type: sqlite, path: .watchkeeper/state.db}\n")
    assert problems(cli("validate", "--format", "json")) == []


def test_unset_variables_are_reported_once_not_as_missing_files(cli, tmp_path):
    write(tmp_path, BACKUP % "${BACKUP_EXTRA}")
    result = cli("validate", "--format", "json")
    messages = [p[2] for p in problems(result)]
    assert messages == ["environment variable BACKUP_EXTRA is not set"]
