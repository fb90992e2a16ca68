"""A reload's child sends only the checks that changed; the daemon keeps the rest as they run.

Traced to docs/running.md "Reloads at scale": a check whose definition did not change stays
the very object it was. The digests that decide it must never call a changed check
unchanged: a changed secret, or a change of what an instance is made of besides its check
(`defaults`, `environments`, a parent's environments), reaches the running instance.
"""

from __future__ import annotations

import logging
import pickle

import anyio
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_harness import ADMIN_TOKEN, LiveDaemon, live_config
from watchkeeper.engine.config.check_digests import CheckDigests, digest
from watchkeeper.engine.config.process import aload_config_isolated
from watchkeeper.engine.config.validation import load_config

ENV = {"ADMIN_TOKEN": ADMIN_TOKEN, "SITE_PASSWORD": "first-pass-7Qz"}
COUNT = 30


def config(url: str, *, changed: int = 0, password: str = "${SITE_PASSWORD}", **extra) -> dict:
    checks = {
        f"c{i}": {
            "probe": "http",
            "url": f"{url}/c{i}",
            "schedule": {"every": "1h"},
            "timeout": "4s" if i < changed else "5s",
            "headers": {"X-Check": f"c{i}"},
            "expect": {"status": [200, 204]},
        }
        for i in range(COUNT)
    }
    checks["private"] = {
        "probe": "http",
        "url": f"{url}/private",
        "schedule": {"every": "1h"},
        "auth": {"username": "ops", "password": password},
    }
    return live_config(checks, **extra)


