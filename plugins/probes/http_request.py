"""How the `http` probe sends a check's request: the first hop and any redirects, each
through httpx's transport or, without a proxy, `PlainHop` (http_plain_hop.py).

HttpProbe imports this when it checks, not when its module is imported: `watchkeeper
validate` imports every plugin module to learn its options and needs none of this.
"""

from __future__ import annotations

import base64
import re
import sys
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from watchkeeper.plugins.probes.http import USER_AGENT
from watchkeeper.plugins.probes.http_plain_hop import PlainHop, PlainRequest, h11_bytes, h11_request

if TYPE_CHECKING:
    import ssl

    import httpx

    from watchkeeper.plugins.probes.http import TlsContexts
    from watchkeeper.plugins.probes.http_options import HttpOptions
    from watchkeeper.plugins.probes.http_plain_hop import Pool

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def send(hops: Hops, options: HttpOptions, budget: float) -> tuple[Any, int]:
    """Send the request, following redirects as browsers do; return the open response and
    the number of redirects followed."""
    prepared = await prepare(options)
    plain = prepared.plain
    if plain is not None and hops.plain_ok():
        # the common case: no proxy; request bytes built once per check
        tls = await hops.context() if plain.https else None
        response = await PlainHop.send(plain, budget, tls, hops.pool)
        if not _follow(options, response):
            return response, 0
        first_response = response
    else:
        first_response = None
    await load_httpx()
    import httpx

    timeout = {"connect": budget, "read": budget, "write": budget, "pool": budget}
    first = url = prepared.url
    headers = prepared.headers
    method, content, json_body = options.method, options.body, options.json_body
    for hop in range(options.max_redirects + 1):
        if hop and not _same_origin(first, url):
            # credentials stay with the origin they were written for
            headers = httpx.Headers(
                [(k, v) for k, v in headers.multi_items() if k.lower() not in _ORIGIN_BOUND]
            )
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=content,
            json=json_body,
            extensions={"timeout": timeout},
        )
        if hop == 0 and first_response is not None:
            response = first_response
        elif url.scheme in _PLAIN and hops.plain_ok() and (plain := h11_request(request)):
            tls = await hops.context() if plain.https else None
            response = await PlainHop.send(plain, budget, tls, hops.pool)
        else:
            await hops.context()
            response = await hops.transport().handle_async_request(request)
            response.request = request
        if not _follow(options, response):
            return response, hop
        await response.aclose()
        if hop == options.max_redirects:
            break
        url = url.join(response.headers.get("Location"))
        status = response.status_code
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, content, json_body = "GET", None, None
    raise httpx.TooManyRedirects(f"more than {options.max_redirects} redirects", request=request)


async def load_httpx() -> None:
    """Import httpx, on a thread the first time: other checks run on while it loads."""
    if "httpx" not in sys.modules:
        import importlib

        import anyio

        await anyio.to_thread.run_sync(importlib.import_module, "httpx")


def _follow(options: HttpOptions, response: Any) -> bool:
    return bool(
        options.follow_redirects
        and response.status_code in _REDIRECTS
        and response.headers.get("Location")
    )


_PLAIN = frozenset({"http", "https"})
_ORIGIN_BOUND = frozenset({"authorization", "cookie", "host"})
_DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
}
_DEFAULT_RAW = [(k.encode("ascii"), v.encode("ascii")) for k, v in _DEFAULT_HEADERS.items()]


