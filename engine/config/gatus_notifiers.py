"""Gatus alerting providers as notifiers of ours: slack, pagerduty, email and custom
(webhook) directly, a dozen chat services through apprise URLs, the rest as notes.

A provider's secrets go through the converter's `secret`, which writes a `${VAR}`
reference in place of a literal and remembers which variable to set.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import quote, urlsplit


class Context(Protocol):
    """What building a notifier asks of the converter."""

    def secret(self, value: Any, var: str, where: str) -> str | None: ...
    def header(self, name: str, value: Any, prefix: str, where: str) -> str: ...
    def note(self, path: tuple, text: str) -> None: ...
    def text(self, value: Any) -> str: ...


def env_name(*parts: str) -> str:
    """Return an environment variable name made of these parts (`SLACK_WEBHOOK_URL`)."""
    text = "_".join(p for p in parts if p)
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_") or "SECRET"


# keys each provider reads; any other is said to have no equivalent
_READ = {
    "slack": {"webhook-url"},
    "pagerduty": {"integration-key"},
    "email": {"from", "username", "password", "host", "port", "to", "client"},
    "custom": {"url", "method", "headers", "body", "placeholders", "client"},
    "discord": {"webhook-url"},
    "teams-workflows": {"webhook-url"},
    "googlechat": {"webhook-url"},
    "telegram": {"token", "id", "topic-id"},
    "ntfy": {"url", "topic", "token"},
    "pushover": {"application-token", "user-key"},
    "gotify": {"server-url", "token"},
    "opsgenie": {"api-key"},
    "mattermost": {"webhook-url"},
}
_APPRISE_NATIVE = {"discord", "teams-workflows", "googlechat"}  # apprise reads their https URLs


def build_notifier(kind: str, config: dict[str, Any], scope: str, ctx: Context) -> dict | None:
    """Return our notifier for a Gatus provider's (merged) settings, or None with a note."""
    path = ("notifiers",)
    where = f"alerting.{kind}" + (f" ({scope})" if scope else "")
    if kind not in _READ:
        ctx.note(
            path,
            f"{where}: no notifier of ours speaks to it; an `apprise` notifier may "
            "(https://github.com/caronc/apprise/wiki); left out",
        )
        return None
    for key in config:
        if key not in _READ[kind]:
            ctx.note(path, f"{where}.{key} has no equivalent; left out")

    def secret(key: str, *var: str) -> str | None:
        return ctx.secret(config.get(key), env_name(*var, scope), f"{where}.{key}")

    notifier: dict[str, Any] | None = None
    if kind == "slack":
        url = secret("webhook-url", "SLACK_WEBHOOK_URL")
        notifier = {"type": "slack", "webhook_url": url} if url else None
    elif kind == "pagerduty":
        key = secret("integration-key", "PAGERDUTY_INTEGRATION_KEY")
        notifier = {"type": "pagerduty", "routing_key": key} if key else None
    elif kind == "email":
        notifier = _email(config, scope, where, ctx, secret)
    elif kind == "custom":
        notifier = _custom(config, scope, where, ctx, secret)
    else:
        url = _apprise_url(kind, config, ctx, secret)
        notifier = {"type": "apprise", "urls": [url]} if url else None
    if notifier is None:
        ctx.note(path, f"{where}: not enough settings to reach it; left out")
    return notifier


