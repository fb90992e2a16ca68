"""How the `http` probe sends a check's request: the first hop and any redirects, each
through httpx's transport or, without a proxy, `PlainHop` (http_plain_hop.py).

HttpProbe imports this when it checks, not when its module is imported: `watchkeeper
validate` imports every plugin module to learn its options and needs none of this.
"""

from __future__ import annotations

import base64
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from watchkeeper.plugins.probes.http import USER_AGENT
from watchkeeper.plugins.probes.http_plain_hop import PlainHop, h11_request

if TYPE_CHECKING:
    import ssl

    import httpx

    from watchkeeper.plugins.probes.http import HttpOptions
    from watchkeeper.plugins.probes.http_plain_hop import PlainRequest, Pool

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def send(hops: Hops, options: HttpOptions, budget: float) -> tuple[Any, int]:
    """Send the request, following redirects as browsers do; return the open response and
    the number of redirects followed."""
    import httpx

    prepared = _prepared(options)
    if prepared.plain is not None and hops.plain_ok():
        # the common case: no proxy; request bytes built once per check
        response = await PlainHop.send(prepared.plain, budget, hops.tls, hops.pool)
        if not _follow(options, response):
            return response, 0
        first_response = response
    else:
        first_response = None
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
            response = await PlainHop.send(plain, budget, hops.tls, hops.pool)
        else:
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


class Prepared:
    """What every run of one check sends first: its URL, headers and, for http and https,
    the request's bytes exactly as httpcore would write them (built once, by h11). Then
    only the bytes are kept (a daemon may hold ten thousand of these); the URL and
    headers are built again when a redirect needs them."""

    __slots__ = ("_headers", "_options", "_url", "plain")

    def __init__(self, options: HttpOptions):
        import httpx

        # held weakly: when a reload replaces the check, its options and this go together
        self._options = weakref.KeyedRef(options, _forget, id(options))
        url, headers = self._first()
        self._url: httpx.URL | None = url
        self._headers: httpx.Headers | None = headers
        self.plain: PlainRequest | None = None
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
        import httpx

        options = self.options
        url, headers = self._first()
        request = httpx.Request(
            options.method, url, headers=headers, content=options.body, json=options.json_body
        )
        return request.url.raw_path, request.headers.raw, request.content


# id(options) -> what its runs send; an entry leaves when its options are freed
PREPARED: dict[int, Prepared] = {}


def _forget(ref: weakref.KeyedRef) -> None:
    prepared = PREPARED.get(ref.key)
    if prepared is not None and prepared._options is ref:
        del PREPARED[ref.key]


def _prepared(options: HttpOptions) -> Prepared:
    prepared = PREPARED.get(id(options))
    if prepared is None or prepared.options is not options:
        prepared = PREPARED[id(options)] = Prepared(options)
    return prepared


class Hops:
    """How a check's hops are sent: httpx's transport (built on first use) or, without a
    proxy on asyncio, `PlainHop`, on connections kept in `pool` when one is given."""

    __slots__ = ("_plain", "_transport", "pool", "proxy", "tls")

    def __init__(self, tls: ssl.SSLContext, proxy: str | None, pool: Pool | None = None):
        self.tls = tls
        self.proxy = proxy
        self.pool = pool
        self._transport: Any = None
        self._plain: bool | None = None

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