class Prepared:
    """What every run of one check sends first: its URL, headers and, for http and https,
    the request's bytes exactly as httpcore would write them (built once, by h11). Then
    only the bytes are kept (a daemon may hold ten thousand of these); the URL and
    headers are built again when a redirect needs them.

    A plain URL with ASCII headers is read here, as httpx would read it, without importing
    httpx; anything else goes through httpx's own models."""

    __slots__ = ("_headers", "_options", "_url", "plain")

    def __init__(self, options: HttpOptions):
        # held weakly: when a reload replaces the check, its options and this go together
        self._options = weakref.KeyedRef(options, _forget, id(options))
        self._url: httpx.URL | None = None
        self._headers: httpx.Headers | None = None
        self.plain: PlainRequest | None = None
        simple = simple_request(options)
        if simple is not None:
            method, target, headers, body, host, port, https = simple
            data = h11_bytes(method, target, headers, body)
            if data is not None:
                self.plain = PlainRequest(method, data, host, port, https, self)
                return
        import httpx

        url, headers = self._first()
        self._url, self._headers = url, headers
        if url.scheme in _PLAIN:
            try:
                request = httpx.Request(
                    options.method,
                    url,
                    headers=headers,
                    content=options.body,
                    json=options.json_body,
                )
            except Exception:
                pass  # httpx raises the same when the check runs: its path reports it
            else:
                self.plain = h11_request(request, self)
        if self.plain is not None:
            self._url = self._headers = None

    @property
    def options(self) -> HttpOptions | None:
        return self._options()

    def _first(self) -> tuple[httpx.URL, httpx.Headers]:
        import httpx

        options = self.options
        url = httpx.URL(options.url)
        headers = httpx.Headers(_DEFAULT_HEADERS)
        headers.update(options.headers)  # names are case-insensitive: the user's win
        if options.auth is not None:
            headers["Authorization"] = _basic(
                options.auth.username, options.auth.password.get_secret_value()
            )
        elif url.username or url.password:
            # credentials in the URL, as a browser or curl would send them
            headers["Authorization"] = _basic(url.username, url.password)
            url = url.copy_with(username=None, password=None)
        return url, headers

    @property
    def url(self) -> httpx.URL:
        return self._url if self._url is not None else self._first()[0]

    @property
    def headers(self) -> httpx.Headers:
        return self._headers if self._headers is not None else self._first()[1]

    def parts(self) -> tuple[bytes, list, bytes]:
        """The first request's target, raw headers and body, built again (for h11)."""
        options = self.options
        simple = simple_request(options)
        if simple is not None:
            return simple[1], simple[2], simple[3]
        import httpx

        url, headers = self._first()
        request = httpx.Request(
            options.method, url, headers=headers, content=options.body, json=options.json_body
        )
        return request.url.raw_path, request.headers.raw, request.content


