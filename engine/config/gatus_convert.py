"""The converter: a Gatus configuration walked endpoint by endpoint into ours.

What its conditions become is `gatus_conditions.py`; its alerts, external endpoints and
maintenance `gatus_alerts.py`; reading and single values `gatus.py`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from watchkeeper.engine.config.gatus import (
    _SECRET_HEADER,
    ENDPOINT_KEYS,
    GATUS_INTERVAL,
    QUIET_KEYS,
    RECORD_TYPES,
    Conversion,
    Note,
    Path_,
    duration_text,
    go_duration,
    host_port,
    interpolated,
    listed,
    slug,
)
from watchkeeper.engine.config.gatus_alerts import AlertRules
from watchkeeper.engine.config.gatus_conditions import ConditionRules
from watchkeeper.engine.config.gatus_notifiers import env_name
from watchkeeper.engine.observe.redaction import is_secret_name


def convert(gatus: dict[str, Any]) -> Conversion:
    """Convert a Gatus configuration (parsed YAML) to monitor.yaml data and notes."""
    return _Converter(gatus).run()


class _Converter(ConditionRules, AlertRules):
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
        for index, endpoint in enumerate(listed(self.gatus.get("endpoints"))):
            self.endpoint(endpoint, index)
        for index, endpoint in enumerate(listed(self.gatus.get("external-endpoints"))):
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
        for window in listed(endpoint.get("maintenance-windows")):
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
        host, port = host_port(split)
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