def reload(live: LiveDaemon) -> dict:
    response = live.post("/api/reload", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_reload_sends_only_the_changed_checks_and_keeps_the_rest(tmp_path, target, caplog):
    caplog.set_level(logging.INFO, logger="watchkeeper")
    with LiveDaemon(tmp_path, config(target.url), ENV) as live:
        daemon = live.daemon
        before = dict(daemon.config.checks)
        # the same file again: the child sends nothing, every model is the running one
        assert reload(live)["changed"] == []
        assert daemon.validation.checks_sent == 0
        assert all(daemon.config.checks[n] is m for n, m in before.items())
        live.write(config(target.url, changed=2))
        answer = reload(live)
        assert answer["changed"] == ["c0", "c1"]
        assert daemon.validation.checks_sent == 2
        # the operator reads it in the log line of the reload
        (line,) = [r for r in caplog.records if r.getMessage() == "config reloaded"][-1:]
        assert (line.changed, line.rebuilt) == (2, 2)
        checks = daemon.config.checks
        assert [n for n, m in before.items() if checks[n] is not m] == ["c0", "c1"]
        assert daemon.runtime.instances["c0"].timeout == 4.0
        assert daemon.runtime.instances["c5"].options is before["c5"]
        # and the next reload of that file sends nothing again
        reload(live)
        assert daemon.validation.checks_sent == 0


def test_a_changed_secret_is_sent_though_it_reads_as_stars(tmp_path, target):
    with LiveDaemon(tmp_path, config(target.url, password="first-pass-7Qz"), ENV) as live:
        daemon = live.daemon
        live.write(config(target.url, password="second-pass-9Kd"))
        reload(live)
        assert daemon.validation.checks_sent == 1
        auth = daemon.runtime.instances["private"].options.auth
        assert auth.password.get_secret_value() == "second-pass-9Kd"
        # read from the environment now: another value again
        live.write(config(target.url))
        reload(live)
        assert daemon.validation.checks_sent == 1
        auth = daemon.runtime.instances["private"].options.auth
        assert auth.password.get_secret_value() == "first-pass-7Qz"


def test_defaults_and_environments_reach_unchanged_checks(tmp_path, target):
    environments = {"prod": {"path": "p1"}, "stage": {"path": "s1"}}
    located = {
        "probe": "http",
        "url": f"{target.url}/${{env.path}}",
        "schedule": {"every": "1h"},
        "environments": ["prod", "stage"],
    }
    child = {
        "probe": "http",
        "url": f"{target.url}/child",
        "schedule": {"every": "1h"},
        "depends_on": ["parent"],
    }
    parent = {"probe": "http", "url": f"{target.url}/parent", "schedule": {"every": "1h"}}

    def with_(defaults: dict, envs: dict, parent_envs: list[str] | None) -> dict:
        base = config(target.url, defaults=defaults, environments=envs)
        extra = {"parent": {**parent, **({"environments": parent_envs} if parent_envs else {})}}
        if parent_envs:
            extra["parent"]["url"] = f"{target.url}/${{env.path}}"
        base["checks"].update({"site": located, "child": child, **extra})
        return base

    with LiveDaemon(tmp_path, with_({"timeout": "7s"}, environments, None), ENV) as live:
        runtime = live.daemon.runtime
        assert runtime.instances["private"].timeout == 7.0
        live.write(with_({"timeout": "3s"}, environments, None))
        reload(live)
        # no check changed, yet the instance of one without its own timeout did
        assert live.daemon.validation.checks_sent == 0
        assert runtime.instances["private"].timeout == 3.0
        assert runtime.instances["c3"].timeout == 5.0  # its own
        live.write(with_({"timeout": "3s"}, {**environments, "stage": {"path": "s2"}}, None))
        reload(live)
        assert live.daemon.validation.checks_sent == 0
        assert runtime.instances["site@stage"].options.url.endswith("/s2")
        assert runtime.instances["site@prod"].options.url.endswith("/p1")
        assert runtime.instances["child"].depends_on == ["parent"]
        # the parent gains environments: the child, unchanged, depends on both of them
        live.write(with_({"timeout": "3s"}, environments, ["prod", "stage"]))
        reload(live)
        assert sorted(runtime.instances["child"].depends_on) == ["parent@prod", "parent@stage"]


def test_a_refused_reload_fed_digests_keeps_the_running_config(tmp_path, target):
    with LiveDaemon(tmp_path, config(target.url), ENV) as live:
        daemon = live.daemon
        running = daemon.config
        live.write("version: 1\nchecks:\n  broken: {probe: http}\n")
        response = live.post("/api/reload", timeout=60)
        assert response.status_code == 422, response.text
        assert daemon.config is running


TWO_CHECKS = """
version: 1
checks:
  a: {probe: http, url: "http://127.0.0.1:9/a"}
  b: {probe: http, url: "http://127.0.0.1:9/b"}
"""


class _UnderAnotherKey(CheckDigests):
    """Sends digests made under this process's key with another key."""

    def payload(self, checks):
        known = pickle.loads(super().payload(checks))
        known["key"] = b"another daemon!!"
        return pickle.dumps(known)


async def _load(path, running, digests):
    return await aload_config_isolated(path, running=running, digests=digests)


def test_the_child_takes_only_digests_of_its_own_daemon(tmp_path, write_config):
    """Digests under another key (another daemon's, or guessed) match nothing."""
    path = write_config(TWO_CHECKS)
    running = load_config(path).config.checks
    mine = CheckDigests()
    taken = anyio.run(_load, path, running, mine)
    assert taken.checks_sent == 0
    assert taken.config.checks["a"] is running["a"]
    taken = anyio.run(_load, path, running, _UnderAnotherKey())
    assert taken.checks_sent == 2  # digested under `mine`'s key, compared under `other`'s
    assert taken.config.checks["a"] is not running["a"]
    assert taken.config.checks["a"] == running["a"]


TEXT = st.text(alphabet="abXY é:#", max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.dictionaries(st.sampled_from(["A", "B", "C"]), TEXT, max_size=3),
    statuses=st.lists(st.integers(200, 204), min_size=1, max_size=3),
    timeout=st.sampled_from([None, "1s", "2s"]),
    password=st.one_of(st.none(), TEXT.filter(bool)),
    other=st.tuples(
        st.dictionaries(st.sampled_from(["A", "B", "C"]), TEXT, max_size=3),
        st.lists(st.integers(200, 204), min_size=1, max_size=3),
        st.sampled_from([None, "1s", "2s"]),
        st.one_of(st.none(), TEXT.filter(bool)),
    ),
)
def test_equal_digests_mean_equal_checks(tmp_path_factory, headers, statuses, timeout,
                                         password, other):  # fmt: skip
    """Two checks validated apart digest alike exactly when they are equal models."""
    folder = tmp_path_factory.mktemp("digests")

    def model(headers, statuses, timeout, password):
        check = {"probe": "http", "url": "http://127.0.0.1:9/", "headers": headers,
                 "expect": {"status": statuses}}  # fmt: skip
        if timeout:
            check["timeout"] = timeout
        if password is not None:
            check["auth"] = {"username": "u", "password": password}
        path = folder / "monitor.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "checks": {"c": check}}))
        validation = load_config(path)
        return validation.config.checks["c"]

    a = model(headers, statuses, timeout, password)
    b = model(*other)
    again = model(headers, statuses, timeout, password)
    assert a is not again
    assert digest(a) == digest(again)
    assert (digest(a) == digest(b)) == (a == b)


@pytest.mark.parametrize("value", ["pässwörd-ü", "a: b # not a comment", "tab\there", "plain "])
def test_odd_bytes_in_a_secret_still_tell_a_change(value, tmp_path, target):
    with LiveDaemon(tmp_path, config(target.url, password="plain"), ENV) as live:
        live.write(config(target.url, password=value))
        reload(live)
        assert live.daemon.validation.checks_sent == 1
        auth = live.daemon.runtime.instances["private"].options.auth
        assert auth.password.get_secret_value() == value


def test_the_new_config_is_keyed_by_the_running_names(tmp_path, target):
    """The config a reload brings is keyed by the very strings the running one was, not
    by new ones per reload: what outlives a reload is what changed."""
    with LiveDaemon(tmp_path, config(target.url), ENV) as live:
        daemon = live.daemon
        names = {name: name for name in daemon.config.checks}
        live.write(config(target.url, changed=1))
        reload(live)
        assert daemon.validation.checks_sent == 1
        for name in daemon.config.checks:
            assert name is names[name], name


def test_digests_are_kept_flat_and_follow_the_running_checks(tmp_path, write_config):
    path = write_config(TWO_CHECKS)
    first = load_config(path).config.checks
    digests = CheckDigests()
    flat = digests.of(first)
    assert flat == digest(first["a"]) + digest(first["b"])
    # a model of the same text digests alike; another model does not
    again = load_config(path).config.checks
    assert digests.of({"b": again["b"], "a": again["a"]}) == flat[16:] + flat[:16]
    write_config(path.read_text().replace("/b", "/c"))
    other = load_config(path).config.checks
    assert digests.of(other)[16:] != flat[16:]
    assert digests.of(other)[:16] == flat[:16]
