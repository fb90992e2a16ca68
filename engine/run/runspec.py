"""What a probe worker is sent about a check, in the compact form it keeps.

The daemon describes each check a worker may run as a plain tuple: its probe type, name,
environment, timeout, labels and option values. Equal values (a default `expect:`, empty
header maps, the same labels) are sent as one object, so the worker holds them once, and
its per-check cost is the check's own strings plus two small slotted objects.

Options of built-in probes travel as their field values and become an `OptionsRecord`
in the worker: the same attributes, without a pydantic model per check. Their probes only
read option attributes. A third-party probe's options travel as its model (its `check()`
may call methods the model defines).
"""

from __future__ import annotations

from typing import Any

from watchkeeper.engine.run.sharing import Interner

# spec tuple: (probe_type, check, environment, timeout, labels, options or option values)
Packed = tuple[str, str, "str | None", float, dict, Any]


class RunSpec:
    """One check a worker may run: what `LocalExecutor.run` reads of an Instance."""

    __slots__ = ("check", "environment", "key", "labels", "options", "probe_type", "timeout")

    def __init__(
        self,
        key: str,
        probe_type: str,
        check: str,
        environment: str | None,
        timeout: float,
        labels: dict[str, str],
        options: Any,
    ):
        self.key = key
        self.probe_type = probe_type
        self.check = check
        self.environment = environment
        self.timeout = timeout
        self.labels = labels
        self.options = options


class OptionsRecord:
    """A probe's options as plain attributes (subclassed per probe with its field names)."""

    # weakly referable: a probe may cache what it builds from them until they are freed
    __slots__ = ("__weakref__",)

    def __init__(self, *values: Any):
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


_RECORDS: dict[tuple[str, tuple[str, ...]], type[OptionsRecord]] = {}


def record_class(probe_type: str, names: tuple[str, ...]) -> type[OptionsRecord]:
    """The record class for a probe's option fields (one class per probe and field set)."""
    cls = _RECORDS.get((probe_type, names))
    if cls is None:
        cls = type(f"{probe_type}_options", (OptionsRecord,), {"__slots__": names})
        _RECORDS[(probe_type, names)] = cls
    return cls


def make_record(probe_type: str, names: tuple[str, ...], *values: Any) -> OptionsRecord:
    """The record of a built-in probe's option values (called as a worker unpickles)."""
    return record_class(probe_type, names)(*values)


class _Values:
    """A built-in probe's option values, pickled as the call that makes their record: the
    worker builds each check's record as it unpickles the frame, and keeps no tuple of
    values beside it."""

    __slots__ = ("names", "probe_type", "values")

    def __init__(self, probe_type: str, names: tuple[str, ...], values: tuple[Any, ...]):
        self.probe_type, self.names, self.values = probe_type, names, values

    def __reduce__(self) -> tuple[Any, ...]:
        return make_record, (self.probe_type, self.names, *self.values)


def pack(instance: Any, record: tuple[str, ...] | None, intern: Interner) -> Packed:
    """Describe an instance for a worker; `record` names the option fields sent as values
    (None: send the options model itself)."""
    options = instance.options
    if record is not None:
        values = tuple(intern(getattr(options, name)) for name in record)
        sent: Any = _Values(intern(instance.probe_type), record, values)
    else:
        cls = instance.probe_class.Options
        sent = cls.model_construct(
            **{name: intern(getattr(options, name)) for name in cls.model_fields}
        )
    return (
        intern(instance.probe_type),
        instance.check,
        intern(instance.environment),
        intern(float(instance.timeout)),
        intern(instance.labels),
        sent,
    )


def unpack(key: str, packed: Packed, records: dict[str, tuple[str, ...] | None]) -> RunSpec:
    """The RunSpec a worker keeps for one packed check."""
    probe_type, check, environment, timeout, labels, options = packed
    names = records.get(probe_type)
    if names is not None and type(options) is tuple:
        options = record_class(probe_type, names)(*options)
    return RunSpec(key, probe_type, check, environment, timeout, labels, options)
