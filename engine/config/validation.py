"""Load and validate monitor.yaml into the model assembled from the installed plugins.

`validate()` is the whole dry run: read (YAML, includes, interpolation), schema
validation, then cross-reference rules, each problem pointing at file, line and column.
"""

from __future__ import annotations

import difflib
import functools
import gc
import os
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from watchkeeper.engine.config import loader
from watchkeeper.engine.config.problems import ConfigError, Mark, Problem, sort_problems
from watchkeeper.engine.entry_points import may_declare
from watchkeeper.engine.observe.redaction import REDACTOR
from watchkeeper.engine.plugins import Registry, registry
from watchkeeper.schema.config import ConfigBase, build_config_model

CONFIG_ENV = "WATCHKEEPER_CONFIG"
DEFAULT_PATH = "monitor.yaml"


def default_path() -> str:
    """Return the config path: $WATCHKEEPER_CONFIG, else ./monitor.yaml."""
    return os.environ.get(CONFIG_ENV) or DEFAULT_PATH


@functools.cache
def _model_for(reg: Registry, only: frozenset[tuple[str, str]] | None) -> type[ConfigBase]:
    _no_pydantic_plugins_to_find()
    if only is None:
        return build_config_model(reg.types)
    kept: dict[str, set[str]] = {}
    for kind, name in only:
        kept.setdefault(kind, set()).add(name)
    return build_config_model(reg.types, kept)


def _no_pydantic_plugins_to_find() -> None:
    """Tell pydantic it has no plugins where no distribution declares its entry-point group.

    pydantic looks for plugins of its own when it builds its first validator (the config
    model, for `validate`), and reads the metadata of every installed distribution to find
    them: a tenth of `validate` of a small file. Where engine/entry_points.py finds that no
    distribution declares the group, the answer it would reach (none) is given to it first.
    """
    from pydantic.plugin import _loader

    # private names of pydantic's: where they are not as expected, pydantic looks itself
    group = getattr(_loader, "PYDANTIC_ENTRY_POINT_GROUP", None)
    if group and getattr(_loader, "_plugins", ()) is None and not may_declare(group):
        _loader._plugins = {}


def config_model(reg: Registry | None = None, data: Any = None) -> type[ConfigBase]:
    """Return the monitor.yaml model for a registry (default: the installed plugins).

    Given a file's `data`, the model holds only the built-in types the file names (and
    every third-party one, so that a plugin whose options cannot be built fails whatever
    the file uses): building validators for forty-odd plugins costs more than checking
    a small file. A file naming a type no plugin has, or an entry with no type at all,
    gets the whole model, whose errors list every type there is.
    """
    reg = reg or registry()
    return _model_for(reg, None if data is None else _types_named(data, reg))


# the plugin-typed places of monitor.yaml: (kind, the key naming the type, path of the
# mapping of named entries); `state` is one entry, not a mapping of them
_PLUGIN_PLACES = (
    ("probe", "probe", ("checks",)),
    ("notifier", "type", ("notifiers",)),
    ("action", "type", ("actions",)),
    ("backup destination", "type", ("backups", "destinations")),
)


def _types_named(data: Any, reg: Registry) -> frozenset[tuple[str, str]] | None:
    """Return the (kind, type) pairs a model for `data` needs, or None for the whole model."""
    if not isinstance(data, dict):
        return None
    named = {("state store", "sqlite")}  # the default store
    named.update((kind, name) for kind in reg.types for name in reg.types[kind]
                 if not reg.is_builtin(kind, name))  # fmt: skip
    entries: list[tuple[str, str, Any]] = []
    for kind, key, path in _PLUGIN_PLACES:
        section: Any = data
        for part in path:
            section = section.get(part) if isinstance(section, dict) else None
        if section is None:
            continue
        if not isinstance(section, dict):
            return None
        entries += [(kind, key, entry) for entry in section.values()]
    backups = data.get("backups")
    jobs = backups.get("jobs") if isinstance(backups, dict) else None
    if jobs is not None:
        if not isinstance(jobs, dict):
            return None
        for job in jobs.values():
            if not isinstance(job, dict) or "source" not in job:
                return None
            entries.append(("backup source", "type", job["source"]))
    if data.get("state") is not None:
        entries.append(("state store", "type", data["state"]))
    for kind, key, entry in entries:
        name = entry.get(key) if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in reg.types[kind]:
            return None
        named.add((kind, name))
    return frozenset(named)


