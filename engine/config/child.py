"""The child process that reads and checks monitor.yaml for the daemon, and writes its answer.

It reads the file as `watchkeeper validate` does and writes one answer on its stdout: the
problems, or the accepted configuration (the checks as their validated models, a part at a
time, the rest as plain data), which `process.accept` takes in on the daemon's side. On a
reload it reads the daemon's digests of its running checks on its stdin first and leaves
those checks out (`check_digests`). It runs under the memory limit the daemon gives it and
exits with `EXIT_MEMORY` past it.

    python -m watchkeeper.engine.config.child PATH [MEMORY_BYTES] [--known]
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from dataclasses import asdict
from typing import Any

from watchkeeper.engine.config.process import (
    AS_DATA,
    CHECKS_AT_ONCE,
    EXIT_MEMORY,
    MEMORY_LIMIT,
    PART,
    _check_class,
)


def _answer(path: str) -> dict[str, Any]:
    from watchkeeper.engine.config.problems import ConfigError
    from watchkeeper.engine.config.validation import validate
    from watchkeeper.engine.observe.redaction import REDACTOR

    try:
        # `load_config` but for registering the accepted file's secret fields: this
        # process masks nothing more, and the daemon registers them from its own models
        validation = validate(path, strict=True, running=True)
        validation.raise_for_errors()
    except ConfigError as exc:
        # masked here, where the secrets the file names are known, and handed over too:
        # the daemon has not registered a refused file's secrets, and its log, /health and
        # the reload's answer all quote these problems
        problems = [
            {**asdict(p), "path": REDACTOR.redact(p.path), "message": REDACTOR.redact(p.message)}
            for p in exc.problems
        ]
        return {"ok": False, "problems": problems, "secrets": REDACTOR.values()}
    except OSError as exc:
        return {"ok": False, "oserror": str(exc)}
    loaded = validation.loaded
    config = validation.config
    # the checks travel as their models (`write_answer`), the rest as plain data
    data = config.model_dump(by_alias=True, exclude_unset=True, exclude={"checks"})
    if not config.checks and "checks" in config.model_fields_set:
        data["checks"] = {}
    return {
        "ok": True,
        "data": data,
        "checks": config.checks,
        "probes": sorted({check.probe for check in config.checks.values()}),
        "problems": [asdict(p) for p in validation.problems],
        "files": list(loaded.files) if loaded else [path],
        "secrets": sorted(loaded.secrets) if loaded else [],
    }


class _CheckPickler(pickle.Pickler):
    """Pickles check models by their probe type rather than their class, which the config
    model makes per file and no module names; notes the fields of every model class it
    meets, so the daemon can tell whether it has the same ones."""

    def __init__(self, stream: Any, probes: dict[type, str]):
        super().__init__(stream, protocol=pickle.HIGHEST_PROTOCOL)
        self.probes = probes
        self.layouts: dict[Any, tuple[str, ...]] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type):
            fields = getattr(obj, "__pydantic_fields__", None)
            probe = self.probes.get(obj)
            if fields is not None:
                place = ("probe", probe) if probe else (obj.__module__, obj.__qualname__)
                self.layouts[place] = tuple(fields)
            if probe is not None:
                return _check_class, (probe,)
        return NotImplemented


def write_answer(answer: dict[str, Any], out: Any, known: Any = None) -> None:
    """Write the child's answer to `out` as `accept` reads it, each piece as soon as it is
    made, so that the daemon takes in one while the next is made.

    The rest of the config goes first. The checks follow as their validated models, a part
    at a time, with the values they share (a schedule, an empty map, a default `expect:`)
    made one object first: pickle writes an object once however often it is referred to,
    so the daemon unpickles one copy of what ten thousand checks share, and validates
    nothing again. The parts come from one pickler, so they share objects. A check whose
    models cannot be pickled sends every check as plain data instead.

    `known` (a reload: a callable that reads the daemon's digests of its running checks,
    `check_digests`) leaves out every check the daemon runs as it is: its place in a part
    holds None, which the daemon reads as "the one you run".
    """
    checks = answer.pop("checks", None)
    if not checks:
        _put(out, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        return
    names = list(checks)
    parts = range(0, len(names), CHECKS_AT_ONCE)
    _put(out, pickle.dumps({**answer, "parts": len(parts)}, protocol=pickle.HIGHEST_PROTOCOL))
    same = _unchanged(checks, known()) if known is not None else set()
    share = _Sharer()
    probes = {type(check): check.probe for check in checks.values()}
    piece = io.BytesIO()
    pickler = _CheckPickler(piece, probes)
    for start in parts:
        part = {
            name: None if name in same else checks[name]
            for name in names[start : start + CHECKS_AT_ONCE]
        }
        for check in part.values():
            if check is not None:
                share.model(check)
        try:
            pickler.dump(part)
        except (pickle.PicklingError, TypeError, AttributeError):
            plain = {
                name: check.model_dump(by_alias=True, exclude_unset=True)
                for name, check in checks.items()
            }
            _put(out, AS_DATA + pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL))
            return
        _put(out, PART + piece.getvalue())
        piece.seek(0)
        piece.truncate()
    pickler.dump(pickler.layouts)
    _put(out, piece.getvalue())


def _unchanged(checks: dict[str, Any], known: dict[str, Any] | None) -> set[str]:
    """Names of the checks whose digest is the daemon's for the same name."""
    if not known:
        return set()
    from watchkeeper.engine.config.check_digests import unchanged

    return unchanged(checks, known)


