"""Carry a Gatus configuration over to monitor.yaml: endpoints become checks, conditions
expectations and thresholds, alerting providers notifiers and routes.

`convert` is a pure function from the Gatus data to ours plus notes, each note at the key
path it concerns, so the command can print them as comments where they apply. Secrets
written out in the Gatus file never reach the result: they become `${VAR}` references,
and the variables to set are listed (by name, never by value).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from watchkeeper.engine.config.gatus_notifiers import build_notifier, env_name
from watchkeeper.engine.config.loader import ALIAS_EXPANSION_LIMIT, INCLUDED_SIZE_LIMIT
from watchkeeper.engine.observe.redaction import is_secret_name

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


def convert(gatus: dict[str, Any]) -> Conversion:
    """Convert a Gatus configuration (parsed YAML) to monitor.yaml data and notes."""
    return _Converter(gatus).run()


class _Converter:
    def __init__(self, gatus: dict[str, Any]) -> None:
        self.gatus = gatus
        self.result = Conversion(data={"version": 1})
        self.checks: dict[str, dict[str, Any]] = {}
        self.taken: set[str] = set()
        self.literals: dict[str, str] = {}  # a secret written out -> its variable (never shown)
        self.alerting = gatus.get("alerting") if isinstance(gatus.get("alerting"), dict) else {}
        self.notifiers: dict[str, dict[str, Any]] = {}
        self.notifier_keys: dict[str, str] = {}
        self.built: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.uses: dict[str, list[str]] = {}  # check -> notifiers its alerts go to
        self.reminders: dict[str, float] = {}
        self.windows: list[dict[str, Any]] = []

    # - notes and secrets -

    def note(self, path: Path_, text: str) -> None:
        self.result.notes.append(Note(path, text))

    def secret(self, value: Any, var: str, where: str) -> str | None:
        """Return a value as written when it reads the environment, else a `${VAR}`
        reference in its place (the literal is kept only to reuse one variable for it)."""
        if value is None or isinstance(value, bool | dict | list):
            return None
        text = str(value)
        if not text:
            return None
        rewritten = interpolated(text)
        if "${" in rewritten.replace("$${", ""):
            return rewritten
        if text in self.literals:
            return "${" + self.literals[text] + "}"
        name, n = var, 1
        while name in self.result.variables:
            n += 1
            name = f"{var}_{n}"
        self.literals[text] = name
        self.result.variables[name] = where
        return "${" + name + "}"

    def text(self, value: Any) -> str:
        return interpolated(str(value))

    def header(self, name: str, value: Any, prefix: str, where: str) -> str:
        text = "" if value is None else str(value)
        if not _SECRET_HEADER.search(name):
            return interpolated(text)
        scheme = re.match(r"(?i)(bearer|basic|token|bot|apikey)\s+(.*)", text, re.S)
        var = env_name(prefix, name)
        if not is_secret_name(var):
            var += "_TOKEN"
        if scheme:
            return f"{scheme.group(1)} " + (self.secret(scheme.group(2), var, where) or "")
        return self.secret(text, var, where) or ""

    # - the whole file -

    def run(self) -> Conversion:
        data = self.result.data
        data["defaults"] = {"schedule": {"every": duration_text(GATUS_INTERVAL)}}
        for key in self.gatus:
            if key not in {
                "endpoints",
                "external-endpoints",
                "alerting",
                "maintenance",
                "web",
                "concurrency",
                *QUIET_KEYS,
            }:
                self.note((), f"`{key}` (Gatus) has no equivalent here; left out")
        self.server()
        for index, endpoint in enumerate(_listed(self.gatus.get("endpoints"))):
            self.endpoint(endpoint, index)
        for index, endpoint in enumerate(_listed(self.gatus.get("external-endpoints"))):
            self.external(endpoint, index)
        data["checks"] = self.checks
        if self.notifiers:
            data["notifiers"] = self.notifiers
            data["routes"] = self.routes()
        self.maintenance()
        if self.windows:
            data["maintenance"] = self.windows
        return self.result

    def server(self) -> None:
        web = self.gatus.get("web") if isinstance(self.gatus.get("web"), dict) else {}
        ui = self.gatus.get("ui") if isinstance(self.gatus.get("ui"), dict) else {}
        server: dict[str, Any] = {}
        if web.get("address") or web.get("port"):
            server["listen"] = f"{web.get('address') or '0.0.0.0'}:{web.get('port') or 8080}"
        if web.get("tls"):
            self.note(("server",), "web.tls: serve TLS with a reverse proxy in front of ours")
        if ui.get("title"):
            server["title"] = interpolated(str(ui["title"]))
        if server:
            self.result.data["server"] = server
        concurrency = self.gatus.get("concurrency")
        if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency > 0:
            self.result.data["engine"] = {"concurrency": concurrency}

    # - endpoints -

    def unique_name(self, raw: str, group: str | None) -> str:
        name = slug(raw)
        if name in self.taken and group:
            name = slug(f"{group}-{raw}")
        base, n = name, 1
        while name in self.taken:
            n += 1
            name = f"{base}-{n}"
        self.taken.add(name)
        return name

    def endpoint(self, endpoint: Any, index: int) -> None:
        if not isinstance(endpoint, dict):
            self.note((), f"endpoints[{index}] is not a mapping; left out")
            return
        raw = str(endpoint.get("name") or f"endpoint-{index + 1}")
        group = str(endpoint["group"]) if endpoint.get("group") else None
        name = self.unique_name(raw, group)
        path: Path_ = ("checks", name)
        if name != raw:
            self.note(path, f'named "{raw}" in Gatus')
        for key in endpoint:
            if key not in ENDPOINT_KEYS:
                self.note(path, f"`{key}` has no equivalent; left out")
        check = self.target(endpoint, name, path)
        if check is None:
            return
        if endpoint.get("enabled") is False:
            check["enabled"] = False
        self.common(endpoint, check, group, name)
        runs = self.alerts(endpoint, name, group, check, path)
        self.conditions(endpoint, check, path, runs)
        for window in _listed(endpoint.get("maintenance-windows")):
            self.window(window, name, path)
        self.checks[name] = check

    def common(self, endpoint: dict, check: dict, group: str | None, name: str) -> None:
        interval = go_duration(endpoint.get("interval")) if "interval" in endpoint else None
        if "interval" in endpoint and not interval:
            self.note(("checks", name), "`interval` is not a duration; the default applies")
        elif interval and interval != GATUS_INTERVAL:
            check["schedule"] = {"every": duration_text(interval)}
        client = endpoint.get("client") if isinstance(endpoint.get("client"), dict) else {}
        timeout = go_duration(client.get("timeout")) if client.get("timeout") else None
        if timeout and timeout != 10:
            check["timeout"] = duration_text(timeout)
        labels: dict[str, str] = {}
        if group:
            labels["group"] = group
        extra = endpoint.get("extra-labels")
        if isinstance(extra, dict):
            labels.update({str(k): str(v) for k, v in extra.items()})
        if labels:
            check["labels"] = labels

    def target(self, endpoint: dict, name: str, path: Path_) -> dict[str, Any] | None:
        """Return the check's probe and its options, from the URL's scheme."""
        url = interpolated(str(endpoint.get("url") or ""))
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        client = endpoint.get("client") if isinstance(endpoint.get("client"), dict) else {}
        insecure = client.get("insecure") is True
        prefix = env_name(name)
        self.client_notes(client, path, scheme)
        body = endpoint.get("body")
        body = interpolated(str(body)) if body not in (None, "") else None
        if isinstance(endpoint.get("dns"), dict):
            if not endpoint["dns"].get("query-name"):
                self.result.commented[name] = {"probe": "dns", "name": ""}
                self.note(path, "dns without query-name: set `name` and uncomment")
                return None
            return self.dns(endpoint["dns"], url, path)
        split = urlsplit(url) if scheme else None
        host, port = _host_port(split)
        if scheme in ("http", "https"):
            return self.http(endpoint, url, body, client, prefix, path)
        if scheme in ("tcp", "udp") and host and port:
            check: dict[str, Any] = {"probe": scheme, "host": host, "port": port}
            if body is not None:
                check["send"] = body
            elif scheme == "udp":
                self.result.commented[name] = check
                self.note(
                    path,
                    "Gatus sends nothing to a udp:// endpoint without a body (a UDP "
                    "'connection' always succeeds); ours sends a datagram and waits for "
                    "the reply: set `send` to something the service answers",
                )
                return None
            return check
        if scheme == "icmp" and host:
            check = {"probe": "icmp", "host": host}
            family = {"ip4": "ipv4", "ip6": "ipv6"}.get(str(client.get("network")))
            if family:
                check["family"] = family
            return check
        if scheme == "tls" and host:
            check = {"probe": "tls", "host": host, "port": port or 443}
            if insecure:
                check["require_valid"] = False
            if body is not None:
                self.note(path, "`body`: ours only inspects the certificate of a tls:// target")
            return check
        if scheme == "starttls" and host:
            check = {"probe": "smtp", "host": host, "port": port or 25, "tls": "starttls"}
            if insecure:
                check["verify"] = False
            return check
        if scheme == "ssh" and host:
            return self.ssh(endpoint, host, port, body, prefix, path)
        if scheme in ("ws", "wss"):
            check = {"probe": "websocket", "url": self.url_secrets(url, prefix)}
            headers = endpoint.get("headers")
            if isinstance(headers, dict) and headers:
                check["headers"] = {
                    str(k): self.header(str(k), v, prefix, f"endpoints[{name}].headers.{k}")
                    for k, v in headers.items()
                }
            if body is not None:
                check["send"] = body
            if insecure:
                check["verify"] = False
            return check
        if scheme in ("grpc", "grpcs") and host and port:
            check = {"probe": "grpc", "target": split.netloc if split else url}
            if scheme == "grpcs":
                check["tls"] = True
                if insecure:
                    check["verify"] = False
                tls = client.get("tls") if isinstance(client.get("tls"), dict) else {}
                if tls.get("certificate-file") and tls.get("private-key-file"):
                    check["client_cert"] = str(tls["certificate-file"])
                    check["client_key"] = str(tls["private-key-file"])
            return check
        why = f"its URL scheme `{scheme}://`" if scheme else "its URL"
        self.result.commented[name] = {"url": "(see the Gatus file)"}
        self.note(path, f"{why} has no probe here (or no host and port); write this check by hand")
        return None

    def client_notes(self, client: dict, path: Path_, scheme: str) -> None:
        for key in client:
            if key in ("insecure", "timeout", "ignore-redirect", "proxy-url"):
                continue
            if key == "tls" and scheme in ("http", "https", "grpcs", "wss"):
                continue
            if key == "network" and scheme == "icmp":
                continue
            self.note(path, f"client.{key} has no equivalent; left out")

    def url_secrets(self, url: str, prefix: str) -> str:
        """Replace a password in a URL's user part by a variable."""
        split = urlsplit(url)
        if split.password is None or "${" in split.password:
            return url
        user = split.username or ""
        secret = self.secret(split.password, env_name(prefix, "URL_PASSWORD"), "a URL's password")
        host = split.netloc.rpartition("@")[2]
        return split._replace(netloc=f"{user}:{secret}@{host}").geturl()

    def http(self, endpoint, url, body, client, prefix, path) -> dict[str, Any]:
        ui = endpoint.get("ui") if isinstance(endpoint.get("ui"), dict) else {}
        if ui.get("hide-url") is True and "${" not in url:
            # the URL holds a token: it must not be written into monitor.yaml
            url = self.secret(url, env_name(prefix, "SECRET_URL"), "an endpoint URL (hide-url)")
        else:
            url = self.url_secrets(url, prefix)
        check: dict[str, Any] = {"probe": "http", "url": url}
        method = str(endpoint.get("method") or "GET").upper()
        if method != "GET":
            if method in ("HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                check["method"] = method
            else:
                self.note(path, f"method {method} is not one ours sends; GET is used")
        headers = endpoint.get("headers") if isinstance(endpoint.get("headers"), dict) else {}
        out = {
            str(k): self.header(str(k), v, prefix, f"a request header ({k})")
            for k, v in headers.items()
        }
        if body is not None:
            body = self.placeholders(body, endpoint, path)
            if endpoint.get("graphql") is True:
                check["json_body"] = {"query": body}
            else:
                check["body"] = body
                # Gatus sends a body as JSON unless told otherwise
                if not any(k.lower() == "content-type" for k in out):
                    out["Content-Type"] = "application/json"
        if out:
            check["headers"] = out
        if client.get("ignore-redirect") is True:
            check["follow_redirects"] = False
        if client.get("insecure") is True:
            check["verify"] = False
        if client.get("proxy-url"):
            check["proxy"] = self.url_secrets(interpolated(str(client["proxy-url"])), prefix)
        tls = client.get("tls") if isinstance(client.get("tls"), dict) else {}
        if tls.get("certificate-file") and tls.get("private-key-file"):
            check["client_cert"] = str(tls["certificate-file"])
            check["client_key"] = str(tls["private-key-file"])
        return check

    def placeholders(self, body: str, endpoint: dict, path: Path_) -> str:
        for placeholder, value in (
            ("[ENDPOINT_NAME]", endpoint.get("name")),
            ("[ENDPOINT_GROUP]", endpoint.get("group")),
            ("[ENDPOINT_URL]", endpoint.get("url")),
        ):
            body = body.replace(placeholder, str(value or ""))
        if re.search(r"\[(LOCAL_ADDRESS|RANDOM_STRING_\d+|CONTEXT)\]", body):
            self.note(
                path,
                "the body's [LOCAL_ADDRESS]/[RANDOM_STRING_N] placeholders are "
                "sent as written here",
            )
        return body

    def dns(self, config: dict, url: str, path: Path_) -> dict[str, Any]:
        check: dict[str, Any] = {"probe": "dns", "name": str(config.get("query-name") or "")}
        kind = str(config.get("query-type") or "A").upper()
        if kind in RECORD_TYPES:
            if kind != "A":
                check["record_type"] = kind
        else:
            self.note(path, f"query type {kind} is not one ours asks; A is asked")
        resolver = url.partition("://")[2] if "://" in url else url
        try:
            host, _, _port = (
                resolver.rpartition(":") if resolver.count(":") == 1 else (resolver, "", "")
            )
            ipaddress.ip_address(host.strip("[]"))
            check["resolvers"] = [resolver]
        except ValueError:
            if resolver:
                self.note(path, "the resolver is not an IP address; the system's resolvers ask")
        return check

    def ssh(self, endpoint, host, port, body, prefix, path) -> dict[str, Any]:
        check: dict[str, Any] = {"probe": "ssh", "host": host}
        if port and port != 22:
            check["port"] = port
        config = endpoint.get("ssh") if isinstance(endpoint.get("ssh"), dict) else {}
        if config.get("username"):
            check["username"] = interpolated(str(config["username"]))
            password = self.secret(
                config.get("password"), env_name(prefix, "SSH_PASSWORD"), "an SSH password"
            )
            key = self.secret(
                config.get("private-key"), env_name(prefix, "SSH_PRIVATE_KEY"), "an SSH private key"
            )
            if password:
                check["password"] = password
            if key:
                check["private_key"] = key
        if body is not None:
            try:
                command = json.loads(body).get("command")
            except (ValueError, AttributeError):
                command = None
            if (
                isinstance(command, str)
                and command
                and ("password" in check or "private_key" in check)
            ):
                check["command"] = command
            else:
                self.note(path, 'the body is not {"command": ...} with a login; no command runs')
        return check

    # - conditions -

    def conditions(self, endpoint: dict, check: dict, path: Path_, runs: int) -> None:
        statuses: list[tuple[str, str]] = []
        for condition in _listed(endpoint.get("conditions")):
            parts = split_condition(str(condition))
            done = parts is not None and self.condition(check, *parts, statuses, runs)
            if not done:
                self.note(path, f"condition `{condition}` has no equivalent; left out")
        if check["probe"] == "http":
            self.status(check, statuses, path)

    def condition(self, check, left, operator, right, statuses, runs) -> bool:
        probe = check["probe"]
        if left == "[CONNECTED]":
            return operator == "==" and right == "true"  # ours: every run must connect
        if left == "[STATUS]":
            if probe == "http":
                statuses.append((operator, right))
                return True
            if probe == "ssh" and operator == "==" and re.fullmatch(r"-?\d+", right):
                if int(right):
                    check["expect_status"] = int(right)
                return "command" in check or right == "0"
            return False
        if left == "[RESPONSE_TIME]":
            metric = RESPONSE_METRIC.get(probe)
            if probe in ("tcp", "websocket"):
                metric = (
                    "round_trip_time"
                    if probe == "websocket" and "send" in check
                    else "connect_time"
                )
            seconds = int(right) / 1000 if right.isdigit() else go_duration(right)
            return metric is not None and self.threshold(check, metric, operator, seconds, runs)
        if left == "[CERTIFICATE_EXPIRATION]":
            if probe not in CERTIFICATE_PROBES or (
                probe == "http" and not check["url"].startswith("https")
            ):
                return False
            if probe == "tcp":
                return False
            seconds = int(right) / 1000 if right.isdigit() else go_duration(right)
            return self.threshold(check, "certificate_expiry", operator, seconds, runs)
        if (
            left == "[DNS_RCODE]"
            and probe == "dns"
            and operator == "=="
            and right.upper() in RCODES
        ):
            check.setdefault("expect", {})["rcode"] = right.upper()
            return True
        if left == "[BODY]" and operator == "==":
            return self.body(check, right)
        if left.startswith("[BODY].") and operator == "==":
            if probe == "grpc":
                return left == "[BODY].status" and right == "SERVING"  # ours: SERVING is good
            if probe == "http" and not right.startswith(("pat(", "any(")) and "[" not in right:
                return self.json_expect(check, left[len("[BODY].") :], right)
        return False

    def threshold(self, check, metric, operator, seconds, runs) -> bool:
        if seconds is None or operator not in ("<", "<=", ">", ">="):
            return False
        direction = "above" if operator in ("<", "<=") else "below"
        rule: dict[str, Any] = {"metric": metric, direction: duration_text(seconds)}
        rule["severity"] = "critical"  # in Gatus a failed condition is the endpoint down
        if runs > 1:
            rule["for"] = runs
        check.setdefault("thresholds", []).append(rule)
        return True

    def body(self, check: dict, right: str) -> bool:
        probe = check["probe"]
        pattern = right[4:-1] if right.startswith("pat(") and right.endswith(")") else None
        if right.startswith("any("):
            return False
        plain = contained(pattern) if pattern is not None else None
        regex = glob_regex(pattern) if pattern is not None else r"(?s)\A" + re.escape(right) + r"\Z"
        expect = (
            check.setdefault("expect", {}) if probe in ("http", "dns", "udp", "websocket") else None
        )
        if probe == "http":
            key, value = ("body_contains", plain) if plain is not None else ("body_regex", regex)
            if key in expect:
                return False
            expect[key] = value
            return True
        if probe == "dns":
            if pattern is None:
                expect.setdefault("contains", []).append(right)
            elif "regex" not in expect:
                expect["regex"] = regex
            else:
                return False
            return True
        if probe in ("udp", "websocket"):
            if expect:
                return False
            if pattern is None:
                expect["exact"] = right
            elif plain is not None:
                expect["contains"] = plain
            else:
                expect["regex"] = regex
            return True
        if probe == "tcp" and "expect_regex" not in check:
            check["expect_regex"] = re.escape(plain) if plain is not None else regex
            return True
        if probe == "ssh" and "command" in check and "expect_output" not in check:
            check["expect_output"] = {"contains": plain} if plain is not None else {"regex": regex}
            return True
        return False

    def json_expect(self, check: dict, path: str, right: str) -> bool:
        steps: list[str | int] = []
        for part in path.split("."):
            match = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
            if not match:
                return False
            if match.group(1):
                steps.append(match.group(1))
            for index in re.findall(r"\[(\d+)\]", match.group(2)):
                if index != "0":
                    return False  # ours matches lists from their start: only [0] is exact
                steps.append(0)
        if not steps or not isinstance(steps[0], str):
            return False
        expect = check.setdefault("expect", {})
        value: Any = json_value(right)
        for step in reversed(steps):
            value = [value] if step == 0 else {step: value}
        merged = _merge(expect.get("json"), value)
        if merged is None:
            return False
        expect["json"] = merged
        return True

    def status(self, check: dict, constraints: list[tuple[str, str]], path: Path_) -> None:
        if not constraints:
            self.note(path, "Gatus had no [STATUS] condition here; ours expects a 2xx or 3xx")
            return
        codes = set(range(100, 600))
        for operator, right in constraints:
            allowed = _status_codes(operator, right)
            if allowed is None:
                self.note(path, f"condition `[STATUS] {operator} {right}` has no equivalent")
                continue
            codes &= allowed
        if codes and codes != set(range(100, 200)) and not codes <= set(range(100, 200)):
            codes -= set(range(100, 200))  # never a final status
        if not codes:
            self.note(path, "no status satisfies every [STATUS] condition; left to the default")
        elif codes != set(range(200, 400)):
            listed = sorted(codes)
            check.setdefault("expect", {})["status"] = listed[0] if len(listed) == 1 else listed
        if "expect" in check and not check["expect"]:
            del check["expect"]

    # - alerts -

    def alerts(self, endpoint: dict, name: str, group: str | None, check: dict, path: Path_) -> int:
        """Turn an endpoint's alerts into routes to notifiers; return the failures in a row
        an alert needs (thresholds wait as long)."""
        failures: list[tuple[int, int]] = []
        descriptions: list[str] = []
        for alert in _listed(endpoint.get("alerts")):
            if not isinstance(alert, dict):
                continue
            kind = str(alert.get("type") or "")
            provider = self.alerting.get(kind)
            if not isinstance(provider, dict):
                self.note(
                    path,
                    f"alert `{kind}`: alerting.{kind} is not configured, so Gatus "
                    "ignored it too; left out",
                )
                continue
            default = (
                provider.get("default-alert")
                if isinstance(provider.get("default-alert"), dict)
                else {}
            )
            merged = {**default, **alert}
            if merged.get("enabled") is False:
                self.note(path, f"alert `{kind}` is disabled in Gatus; left out")
                continue
            failures.append(
                (
                    _count(merged.get("failure-threshold"), GATUS_FAILURE_THRESHOLD),
                    _count(merged.get("success-threshold"), GATUS_SUCCESS_THRESHOLD),
                )
            )
            if merged.get("description"):
                descriptions.append(interpolated(str(merged["description"])))
            override = alert.get("provider-override")
            notifier = self.notifier(
                kind, provider, group, override, name, merged.get("send-on-resolved") is True
            )
            if notifier is None:
                continue
            if notifier not in self.uses.setdefault(name, []):
                self.uses[name].append(notifier)
            reminder = go_duration(merged.get("minimum-reminder-interval"))
            if reminder:
                self.reminders[name] = min(reminder, self.reminders.get(name, reminder))
        if not failures:
            return 1
        lowest = min(failures)
        # Gatus's defaults (3 and 2) are not ours (1 and 1): always written out
        check["failure_threshold"], check["success_threshold"] = lowest
        if len({f for f, _ in failures}) > 1:
            counts = ", ".join(str(f) for f in sorted({f for f, _ in failures}))
            self.note(
                path,
                f"Gatus alerted after {counts} failures in a row; ours has one "
                "failure_threshold per check: every notifier hears at the lowest",
            )
        if descriptions:
            check["description"] = "; ".join(dict.fromkeys(descriptions))
        return lowest[0]

    def notifier(self, kind, provider, group, override, check, resolved) -> str | None:
        config = {k: v for k, v in provider.items() if k not in ("default-alert", "overrides")}
        scope = ""
        for entry in _listed(provider.get("overrides")):
            if isinstance(entry, dict) and group and entry.get("group") == group:
                config.update({k: v for k, v in entry.items() if k != "group"})
                scope = group
        if isinstance(override, dict) and override:
            config.update(override)
            scope = check
        if (kind, scope) not in self.built:
            self.built[kind, scope] = build_notifier(kind, config, scope, self)
        built = self.built[kind, scope]
        if built is None:
            return None
        notifier = dict(built)
        if not resolved:
            notifier["send_resolved"] = False  # Gatus's default; ours tells resolutions
        key = json.dumps(notifier, sort_keys=True)
        if key in self.notifier_keys:
            return self.notifier_keys[key]
        name = slug(f"{kind}-{scope}" if scope else kind)
        if name in self.notifiers:
            name += "-no-resolved" if not resolved else "-resolved"
        base, n = name, 1
        while name in self.notifiers:
            n += 1
            name = f"{base}-{n}"
        self.notifiers[name] = notifier
        self.notifier_keys[key] = name
        return name

    def routes(self) -> list[dict[str, Any]]:
        grouped: dict[tuple, list[str]] = {}
        for check, notifiers in self.uses.items():
            grouped.setdefault((tuple(notifiers), self.reminders.get(check)), []).append(check)
        routes = []
        for (notifiers, reminder), checks in grouped.items():
            # Gatus sends as soon as the threshold is reached: no gathering wait
            route: dict[str, Any] = {"match": {"check": checks}, "notify": list(notifiers)}
            route["group_wait"] = "0s"
            if reminder:
                route["repeat"] = duration_text(reminder)
            routes.append(route)
        return routes

    # - external endpoints -

    def external(self, endpoint: Any, index: int) -> None:
        if not isinstance(endpoint, dict):
            self.note((), f"external-endpoints[{index}] is not a mapping; left out")
            return
        raw = str(endpoint.get("name") or f"external-{index + 1}")
        group = str(endpoint["group"]) if endpoint.get("group") else None
        name = self.unique_name(raw, group)
        path: Path_ = ("checks", name)
        check: dict[str, Any] = {"probe": "heartbeat"}
        interval = (
            go_duration((endpoint.get("heartbeat") or {}).get("interval"))
            if isinstance(endpoint.get("heartbeat"), dict)
            else None
        )
        token = self.secret(
            endpoint.get("token"),
            env_name(name, "HEARTBEAT_TOKEN"),
            f"external-endpoints[{raw}].token",
        )
        if not interval:
            check["token"] = token
            self.result.commented[name] = check
            self.note(
                path,
                "an external endpoint without heartbeat.interval: ours needs "
                "`expect_every` (how often a beat is due); set it and uncomment",
            )
            return
        check["expect_every"] = {"every": duration_text(interval)}
        check["grace"] = "0s"  # Gatus alerts as soon as the interval passes without a push
        if token:
            check["token"] = token
        if endpoint.get("enabled") is False:
            check["enabled"] = False
        if group:
            check["labels"] = {"group": group}
        self.note(
            path,
            "jobs push to POST /api/heartbeat/" + name + "?status=ok|fail "
            "(Bearer token) instead of Gatus's /api/v1/endpoints/{key}/external",
        )
        self.alerts(endpoint, name, group, check, path)
        self.checks[name] = check

    # - maintenance -

    def maintenance(self) -> None:
        config = self.gatus.get("maintenance")
        if isinstance(config, dict) and config:
            self.window(config, None, ("maintenance",))

    def window(self, config: Any, check: str | None, path: Path_) -> None:
        if not isinstance(config, dict):
            return
        if config.get("enabled") is False:
            self.note(path, "a maintenance window disabled in Gatus; left out")
            return
        start = config.get("start")
        if isinstance(start, int) and not isinstance(start, bool):
            hour, minute = divmod(start, 60)  # YAML 1.1 reads an unquoted 23:00 as 1380
        else:
            match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(start or "").strip())
            hour, minute = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
        duration = go_duration(config.get("duration"))
        if not (0 <= hour < 24 and 0 <= minute < 60) or not duration:
            self.note(
                path, "a maintenance window without a valid start (hh:mm) and duration; left out"
            )
            return
        days = [DAYS.get(str(d).strip().lower()) for d in _listed(config.get("every"))]
        if None in days:
            self.note(path, "a maintenance window names a day that is not a weekday; left out")
            return
        cron = f"{minute} {hour} * * {','.join(dict.fromkeys(days)) if days else '*'}"  # type: ignore[arg-type]
        name = f"{check}-maintenance" if check else "maintenance"
        taken = {w["name"] for w in self.windows}
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        schedule: dict[str, Any] = {"cron": cron, "timezone": str(config.get("timezone") or "UTC")}
        window: dict[str, Any] = {
            "name": name,
            "schedule": schedule,
            "duration": duration_text(duration),
        }
        if check:
            window["checks"] = [check]
        self.windows.append(window)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: Any, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default
    )


def _host_port(split: Any) -> tuple[str | None, int | None]:
    if split is None:
        return None, None
    try:
        return split.hostname, split.port
    except ValueError:
        return split.hostname, None


def _merge(have: Any, add: Any) -> Any:
    """Merge two JSON subsets; None when they disagree on a value."""
    if have is None:
        return add
    if isinstance(have, dict) and isinstance(add, dict):
        out = dict(have)
        for key, value in add.items():
            merged = _merge(out.get(key), value) if key in out else value
            if merged is None:
                return None
            out[key] = merged
        return out
    if isinstance(have, list) and isinstance(add, list) and len(have) == len(add) == 1:
        merged = _merge(have[0], add[0])
        return None if merged is None else [merged]
    return have if have == add and type(have) is type(add) else None


def _status_codes(operator: str, right: str) -> set[int] | None:
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
