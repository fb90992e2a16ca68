"""Read monitor.yaml: YAML with a position for every value, interpolation and includes.

libyaml composes the node tree (fast, with marks); this module turns nodes into plain
dicts and lists, and records beside them (`Marks`, engine/config/marks.py) where each of their
entries was written, so that a schema error deep in the data still reports
`file:line:col`. Duplicate keys are errors; anchors, aliases and `<<` merges work;
`${VAR}`, `${VAR:-default}` and `${file:/path}` are read here, while `${env.key}` stays
as written until a check is expanded per environment.
"""

from __future__ import annotations

import errno
import fnmatch
import gc
import glob
import operator
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchkeeper.engine.config.marks import Marks, node_mark
from watchkeeper.engine.config.problems import Mark, Problem, shown
from watchkeeper.engine.config.pyyaml import yaml
from watchkeeper.engine.observe.redaction import REDACTOR, is_secret_name

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing: slower, same behaviour
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
MERGE = "tag:yaml.org,2002:merge"

# sections an included file may add to; everything else belongs to the main file
MERGED_MAPPINGS = ("checks", "notifiers", "actions", "escalation", "tasks", "slos", "environments")
MERGED_BACKUP_MAPPINGS = ("destinations", "jobs", "drills")
MERGED_LISTS = ("routes", "maintenance")

# Bounds on what a configuration can make the loader do (docs/configuration.md, "Limits").
# Aliases may add at most this many values to the data (each copy counted in full), or
# ALIAS_EXPANSION_FACTOR times the values the files write out, when that is more: what
# reads the data afterwards (validation, the secret walk, instance expansion) visits every
# copy, and a billion-laughs file of a few hundred bytes would expand to billions.
ALIAS_EXPANSION_LIMIT = 100_000
ALIAS_EXPANSION_FACTOR = 10
FILE_READ_LIMIT = 64 * 1024  # bytes one `${file:...}` may read
INCLUDE_FILE_LIMIT = 1_000  # files all `include` globs together may match
INCLUDE_FOLDER_LIMIT = 2_000  # folders they may list while matching
INCLUDE_DEPTH_LIMIT = 8  # folder levels one `**` may descend
INCLUDED_SIZE_LIMIT = 32 * 1024 * 1024  # bytes of one config file, the main one or an included one

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")

# `${VAR}` inside a flow mapping (`{url: ${URL}}`) would read as a nested mapping: its
# braces are swapped for private-use characters of the same length before parsing, so
# every line and column stays where it was, and swapped back in each scalar
OPEN, CLOSE = "\ue000", "\ue001"
_SHIELD = re.compile(r"\$\{[^{}\n]*\}")


def _shield_references(text: str) -> str:
    if "${" not in text:
        return text
    return _SHIELD.sub(lambda m: "$" + OPEN + m.group(0)[2:-1] + CLOSE, text)


def _unshield(text: str) -> str:
    return text.replace(OPEN, "{").replace(CLOSE, "}")


@dataclass
class Loaded:
    """What reading the configuration produced: the data, its files, its problems."""

    data: dict[str, Any]
    files: list[str]
    problems: list[Problem] = field(default_factory=list)
    unset: dict[tuple, str] = field(default_factory=dict)  # path -> variable never set
    secrets: set[str] = field(default_factory=set)
    env_refs: list[tuple[tuple, str]] = field(default_factory=list)  # (path, key) of ${env.key}
    marks: Marks = field(default_factory=Marks)
    written: int = 0  # values the files write out
    aliased: int = 0  # values aliases added to them

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