def _read_known() -> dict[str, Any] | None:
    """The daemon's digests of its running checks, from stdin (see `check_digests`)."""
    from watchkeeper.engine.config.check_digests import well_formed

    try:
        known = pickle.loads(sys.stdin.buffer.read())
    except Exception:  # nothing, or not what the daemon writes: every check is sent
        return None
    return known if well_formed(known) else None


def _put(out: Any, data: bytes) -> None:
    out.write(data)
    out.flush()


class _Sharer:
    """Make equal values of check models one object (in the child, before pickling)."""

    def __init__(self) -> None:
        from pydantic import BaseModel

        from watchkeeper.engine.run.sharing import Interner

        self.base = BaseModel
        self.intern = Interner()
        self.empty: dict[type, Any] = {}
        self.fields: dict[frozenset[str], set[str]] = {}
        self.simple: dict[tuple[type, Any], Any] = {}
        self.models: dict[tuple, Any] = {}
        self.defaults: dict[tuple[type, str], Any] = {}
        self.mutable: dict[type, tuple[str, ...]] = {}

    def model(self, model: Any, every: bool = False) -> None:
        """Share the values of a model's fields that hold objects of their own (`every`:
        all of them) and its set of fields set."""
        cls = type(model)
        values = model.__dict__
        fields = model.__pydantic_fields_set__
        if every:
            for name, value in values.items():
                values[name] = self.value(value)
        else:
            for name in fields:
                if name in values:
                    values[name] = self.value(values[name])
            mutable = self.mutable.get(cls)
            if mutable is None:
                # unset fields whose default is a fresh container or model each time
                mutable = self.mutable[cls] = tuple(
                    name
                    for name, info in cls.model_fields.items()
                    if info.default_factory is not None
                    or isinstance(info.default, dict | list | set | self.base)
                )
            defaults = self.defaults
            for name in mutable:
                if name in fields or name not in values:
                    continue
                value = values[name]
                shared = defaults.setdefault((cls, name), value)
                # a default factory may make a different value each time
                if shared is not value and type(shared) is type(value) and shared == value:
                    values[name] = shared
        shared_fields = self.fields.setdefault(frozenset(fields), fields)
        if shared_fields is not fields:
            object.__setattr__(model, "__pydantic_fields_set__", shared_fields)

    def value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return sys.intern(value)
        if kind is float or kind is int:
            return self.simple.setdefault((kind, value), value)
        if kind is dict or kind is list:
            return self.intern(value) if value else self.empty.setdefault(kind, value)
        if value is None or kind is bool or not isinstance(value, self.base):
            return value
        if value.__pydantic_extra__ or getattr(value, "__pydantic_private__", None):
            return value
        try:  # a model of plain values (a schedule): they are its key
            items = value.__dict__.values()
            key = (kind, frozenset(value.__pydantic_fields_set__), *items, *map(type, items))
            return self.models.setdefault(key, value)
        except TypeError:
            pass
        self.model(value, every=True)
        # its values are shared objects by now: equal models have the same ones
        key = (kind, id(value.__pydantic_fields_set__), *map(id, value.__dict__.values()))
        return self.models.setdefault(key, value)


def _limit_memory(limit: int) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main() -> None:
    memory = int(sys.argv[2]) if len(sys.argv) > 2 else MEMORY_LIMIT
    if memory > 0:
        _limit_memory(memory)
    try:
        known = _read_known if "--known" in sys.argv[3:] else None
        write_answer(_answer(sys.argv[1]), sys.stdout.buffer, known)
    except MemoryError:
        os._exit(EXIT_MEMORY)  # the parent says so; nothing more is sure to fit
    sys.stderr.flush()
    # the daemon waits for this process to end: tearing down what checking the file built
    # (some 90 MB of objects at 10,000 checks) is time it would wait for nothing
    os._exit(0)


if __name__ == "__main__":
    main()
