"""Carry a Gatus configuration over to monitor.yaml: endpoints become checks, conditions
expectations and thresholds, alerting providers notifiers and routes.

`convert` is a pure function from the Gatus data to ours plus notes, each note at the key
path it concerns, so the command can print them as comments where they apply. Secrets
written out in the Gatus file never reach the result: they become `${VAR}` references,
and the variables to set are listed (by name, never by value).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from watchkeeper.engine.config.loader import ALIAS_EXPANSION_LIMIT, INCLUDED_SIZE_LIMIT

Path_ = tuple[str | int, ...]

GATUS_INTERVAL = 60.0  # Gatus's default `interval`
GATUS_FAILURE_THRESHOLD = 3  # Gatus's defaults for an alert
GATUS_SUCCESS_THRESHOLD = 2


class GatusInputError(Exception):
    """The Gatus file cannot be read or is not a Gatus configuration."""


@dataclass
class Note:
    """Something that did not carry over, said at the key path of ours it concerns."""

    path: Path_
    text: str


@dataclass
class Conversion:
    """Our configuration, what had no equivalent, checks kept only as comments."""

    data: dict[str, Any]
    notes: list[Note] = field(default_factory=list)
    commented: dict[str, dict[str, Any]] = field(default_factory=dict)  # check name -> check
    variables: dict[str, str] = field(default_factory=dict)  # variable to set -> where from


# --- reading -----------------------------------------------------------------------------


def read_gatus_file(path: Path) -> dict[str, Any]:
    """Read a Gatus YAML file within the loader's bounds; raise GatusInputError."""
    try:
        text = _read_bounded(path)
    except FileNotFoundError:
        raise GatusInputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise GatusInputError(f"{path}: the file is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise GatusInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_gatus(text, str(path))


def _read_bounded(path: Path) -> str:
    # opened without blocking: a FIFO given as FILE must not hang the command
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(INCLUDED_SIZE_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > INCLUDED_SIZE_LIMIT:
        raise OSError(errno.EFBIG, f"larger than {INCLUDED_SIZE_LIMIT // 2**20} MiB")
    return data.decode("utf-8")


def parse_gatus(text: str, display: str = "<gatus>") -> dict[str, Any]:
    """Parse Gatus YAML text; refuse alias bombs, cycles and roots that are not mappings."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}:{mark.column + 1}" if mark else display
        raise GatusInputError(f"{where}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise GatusInputError(f"{display}: YAML error: {exc}") from None
    if node is None:
        raise GatusInputError(f"{display}: the file is empty")
    if not isinstance(node, yaml.MappingNode):
        raise GatusInputError(f"{display}: a Gatus configuration is a mapping (endpoints, ...)")
    try:
        _check_expansion(node, display)
        data = yaml.SafeLoader("").construct_document(node)
    except RecursionError:
        raise GatusInputError(f"{display}: lists and mappings nest too deeply") from None
    except yaml.YAMLError as exc:
        raise GatusInputError(f"{display}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise GatusInputError(f"{display}: a Gatus configuration is a mapping (endpoints, ...)")
    return data


try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing: slower, same behaviour
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


def _check_expansion(root: yaml.Node, display: str) -> None:
    """Refuse aliases that would add more values than monitor.yaml's loader allows (a
    "billion laughs" file), or that sit inside their own anchor; stop counting at the bound."""
    written: set[int] = set()

    def distinct(node: yaml.Node) -> None:
        stack = [node]
        while stack:
            item = stack.pop()
            if id(item) in written:
                continue
            written.add(id(item))
            if isinstance(item, yaml.SequenceNode):
                stack.extend(item.value)
            elif isinstance(item, yaml.MappingNode):
                for key, value in item.value:
                    stack += [key, value]

    distinct(root)
    budget = len(written) + max(ALIAS_EXPANSION_LIMIT, 10 * len(written))
    seen = 0
    inside: set[int] = set()

    def walk(node: yaml.Node) -> None:
        nonlocal seen
        seen += 1
        if seen > budget:
            raise GatusInputError(
                f"{display}: aliases expand to more than {ALIAS_EXPANSION_LIMIT} values"
            )
        if isinstance(node, yaml.ScalarNode):
            return
        if id(node) in inside:
            raise GatusInputError(f"{display}: an alias is inside the value its anchor names")
        inside.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        else:
            for key, value in node.value:
                walk(key)
                walk(value)
        inside.discard(id(node))

    walk(root)


# --- small conversions -------------------------------------------------------------------

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration(value: Any) -> float | None:
    """Return the seconds of a Go duration (`1h30m`, `300ms`), or None if it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if value == 0 else None
    text = str(value).strip()
    if text in ("0", ""):
        return 0.0 if text == "0" else None
    if not re.fullmatch(r"(?:" + _GO_DURATION.pattern + r")+", text):
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION.findall(text))