@dataclass
class Validation:
    """The outcome of reading and checking a configuration."""

    path: str
    config: Any | None
    loaded: loader.Loaded | None
    problems: list[Problem] = field(default_factory=list)
    # checks a reload's child sent as models; the rest were the running ones (None: the
    # file was read another way)
    checks_sent: int | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def valid(self) -> bool:
        return self.config is not None and not self.errors

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent

    def raise_for_errors(self) -> None:
        if not self.valid:
            raise ConfigError(self.errors or self.problems)


def validate(
    path: str | os.PathLike[str],
    *,
    env: typing.Mapping[str, str] | None = None,
    strict: bool = False,
    reg: Registry | None = None,
    running: bool = False,
) -> Validation:
    """Read and check a configuration; raise OSError only if the file cannot be read.

    `strict` turns warnings into errors; `running` (the daemon and the commands that act
    on the file) leaves advice about this host a warning, which `validate --strict`
    refuses: a backup path that is not there yet fails that backup, not the monitoring.
    """
    # a large config makes millions of objects that all stay alive until validation ends:
    # collector passes over them would cost more than the validation itself
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _validate(path, env=env, strict=strict, reg=reg, running=running)
    finally:
        # what validation built is long-lived (the daemon keeps it; the CLI exits): move it
        # out of the collector's sight, or the next collection walks all of it at once
        gc.freeze()
        if enabled:
            gc.enable()


def _validate(
    path: str | os.PathLike[str],
    *,
    env: typing.Mapping[str, str] | None,
    strict: bool,
    reg: Registry | None,
    running: bool = False,
) -> Validation:
    from watchkeeper.engine.config.crossref import cross_check

    loaded = loader.load(path, env)
    # problems may quote values (a secret put where a number belongs): mask them all
    loader.register_secrets(loaded)
    result = Validation(path=str(path), config=None, loaded=loaded, problems=list(loaded.problems))
    if loaded.errors and not loaded.data:
        return _finish(result, strict)
    model = config_model(reg, loaded.data)
    try:
        result.config = model.model_validate(loaded.data)
    except ValidationError as exc:
        # check references on what is left without the broken values, so that every
        # problem is reported in one pass
        checked, shifted = _validate_remainder(model, loaded, list(exc.errors()))
        if checked is not None:
            REDACTOR.add_from(checked)  # before messages quote (and shorten) values
        translated = translate_errors(exc, loaded, model)
        result.problems.extend(translated)
        if not translated and checked is not None:
            # every broken value came from an unset variable, a warning here (CI has no
            # secrets): the rest is the configuration; --strict turns them into errors
            result.config = checked
        notes: list[Problem] = []
        advice: list[Problem] = []
        if checked is not None:
            found = cross_check(checked, loaded, reg or registry(), notes, advice)
            found += schedule_problems(checked, loaded, reg or registry())
            result.problems.extend(p for p in found if not _after_removal(p.path, shifted))
        return _finish(result, strict, notes, advice, running)
    notes, advice = [], []
    result.problems.extend(cross_check(result.config, loaded, reg or registry(), notes, advice))
    result.problems.extend(schedule_problems(result.config, loaded, reg or registry()))
    if result.problems or advice:
        # a problem may quote a value a secret-typed field holds too (the walk over a large
        # config costs more than the rest of a clean validation: only when needed)
        REDACTOR.add_from(result.config)
    return _finish(result, strict, notes, advice, running)


# --- what the daemon builds ----------------------------------------------------------------

_UNSCHEDULABLE = (ValueError, OverflowError, ArithmeticError, StopIteration)


def schedule_problems(config: Any, loaded: loader.Loaded, reg: Registry) -> list[Problem]:
    """Build every series and window the daemon would build from a config, with the
    daemon's own constructors, and report each one that cannot be built or never fires.

    This is what makes "validate accepts it" mean "the daemon can start it": check and
    default schedules, heartbeat deadlines, tasks, backups, drills and maintenance windows
    go through `timetable` as the scheduler, `Heartbeats` and `Maintenance` call it.
    """
    return _Compiler(config, loaded, reg).run()


