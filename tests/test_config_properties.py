"""The config language, fuzzed: what `validate` accepts starts and reloads; what it refuses
it says where; nothing a person can type makes it raise (issue 16, items 2 and 3).

Configs are generated from the models (checks on harmless local targets, cron and `every`
schedules in zones with 30- and 45-minute offsets and historic changes, thresholds on
declared metrics, maintenance windows, routes and escalation); the examples are mutated
key by key and byte by byte. `make test` runs a small fixed budget; `make fuzz` (the
`fuzz` hypothesis profile, tests/conftest.py) runs thousands of examples.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import math
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import anyio
import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from watchkeeper.engine.config import validation as config_mod
from watchkeeper.engine.schedule import timetable
from watchkeeper.schema.schedule import Schedule

REPO = Path(__file__).resolve().parent.parent
FUZZING = settings.default.max_examples >= 1000


def budget(quick: int, fuzz: int | None = None) -> settings:
    """Settings for one property: `quick` examples in `make test`, more under `make fuzz`."""
    count = (fuzz or settings.default.max_examples) if FUZZING else quick
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None if not FUZZING else settings.default.database,
    )


# --- values ---------------------------------------------------------------------------

ZONES = [
    "UTC", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns",
    "Pacific/Chatham", "Europe/Berlin", "America/Sao_Paulo", "Africa/Casablanca",
    "Australia/Adelaide", "Asia/Tehran", "Pacific/Apia", "America/New_York", "Etc/GMT-14",
]  # fmt: skip
UNITS = ["ms", "s", "m", "h", "d", "w"]
CLOSED_PORTS = [9, 1, 47, 1023]  # nothing listens there on a test machine


@st.composite
def durations(draw, *, low: float = 0.0, high: float = 4e8, extreme: bool = True) -> Any:
    """A duration as people write it: `250ms`, `1.5h`, `2h30m`, now and then an extreme."""
    unit = draw(st.sampled_from(UNITS))
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    if draw(st.integers(0, 9)) != 5:  # (hypothesis favours 0: a middle value is rare)
        number: float = draw(st.integers(1, 120))
    else:  # the odd ones: nothing, less than a millisecond, tens of years
        number = draw(st.sampled_from([0, 0.0001, 0.0005, 0.5, 1.5, 10000, 99999]))
    if not low <= number * scale <= high:
        number = max(low / scale, min(high / scale, number))
    # now and then what nobody means: never, or 10^400 seconds
    if extreme and draw(st.integers(0, 150)) == 77:
        return draw(st.sampled_from([math.inf, "1" * 400 + "s", 10**12]))
    text = f"{number:g}{unit}" if isinstance(number, float) else f"{number}{unit}"
    return text if "e" not in text else f"{number:.6f}{unit}"


def _cron_field(lo: int, hi: int, names: list[str] | None = None):
    n = st.integers(lo, hi)
    single = n.map(str)
    if names:
        single = single | st.sampled_from(names)
    ranged = st.tuples(n, n).map(lambda p: f"{min(p)}-{max(p)}")
    stepped = st.tuples(st.sampled_from(["*", f"{lo}-{hi}"]), st.integers(1, hi + 3)).map(
        lambda p: f"{p[0]}/{p[1]}"
    )
    listed = st.lists(single, min_size=2, max_size=3).map(",".join)
    return st.sampled_from(["*"]) | single | ranged | stepped | listed


DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]

day_of_month = _cron_field(1, 31) | st.sampled_from(["L", "15W", "1W", "28"])
day_of_week = (
    _cron_field(0, 7, DAYS)
    | st.tuples(st.sampled_from([*DAYS, "1", "5"]), st.integers(1, 5)).map(
        lambda p: f"{p[0]}#{p[1]}"
    )
    | st.sampled_from(["5L", "FRIL", "MON-FRI", "SAT,SUN"])
)
crons = st.one_of(
    st.tuples(
        _cron_field(0, 59),
        _cron_field(0, 23),
        day_of_month,
        _cron_field(1, 12, MONTHS),
        day_of_week,
    ).map(" ".join),
    st.sampled_from(
        [
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "30 2 * * *",
            "*/5 * * * *",
            "0 2 * * SUN#1",
            "0 9 * * TUE#2",
            "0 0 L * *",
            "0 12 15W * *",
            "0 1 29 2 *",
            "15 1 * * *",
            "45 0-3 * * *",
        ]
    ),
)


@st.composite
def schedules(draw, *, cron_only: bool = False) -> dict:
    if cron_only or draw(st.booleans()):
        schedule: dict[str, Any] = {"cron": draw(crons)}
        if draw(st.booleans()):
            schedule["timezone"] = draw(st.sampled_from(ZONES))
    else:
        schedule = {"every": draw(durations(high=3e8))}
    if not cron_only and draw(st.integers(0, 3)) == 0:
        schedule["jitter"] = draw(durations(high=60 if draw(st.integers(0, 4)) != 2 else 1e9))
    return schedule


SEVERITIES = ["critical", "high", "medium", "warning", "low", "info"]


@st.composite
def checks(draw, name: str) -> dict:
    kind = draw(st.sampled_from(["http", "tcp", "command", "env", "system", "heartbeat"]))
    port = draw(st.sampled_from(CLOSED_PORTS))
    metric_pool: list[tuple[str, str]] = []  # (metric, kind of limit)
    if kind == "http":
        check = {"probe": "http", "url": f"http://127.0.0.1:{port}/{name}", "timeout": "1s"}
        metric_pool = [("response_time", "duration"), ("status_code", "number")]
    elif kind == "tcp":
        check = {"probe": "tcp", "host": "127.0.0.1", "port": port, "timeout": "1s"}
        metric_pool = [("connect_time", "duration")]
    elif kind == "command":
        check = {"probe": "command", "argv": ["true"], "timeout": "2s"}
        metric_pool = [("run_time", "duration"), ("exit_code", "number")]
    elif kind == "env":
        check = {"probe": "env", "require": ["PATH"]}
        metric_pool = [("missing", "number")]
    elif kind == "system":
        check = {"probe": "system"}
        metric_pool = [("memory_usage", "ratio"), ("cpu_usage", "ratio")]
    else:
        every = {"cron": draw(crons)} if draw(st.booleans()) else {"every": draw(durations())}
        if "cron" in every and draw(st.booleans()):
            every["timezone"] = draw(st.sampled_from(ZONES))
        check = {"probe": "heartbeat", "expect_every": every, "grace": draw(durations())}
    if kind != "heartbeat" and draw(st.booleans()):
        check["schedule"] = draw(schedules())
    if metric_pool and draw(st.booleans()):
        rules = []
        for _ in range(draw(st.integers(1, 3))):
            metric, limit_kind = draw(st.sampled_from(metric_pool))
            limit: Any = {
                "duration": durations(high=3600),
                "number": st.integers(0, 600),
                "ratio": st.integers(0, 100).map(lambda n: f"{n}%"),
            }[limit_kind]
            rule: dict[str, Any] = {
                "metric": metric,
                draw(st.sampled_from(["above", "below"])): draw(limit),
                "severity": draw(st.sampled_from(SEVERITIES)),
            }
            if draw(st.booleans()):  # tiers of one rule share its metric and direction
                direction = "above" if "above" in rule else "below"
                rule["name"] = f"{metric}-{direction}"
            if draw(st.integers(0, 2)) == 0:
                rule["agg"] = draw(st.sampled_from(["avg", "max", "p95"]))
                rule["window"] = draw(durations(low=1, high=86400 * 7, extreme=False))
            if draw(st.integers(0, 2)) == 0:
                rule["for"] = draw(st.integers(1, 5) | durations(high=86400, extreme=False))
            rules.append(rule)
        check["thresholds"] = rules
    if draw(st.booleans()):
        check["labels"] = {"team": draw(st.sampled_from(["web", "ops"]))}
    if draw(st.integers(0, 3)) == 0:
        check["timezone"] = draw(st.sampled_from(ZONES))
    if draw(st.integers(0, 3)) == 0:
        check["severity"] = draw(st.sampled_from(SEVERITIES))
    return check


@st.composite
def windows(draw, names: list[str], index: int, backups: bool) -> dict:
    window: dict[str, Any] = {"name": f"{draw(st.sampled_from(['db', 'deploy', 'night']))}{index}"}
    if draw(st.integers(0, 3)):
        window["schedule"] = {"cron": draw(crons)}
        if draw(st.booleans()):
            window["schedule"]["timezone"] = draw(st.sampled_from(ZONES))
        window["duration"] = draw(durations(high=86400 * 40))
    else:
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
            hours=draw(st.integers(-24 * 400, 24 * 800))
        )
        end = start + timedelta(minutes=draw(st.integers(-60, 60 * 24 * 10)))
        window["start"], window["end"] = start.isoformat(), end.isoformat()
    window["effect"] = draw(st.sampled_from(["mute", "pause"]))
    scope = draw(st.integers(0, 4))
    if scope == 1 and names:
        window["checks"] = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2))
    elif scope == 2:
        window["labels"] = {"team": "web"}
    elif scope == 3 and backups:
        window["backups"] = ["files"]
    if draw(st.integers(0, 3)) == 0:
        window["announce"] = {"before": draw(durations(high=86400 * 30)), "notify": ["console"]}
    return window


@st.composite
def routes(draw, names: list[str]) -> list[dict]:
    found = []
    for _ in range(draw(st.integers(0, 3))):
        match: dict[str, Any] = {}
        which = draw(st.integers(0, 4))
        if which == 1:
            match["severity"] = draw(
                st.sampled_from([*SEVERITIES, ">=high", "<=warning", ["critical", "high"]])
            )
        elif which == 2 and names:
            match["check"] = draw(st.sampled_from([*names, "c*", ["c0", "c1"]]))
        elif which == 3:
            match["labels"] = {"team": "web"}
        elif which == 4:
            match["rule"] = draw(st.sampled_from(["up", "slow", "*time*"]))
        route: dict[str, Any] = {"match": match, "notify": ["console"]}
        if draw(st.booleans()):
            route["group_by"] = draw(
                st.lists(st.sampled_from(["check", "environment", "severity", "rule"]), max_size=3)
            )
        for key in ("repeat", "group_wait", "group_interval"):
            if draw(st.integers(0, 2)) == 0:
                route[key] = draw(durations(low=1 if key == "repeat" else 0, high=86400 * 2))
        if draw(st.booleans()):
            route["escalate"] = "standard"
        if draw(st.booleans()):
            route["continue"] = True
        found.append(route)
    return found


@st.composite
def configs(draw) -> dict:
    """A monitor.yaml, as data, built from the models' own vocabulary."""
    names = [f"c{i}" for i in range(draw(st.integers(1, 4)))]
    config: dict[str, Any] = {
        "version": 1,
        "state": {"type": "sqlite", "path": "state.db"},
        "engine": {"workers": 0},
        "notifiers": {"console": {"type": "log"}},
        "checks": {name: draw(checks(name)) for name in names},
    }
    defaults: dict[str, Any] = {}
    if draw(st.booleans()):
        defaults["timezone"] = draw(st.sampled_from(ZONES))
    if draw(st.integers(0, 2)) == 0:
        defaults["schedule"] = draw(schedules())
    if defaults:
        config["defaults"] = defaults
    backups = draw(st.booleans())
    if draw(st.booleans()):
        count = draw(st.integers(1, 3))
        config["maintenance"] = [draw(windows(names, i, backups)) for i in range(count)]
    config["routes"] = draw(routes(names))
    afters = sorted(draw(st.lists(st.integers(0, 86400), min_size=1, max_size=3)))
    config["escalation"] = {
        "standard": [{"after": f"{after}s", "notify": ["console"]} for after in afters]
    }
    if draw(st.booleans()):
        config["escalation"]["standard"][-1]["repeat"] = draw(durations(low=1, high=86400))
    if draw(st.booleans()):
        config["tasks"] = {
            "review": {"schedule": draw(schedules()), "notify": ["console"], "checklist": ["look"]}
        }
    if backups:
        config["backups"] = {
            "destinations": {"local": {"type": "local", "path": "backups"}},
            "jobs": {
                "files": {
                    "source": {"type": "files", "paths": ["monitor.yaml"]},
                    "schedule": draw(schedules()),
                    "to": ["local"],
                    "grace": draw(durations(high=86400 * 7)),
                }
            },
        }
    return config