class _FastLoader(_Loader):  # type: ignore[misc, valid-type]
    """Compose only: every plain scalar is tagged PLAIN and typed by `_Reader`, which is
    cheaper than PyYAML's resolver walk for each of hundreds of thousands of nodes."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode:
            return PLAIN if implicit[0] else STR
        return SEQ if kind is yaml.SequenceNode else MAP

    # Path-based resolvers are not used, so their bookkeeping is skipped. The composer
    # calls both hooks for every node: C built-ins that ignore their arguments cost a
    # fraction of a Python function's call (~3% of a large validate).
    descend_resolver = staticmethod(operator.is_)  # (parent, index) -> unused bool
    ascend_resolver = staticmethod(tuple)  # () -> unused empty tuple


PLAIN = "!watchkeeper/plain"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"
_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers
# first characters with which a plain scalar may be something other than text
_TYPED_FIRST = frozenset(_IMPLICIT)
ScalarNode, SequenceNode = yaml.ScalarNode, yaml.SequenceNode


def _plain(text: str) -> Any:
    """Type a plain scalar exactly as YAML 1.1 (PyYAML's SafeLoader) would."""
    for tag, regexp in _IMPLICIT.get(text[:1], ()):
        if regexp.match(text):
            if tag == INT:
                try:
                    return int(text.replace("_", ""), 0)
                except ValueError:
                    return _Loader.construct_yaml_int(_constructor(), yaml.ScalarNode(tag, text))
            if tag == FLOAT:
                return _Loader.construct_yaml_float(_constructor(), yaml.ScalarNode(tag, text))
            if tag == BOOL:
                return text.lower() in ("true", "yes", "on")
            if tag == NULL:
                return None
            return text  # timestamps stay text; the models parse them
    return text


class _Reader:
    """Turn one file's node tree into marked plain data, collecting problems."""

    def __init__(self, file: str, base_dir: Path, env: Mapping[str, str], loaded: Loaded):
        self.file = file
        self.base_dir = base_dir
        self.env = env
        self.loaded = loaded
        self.record_source = loaded.marks.record
        self.memo: dict[int, Any] = {}
        self.shared = False  # an alias of a list or mapping was met: count what it adds
        self.files: dict[Path, tuple[str, str | None, str]] = {}  # ${file:} outcomes

    def problem(self, node: yaml.Node, path: tuple, message: str, level="error") -> None:
        self.loaded.problems.append(
            Problem.at(node_mark(self.file, node), dotted(path), message, level)
        )

    def build(self, node: yaml.Node, path: tuple) -> Any:
        if type(node) is ScalarNode:
            return self.scalar(node, path)
        memo = self.memo
        cached = memo.get(id(node))
        if cached is not None:
            # an alias of a node already built: shared, not copied, but whatever walks the
            # data later visits it once more, in full (see `_expansion`)
            self.shared = True
            return cached
        # the loops below run for every value of the file: the common case (a plain or
        # quoted scalar with no `${`) is typed inline, without a call or a path
        scalar, build, typed_first = self.scalar, self.build, _TYPED_FIRST
        if type(node) is SequenceNode:
            result: list = []
            self.record_source(result, self.file, node)
            memo[id(node)] = result
            append = result.append
            for index, item in enumerate(node.value):
                if type(item) is ScalarNode:
                    text = item.value
                    if "$" in text:  # `${` was shielded as `$` + OPEN: one scan finds both
                        append(scalar(item, (*path, index)))
                    elif item.tag is PLAIN:
                        append(_plain(text) if text[:1] in typed_first else text)
                    elif item.tag == STR:
                        append(text)
                    else:
                        append(scalar(item, (*path, index)))
                else:
                    append(build(item, (*path, index)))
            return result
        result = {}
        self.record_source(result, self.file, node)
        memo[id(node)] = result
        merges = None
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode:
                self.problem(key_node, path, "a key must be a plain value, not a list or mapping")
                continue
            key = key_node.value  # keys are names: always text, even `on` or `200`
            if (key == "<<" and key_node.tag is PLAIN) or key_node.tag == MERGE:
                merges = merges or []
                merges.append(value_node)
                continue
            shielded = OPEN in key
            if shielded:
                key = _unshield(key)
            if key in result:
                first = self.loaded.marks.of(result, key, value=False)
                self.problem(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r} (first defined at line {first.line if first else '?'})",
                )
                continue
            if shielded:
                # the node holds the key as it was shielded: say where this one was written
                self.loaded.marks.record_entry(result, key, self.file, key_node, value_node)
            if type(value_node) is ScalarNode:
                text = value_node.value
                if "$" in text:
                    result[key] = scalar(value_node, (*path, key))
                elif value_node.tag is PLAIN:
                    result[key] = _plain(text) if text[:1] in typed_first else text
                elif value_node.tag == STR:
                    result[key] = text
                else:
                    result[key] = scalar(value_node, (*path, key))
            else:
                result[key] = build(value_node, (*path, key))
        if merges:
            for merge_node in merges:
                self.merge(result, merge_node, path)
        return result

    def merge(self, target: dict, node: yaml.Node, path: tuple) -> None:
        marks = self.loaded.marks
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source_node in sources:
            source = self.build(source_node, path)
            if not isinstance(source, dict):
                self.problem(source_node, path, "`<<` merges a mapping or a list of mappings")
                continue
            for key, value in source.items():
                if key not in target:
                    target[key] = value
                    marks.adopt(target, key, source)

    def scalar(self, node: yaml.ScalarNode, path: tuple) -> Any:
        tag, text = node.tag, node.value
        if OPEN in text:
            text = _unshield(text)
        if tag == PLAIN:
            if "$" in text:
                return self.interpolate(node, text, path)
            return _plain(text)
        if tag in (STR, TIMESTAMP):
            return self.interpolate(node, text, path) if "$" in text else text
        if tag == INT:
            return _Loader.construct_yaml_int(_constructor(), node)
        if tag == FLOAT:
            return _Loader.construct_yaml_float(_constructor(), node)
        if tag == BOOL:
            return _Loader.construct_yaml_bool(_constructor(), node)
        if tag == NULL:
            return None
        self.problem(
            node,
            path,
            f"unsupported YAML tag {tag!r}; use plain strings, numbers, "
            "booleans, lists and mappings",
        )
        return text

    def interpolate(self, node: yaml.ScalarNode, text: str, path: tuple) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"  # `$${` writes a literal `${`
            inner = match.group(1).strip()
            if inner.startswith("env."):
                self.loaded.env_refs.append((path, inner[4:].strip()))
                return match.group(0)  # resolved per check instance
            if inner.startswith("file:"):
                return self.read_file(node, inner[5:].strip(), path)
            name, sep, default = inner.partition(":-")
            name = name.strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self.problem(
                    node,
                    path,
                    f"`${{{inner}}}` is not a variable reference; expected "
                    "${NAME}, ${NAME:-default}, ${env.key} or ${file:/path}",
                )
                return match.group(0)
            value = self.env.get(name)
            if value is None or (value == "" and sep):
                if sep:
                    if is_secret_name(name):
                        self.loaded.secrets.add(default)
                    return default
                self.loaded.unset[path] = name
                self.problem(node, path, f"environment variable {name} is not set", level="warning")
                return ""
            if is_secret_name(name):
                self.loaded.secrets.add(value)
            return value

        return _REFERENCE.sub(replace, text)

    def read_file(self, node: yaml.Node, name: str, path: tuple) -> str:
        file_path = Path(os.path.expanduser(name))
        if not file_path.is_absolute():
            file_path = self.base_dir / file_path
        outcome = self.files.get(file_path)
        if outcome is None:  # read once, however many aliases repeat the reference
            outcome = self.files[file_path] = _read_reference(file_path, name)
        value, level, message = outcome
        if level is not None:
            self.problem(node, path, message, level=level)
            # the value is left empty: schema errors that only follow from that are not news
            self.loaded.unset[path] = f"file:{name}"
            return ""
        self.loaded.secrets.add(value)
        return value