# a URL httpx leaves as it is (no case, dot segment, escape or default port to normalise,
# no userinfo or fragment): scheme, host, port, path, query
_SIMPLE_URL = re.compile(
    r"(https?)://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::([1-9][0-9]{0,4}))?"
    r"((?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*)"
    r"(\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?"
)
_IPV4_LIKE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_DOT_SEGMENT = re.compile(r"/\.\.?(?=/|$)")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def simple_request(
    options: HttpOptions,
) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, str, int, bool] | None:
    """Method, target, raw headers, body, host, port and https of the first request, as
    httpx.Request would build them; None when httpx must build it (an unusual URL,
    credentials in the URL, a non-ASCII header, a body httpx encodes its own way)."""
    url = _SIMPLE_URL.fullmatch(options.url)
    if url is None:
        return None
    scheme, host, port_text, path, query = url.groups()
    if _DOT_SEGMENT.search(path) or (_IPV4_LIKE.fullmatch(host) and not _ipv4(host)):
        return None
    https = scheme == "https"
    default = 443 if https else 80
    port = int(port_text) if port_text else default
    if port > 65535:
        return None
    target = ((path or "/") + (query or "")).encode("ascii")
    netloc = host if port == default else f"{host}:{port}"
    try:
        # httpx.Headers(_DEFAULT_HEADERS), then .update(options.headers): every default
        # the user names (in any case) gives way, the user's come after, in their order
        user = [(k.encode("ascii"), v.encode("ascii")) for k, v in options.headers.items()]
    except UnicodeEncodeError:
        return None
    named = {k.lower() for k, _ in user}
    headers = [(k, v) for k, v in _DEFAULT_RAW if k.lower() not in named] + user
    if options.auth is not None:
        auth = _basic(options.auth.username, options.auth.password.get_secret_value())
        headers = _set(headers, b"Authorization", auth.encode("ascii"))
    body = b""
    content: dict[bytes, bytes] = {}
    if options.body is not None:
        try:
            body = options.body.encode("utf-8")
        except UnicodeEncodeError:
            return None
        if body:
            content = {b"Content-Length": str(len(body)).encode("ascii")}
    elif options.json_body is not None:
        import json

        try:  # as httpx's encode_json; what it refuses, httpx refuses in its own words
            text = json.dumps(
                options.json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
        except (TypeError, ValueError):
            return None
        body = text.encode("utf-8")
        content = {
            b"Content-Length": str(len(body)).encode("ascii"),
            b"Content-Type": b"application/json",
        }
    for name, value in content.items():  # headers.setdefault: the user's own win
        if not _has(headers, name):
            headers.append((name, value))
    auto = []
    if not _has(headers, b"Host"):
        auto.append((b"Host", netloc.encode("ascii")))
    method = options.method
    if method in _BODY_METHODS and not (
        _has(headers, b"Content-Length") or _has(headers, b"Transfer-Encoding")
    ):
        auto.append((b"Content-Length", b"0"))
    return method.encode("ascii"), target, auto + headers, body, host, port, https


def _ipv4(host: str) -> bool:
    from ipaddress import IPv4Address

    try:
        IPv4Address(host)
    except ValueError:
        return False
    return True


def _has(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    lower = name.lower()
    return any(k.lower() == lower for k, _ in headers)


def _set(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> list:
    """httpx.Headers.__setitem__: the first header of that name takes the value (and the
    name's spelling), later ones go; a new name goes last."""
    lower = name.lower()
    out: list[tuple[bytes, bytes]] = []
    done = False
    for k, v in headers:
        if k.lower() == lower:
            if not done:
                out.append((name, value))
                done = True
        else:
            out.append((k, v))
    if not done:
        out.append((name, value))
    return out


# id(options) -> what its runs send; an entry leaves when its options are freed
PREPARED: dict[int, Prepared] = {}


def _forget(ref: weakref.KeyedRef, entries: dict[int, Prepared] = PREPARED) -> None:
    # `entries`, not the global: options freed while the interpreter exits (objects the
    # collector was told to leave alone, `gc.freeze`) outlive this module's globals
    prepared = entries.get(ref.key)
    if prepared is not None and prepared._options is ref:
        del entries[ref.key]


async def prepare(options: HttpOptions) -> Prepared:
    """What this check's runs send first, built on its first run."""
    prepared = PREPARED.get(id(options))
    if prepared is None or prepared.options is not options:
        if simple_request(options) is None:
            await load_httpx()  # httpx builds this one
        prepared = PREPARED[id(options)] = Prepared(options)
    return prepared


class Hops:
    """How a check's hops are sent: httpx's transport (built on first use) or, without a
    proxy on asyncio, `PlainHop`, on connections kept in `pool` when one is given. `tls`
    is the check's TLS context; None stands for the default one, built (from `contexts`)
    only when a hop needs it: a worker of plain http checks never loads a CA store."""

    __slots__ = ("_contexts", "_plain", "_transport", "pool", "proxy", "tls")

    def __init__(
        self,
        tls: ssl.SSLContext | None,
        proxy: str | None,
        pool: Pool | None = None,
        contexts: TlsContexts | None = None,
    ):
        self.tls = tls
        self.proxy = proxy
        self.pool = pool
        self._contexts = contexts
        self._transport: Any = None
        self._plain: bool | None = None

    async def context(self) -> ssl.SSLContext:
        """The check's TLS context, the default one built now if it is not yet."""
        if self.tls is None:
            self.tls = await self._contexts.get()
        return self.tls

    async def ready(self, prepared: Prepared) -> None:
        """Load what the first hop needs, before its clock starts: httpx and the TLS
        context when it goes through httpx's transport, the context for https."""
        plain = prepared.plain
        if plain is None or not self.plain_ok():
            await load_httpx()
            await self.context()
        elif plain.https:
            await self.context()

    def plain_ok(self) -> bool:
        if self._plain is None:
            import sniffio

            self._plain = (
                self.proxy is None
                and PlainHop.enabled
                and sniffio.current_async_library() == "asyncio"
            )
        return self._plain

    def transport(self) -> httpx.AsyncHTTPTransport:
        """httpx's transport, built on first use (after `context()`)."""
        if self._transport is None:
            import httpx

            self._transport = httpx.AsyncHTTPTransport(
                verify=self.tls, proxy=self.proxy, limits=_limits(), retries=0
            )
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    if a.host != b.host:
        return False
    if a.scheme == b.scheme:
        return a.port == b.port
    # an upgrade from http to https on default ports keeps the origin's credentials
    upgrade = a.scheme == "http" and b.scheme == "https"
    return upgrade and a.port in (None, 80) and b.port in (None, 443)


@lru_cache(maxsize=1)
def _limits() -> httpx.Limits:
    import httpx

    # a fresh connection per check: monitoring measures a real connect, and small pools
    # keep httpcore's pool bookkeeping cheap
    return httpx.Limits(max_connections=1, max_keepalive_connections=0)