class _Compiler:
    """Build each schedule of a config once (thousands of checks share a few)."""

    def __init__(self, config: Any, loaded: loader.Loaded, reg: Registry):
        from datetime import UTC, datetime

        self.config, self.loaded, self.reg = config, loaded, reg
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.problems: list[Problem] = []
        self.built: dict[tuple, str | None] = {}

    def report(self, path: tuple, message: str) -> None:
        self.problems.append(Problem.at(mark_at(self.loaded, path), loader.dotted(path), message))

    def first_fire(self, make: Any, key: tuple) -> str | None:
        """Build a series and take its first fire time; return what went wrong, if anything."""
        from watchkeeper.engine.schedule import timetable

        if key not in self.built:
            try:
                next(make())
                self.built[key] = None
            except StopIteration:
                self.built[key] = timetable.NEVER_FIRES
            except _UNSCHEDULABLE as exc:
                self.built[key] = f"cannot be scheduled: {exc}"
        return self.built[key]

    def run(self) -> list[Problem]:
        from watchkeeper.engine.config.instances import check_schedule

        config = self.config
        default_tz = config.defaults.timezone or "UTC"
        probes = self.reg.types.get("probe", {})
        passive: dict[str, bool] = {}
        for name, check in config.checks.items():
            path = ("checks", name)
            # a model's fields are its __dict__: a key its probe lacks costs no exception
            expect = vars(check).get("expect_every")
            if expect is not None:
                self.heartbeat(expect, (*path, "expect_every"), check.timezone or default_tz)
            probe = check.probe
            if probe not in passive:
                passive[probe] = bool(getattr(probes.get(probe), "passive", False))
            if passive[probe]:
                continue
            entry, tz = check_schedule(check, config.defaults)
            where = (*path, "schedule") if check.schedule else ("defaults", "schedule")
            self.schedule(entry, where, tz, key=name)
        for prefix, entries in (
            (("tasks",), config.tasks),
            (("backups", "jobs"), config.backups.jobs),
            (("backups", "drills"), config.backups.drills),
        ):
            for name, entry in entries.items():
                self.schedule(entry.schedule, (*prefix, name, "schedule"), default_tz, key=name)
        for index, window in enumerate(config.maintenance):
            self.window(window, ("maintenance", index), default_tz)
        return self.problems

    def schedule(self, entry: Any, path: tuple, tz: str, *, key: str) -> None:
        """The scheduler's `series_for`, as `Scheduler.add` calls it."""
        zone = entry.timezone or tz
        # thousands of checks share a few schedules: each is judged once
        fields = ("judged", entry.every, entry.cron, zone, entry.jitter)
        if fields not in self.built:
            self.built[fields] = self._schedule_problem(entry, zone, key)
        if problem := self.built[fields]:
            self.report(path, problem)

    def _schedule_problem(self, entry: Any, zone: str, key: str) -> str | None:
        from watchkeeper.engine.schedule import timetable

        if timetable.zone_error(zone) or (entry.cron and timetable.cron_error(entry.cron)):
            return None  # reported at the key itself
        return timetable.schedule_error(entry) or self.first_fire(
            lambda: timetable.series_for(entry, key=key, start=self.now, default_tz=zone),
            ("series", entry.every, entry.cron, zone, entry.jitter),
        )

    def heartbeat(self, expect: Any, path: tuple, tz: str) -> None:
        """A heartbeat's deadlines, as `Heartbeats` computes them."""
        from watchkeeper.engine.schedule import timetable

        if expect.every is not None:
            if problem := timetable.every_error(expect.every):
                self.report((*path, "every"), f"`every` {problem}")
            return
        zone = expect.timezone or tz
        if not expect.cron or timetable.cron_error(expect.cron) or timetable.zone_error(zone):
            return
        problem = self.first_fire(
            lambda: timetable.CronSeries(expect.cron, zone, start=self.now),
            ("series", None, expect.cron, zone, 0.0),
        )
        if problem:
            self.report((*path, "cron"), problem)

    def window(self, window: Any, path: tuple, tz: str) -> None:
        """A maintenance window's occurrences, as `Maintenance` lays them out."""
        from datetime import timedelta

        from watchkeeper.engine.schedule import timetable

        if window.announce is not None and (
            problem := timetable.jitter_error(window.announce.before)
        ):
            self.report((*path, "announce", "before"), f"`before` {problem}")
        if window.schedule is None or window.duration is None or window.duration <= 0:
            return  # a one-off window, or one the cross-reference check has refused
        zone = window.schedule.timezone or tz
        cron = window.schedule.cron
        if timetable.cron_error(cron) or timetable.zone_error(zone):
            return
        if problem := timetable.window_error(cron, window.duration):
            self.report((*path, "duration"), problem)
            return
        end = self.now + timedelta(days=1)
        problem = self.first_fire(
            lambda: iter([timetable.windows(cron, zone, window.duration, start=self.now, end=end)]),
            ("window", cron, zone, window.duration),
        ) or self.first_fire(
            lambda: timetable.CronSeries(cron, zone, start=self.now),
            ("series", None, cron, zone, 0.0),
        )
        if problem:
            self.report((*path, "schedule", "cron"), problem)