# --- outcomes -------------------------------------------------------------------------

_WORK = Path(tempfile.mkdtemp(prefix="wk-properties-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)
STUCK = 60  # seconds one start or reload may take before it counts as a hang


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(dir=_WORK))


def _write(folder: Path, data: Any) -> Path:
    path = folder / "monitor.yaml"
    text = data if isinstance(data, str | bytes) else yaml.safe_dump(data, sort_keys=False)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def validated(path: Path, *, strict: bool = False) -> config_mod.Validation:
    """Validate as `watchkeeper validate` does; a refusal must say file:line:col.

    `strict` is what the daemon runs (`run`, a reload): warnings are errors there.
    """
    result = config_mod.validate(path, env={}, strict=strict)
    if result.valid:
        return result
    assert result.problems, "refused without a problem"
    for problem in result.errors or result.problems:
        assert problem.message, problem
        assert "Traceback" not in problem.message, problem
        if problem.file:
            assert problem.line >= 1, problem
            assert problem.column >= 1, problem
    return result


def _in_process_loader(path, reg=None, **_kwargs):
    """Read a config the way the child process does, but here (the tests need speed)."""
    return config_mod.load_config(path, env={}, reg=reg)


async def _aload(path, reg=None, **kwargs):
    return _in_process_loader(path, reg=reg)


def _daemon(path: Path):
    from watchkeeper.engine.daemon import Daemon
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.run.executor import LocalExecutor

    validation = _in_process_loader(path)
    return Daemon(
        validation,
        executor=LocalExecutor(registry(), validation.base_dir),
        printer=lambda text: None,
    )


def run_once(path: Path) -> None:
    """`watchkeeper run --once` on a config, in-process through the code the CLI runs."""
    daemon = _daemon(path)

    async def main() -> None:
        with anyio.fail_after(STUCK):  # a hang is a failure, not a stalled suite
            await daemon.run_once(deliver_for=2.0)

    anyio.run(main)


def start_and_reload(path: Path, second: Any, *, valid: bool) -> None:
    """Start a daemon on `path` (store, schedules, windows) and reload it to `second`."""
    daemon = _daemon(path)

    async def main() -> None:
        await daemon.start()
        try:
            with anyio.fail_after(STUCK):
                daemon.schedule_all()
                await daemon.alerting.load()
                daemon.maintenance.under_way(daemon.clock.now())
                daemon.maintenance.next_boundary(daemon.clock.now())
                _write(path.parent, second)
                with mock.patch("watchkeeper.engine.run.reloading.aload_config_isolated", _aload):
                    ok = await daemon.reload()
                assert ok is valid, daemon.last_reload
                if valid:
                    daemon.maintenance.under_way(daemon.clock.now())
                    daemon.maintenance.next_boundary(daemon.clock.now())
        finally:
            await daemon.shutdown()

    anyio.run(main)


def _accepted_or_located(data: Any, *, strict: bool = False) -> config_mod.Validation:
    return validated(_write(_fresh_dir(), data), strict=strict)


# --- generated configs ---------------------------------------------------------------


EDGES = {
    "version": 1,
    "state": {"type": "sqlite", "path": "state.db"},
    "engine": {"workers": 0},
    "notifiers": {"console": {"type": "log"}},
    "defaults": {"timezone": "Australia/Lord_Howe", "schedule": {"cron": "30 2 * * *"}},
    "checks": {
        "c0": {"probe": "tcp", "host": "127.0.0.1", "port": 9, "timeout": "1s",
               "schedule": {"cron": "45 0-3 L * *", "timezone": "Asia/Kathmandu", "jitter": "1h"},
               "thresholds": [{"metric": "connect_time", "above": "2s", "name": "slow"},
                              {"metric": "connect_time", "above": "5s", "name": "slow",
                               "severity": "high"}]},
        "c1": {"probe": "command", "argv": ["true"],
               "schedule": {"every": "1ms", "jitter": "0.5ms"}},
        "c2": {"probe": "http", "url": "http://127.0.0.1:9/", "timeout": "1s",
               "schedule": {"cron": "30 2 * * SUN#2", "timezone": "America/St_Johns"}},
        "c3": {"probe": "heartbeat", "expect_every": {"cron": "0 0 15W * *",
                                                      "timezone": "Pacific/Chatham"}},
        "c4": {"probe": "system",
               "schedule": {"cron": "0 2 * * FRIL", "timezone": "Africa/Casablanca"}},
    },
    "maintenance": [
        {"name": "w0", "schedule": {"cron": "*/5 * * * *", "timezone": "America/Sao_Paulo"},
         "duration": "1d", "effect": "pause", "checks": ["c0"]},
        {"name": "w1", "schedule": {"cron": "0 2 * * SUN#1", "timezone": "Europe/Berlin"},
         "duration": "1830d", "effect": "mute", "labels": {"team": "web"},
         "announce": {"before": "1830d", "notify": ["console"]}},
    ],
    "routes": [{"match": {"severity": ">=high"}, "notify": ["console"], "escalate": "standard",
                "group_by": [], "repeat": "1s", "group_wait": "0s", "group_interval": "0s"}],
    "escalation": {"standard": [{"after": "0s", "notify": ["console"], "repeat": "1s"}]},
    "tasks": {"t": {"schedule": {"every": "1830d"}, "notify": ["console"]}},
}  # fmt: skip


@budget(25, 300)
@given(configs(), configs())
@example(EDGES, {**EDGES, "maintenance": [], "defaults": {"timezone": "Pacific/Chatham"}})
def test_what_validate_accepts_starts_and_reloads(first, second):
    path = _write(_fresh_dir(), first)
    result = validated(path, strict=True)  # what `run` accepts: warnings are errors there
    event("accepted" if result.valid else "refused")
    if not result.valid:
        return
    run_once(path)
    second_valid = _accepted_or_located(second, strict=True).valid
    event("reloaded" if second_valid else "reload refused")
    start_and_reload(path, second, valid=second_valid)


@budget(60)
@given(configs())
def test_what_validate_accepts_builds_every_schedule_and_window(config):
    """The cheap half of the property above, at a larger budget: every series the daemon
    would build from an accepted config is built, and its first fire time computed."""
    from watchkeeper.engine.daemon import Daemon
    from watchkeeper.engine.plugins import registry

    result = _accepted_or_located(config)
    if not result.valid:
        return
    # `_prepare` is what a reload builds before it changes anything: every check's series
    # and first fire time, every task, backup and drill series, the maintenance windows
    daemon = SimpleNamespace(
        reg=registry(),
        runtime=SimpleNamespace(replica=None, all_instances={}, instances={}),
        clock=SimpleNamespace(now=time.time),
        config=SimpleNamespace(checks={}),  # nothing running yet to share models with
        _kept_checks=lambda config: set(),  # nor instances to keep
    )
    plan = Daemon._prepare(daemon, result.config)
    maintenance = plan["maintenance"]
    now = datetime.now(UTC).timestamp()
    maintenance.occurrences(now - 86400, now + 7 * 86400)
    maintenance.announcements_due(now)


# --- schedules, alone ---------------------------------------------------------------


def _schedule_accepted(schedule: dict) -> bool:
    config = {
        "version": 1,
        "checks": {"x": {"probe": "tcp", "host": "127.0.0.1", "port": 9, "schedule": schedule}},
    }
    return _accepted_or_located(config).valid


@budget(80)
@given(schedules(), st.sampled_from(ZONES), st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
))  # fmt: skip
@example({"every": "0.0001s"}, "UTC", datetime(2026, 1, 1, tzinfo=UTC))
@example({"every": "0.5ms"}, "UTC", datetime(2026, 1, 1, tzinfo=UTC))
@example({"every": "99999w"}, "UTC", datetime(2026, 1, 1, tzinfo=UTC))
@example({"cron": "0 0 * * *", "jitter": "99999w"}, "UTC", datetime(2026, 1, 1, tzinfo=UTC))
@example({"cron": "30 2 * * *"}, "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC))
@example({"cron": "0 2 * * *"}, "Australia/Lord_Howe", datetime(2026, 10, 3, 12, tzinfo=UTC))
@example({"cron": "0 0 * * *"}, "America/Sao_Paulo", datetime(2018, 11, 3, 12, tzinfo=UTC))
@example({"cron": "0 3 * * SUN#1"}, "Africa/Casablanca", datetime(2026, 2, 14, tzinfo=UTC))
def test_an_accepted_schedule_has_a_series_in_every_zone(schedule, tz, start):
    """What validate accepts, the timetable builds, in any zone, from any instant: fire
    times strictly increase, and catch-up's `previous_fire` finds each one again."""
    if not _schedule_accepted(schedule):
        return
    parsed = Schedule.model_validate(schedule)
    zone = parsed.timezone or tz
    series = timetable.series_for(parsed, key="x", start=start, default_tz=tz)
    previous = start
    for _ in range(5):
        try:
            at = next(series)
        except StopIteration:
            break
        assert at > previous
        if parsed.cron:
            found = timetable.previous_fire(parsed.cron, zone, at, jitter=parsed.jitter, key="x")
            assert found == at, (at, found)
        previous = at
    # plan's summary and the daemon's estimate of its work take the same schedule
    if parsed.cron:
        timetable.runs_per_week(parsed.cron, zone)


# --- mutated examples -----------------------------------------------------------------

SAMPLES = sorted(
    {
        *REPO.glob("examples/**/*.yaml"),
        *REPO.glob("tests/**/*.yaml"),
        REPO / "monitor.yaml",
    }
)


def _load_sample(path: Path) -> Any:
    with contextlib.suppress(yaml.YAMLError):
        return yaml.safe_load(path.read_text())
    return None


ODD = [
    None, True, 0, -1, 1.5, math.inf, -math.inf, float("nan"), 10**30, "", "x", "0s",
    "0.0001s", "99999w", "-5m", "1e999", "*/0 * * * *", "0 0 31 2 *", "@reboot",
    "Europe/Nowhere", "Asia/Kathmandu", "2026-01-01", "85%", [], {}, ["x"], {"k": "v"},
    "${UNSET}", "${env.base_url}", "\x00", "\ufeff", "L", "SUN#6",
]  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def _set(root: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _delete(root: Any, path: tuple) -> Any:
    if not path:
        return {}
    parent = _get(root, path[:-1])
    del parent[path[-1]]
    return root


@st.composite
def mutated(draw) -> str | bytes:
    """An example config, changed a few times: keys deleted or duplicated, values swapped
    or given another type, the text cut short or sprinkled with odd bytes."""
    sample = draw(st.sampled_from(SAMPLES))
    data = copy.deepcopy(_load_sample(sample))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "retype", "swap", "copy"]))
        if op == "delete":
            data = _delete(data, path)
        elif op == "retype":
            data = _set(data, path, draw(st.sampled_from(ODD)))
        elif op == "swap":
            other = draw(st.sampled_from(paths))
            if path and other and path[: len(other)] != other and other[: len(path)] != path:
                a, b = _get(data, path), _get(data, other)
                _set(data, path, copy.deepcopy(b))
                _set(data, other, copy.deepcopy(a))
        elif op == "copy" and path:
            # the same subtree at a second place (another key's value, or a list's end)
            parent = _get(data, path[:-1])
            value = copy.deepcopy(_get(data, path))
            if isinstance(parent, list):
                parent.append(value)
            elif isinstance(parent, dict):
                parent[f"{path[-1]}-copy"] = value
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=200)
    how = draw(st.sampled_from(["as is", "duplicate key", "truncate", "odd bytes"]))
    lines = text.splitlines(keepends=True)
    if how == "duplicate key" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
    elif how == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
        return text
    elif how == "odd bytes":
        raw = text.encode()
        at = draw(st.integers(0, len(raw)))
        odd = draw(st.sampled_from([b"\x00", b"\xff\xfe", b"\t", b"\x1b[31m", b"\xe2\x80\xae",
                                    b"&a", b"*a", b"!!binary ", b"{", b"\r"]))  # fmt: skip
        return raw[:at] + odd + raw[at:]
    return "".join(lines)


