"""Secrets stay masked when a person's output lays them out: cut short, wrapped, in tables."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.receivers import EchoRefusal

# long enough to be cut by the probe's 200-character excerpt of a failing body, with a
# tab that rich would expand and a width that wraps at 80 columns
SECRET = "y" * 180 + "tab\tsep-secret-value-9f8e7d6c5b4a39281"


@pytest.fixture
def echo_url():
    server = EchoRefusal()
    yield server.url
    server.close()


def _leaked(output: str) -> list[str]:
    pieces = ["yyyyyyyyyy", "secret-value", "9f8e7d6c", "sep-secret"]
    return [piece for piece in pieces if piece in output]


def test_a_secret_cut_short_or_wrapped_in_a_table_stays_masked(tmp_path, write_config, echo_url):
    write_config(
        f"""
        version: 1
        engine: {{workers: 0}}
        state: {{type: sqlite, path: state.db}}
        checks:
          web:
            probe: http
            method: POST
            url: {echo_url}/x
            body: "${{A_PASSWORD}}"
            schedule: {{every: 1m}}
        notifiers: {{console: {{type: log}}}}
        routes: [{{match: {{}}, notify: [console]}}]
        """
    )
    env = {"A_PASSWORD": SECRET, "COLUMNS": "80"}
    checked = run_cli("check", cwd=tmp_path, env=env)
    assert checked.code == 1, checked.output
    assert "HTTP 500" in checked.stdout, checked.output
    assert "rejected: *" in checked.stdout
    assert not _leaked(checked.output), checked.output
    ran = run_cli("run", "--once", cwd=tmp_path, env=env)
    assert ran.code == 1, ran.output
    assert not _leaked(ran.output)
    status = run_cli("status", cwd=tmp_path, env=env)
    assert status.code in (0, 1), status.output
    assert "web" in status.stdout, status.output
    assert not _leaked(status.output), status.output
