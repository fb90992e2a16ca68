"""A section left out of monitor.yaml gets the instance its model would make, without
that model's own validator being built (`schema.base.defaults_of`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from watchkeeper.plugins.probes.dns import DnsExpect
from watchkeeper.schema.base import defaults_of, empty_dict, empty_list
from watchkeeper.schema.checks import Defaults
from watchkeeper.schema.config import ConfigBase
from watchkeeper.schema.daemon import Engine, Sentry, Server

SECTIONS = [Defaults, Server, Engine, Sentry, DnsExpect]


@pytest.mark.parametrize("model", SECTIONS, ids=lambda m: m.__name__)
def test_a_missing_section_is_what_its_model_makes(model):
    made, constructed = model(), defaults_of(model)()
    assert type(constructed) is model
    assert constructed == made
    assert constructed.model_dump() == made.model_dump()
    assert constructed.model_fields_set == made.model_fields_set == set()
    # a model validator would run in `model()` and not in `defaults_of(model)()`
    assert not model.__pydantic_decorators__.model_validators


def test_factories_make_a_new_value_each_time():
    assert empty_list() == []
    assert empty_list() is not empty_list()
    assert empty_dict() == {}
    assert empty_dict() is not empty_dict()
    first, second = defaults_of(Server)(), defaults_of(Server)()
    assert first == second
    assert first is not second


def test_default_sections_of_a_validated_file_equal_their_models():
    config = ConfigBase.model_validate({"version": 1})
    assert (config.defaults, config.server, config.engine, config.sentry) == (
        Defaults(),
        Server(),
        Engine(),
        Sentry(),
    )


def test_validate_builds_no_validator_of_its_own_for_missing_sections(tmp_path):
    (tmp_path / "monitor.yaml").write_text(
        "version: 1\nchecks:\n  resolver: {probe: dns, name: example.com}\n"
    )
    code = textwrap.dedent(
        """
        import os, sys
        sys.argv = ["watchkeeper", "validate"]
        from watchkeeper.engine.cli import main
        def report(code=0):
            from watchkeeper.plugins.probes.dns import DnsExpect
            from watchkeeper.schema.checks import Defaults
            from watchkeeper.schema.daemon import Engine, Sentry, Server
            built = [m.__name__ for m in (Defaults, Server, Engine, Sentry, DnsExpect)
                     if m.__pydantic_complete__]
            sys.stdout.write("\\nBUILT " + " ".join(built) + "\\n")
            sys.stdout.flush()
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
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout
    assert done.stdout.rpartition("\nBUILT ")[2].split() == []
