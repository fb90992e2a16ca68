"""Deliver over HTTP for notifiers: one request, the answer classified, nothing secret said.

Every HTTP-speaking notifier (webhook, slack, pagerduty, sentry) and the `http` action
sends through `send_http`. A refusal becomes a `ReceiverError`: retryable for 408, 425,
429, 5xx and network failures, final for other 4xx (and for 3xx: a receiver URL that
redirects is a wrong URL); `Retry-After` is kept on the error for the outbox. Messages
name the notifier, never its URL: notifier URLs are secrets (tokens live in their paths).
"""

from __future__ import annotations

import email.utils
import functools
import re
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.engine.observe.redaction import MASK, REDACTOR

if TYPE_CHECKING:
    import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429})
SNIPPET = 200
"""Characters of a refusal's body quoted in the error (receivers explain themselves there)."""
USER_AGENT = "watchkeeper"


class ReceiverError(DeliveryError):
    """A refusal, with the HTTP status and the seconds the receiver asked us to wait."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after
        """Seconds from a Retry-After header (or the receiver's equivalent), else None."""


def retryable_status(status: int) -> bool:
    """Return True when a refusal with this status may succeed if tried again later."""
    return status >= 500 or status in RETRYABLE_STATUS


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def budget(timeout: float) -> float:
    """Return the seconds a library gets: a little less than the engine's timeout, so the
    library times out first and says which phase hung, before the engine cancels."""
    return max(timeout - min(0.25, timeout * 0.1), 0.001)


@functools.cache
def ssl_context(verify: bool = True) -> ssl.SSLContext:
    """Return a shared TLS context (building one costs ~60 ms; a notice should not wait)."""
    import httpx

    return httpx.create_ssl_context(verify=verify)


def secret_parts(url: str) -> list[str]:
    """Return the pieces of a URL that must not appear in a message: it whole, its path
    and query, the token-like path segments and query values, its password."""
    parts = [url]
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    tail = split.path + (f"?{split.query}" if split.query else "")
    if len(tail) > 1:
        parts += [tail, split.path]
    # a receiver may quote one segment back ("no such hook <token>")
    pieces = split.path.split("/") + [v for _, v in parse_qsl(split.query)]
    parts += [p for p in pieces if len(p) >= 16 or (len(p) >= 6 and any(c.isdigit() for c in p))]
    if split.password:
        parts += [split.password, unquote(split.password)]
    return parts


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask the given secret values and every registered one in text."""
    for value in sorted({s for s in secrets if s and len(s) > 3}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return REDACTOR.redact(text)


def snippet(text: str, secrets: Iterable[str] = (), limit: int = SNIPPET) -> str:
    """Return a receiver's answer as one short line, secrets masked."""
    line = " ".join(scrub(text, secrets).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def network_error(exc: BaseException, timeout: float, secrets: Iterable[str] = ()) -> str:
    """Say what went wrong on the way to a receiver, in words that quote no URL."""
    import httpx

    from watchkeeper.schema.units import format_duration

    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting after {format_duration(timeout)}"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {format_duration(timeout)}"
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
            return "TLS certificate not trusted (set `verify: false` only for a test receiver)"
        said = snippet(_reason(reason), secrets, limit=80)
        return "cannot connect" + (f" ({said})" if said else "")
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver closed the connection without a valid answer"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "the URL is not a valid http(s) URL"
    if isinstance(exc, httpx.ProxyError):
        return "the proxy refused the connection"
    return f"request failed ({type(exc).__name__})"


def _reason(text: str) -> str:
    # keep the OS's words ("Connection refused", "Name or service not known"), nothing
    # that could be a URL
    found = re.search(r"\]\s*([^\[\]]+?)\s*$", text)
    reason = found.group(1) if found else text
    return "" if "://" in reason or "/" in reason else reason


async def send_http(
    label: str,
    method: str,
    url: str,
    *,
    timeout: float,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    verify: bool = True,
    accept: Callable[[httpx.Response], bool] | None = None,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """Send one request; return the response when accepted, raise ReceiverError if not.

    `label` starts every message, e.g. "webhook `hook`". `accept` decides acceptance
    (default: any 2xx); `secrets` are extra values to keep out of messages besides the URL.
    """
    import httpx

    hidden = [*secret_parts(url), *secrets]
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        async with httpx.AsyncClient(
            verify=ssl_context(verify),
            timeout=httpx.Timeout(budget(timeout)),
            follow_redirects=False,
        ) as client:
            response = await client.request(method, url, content=content, headers=merged)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        # `from None`: httpx's own message may quote the URL
        message = f"{label}: {network_error(exc, timeout, hidden)}"
        raise ReceiverError(message, retryable=True) from None
    if (accept or _is_2xx)(response):
        return response
    raise refusal(label, response, hidden)


def refusal(label: str, response: httpx.Response, secrets: Iterable[str] = ()) -> ReceiverError:
    """Return the error for a receiver's refusal: status, its short reason, retry advice."""
    status = response.status_code
    message = f"{label}: HTTP {status}"
    said = _said(response, secrets)
    if 300 <= status < 400:
        message += " (a redirect: check the URL)"
    elif said:
        message += f" ({said})"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None:
        retry_after = _sentry_rate_limit(response.headers.get("X-Sentry-Rate-Limits"))
    if retry_after is not None:
        message += f"; retry after {retry_after:g}s"
    return ReceiverError(
        message,
        retryable=retryable_status(status),
        status=status,
        retry_after=retry_after,
    )


def _sentry_rate_limit(value: str | None) -> float | None:
    # "60:error;transaction:organization, 2700:default:project": the longest wait applies
    if not value:
        return None
    waits = []
    for limit in value.split(","):
        head = limit.strip().split(":", 1)[0]
        if re.fullmatch(r"\d+(\.\d+)?", head):
            waits.append(float(head))
    return max(waits) if waits else None


def _said(response: httpx.Response, secrets: Iterable[str]) -> str:
    try:
        text = response.text
    except Exception:
        return ""
    if "<html" in text[:500].lower():
        return ""  # an error page says nothing the status does not
    return snippet(text, secrets)


def _is_2xx(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def json_bytes(payload: Any) -> bytes:
    """Return compact JSON (callers mask secrets in what they put in, not in their keys)."""
    import json

    return json.dumps(payload, separators=(",", ":"), default=str, ensure_ascii=False).encode()