def duration_text(seconds: float) -> str:
    """Write seconds in monitor.yaml's units: `1h30m`, `45s`, `250ms`."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out or "0s"


_GATUS_REF = re.compile(r"\$\$(\{)?|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolated(text: str) -> str:
    """Rewrite Gatus's environment references (`$VAR`, `${VAR}`, `$$`) as ours."""

    def swap(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return "$${" if match.group(1) else "$"  # a literal `$`
        return "${" + (match.group(2) if match.group(2) is not None else match.group(3)) + "}"

    return _GATUS_REF.sub(swap, text)


def slug(name: str) -> str:
    """Turn a Gatus endpoint or group name into one of ours (`_ . : -`, letters, digits)."""
    text = re.sub(r"[^A-Za-z0-9_.:-]+", "-", name.strip()).strip("-_.:")
    return text or "endpoint"


def glob_regex(pattern: str) -> str:
    """Translate a Gatus `pat(...)` (Go filepath.Match: `*`, `?`, `[...]`) to a regex
    matching the whole text."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out += ".*"
        elif char == "?":
            out += "."
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(char)
            else:
                inner = pattern[i + 1 : end]
                inner = "^" + inner[1:] if inner.startswith("^") else inner
                out += "[" + inner.replace("\\", "\\\\") + "]"
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return r"(?s)\A" + out + r"\Z"


def contained(pattern: str) -> str | None:
    """Return x for a pattern `*x*` with no other wildcards (a plain "contains")."""
    if len(pattern) > 2 and pattern[0] == pattern[-1] == "*":
        inner = pattern[1:-1]
        if not re.search(r"[*?\[\\]", inner):
            return inner
    return None


def json_value(text: str) -> Any:
    """Type a Gatus condition's right-hand side as the JSON value it most likely is."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    return text.strip('"')


# metric of ours that carries Gatus's [RESPONSE_TIME], per probe
RESPONSE_METRIC = {
    "http": "response_time",
    "udp": "round_trip_time",
    "icmp": "rtt_avg",
    "dns": "resolution_time",
    "tls": "handshake_time",
    "smtp": "handshake_time",
    "ssh": "connect_time",
    "grpc": "response_time",
}
CERTIFICATE_PROBES = {"http", "tcp", "tls", "smtp", "websocket"}
DAYS = {
    "monday": "MON",
    "tuesday": "TUE",
    "wednesday": "WED",
    "thursday": "THU",
    "friday": "FRI",
    "saturday": "SAT",
    "sunday": "SUN",
}
_OPERATORS = (" == ", " != ", " <= ", " >= ", " > ", " < ")  # Gatus tries them in this order
_SECRET_HEADER = re.compile(r"auth|token|key|secret|passw|cookie|session|signature", re.I)


def split_condition(condition: str) -> tuple[str, str, str] | None:
    """Split `[STATUS] == 200` into (left, operator, right) the way Gatus does."""
    for operator in _OPERATORS:
        if operator in condition:
            left, _, right = condition.partition(operator)
            return left.strip(), operator.strip(), right.strip()
    return None


RCODES = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}
RECORD_TYPES = {"A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "PTR", "CAA"}
ENDPOINT_KEYS = {
    "name",
    "group",
    "url",
    "method",
    "body",
    "headers",
    "graphql",
    "conditions",
    "interval",
    "enabled",
    "dns",
    "ssh",
    "alerts",
    "maintenance-windows",
    "client",
    "ui",
    "extra-labels",
}
# display settings of Gatus's dashboard: nothing to carry over, nothing lost for alerting
QUIET_KEYS = {"ui", "metrics"}


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def count_of(value: Any, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default
    )


def host_port(split: Any) -> tuple[str | None, int | None]:
    if split is None:
        return None, None
    try:
        return split.hostname, split.port
    except ValueError:
        return split.hostname, None


def merge_subsets(have: Any, add: Any) -> Any:
    """Merge two JSON subsets; None when they disagree on a value."""
    if have is None:
        return add
    if isinstance(have, dict) and isinstance(add, dict):
        out = dict(have)
        for key, value in add.items():
            merged = merge_subsets(out.get(key), value) if key in out else value
            if merged is None:
                return None
            out[key] = merged
        return out
    if isinstance(have, list) and isinstance(add, list) and len(have) == len(add) == 1:
        merged = merge_subsets(have[0], add[0])
        return None if merged is None else [merged]
    return have if have == add and type(have) is type(add) else None


def status_codes(operator: str, right: str) -> set[int] | None:
    """Return the statuses a [STATUS] condition accepts, None when it cannot be told."""
    universe = range(100, 600)
    if right.startswith("pat(") and right.endswith(")") and operator in ("==", "!="):
        regex = re.compile(glob_regex(right[4:-1]))
        codes = {c for c in universe if regex.match(str(c))}
    elif right.startswith("any(") and right.endswith(")") and operator in ("==", "!="):
        items = [i.strip() for i in right[4:-1].split(",")]
        if not all(i.isdigit() for i in items):
            return None
        codes = {int(i) for i in items}
    elif re.fullmatch(r"\d+", right):
        n = int(right)
        codes = {
            "==": {n},
            "!=": {n},
            "<": set(range(100, n)),
            "<=": set(range(100, n + 1)),
            ">": set(range(n + 1, 600)),
            ">=": set(range(n, 600)),
        }[operator]
    else:
        return None
    return set(universe) - codes if operator == "!=" else codes & set(universe)