def _email(config, scope, where, ctx, secret) -> dict | None:
    to = [a.strip() for a in ctx.text(config.get("to") or "").split(",") if a.strip()]
    host, port = ctx.text(config.get("host") or ""), config.get("port")
    if not to or not host:
        return None
    port = int(port) if str(port or "").isdigit() else 587
    user = ctx.text(config.get("username") or config.get("from") or "")
    password = secret("password", "EMAIL_PASSWORD")
    login = f"{quote(user, safe='${}')}:{password}@" if password else ""
    scheme = "smtps" if port == 465 else "smtp"
    notifier: dict[str, Any] = {"type": "email", "to": to}
    if config.get("from"):
        notifier["from"] = ctx.text(config["from"])
    notifier["smtp_url"] = f"{scheme}://{login}{host}:{port}"
    if isinstance(config.get("client"), dict) and config["client"].get("insecure") is True:
        notifier["verify"] = False
    if password and "${" in password and not password.startswith("${EMAIL_PASSWORD"):
        return notifier
    if password:
        ctx.note(
            ("notifiers",), f"{where}: the password sits in smtp_url; percent-encode `@ : /` in it"
        )
    return notifier


def _custom(config, scope, where, ctx, secret) -> dict | None:
    url = secret("url", "CUSTOM_WEBHOOK_URL")
    if not url:
        return None
    notifier: dict[str, Any] = {"type": "webhook", "url": url}
    method = str(config.get("method") or "GET").upper()
    if method == "PUT":
        notifier["method"] = "PUT"
    elif method != "POST":
        ctx.note(("notifiers",), f"{where}: ours sends POST (or PUT), not {method}")
    headers = config.get("headers")
    if isinstance(headers, dict) and headers:
        prefix = env_name("CUSTOM", scope)
        notifier["headers"] = {
            str(k): ctx.header(str(k), v, prefix, f"{where}.headers.{k}")
            for k, v in headers.items()
        }
    if config.get("body") or config.get("placeholders"):
        ctx.note(
            ("notifiers",),
            f"{where}: ours posts its own JSON (status, alerts with "
            "check, severity, summary...), not Gatus's body template",
        )
    return notifier


def _apprise_url(kind, config, ctx, secret) -> str | None:
    """Return an apprise URL for a chat provider, secrets as `${VAR}` references."""
    if kind in _APPRISE_NATIVE:
        return secret("webhook-url", kind, "WEBHOOK_URL")
    if kind == "telegram":
        token, chat = secret("token", "TELEGRAM_TOKEN"), ctx.text(config.get("id") or "")
        topic = ctx.text(config.get("topic-id") or "")
        return (
            f"tgram://{token}/{chat}" + (f":{topic}" if topic else "") if token and chat else None
        )
    if kind == "ntfy":
        topic = ctx.text(config.get("topic") or "")
        server = urlsplit(ctx.text(config.get("url") or "https://ntfy.sh"))
        token = secret("token", "NTFY_TOKEN")
        scheme = "ntfys" if server.scheme == "https" else "ntfy"
        login = f"{token}@" if token else ""
        return f"{scheme}://{login}{server.netloc}/{topic}" if topic and server.netloc else None
    if kind == "pushover":
        user, app = (
            secret("user-key", "PUSHOVER_USER_KEY"),
            secret("application-token", "PUSHOVER_APPLICATION_TOKEN"),
        )
        return f"pover://{user}@{app}" if user and app else None
    if kind == "gotify":
        server = urlsplit(ctx.text(config.get("server-url") or ""))
        token = secret("token", "GOTIFY_TOKEN")
        scheme = "gotifys" if server.scheme == "https" else "gotify"
        base = server.netloc + server.path.rstrip("/")
        return f"{scheme}://{base}/{token}" if server.netloc and token else None
    if kind == "opsgenie":
        key = secret("api-key", "OPSGENIE_API_KEY")
        return f"opsgenie://{key}" if key else None
    if kind == "mattermost":
        hook = urlsplit(ctx.text(config.get("webhook-url") or ""))
        match = re.fullmatch(r"(.*)/hooks/([^/]+)", hook.path)
        if not hook.netloc or not match or "${" in hook.netloc:
            return None
        key = ctx.secret(match.group(2), "MATTERMOST_WEBHOOK_KEY", "alerting.mattermost")
        scheme = "mmosts" if hook.scheme == "https" else "mmost"
        return f"{scheme}://{hook.netloc}{match.group(1)}/{key}"
    return None