def _validate_remainder(
    model: type[BaseModel], loaded: loader.Loaded, errors: list[Any]
) -> tuple[Any, dict[str, int]]:
    """Validate the data without its broken values (a few rounds), else without the
    entries holding them; return the model and the lists whose items were removed."""
    first_errors = errors
    data: Any = loaded.data
    shifted: dict[str, int] = {}  # list path -> first index removed from it
    for _round in range(4):
        for error in errors:
            _mark, path, _rest = locate(loaded.marks, data, error["loc"])
            data = remove_path(data, path)
            if path and isinstance(path[-1], int):
                _note_removal(shifted, loader.dotted(path[:-1]), path[-1])
        try:
            return model.model_validate(data), shifted
        except ValidationError as again:
            errors = list(again.errors())
    shifted = {}
    locs = [e["loc"] for e in first_errors]
    for loc in locs:
        if len(loc) >= 2 and loc[0] in ("routes", "maintenance") and isinstance(loc[1], int):
            _note_removal(shifted, loc[0], loc[1])
    try:
        return model.model_validate(prune(loaded.data, locs)), shifted
    except ValidationError:
        return None, shifted


def _note_removal(shifted: dict[str, int], list_path: str, index: int) -> None:
    shifted[list_path] = min(shifted.get(list_path, index), index)


def _after_removal(path: str, shifted: dict[str, int]) -> bool:
    """True when a problem's list index may be off because earlier items were removed."""
    for prefix, first in shifted.items():
        if path.startswith(prefix + "["):
            index = path[len(prefix) + 1 :].split("]", 1)[0]
            if index.isdigit() and int(index) >= first:
                return True
    return False


def remove_path(data: Any, path: tuple) -> Any:
    """Return a copy of data without the value at path (copying only along the path)."""
    if not path:
        return data
    head, rest = path[0], path[1:]
    if isinstance(data, dict) and head in data:
        out = dict(data)
        if rest:
            out[head] = remove_path(data[head], rest)
        else:
            del out[head]
        return out
    if isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data):
        if rest:
            return [remove_path(v, rest) if i == head else v for i, v in enumerate(data)]
        return [v for i, v in enumerate(data) if i != head]
    return data


NAMED_SECTIONS = {
    "checks",
    "notifiers",
    "actions",
    "escalation",
    "tasks",
    "slos",
    "environments",
    "routes",
    "maintenance",
}


