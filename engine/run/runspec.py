"""What a probe worker is sent about a check, in the compact form it keeps.

The daemon describes each check a worker may run as a plain tuple: its probe type, name,
environment, timeout, labels and option values. Equal values (a default `expect:`, empty
header maps, the same labels) are sent as one object, so the worker holds them once, and
its per-check cost is the check's own strings plus two small slotted objects.

Options of built-in probes travel as their field values and become an `OptionsRecord`
in the worker: the same attributes, without a pydantic model per check. Their probes only
read option attributes. Inside them, a model that only holds data (an `expect:`, an
extraction) becomes a record too and a secret a `SecretValue`, so a worker of such checks
unpickles no pydantic class and never imports pydantic. A third-party probe's options
travel as its model (its `check()` may call methods the model defines).
"""

from __future__ import annotations

import functools
import operator
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


class SecretValue:
    """A secret option value in a worker: read as pydantic's SecretStr is, without pydantic."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:  # false when empty, as a SecretStr
        return len(self._value)

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"SecretValue({str(self)!r})"


_SIMPLE = frozenset({str, int, float, bool, type(None), bytes})
_FORMS = ("plain forms",)  # where `pack` keeps, in an Interner, the forms it has made


def _plain(value: Any, forms: dict[int, tuple[Any, Any]]) -> Any:
    """An option value with its data-only models as records and its secrets as
    SecretValues; each object (shared by many checks once interned) converted once."""
    if type(value) in _SIMPLE:
        return value
    known = forms.get(id(value))
    if known is not None:
        return known[1]
    form: Any = value
    kind = type(value)
    if kind is dict:
        items = {k: _plain(v, forms) for k, v in value.items()}
        form = value if all(items[k] is v for k, v in value.items()) else items
    elif kind is list or kind is tuple:
        converted = [_plain(v, forms) for v in value]
        form = value if all(map(operator.is_, converted, value)) else kind(converted)
    elif _data_only(kind) and not getattr(value, "__pydantic_extra__", None):
        names = tuple(kind.__pydantic_fields__)
        fields = tuple(_plain(getattr(value, name), forms) for name in names)
        form = _Values(kind.__name__, names, fields)
    elif _is_secret(kind):
        form = SecretValue(value.get_secret_value())
    forms[id(value)] = (value, form)  # the value kept: its id stays its own
    return form


@functools.cache
def _data_only(cls: type) -> bool:
    """Whether a class is a pydantic model holding data only: no public method or
    property of its own that a probe could call on it (those travel as models)."""
    if getattr(cls, "__pydantic_fields__", None) is None:
        return False
    for klass in cls.__mro__:
        if klass.__module__.startswith("pydantic") or klass is object:
            continue
        for name, attr in vars(klass).items():
            callable_ = callable(attr) or isinstance(
                attr, property | classmethod | staticmethod | functools.cached_property
            )
            if callable_ and not name.startswith("_"):
                return False
    return True


@functools.cache
def _is_secret(cls: type) -> bool:
    from pydantic import SecretStr  # the daemon's side: it has pydantic

    return issubclass(cls, SecretStr)


def pack(instance: Any, record: tuple[str, ...] | None, intern: Interner) -> Packed:
    """Describe an instance for a worker; `record` names the option fields sent as values
    (None: send the options model itself)."""
    options = instance.options
    if record is not None:
        forms = intern.seen.setdefault(_FORMS, {})
        values = tuple(_plain(intern(getattr(options, name)), forms) for name in record)
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