@budget(80, 3000)
@given(mutated())
def test_mutated_examples_are_accepted_or_located_never_raise(text):
    result = validated(_write(_fresh_dir(), text))
    event("accepted" if result.valid else "refused")


# --- regressions found by the properties ------------------------------------------------


TCP = {"probe": "tcp", "host": "127.0.0.1", "port": 9}
INF = math.inf
HUGE = "1" * 400 + "s"  # a duration that parses to infinity
WINDOW = {"name": "w", "schedule": {"cron": "0 * * * *"}, "duration": "1h"}
JOB = {"source": {"type": "files", "paths": ["monitor.yaml"]}, "to": ["local"]}


def _config(**sections: Any) -> dict:
    return {"version": 1, "notifiers": {"console": {"type": "log"}}, **sections}


# Each of these passed `validate` and then made the daemon fail: at start-up (the
# scheduler's "every must be at least 1ms"), at its first window lookup, or at a
# heartbeat's first deadline. `validate` now builds what the daemon builds.
DISAGREEMENTS = {
    "every 0.0001s": (
        _config(checks={"x": {**TCP, "schedule": {"every": "0.0001s"}}}),
        "checks.x.schedule", "`every` must be at least 1ms",
    ),
    "every 0.5ms in defaults": (
        _config(defaults={"schedule": {"every": "0.5ms"}}, checks={"x": TCP}),
        "defaults.schedule", "`every` must be at least 1ms",
    ),
    "every .inf": (
        _config(checks={"x": {**TCP, "schedule": {"every": INF}}}),
        "checks.x.schedule.every", "expected a finite duration",
    ),
    "every .nan": (
        _config(checks={"x": {**TCP, "schedule": {"every": math.nan}}}),
        "checks.x.schedule.every", "expected a finite duration",
    ),
    "task every 31710 years": (
        _config(tasks={"t": {"schedule": {"every": 10**12}, "notify": ["console"]}}),
        "tasks.t.schedule", "`every` must be at most 1830d",
    ),
    "cron jitter .inf": (
        _config(checks={"x": {**TCP, "schedule": {"cron": "0 * * * *", "jitter": INF}}}),
        "checks.x.schedule.jitter", "expected a finite duration",
    ),
    "cron jitter of 10^400 seconds": (
        _config(
            backups={
                "destinations": {"local": {"type": "local", "path": "b"}},
                "jobs": {"j": {**JOB, "schedule": {"cron": "0 2 * * *", "jitter": HUGE}}},
            }
        ),
        "backups.jobs.j.schedule.jitter", "expected a finite duration",
    ),
    "heartbeat every 0s": (
        _config(checks={"h": {"probe": "heartbeat", "expect_every": {"every": "0s"}}}),
        "checks.h.expect_every.every", "`every` must be at least 1ms",
    ),
    "heartbeat every .inf": (
        _config(checks={"h": {"probe": "heartbeat", "expect_every": {"every": INF}}}),
        "checks.h.expect_every.every", "expected a finite duration",
    ),
    "window duration .inf": (
        _config(maintenance=[{**WINDOW, "duration": INF}]),
        "maintenance[0].duration", "expected a finite duration",
    ),
    "window duration 3170 years": (
        _config(maintenance=[{**WINDOW, "duration": 10**11}]),
        "maintenance[0].duration", "`duration` must be at most 1830d",
    ),
    "window every minute for 30 days": (
        _config(maintenance=[{**WINDOW, "schedule": {"cron": "* * * * *"}, "duration": "30d"}]),
        "maintenance[0].duration", "`duration` holds more than 1000 starts of cron '* * * * *'",
    ),
    "route repeat 0.0001ms": (  # came due again at the instant it was sent: a busy loop
        _config(routes=[{"notify": ["console"], "repeat": "0.0001ms"}]),
        "routes[0].repeat", "must be at least 1s",
    ),
    "route group_interval .inf": (
        _config(routes=[{"notify": ["console"], "group_interval": INF}]),
        "routes[0].group_interval", "expected a finite duration",
    ),
    "escalation repeat 0.0001ms": (
        _config(escalation={"s": [{"after": "0s", "notify": ["console"], "repeat": "0.0001ms"}]}),
        "escalation.s[0].repeat", "must be at least 1s",
    ),
    "announce .inf before": (
        _config(maintenance=[{**WINDOW, "announce": {"before": INF, "notify": ["console"]}}]),
        "maintenance[0].announce.before", "expected a finite duration",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("config", "path", "message"), DISAGREEMENTS.values(), ids=DISAGREEMENTS)
def test_validate_refuses_what_the_daemon_cannot_build(config, path, message):
    result = _accepted_or_located(config)
    assert not result.valid
    found = [p for p in result.errors if p.path == path]
    assert found, [p.text() for p in result.problems]
    assert message in found[0].message, found[0].text()
    assert found[0].line >= 2, found[0].text()


@pytest.mark.parametrize(
    ("every", "jitter"), [(0.0001, 0.0), (INF, 0.0), (math.nan, 0.0), (10.0**12, 0.0), (60, INF)]
)
def test_the_timetable_refuses_the_same_values(every, jitter):
    """The other side of the agreement: the scheduler's constructor refuses them too."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="must be"):
        timetable.EverySeries(every, key="x", start=start, jitter=jitter)
    assert timetable.schedule_error(Schedule.model_construct(every=every, jitter=jitter))


def test_what_the_timetable_builds_validate_accepts():
    """The edges of the agreement: 1ms, and the 5-year horizon, are fine on both sides."""
    for schedule in (
        {"every": "1ms"},
        {"every": "1830d"},
        {"cron": "0 0 * * *", "jitter": "1830d"},
    ):
        assert _schedule_accepted(schedule), schedule
        parsed = Schedule.model_validate(schedule)
        next(timetable.series_for(parsed, key="x", start=datetime.now(UTC)))


def test_an_infinite_threshold_window_is_a_problem_not_a_traceback():
    rule = {"metric": "connect_time", "above": 1, "agg": "avg", "window": INF}
    result = _accepted_or_located(_config(checks={"x": {**TCP, "thresholds": [rule]}}))
    assert not result.valid


@pytest.mark.slow
@budget(3, 60)
@given(configs())
def test_the_cli_starts_what_it_validates(config):
    """The CLI itself, end to end, on a few generated configs: `validate` exits 0 or 1
    (never 2, never a traceback) and what it accepts `run --once` runs."""
    from tests.conftest import run_cli

    folder = _fresh_dir()
    _write(folder, config)
    checked = run_cli("validate", cwd=folder, timeout=60)
    assert checked.code in (0, 1), checked.output
    assert "Traceback" not in checked.output, checked.output
    if checked.code == 1:
        assert "monitor.yaml:" in checked.output, checked.output
        return
    result = run_cli("run", "--once", cwd=folder, timeout=120)
    assert result.code in (0, 1), result.output
    assert "Traceback" not in result.output, result.output