def prune(data: Any, locs: list[tuple]) -> dict:
    """Return a copy of the data without the entries (or sections) the locations are in."""
    out = dict(data) if isinstance(data, dict) else {}
    for loc in locs:
        if not loc:
            continue
        section = loc[0]
        if section == "backups" and len(loc) >= 3 and loc[1] in ("destinations", "jobs", "drills"):
            backups = dict(out.get("backups") or {})
            group = backups.get(loc[1])
            if isinstance(group, dict):
                group = dict(group)
                group.pop(loc[2], None)
                backups[loc[1]] = group
                out["backups"] = backups
                continue
        if section in NAMED_SECTIONS and len(loc) >= 2:
            value = out.get(section)
            if isinstance(value, dict):
                value = dict(value)
                value.pop(loc[1], None)
                out[section] = value
                continue
            if isinstance(value, list) and isinstance(loc[1], int):
                out[section] = [v for i, v in enumerate(value) if i != loc[1]]
                continue
        if section == "version":
            out["version"] = 1
        else:
            out.pop(section, None)
    return out


def load_config(
    path: str | os.PathLike[str],
    *,
    env: typing.Mapping[str, str] | None = None,
    reg: Registry | None = None,
) -> Validation:
    """Validate for running: unset variables are errors; secrets get registered."""
    result = validate(path, env=env, strict=True, reg=reg, running=True)
    result.raise_for_errors()
    loader.register_secrets(result.loaded)  # type: ignore[arg-type]
    REDACTOR.add_from(result.config)
    return result