def _read_reference(file_path: Path, name: str) -> tuple[str, str | None, str]:
    """Read what `${file:name}` refers to: (text, None, "") or ("", level, problem).

    Only a regular file of at most FILE_READ_LIMIT bytes of UTF-8 text: it is opened
    without blocking (a FIFO with no writer would wait forever) and checked with fstat
    before a byte is read (/dev/zero never ends). A file that is missing or not readable
    by this user is a warning, as for an unset variable (CI has no secrets); anything
    that is wrong wherever it is read is an error.
    """
    ref = f"${{file:{shown(name, 80)}}}"
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(file_path, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "", "warning", f"cannot read secret file {str(file_path)!r}: {exc.strerror}"
        level = "warning" if exc.errno in (errno.EACCES, errno.EPERM) else "error"
        return "", level, f"{ref} cannot be read: {exc.strerror or exc}"
    except ValueError as exc:  # a NUL byte in the path
        return "", "error", f"{ref} cannot be read: {exc}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "", "error", f"{ref} is not a regular file"
        if info.st_size > FILE_READ_LIMIT:
            return "", "error", f"{ref} is larger than {FILE_READ_LIMIT // 1024} KiB"
        chunks: list[bytes] = []
        size = 0
        while size <= FILE_READ_LIMIT:  # the file may have grown since fstat
            chunk = os.read(fd, FILE_READ_LIMIT + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        return "", "error", f"{ref} cannot be read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > FILE_READ_LIMIT:
        return "", "error", f"{ref} is larger than {FILE_READ_LIMIT // 1024} KiB"
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), len(data), "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "", "error", f"{ref} is not UTF-8 text"
    return text.rstrip("\r\n"), None, ""


_CONSTRUCTOR: Any = None


def _constructor():
    global _CONSTRUCTOR
    if _CONSTRUCTOR is None:
        _CONSTRUCTOR = yaml.SafeLoader("")
    return _CONSTRUCTOR


def dotted(path: tuple) -> str:
    """Render a key path as `checks.api-health.thresholds[0].above`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _read_file(path: Path, display: str, env: Mapping[str, str], loaded: Loaded) -> Any:
    try:
        text = _read_config_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{display}: no such file") from None
    except OSError as exc:
        raise OSError(f"{display}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        loaded.problems.append(
            Problem(display, 1, 1, "", "error", f"the file is not UTF-8 text: {exc.reason}")
        )
        return None
    try:
        node = yaml.compose(_shield_references(text), Loader=_FastLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            context = exc.context
            start = exc.context_mark
            if start and mark and start.line != mark.line:
                # an unclosed quote or bracket is found at the end: say where it opened
                context += f" that starts at line {start.line + 1}, column {start.column + 1}"
            message = f"YAML syntax error: {exc.problem} ({context})"
        if mark and _char_at(text, mark.line, mark.column) == "\t":
            message = "YAML syntax error: a tab character; indent with spaces, not tabs"
        loaded.problems.append(
            Problem(
                display,
                mark.line + 1 if mark else 1,
                mark.column + 1 if mark else 1,
                "",
                "error",
                message,
            )
        )
        return None
    except yaml.YAMLError as exc:
        loaded.problems.append(Problem(display, 1, 1, "", "error", f"YAML error: {exc}"))
        return None
    if node is None:
        return {}
    reader = _Reader(display, path.parent, env, loaded)
    first_problem = len(loaded.problems)
    try:
        data = reader.build(node, ())
        # only with aliases of lists or mappings: files without them pay nothing
        written, aliased = _expansion(node) if reader.shared else (0, 0)
    except RecursionError:
        del loaded.problems[first_problem:]
        line, column = _deepest(text)
        loaded.problems.append(
            Problem(display, line, column, "", "error", "lists and mappings nest too deeply")
        )
        return None
    limit = max(ALIAS_EXPANSION_LIMIT, ALIAS_EXPANSION_FACTOR * (loaded.written + written))
    if aliased < 0 or loaded.aliased + aliased > limit:
        # one problem, at the alias: what else was found in this file is beside the point
        del loaded.problems[first_problem:]
        loaded.problems.append(_alias_problem(display, text, limit, loaded.aliased))
        return None
    loaded.written += written
    loaded.aliased += aliased
    return data


def _expansion(root: yaml.Node) -> tuple[int, int]:
    """Return (values written, values aliases add) for a node tree, each alias counted
    with every value it stands for (items of lists and values of mappings, nested), as
    anything walking the data visits them; (_, -1) when an alias is inside its own anchor.
    Linear in the nodes written: each node's expanded size is computed once."""
    sizes: dict[int, int] = {}
    building: set[int] = set()
    written = 0

    def size(node: yaml.Node) -> int:
        nonlocal written
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in building:
            raise _Cycle  # the value contains itself
        building.add(key)
        values = node.value
        written += len(values)
        total = len(values)
        if type(node) is SequenceNode:
            for item in values:
                if type(item) is not ScalarNode:
                    total += size(item)
        else:
            for key_node, item in values:
                if type(item) is not ScalarNode and type(key_node) is ScalarNode:
                    total += size(item)
        building.discard(key)
        sizes[key] = total
        return total

    if type(root) is ScalarNode:
        return 0, 0
    try:
        total = size(root)
    except _Cycle:
        return written, -1
    return written, total - written


class _Cycle(Exception):
    """An alias inside the value its own anchor names."""


def _read_config_file(path: Path) -> str:
    """Read the main file or an included one: a regular file (opened without blocking, so
    that a FIFO named as the config or matched by a glob cannot stall the load) of at most
    INCLUDED_SIZE_LIMIT bytes."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > INCLUDED_SIZE_LIMIT:
            raise OSError(errno.EFBIG, f"larger than {INCLUDED_SIZE_LIMIT // 2**20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(INCLUDED_SIZE_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > INCLUDED_SIZE_LIMIT:
        raise OSError(errno.EFBIG, f"larger than {INCLUDED_SIZE_LIMIT // 2**20} MiB")
    return data.decode("utf-8")


def _alias_problem(display: str, text: str, limit: int, before: int) -> Problem:
    """Find the alias to blame, reading the file again as events (only on this error path:
    composed nodes do not say where an alias was written, only where its anchor was)."""
    aliases = _alias_uses(text)
    cyclic = next((a for a in aliases if a[3]), None)
    if cyclic is not None:
        name, line, column, _, _ = cyclic
        message = f"alias '*{shown(name)}' is inside the value its anchor names"
        return Problem(display, line, column, "", "error", message + " (it would never end)")
    if not aliases:  # cannot happen: the bound was crossed by aliases
        return Problem(display, 1, 1, "", "error", f"aliases expand to more than {limit} values")
    largest = max(aliases, key=lambda a: a[4])
    name, line, column, _, size = largest
    if size <= limit:
        # many small ones add up: blame the one that crosses the bound
        total = before
        for alias in aliases:
            total += alias[4]
            if total > limit:
                name, line, column, _, size = alias
                break
        message = (
            f"aliases add more than {limit} values to the file; alias '*{shown(name)}' "
            "crosses that bound"
        )
    else:
        message = f"alias '*{shown(name)}' expands to more than {limit} values"
    return Problem(display, line, column, "", "error", message)


def _deepest(text: str) -> tuple[int, int]:
    """Return where the most deeply nested list or mapping of a file starts."""
    depth, best, where = 0, -1, (1, 1)
    try:
        for event in yaml.parse(_shield_references(text), Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > best:
                    best, where = depth, (event.start_mark.line + 1, event.start_mark.column + 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return where


def _alias_uses(text: str) -> list[tuple]:
    """Return (anchor, line, column, cyclic, size) for each alias in a file, in order; a
    size counts values as `_Reader` does (items of lists, values of mappings, expanded)."""
    sizes: dict[str, int] = {}
    stack: list[list] = []  # [is mapping, a key comes next, anchor, count at start]
    count = 0
    uses: list[tuple] = []
    try:
        for event in yaml.parse(_shield_references(text), Loader=_Loader):
            if isinstance(event, yaml.CollectionEndEvent):
                frame = stack.pop()
                if frame[2] is not None:
                    sizes[frame[2]] = count - frame[3]
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            is_key = False
            if stack and stack[-1][0]:
                is_key = stack[-1][1]
                stack[-1][1] = not is_key
            if not is_key:
                count += 1
            if isinstance(event, yaml.AliasEvent):
                line, column = event.start_mark.line + 1, event.start_mark.column + 1
                if any(frame[2] == event.anchor for frame in stack):
                    uses.append((event.anchor, line, column, True, 0))
                else:
                    size = sizes.get(event.anchor, 0)
                    count += size
                    uses.append((event.anchor, line, column, False, size))
            elif isinstance(event, yaml.CollectionStartEvent):
                stack.append([isinstance(event, yaml.MappingStartEvent), True, event.anchor, count])
            elif event.anchor is not None:
                sizes[event.anchor] = 0
    except yaml.YAMLError:
        pass  # it composed once: it parses again
    return uses


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column : column + 1] if 0 <= line < len(lines) else ""


def _display(path: Path) -> str:
    return os.path.normpath(str(path))


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Loaded:
    """Read the configuration file and its includes; raise OSError if it cannot be read.

    Problems (YAML syntax, duplicate keys, includes, unset variables) are collected on the
    result rather than raised, so `validate` can report every one of them.
    """
    env = os.environ if env is None else env
    main = Path(path)
    display = _display(main)
    loaded = Loaded(data={}, files=[display])
    # the node tree is hundreds of thousands of objects that live until the load ends;
    # collector passes over them would cost more than the load itself
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        data = _read_file(main, display, env, loaded)
        if data is None:
            return loaded
        if not isinstance(data, dict):
            loaded.problems.append(
                Problem.at(
                    _mark_any(data, display, loaded.marks),
                    "",
                    "the file must be a mapping of sections (version, checks, ...)",
                )
            )
            return loaded
        loaded.data = data
        _apply_includes(data, main.parent, env, loaded)
    finally:
        if gc_was_enabled:
            gc.enable()
    return loaded


def register_secrets(loaded: Loaded) -> None:
    """Make every secret value read from the environment or files redacted from now on."""
    for value in loaded.secrets:
        REDACTOR.add(value)


def _mark_any(data: Any, file: str, marks: Marks) -> Mark:
    return marks.of_self(data) or Mark(file, 1, 1)


def _apply_includes(data: dict, base: Path, env: Mapping[str, str], loaded: Loaded):
    patterns = data.get("include")
    if patterns is None:
        return
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        return  # the schema reports the wrong shape, pointing at the very item
    budget = _IncludeBudget()
    for index, pattern in enumerate(patterns):
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        try:
            matches = _include_glob(full, budget)
        except _IncludeBound as exc:
            loaded.problems.append(
                Problem.at(
                    loaded.marks.of(patterns, index),
                    f"include[{index}]",
                    f"{shown(pattern, 80)!r} {exc}",
                )
            )
            return  # the bounds are for all patterns together: stop here
        if not matches:
            loaded.problems.append(
                Problem.at(
                    loaded.marks.of(patterns, index),
                    f"include[{index}]",
                    f"no file matches {pattern!r}",
                )
            )
            continue
        for match in matches:
            display = _display(Path(match))
            loaded.files.append(display)
            try:
                part = _read_file(Path(match), display, env, loaded)
            except OSError as exc:
                loaded.problems.append(
                    Problem.at(loaded.marks.of(patterns, index), f"include[{index}]", str(exc))
                )
                continue
            if part is None:
                continue
            if not isinstance(part, dict):
                loaded.problems.append(
                    Problem.at(
                        _mark_any(part, display, loaded.marks),
                        "",
                        "an included file must be a mapping of sections",
                    )
                )
                continue
            _merge_part(data, part, loaded)


class _IncludeBound(Exception):
    """An include glob reached one of the bounds; the message says which."""


class _IncludeBudget:
    """What all include globs of one load may still do."""

    def __init__(self) -> None:
        self.files = 0
        self.folders = 0


def _include_glob(pattern: str, budget: _IncludeBudget) -> list[str]:
    """Match a glob as `glob.glob(recursive=True)` does, within bounds: at most
    INCLUDE_FILE_LIMIT matches and INCLUDE_FOLDER_LIMIT folders listed (for all patterns
    of a load together), `**` at most INCLUDE_DEPTH_LIMIT levels deep and never through a
    symbolic link. `/**/*.yaml` would otherwise walk the whole disk."""
    if not glob.has_magic(pattern):
        found = [pattern] if os.path.lexists(pattern) else []
    else:
        root = os.sep if pattern.startswith(os.sep) else ""
        parts = [p for p in pattern.split(os.sep) if p not in ("", ".")]
        fixed = 0
        while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
            fixed += 1
        start = os.path.join(root, *parts[:fixed]) if (root or fixed) else os.curdir
        matched: set[str] = set()
        _glob_walk(start, parts[fixed:], 0, matched, budget)
        found = sorted(matched)
        if start == os.curdir:
            found = sorted(os.path.relpath(f) for f in found)
    budget.files += len(found)
    if budget.files > INCLUDE_FILE_LIMIT:
        raise _too_many_files()
    return found


def _too_many_files() -> _IncludeBound:
    return _IncludeBound(f"matches more than {INCLUDE_FILE_LIMIT} files (the bound for includes)")


def _glob_walk(base: str, parts: list[str], depth: int, out: set[str], budget) -> None:
    if not parts:
        out.add(base)
        if budget.files + len(out) > INCLUDE_FILE_LIMIT:
            raise _too_many_files()
        return
    part, rest = parts[0], parts[1:]
    if part == "**":
        _glob_walk(base, rest, depth, out, budget)  # `**` matching no folder
        for name in _list_folder(base, part, budget, folders_only=True):
            if depth >= INCLUDE_DEPTH_LIMIT:
                raise _IncludeBound(
                    f"'**' goes more than {INCLUDE_DEPTH_LIMIT} folders deep "
                    f"(below {shown(base, 60)!r})"
                )
            _glob_walk(os.path.join(base, name), parts, depth + 1, out, budget)
    elif glob.has_magic(part):
        for name in _list_folder(base, part, budget, folders_only=bool(rest)):
            if fnmatch.fnmatch(name, part):
                _glob_walk(os.path.join(base, name), rest, depth, out, budget)
    else:
        path = os.path.join(base, part)
        if os.path.isdir(path) if rest else os.path.lexists(path):
            _glob_walk(path, rest, depth, out, budget)


def _list_folder(base: str, part: str, budget, *, folders_only: bool) -> list[str]:
    budget.folders += 1
    if budget.folders > INCLUDE_FOLDER_LIMIT:
        raise _IncludeBound(
            f"lists more than {INCLUDE_FOLDER_LIMIT} folders (the bound for includes); "
            "write a narrower pattern"
        )
    hidden = part.startswith(".")  # as glob: `*` and `**` skip names starting with `.`
    names = []
    try:
        with os.scandir(base) as entries:
            for entry in entries:
                if entry.name.startswith(".") and not hidden:
                    continue
                try:
                    if folders_only and not entry.is_dir(follow_symlinks=part != "**"):
                        continue
                except OSError:
                    continue
                names.append(entry.name)
    except (OSError, ValueError):
        return []
    return sorted(names)


def _merge_part(data: dict, part: dict, loaded: Loaded) -> None:
    marks = loaded.marks
    for section, value in part.items():
        if section in MERGED_MAPPINGS:
            _merge_mapping(data, section, value, part, (section,), loaded)
        elif section == "backups":
            if not isinstance(value, dict):
                loaded.problems.append(
                    Problem.at(
                        marks.of(part, section),
                        section,
                        "expected a mapping of destinations, jobs and drills",
                    )
                )
                continue
            target = data.get("backups")
            if target is None:
                data["backups"] = target = {}
                source = marks.source(value)
                if source is not None:
                    marks.record(target, *source)
            elif not isinstance(target, dict):
                continue  # the main file's own value is wrong; schema validation reports it
            for sub, sub_value in value.items():
                if sub not in MERGED_BACKUP_MAPPINGS:
                    loaded.problems.append(
                        Problem.at(
                            marks.of(value, sub, value=False),
                            f"backups.{sub}",
                            "an included file may only add backups.destinations, jobs and drills",
                        )
                    )
                    continue
                _merge_mapping(target, sub, sub_value, value, ("backups", sub), loaded)
        elif section in MERGED_LISTS:
            if not isinstance(value, list):
                loaded.problems.append(
                    Problem.at(marks.of(part, section), section, "expected a list")
                )
                continue
            target = data.get(section)
            if target is None:
                data[section] = value
                marks.adopt(data, section, part)
            elif isinstance(target, list):
                marks.extend(target, value)
        else:
            loaded.problems.append(
                Problem.at(
                    marks.of(part, section, value=False),
                    section,
                    "an included file may only add checks, "
                    "notifiers, actions, escalation, tasks, slos, "
                    "environments, routes, maintenance and backups; "
                    f"{section!r} belongs in the main file",
                )
            )


def _merge_mapping(
    target_parent: dict,
    section: str,
    value: Any,
    part: dict,
    path: tuple,
    loaded: Loaded,
) -> None:
    marks = loaded.marks
    if not isinstance(value, dict):
        loaded.problems.append(
            Problem.at(marks.of(part, section), dotted(path), "expected a mapping of names")
        )
        return
    target = target_parent.get(section)
    if target is None:
        target_parent[section] = value
        marks.adopt(target_parent, section, part)
        return
    if not isinstance(target, dict):
        return  # the main file's own value is wrong; schema validation reports it
    for name, item in value.items():
        if name in target:
            first = marks.of(target, name, value=False)
            where = f"{first.file}:{first.line}" if first else "the main file"
            loaded.problems.append(
                Problem.at(
                    marks.of(value, name, value=False),
                    dotted((*path, name)),
                    f"{name!r} is already defined at {where}",
                )
            )
            continue
        target[name] = item
        marks.adopt(target, name, value)
