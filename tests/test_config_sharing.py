"""The daemon's copy of a config read in the child process: the checks arrive as the child
validated them, equal values held once, and equal to what validating the file gives."""

from __future__ import annotations

import yaml

from watchkeeper.engine.config.instances import expand
from watchkeeper.engine.config.process import CHECKS_AT_ONCE, load_config_isolated
from watchkeeper.engine.config.validation import load_config
from watchkeeper.engine.plugins import registry


def _write(tmp_path, count: int):
    checks = {
        f"web-{i}": {
            "probe": "http",
            "url": f"http://127.0.0.1:9/h{i}",
            "schedule": {"every": "60s"},
            "labels": {"team": "a" if i % 2 else "b"},
        }
        for i in range(count)
    }
    checks["db"] = {"probe": "tcp", "host": "127.0.0.1", "port": 5432, "timeout": "3s"}
    checks["api"] = {
        "probe": "http",
        "url": "http://127.0.0.1:9/api",
        "headers": {"X-Token": "${env.TOKEN}"},
        "environments": ["prod"],
        "expect": {"status": 204},
        "thresholds": [{"metric": "response_time", "above": "2s"}],
    }
    config = {
        "version": 1,
        "environments": {"prod": {"TOKEN": "abc"}},
        "checks": checks,
        "notifiers": {"console": {"type": "log"}},
        "routes": [{"match": {}, "notify": ["console"]}],
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_checks_from_the_child_equal_a_validation_of_the_file_and_share_equal_values(tmp_path):
    path = _write(tmp_path, 3 * CHECKS_AT_ONCE)  # several parts
    isolated = load_config_isolated(path).config
    direct = load_config(path).config
    assert list(isolated.checks) == list(direct.checks)
    for name, check in direct.checks.items():
        got = isolated.checks[name]
        assert type(got) is type(check)
        assert got == check
        assert got.model_fields_set == check.model_fields_set
        assert got.model_dump(exclude_unset=True) == check.model_dump(exclude_unset=True)
    assert isolated.model_dump(exclude={"checks"}) == direct.model_dump(exclude={"checks"})
    web = [isolated.checks[f"web-{i}"] for i in range(3 * CHECKS_AT_ONCE)]
    # what the checks share is one object, pickled once
    assert len({id(c.schedule) for c in web}) == 1
    assert len({id(c.expect) for c in web}) == 1
    assert len({id(c.headers) for c in web}) == 1
    assert len({id(c.labels) for c in web}) == 2
    assert len({id(c.__pydantic_fields_set__) for c in web}) == 1
    assert isolated.checks["api"].expect.status == 204
    assert isolated.checks["api"].expect is not web[0].expect

    # instances built from them: equal labels shared, the environment read, fingerprints
    # worked out when asked for and equal to those of the directly validated config
    reg = registry()
    instances = expand(isolated, reg)
    direct_instances = expand(direct, reg)
    assert len({id(instances[f"web-{i}"].labels) for i in range(10)}) == 2
    assert instances["api@prod"].options.headers["X-Token"] == "abc"
    for key, instance in direct_instances.items():
        assert instances[key].fingerprint == instance.fingerprint
    assert instances["web-1"].fingerprint != instances["web-2"].fingerprint