def _finish(
    result: Validation,
    strict: bool,
    notes: Iterable[Problem] = (),
    advice: Iterable[Problem] = (),
    running: bool = False,
) -> Validation:
    problems = [*result.problems, *(advice if not running else ())]
    if strict:
        for problem in problems:
            problem.level = "error"
    # notes are about a plugin, not the file: warnings even under --strict (and when the
    # daemon loads), so that an old plugin keeps working; advice stays a warning when
    # the file is run (see `validate`)
    extra = [*notes, *(advice if running else ())]
    result.problems = _dedupe(sort_problems([*problems, *extra]))
    return result


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple] = set()
    out = []
    for p in problems:
        key = (p.file, p.line, p.column, p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# --- pydantic errors -> problems ---------------------------------------------------------


def locate(marks: loader.Marks, data: Any, loc: tuple) -> tuple[Mark | None, tuple, Any]:
    """Follow a pydantic error location through loaded data.

    Returns the mark of the deepest entry found, the data path to it (union tags and
    branch names dropped) and the remaining location parts that were not found.
    """
    node, path, mark = data, (), marks.of_self(data)
    rest = list(loc)
    while rest:
        part = rest[0]
        if part == "[key]" and path:
            parent = _walk(data, path[:-1])
            mark = marks.of(parent, path[-1], value=False) or mark
            rest.pop(0)
            continue
        if isinstance(node, dict):
            if part in node:
                mark = marks.of(node, part) or mark
                node, path = node[part], (*path, part)
                rest.pop(0)
                continue
            if isinstance(part, str) and part in (node.get("probe"), node.get("type")):
                rest.pop(0)  # a discriminated union's tag
                continue
            break
        if isinstance(node, list) and isinstance(part, int):
            if 0 <= part < len(node):
                mark = marks.of(node, part) or mark
                node, path = node[part], (*path, part)
                rest.pop(0)
                continue
            break
        if isinstance(part, str) and not isinstance(node, dict | list):
            rest.pop(0)  # a union branch name such as 'int' or 'function-after[...]'
            continue
        break
    return mark, path, tuple(rest)


def _walk(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def mark_at(loaded: loader.Loaded, path: tuple, *, value: bool = True) -> Mark | None:
    """Return where the entry at a data path was written (or its nearest parent)."""
    mark, found, rest = locate(loaded.marks, loaded.data, path)
    if not value and not rest and found:
        parent = _walk(loaded.data, found[:-1])
        return loaded.marks.of(parent, found[-1], value=False) or mark
    return mark


def translate_errors(
    exc: ValidationError, loaded: loader.Loaded, model: type[BaseModel]
) -> list[Problem]:
    """Turn pydantic's errors into problems people can act on, one per place."""
    by_place: dict[tuple, list[tuple[dict, tuple]]] = {}
    start = Mark(loaded.files[0], 1, 1)  # for a file too empty to point into
    for error in exc.errors(include_url=False, include_input=True):
        if _is_secret(model, error["loc"]):
            error.pop("input", None)  # a credential in the wrong shape is still a credential
        mark, path, rest = locate(loaded.marks, loaded.data, error["loc"])
        mark = mark or start
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            node = _walk(loaded.data, path)
            tag = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
            if isinstance(node, dict) and tag in node:
                mark, path = loaded.marks.of(node, tag) or mark, (*path, tag)
        if error["type"] in ("missing", "extra_forbidden") and rest:
            path = (*path, rest[0]) if error["type"] == "missing" else path
        by_place.setdefault((mark, path, error["type"] == "extra_forbidden"), []).append(
            (error, rest)
        )
    problems = []
    for (mark, path, extra), errors in by_place.items():
        if path in loaded.unset and not extra:
            continue  # already reported: the variable feeding this value is not set
        if extra:
            parent = _walk(loaded.data, path[:-1]) if path else None
            key_mark = (
                loaded.marks.of(parent, path[-1], value=False) if parent is not None else None
            ) or mark
            for error, _rest in errors:
                problems.append(
                    Problem.at(
                        key_mark,
                        loader.dotted(path),
                        _unknown_key(model, error["loc"], str(path[-1])),
                    )
                )
            continue
        message = _merge_messages([_message(model, e, rest) for e, rest in errors])
        problems.append(Problem.at(mark, loader.dotted(path), message))
    return problems


def _merge_messages(messages: list[str]) -> str:
    unique = [m for m in dict.fromkeys(messages) if m]
    informative = [m for m in unique if m != "expected null"]
    unique = informative or unique
    if len(unique) == 1:
        return unique[0]
    return "; or ".join(unique)


def _message(model: type[BaseModel], error: dict, rest: tuple) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = error["loc"]
    if kind == "missing":
        name = loc[-1]
        return f"missing required key {name!r}"
    if kind == "union_tag_invalid":
        tag = ctx.get("discriminator", "'type'").strip("'")
        got = ctx.get("tag", "")
        expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(str(got), expected, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (
            f"unknown {tag} {got!r}{hint} (known: {', '.join(sorted(expected))}; "
            f"`watchkeeper plugins` lists what is installed)"
        )
    if kind == "union_tag_not_found":
        tag = ctx.get("discriminator", "'type'").strip("'")
        return f"missing key {tag!r} saying which plugin this is"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_describe(error.get('input'))}"
    if kind == "list_type":
        return f"expected a list, got {_describe(error.get('input'))}"
    if kind == "none_required":
        return "expected null"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_short(error.get('input'))}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if kind.startswith(("int_", "float_", "bool_", "string_", "greater", "less", "too_")):
        message = message[0].lower() + message[1:]
        if "input" in error and kind.endswith(("_parsing", "_type")):
            message += f", got {_short(error.get('input'))}"
    return message


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return _short(value)


def _short(value: Any) -> str:
    # mask before quoting and shortening: an escaped or cut-off secret would not match
    text = repr(REDACTOR.redact_obj(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _is_secret(model: type[BaseModel], loc: tuple) -> bool:
    """True when the value at a pydantic error location is a secret-typed field."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return False
    return _unwrap(current) is SecretStr


def _unknown_key(model: type[BaseModel], loc: tuple, key: str) -> str:
    allowed = _fields_at(model, loc[:-1])
    if allowed is None:
        return f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} (expected one of: {', '.join(sorted(allowed))})"


def _fields_at(model: Any, loc: tuple) -> list[str] | None:
    """Return the keys a model accepts at a location (following dicts, lists, unions)."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _step(tp: Any, part: Any) -> Any:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        # a tagged union of one type (a model for the types a file names) is the type
        # itself, and the error's location still holds its tag
        for key in ("probe", "type"):
            f = tp.model_fields.get(key)
            if f is not None and typing.get_args(f.annotation) == (part,):
                return tp
        return None
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is list:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(tp):
            arg = _unwrap(arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                for key in ("probe", "type"):
                    f = arg.model_fields.get(key)
                    if f is not None and typing.get_args(f.annotation) == (part,):
                        return arg
        # an undiscriminated union: the first model branch that has the key
        for arg in typing.get_args(tp):
            arg = _unwrap(arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return _step(arg, part)
        return None
    return None
