"""The `http` probe: request a URL, check what comes back, extract metrics from the body."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import ssl
import tempfile
import time
from functools import lru_cache
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.probe import OpenContext, Probe, ProbeContext, Result
from watchkeeper.engine.redaction import MASK, is_secret_name
from watchkeeper.plugins.probes.extract import (
    describe_problems,
    extract_metrics,
    kind_of,
    short_json,
)
from watchkeeper.schema.base import ConfigModel, Secret
from watchkeeper.schema.checks import Extraction, ProbeOptions
from watchkeeper.schema.units import Size, format_duration

if TYPE_CHECKING:
    import httpx


class HttpExpect(ConfigModel):
    """What a good response looks like; every given key must hold."""

    status: int | list[int] | None = Field(
        None, description="Accepted status code(s); default any 2xx or 3xx."
    )
    json_: Any = Field(
        None,
        alias="json",
        description="A JSON subset the body must contain "
        "(objects match key by key, lists element by element).",
    )
    body_regex: str | None = Field(None, description="A regular expression the body must match.")
    body_contains: str | None = Field(None, description="Text the body must contain.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Response headers that "
        "must be present with these values (case-insensitive "
        "names), e.g. the security headers X-Frame-Options: DENY.",
    )

    @model_validator(mode="after")
    def _valid_regex(self) -> HttpExpect:
        if self.body_regex is not None:
            try:
                re.compile(self.body_regex)
            except re.error as exc:
                raise ValueError(f"body_regex is not a valid regular expression: {exc}") from None
        return self


class BasicAuth(ConfigModel):
    """HTTP basic authentication."""

    username: str = Field(description="User name.")
    password: Secret = Field(description="Password.")


class HttpOptions(ProbeOptions):
    """Request a URL and check status, body, headers, timing and certificate."""

    url: str = Field(description="URL to request; may use ${env.base_url}.")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="HTTP method."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    body: str | None = Field(None, description="Request body text.")
    json_body: Any = Field(None, description="Request body sent as JSON.")
    auth: BasicAuth | None = Field(None, description="HTTP basic authentication.")
    follow_redirects: bool = Field(True, description="Follow redirects.")
    max_redirects: int = Field(10, ge=0, description="Most redirects followed.")
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    ca_bundle: str | None = Field(None, description="PEM file of CA certificates to trust.")
    client_cert: str | None = Field(None, description="PEM client certificate (mutual TLS).")
    client_key: str | None = Field(None, description="PEM key of the client certificate.")
    proxy: Secret | None = Field(None, description="Proxy URL (may hold credentials).")
    max_body: Size = Field(1_048_576, description="Read at most this much of the body.")
    expect: HttpExpect = Field(
        default_factory=HttpExpect, description="What a good response looks like."
    )
    extract: dict[str, Extraction] = Field(
        default_factory=dict, description="Metrics read from the JSON body, with their unit."
    )

    @model_validator(mode="after")
    def _consistent(self) -> HttpOptions:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give either `body` or `json_body`, not both")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("`client_key` needs `client_cert`")
        return self


USER_AGENT = "watchkeeper"
_SSL_NOISE = re.compile(r"^\[SSL: [A-Z_]+\] |\s*\(_ssl\.c:\d+\)$")


class HttpProbe(Probe):
    """Metrics: response_time, status_code, body_size, certificate_expiry (https)."""

    type = "http"
    Options = HttpOptions

    def __init__(self) -> None:
        self.tls = TlsContexts(alpn=["http/1.1"])

    async def open(self, ctx: OpenContext) -> None:
        # import and load the CA store now, not inside the first checks' timeouts
        import httpx  # noqa: F401

        await self.tls.get()

    async def check(self, options: HttpOptions, ctx: ProbeContext) -> Result:
        import httpx

        shown = masked_url(options.url)
        budget = time_budget(ctx.timeout)
        try:
            tls = await self.tls.get(
                verify=options.verify,
                ca_bundle=_path(options.ca_bundle, ctx),
                client_cert=_path(options.client_cert, ctx),
                client_key=_path(options.client_key, ctx),
            )
        except (OSError, ssl.SSLError) as exc:
            return Result(ok=False, message=f"cannot load TLS files for {shown}: {exc}")
        proxy = options.proxy.get_secret_value() if options.proxy else None
        # the transport alone, not an AsyncClient: a client per check spends a third of
        # its CPU on cookie jars and auth flows a health check never needs; plain http
        # hops without a proxy skip even that (see `_PlainHop`), so the transport is only
        # built when a hop needs it
        hops = _Hops(tls, proxy or None)
        if proxy:
            try:
                hops.transport()
            except (ValueError, httpx.InvalidURL):
                return Result(ok=False, message=f"invalid proxy URL for {shown}")  # never echo it
            except ImportError:
                return Result(ok=False, message="a SOCKS proxy needs the socksio package installed")
        start = time.perf_counter()
        try:
            try:
                response, redirects = await _send(hops, options, budget)
                try:
                    body, truncated = await _read_body(response, options.max_body)
                    elapsed = time.perf_counter() - start
                    expiry = (
                        certificate_expiry(_ssl_object(response))
                        if type(response) is not _PlainResponse and response.url.scheme == "https"
                        else None
                    )
                finally:
                    await response.aclose()
            finally:
                await hops.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Result(
                ok=False,
                message=_describe_error(exc, shown, ctx.timeout, options),
                metrics={"response_time": time.perf_counter() - start},
                details={
                    "error": type(exc).__name__,
                    "url": shown,
                    **({"timeout": True} if isinstance(exc, httpx.TimeoutException) else {}),
                },
            )
        return _evaluate(options, response, redirects, body, truncated, elapsed, expiry, shown)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def _send(hops: _Hops, options: HttpOptions, budget: float) -> tuple[Any, int]:
    """Send the request, following redirects as browsers do; return the open response and
    the number of redirects followed."""
    import httpx

    prepared = _prepared(options)
    if prepared.plain is not None and hops.plain_ok():
        # the common case: a plain http URL, no proxy; request bytes built once per check
        response = await _PlainHop.send(prepared.plain, budget)
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
        elif url.scheme == "http" and hops.plain_ok() and (plain := _h11_request(request)):
            response = await _PlainHop.send(plain, budget)
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


_ORIGIN_BOUND = frozenset({"authorization", "cookie", "host"})
_DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
}


class _Prepared:
    """What every run of one check sends first: its URL, headers and, for plain http, the
    request's bytes exactly as httpcore would write them (built once, by h11). For plain
    http only the bytes are kept (a daemon may hold ten thousand of these); the URL and
    headers are built again when a redirect needs them."""

    __slots__ = ("_headers", "_url", "options", "plain")

    def __init__(self, options: HttpOptions):
        import httpx

        self.options = options  # held, so its id() is not reused while it is cached
        url, headers = self._first()
        self._url: httpx.URL | None = url
        self._headers: httpx.Headers | None = headers
        self.plain: _PlainRequest | None = None
        if url.scheme == "http":
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
                self.plain = _h11_request(request, self)
        if self.plain is not None:
            self._url = self._headers = None

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


_PREPARED: dict[int, _Prepared] = {}


def _prepared(options: HttpOptions) -> _Prepared:
    prepared = _PREPARED.get(id(options))
    if prepared is None or prepared.options is not options:
        if len(_PREPARED) >= 50_000:
            _PREPARED.clear()  # options of checks a reload replaced
        prepared = _PREPARED[id(options)] = _Prepared(options)
    return prepared


class _Hops:
    """How a check's hops are sent: httpx's transport (built on first use) or, for plain
    http without a proxy on asyncio, `_PlainHop`."""

    __slots__ = ("_plain", "_transport", "proxy", "tls")

    def __init__(self, tls: ssl.SSLContext, proxy: str | None):
        self.tls = tls
        self.proxy = proxy
        self._transport: Any = None
        self._plain: bool | None = None

    def plain_ok(self) -> bool:
        if self._plain is None:
            import sniffio

            self._plain = (
                self.proxy is None
                and _PlainHop.enabled
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


# -- plain http on an asyncio protocol ----------------------------------------------------
#
# httpx spends ~0.7 ms of CPU on a one-shot plain http request (request and response
# models, pool bookkeeping, anyio stream wrappers, h11 events) where the socket work takes
# ~0.15 ms. A plain http hop without a proxy therefore goes out as bytes h11 serialised
# once per check, and its response is parsed here for the common well-formed case; on
# anything else (1xx, obs-fold, trailers, chunk extensions, a short body, odd bytes) every
# byte received so far is handed to h11, exactly as httpcore would have fed it, so h11's
# verdict and its error stand. Failures are raised as the httpx exceptions httpx raises
# for them, with the same text, so messages and details do not depend on the path.

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([2-9][0-9][0-9])(?: [\t\x20-\x7e]*)?")
_FIELD = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?[ \t]*"
)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})\r\n")
_BARE_LF_END = re.compile(rb"\n\r?\n")
_MAX_HEAD = 100 * 1024  # httpcore's h11 max_incomplete_event_size
_PAUSE_AT = 256 * 1024


class _PlainRequest:
    """A plain http request ready to go: its bytes, where to and how to rebuild its parts
    for h11 when a response needs h11's judgement."""

    __slots__ = ("_parts", "_source", "data", "host", "method", "no_body", "port")

    def __init__(self, method: bytes, data: bytes, url: httpx.URL, source: Any):
        self.method = method
        self.data = data
        self.host = url.raw_host.decode("ascii")
        self.port = url.port or 80
        self.no_body = method == b"HEAD"
        self._source = source  # a _Prepared, or (url, target, headers, body) of a redirect
        self._parts: tuple | None = None

    def parts(self) -> tuple[bytes, list, bytes]:
        if self._parts is None:
            source = self._source
            self._parts = source[1:] if isinstance(source, tuple) else source.parts()
        return self._parts

    def url(self) -> httpx.URL:
        source = self._source
        return source[0] if isinstance(source, tuple) else source.url


def _h11_request(request: httpx.Request, prepared: _Prepared | None = None) -> _PlainRequest | None:
    """Serialise a request as httpcore does (h11, headers then body then end); None when
    h11 refuses it, so the httpx path reports that exactly as before."""
    import h11

    method = request.method.encode("ascii")
    target = request.url.raw_path
    headers = request.headers.raw
    body = request.content
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        return None
    source = prepared if prepared is not None else (request.url, target, headers, body)
    return _PlainRequest(method, data, request.url, source)


class _Protocol(asyncio.Protocol):
    """Collects what the server sends (everything, from the first byte: h11 may need to
    read it all again); one waiter at a time."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = bytearray()
        self.pos = 0  # how far the reader has got
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: Any = None
        self.paused = False
        self.write_paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) - self.pos > _PAUSE_AT and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        self.eof = True
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Wait for more data, the end of the stream or drained writes; TimeoutError after
        `timeout` (httpcore's timeouts are per read and per write, like this one)."""
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None


def _expire(waiter: Any) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _PlainHop:
    """One plain http request on a fresh connection; the response streams its body."""

    enabled = True

    @staticmethod
    async def send(request: _PlainRequest, budget: float) -> _PlainResponse:
        import httpx

        protocol = await _connect(request.host, request.port, budget)
        response = _PlainResponse(protocol, request, budget)
        try:
            protocol.transport.write(request.data)
            while protocol.write_paused and not protocol.eof:
                try:
                    await protocol.wait(budget)
                except TimeoutError:
                    raise httpx.WriteTimeout("") from None
            # a server that closed early may still have answered: read, as httpcore does
            await response.read_head()
        except BaseException:
            protocol.transport.abort()
            raise
        return response


async def _connect(host: str, port: int, budget: float) -> _Protocol:
    """Connect as anyio's connect_tcp does for httpcore (the same resolution, the same
    happy-eyeballs order and delay, the same errors); return the connected protocol."""
    import anyio
    import httpx

    try:
        address = ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        # an address: one attempt, timed by the loop (no cancel scope needed)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        try:
            return await _connect_address(family, host, port, budget)
        except TimeoutError:
            raise httpx.ConnectTimeout("") from None
        except OSError as exc:
            raise httpx.ConnectError("All connection attempts failed") from _chained(exc)
    loop = asyncio.get_running_loop()
    try:
        with anyio.fail_after(budget):
            targets = await _resolve(host, port)
            if len(targets) == 1:
                try:
                    _, protocol = await loop.create_connection(_Protocol, targets[0], port)
                except OSError as exc:
                    raise httpx.ConnectError("All connection attempts failed") from _chained(exc)
                return protocol
            return await _happy_eyeballs(loop, targets, port)
    except TimeoutError:
        raise httpx.ConnectTimeout("") from None


async def _connect_address(family: int, host: str, port: int, budget: float) -> _Protocol:
    """Connect a non-blocking socket as asyncio's sock_connect does, with a timer for
    the timeout; wrap it in a transport."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        address = (host, port)
        try:
            sock.connect(address)
            pending = False
        except (BlockingIOError, InterruptedError):
            pending = True
        if pending:  # outside the except: the error below must not chain to it
            fd = sock.fileno()
            done = loop.create_future()
            loop.add_writer(fd, _connected, done)
            timer = loop.call_later(budget, _expire, done)
            try:
                await done
            finally:
                timer.cancel()
                loop.remove_writer(fd)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error != 0:
                raise OSError(error, f"Connect call failed {address}")
        _, protocol = await loop.create_connection(_Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return protocol


def _connected(done: Any) -> None:
    if not done.done():
        done.set_result(None)


def _chained(cause: BaseException) -> OSError:
    # anyio's own: OSError("All connection attempts failed") from the attempts' errors
    error = OSError("All connection attempts failed")
    error.__cause__ = cause
    return error


async def _resolve(host: str, port: int) -> list[str]:
    import anyio
    import httpx

    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    # anyio's order: the first IPv6 address, then the first IPv4 one, then the rest
    v6_found = v4_found = False
    targets: list[str] = []
    for family, *_, address in infos:
        if family == socket.AF_INET6 and not v6_found:
            v6_found = True
            targets.insert(0, address[0])
        elif family == socket.AF_INET and not v4_found and v6_found:
            v4_found = True
            targets.insert(1, address[0])
        else:
            targets.append(address[0])
    return targets


async def _happy_eyeballs(loop: Any, targets: list[str], port: int) -> _Protocol:
    import anyio
    import httpx

    connected: _Protocol | None = None
    errors: list[OSError] = []

    async def attempt(target: str, event: anyio.Event) -> None:
        nonlocal connected
        try:
            _, protocol = await loop.create_connection(_Protocol, target, port)
        except OSError as exc:
            errors.append(exc)
            return
        else:
            if connected is None:
                connected = protocol
                tg.cancel_scope.cancel()
            else:
                protocol.transport.abort()
        finally:
            event.set()

    try:
        async with anyio.create_task_group() as tg:
            for target in targets:
                event = anyio.Event()
                tg.start_soon(attempt, target, event)
                with anyio.move_on_after(0.25):
                    await event.wait()
    except BaseException:
        if connected is not None:
            connected.transport.abort()
        raise
    if connected is None:
        cause: BaseException = (
            errors[0]
            if len(errors) == 1
            else ExceptionGroup("multiple connection attempts failed", errors)
        )
        raise httpx.ConnectError("All connection attempts failed") from _chained(cause)
    return connected


class _PlainResponse:
    """The parts of an httpx.Response the probe reads, over `_Protocol`."""

    def __init__(self, protocol: _Protocol, request: _PlainRequest, budget: float):
        self.protocol = protocol
        self.request_data = request
        self._url: httpx.URL | None = None
        self.budget = budget
        self.status_code = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.extensions: dict[str, Any] = {}
        self._headers: httpx.Headers | None = None
        self._encoding: str | None = None
        # body framing: "length" (self._remaining bytes), "chunked", "close", or "h11"
        self._framing = "length"
        self._remaining = 0
        self._delivered = 0  # raw body bytes handed out so far
        self._h11: Any = None
        self._fed = 0  # buffer bytes h11 has seen
        self._skip = 0  # body bytes h11 will repeat that were already handed out
        self._chunk_left = -1  # bytes of the current chunk still to come; -1: a size line
        self._decoder: bool | None = None  # True when a Content-Encoding header came

    # -- what _evaluate reads ----------------------------------------------------------------

    @property
    def url(self) -> httpx.URL:
        if self._url is None:
            self._url = self.request_data.url()
        return self._url

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            import httpx

            self._headers = httpx.Headers(self.raw_headers)
        return self._headers

    @property
    def encoding(self) -> str | None:
        if self._encoding is None:
            import httpx

            # httpx's own rules (charset parameter, known codecs, utf-8 by default)
            self._encoding = httpx.Response(self.status_code, headers=self.raw_headers).encoding
        return self._encoding

    async def aclose(self) -> None:
        transport = self.protocol.transport
        if not transport.is_closing():
            transport.close()

    # -- reading -----------------------------------------------------------------------------

    async def _more(self) -> None:
        import httpx

        if self.protocol.eof:
            return
        try:
            await self.protocol.wait(self.budget)
        except TimeoutError:
            raise httpx.ReadTimeout("") from None

    def _read_error(self) -> BaseException:
        import httpx

        error = httpx.ReadError("")
        error.__cause__ = self.protocol.error
        return error

    async def read_head(self) -> None:
        protocol = self.protocol
        while True:
            buffer = protocol.buffer
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                if self._parse_head(bytes(buffer[:end])):
                    protocol.pos = end + 4
                    return
                break  # something h11 must judge
            if _BARE_LF_END.search(buffer) or len(buffer) > _MAX_HEAD:
                break
            if protocol.eof:
                if protocol.error is not None and not buffer:
                    raise self._read_error()
                break  # h11 says what a cut-off or missing response is
            await self._more()
        await self._take_over()

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        status = _STATUS_LINE.fullmatch(lines[0])
        if status is None:
            return False
        headers = []
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            field = _FIELD.fullmatch(line)
            if field is None:
                return False
            name, value = field.group(1), field.group(2) or b""
            lower = name.lower()
            if lower == b"content-length":
                if length is not None or not value.isdigit() or len(value) > 18:
                    return False
                length = int(value)
            elif lower == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    return False
                chunked = True
            elif lower == b"content-encoding":
                self._decoder = True
            headers.append((name, value))
        if chunked and length is not None:
            return False
        code = int(status.group(1))
        self.status_code = code
        self.raw_headers = headers
        if code in (204, 304) or self.request_data.no_body:
            self._framing, self._remaining = "length", 0
        elif chunked:
            self._framing = "chunked"
        elif length is not None:
            self._framing, self._remaining = "length", length
        else:
            self._framing = "close"
        return True

    async def _take_over(self) -> None:
        """Give everything received so far to h11 and let it judge the response."""
        import h11

        request = self.request_data
        target, headers, body = request.parts()
        conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        conn.send(h11.Request(method=request.method, target=target, headers=headers))
        conn.send(h11.Data(data=body))
        conn.send(h11.EndOfMessage())
        self._h11 = conn
        self._skip = self._delivered
        self._fed = 0
        self._framing = "h11"
        head_known = bool(self.status_code)
        while True:
            event = await self._h11_event()
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                break
        if not head_known:
            self.status_code = event.status_code
            self.raw_headers = list(event.headers.raw_items())

    async def _h11_event(self) -> Any:
        import h11
        import httpx

        conn = self._h11
        protocol = self.protocol
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is not h11.NEED_DATA:
                return event
            if len(protocol.buffer) == self._fed and not protocol.eof:
                await self._more()
            if len(protocol.buffer) > self._fed:
                data = bytes(protocol.buffer[self._fed :])
                self._fed = protocol.pos = len(protocol.buffer)
            elif protocol.error is not None:
                raise self._read_error()
            else:
                data = b""
                if conn.their_state == h11.SEND_RESPONSE:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response."
                    )
            conn.receive_data(data)

    async def aiter_raw(self) -> Any:
        protocol = self.protocol
        buffer = protocol.buffer
        while True:
            framing = self._framing
            if framing == "length":
                if self._remaining == 0:
                    return
                available = len(buffer) - protocol.pos
                if available:
                    take = min(available, self._remaining)
                    piece = bytes(buffer[protocol.pos : protocol.pos + take])
                    protocol.pos += take
                    self._remaining -= take
                    self._delivered += take
                    yield piece
                elif protocol.eof:
                    if protocol.error is not None:
                        raise self._read_error()
                    await self._take_over()  # a short body: h11 words the error
                else:
                    await self._more()
            elif framing == "close":
                if len(buffer) > protocol.pos:
                    piece = bytes(buffer[protocol.pos :])
                    protocol.pos = len(buffer)
                    self._delivered += len(piece)
                    yield piece
                elif protocol.eof:
                    if protocol.error is not None:
                        raise self._read_error()
                    return
                else:
                    await self._more()
            elif framing == "chunked":
                step = self._chunked_step()
                if step is None:
                    if protocol.eof:
                        if protocol.error is not None:
                            raise self._read_error()
                        await self._take_over()
                    else:
                        await self._more()
                elif step is False:
                    await self._take_over()
                elif step == b"":
                    return
                else:
                    yield step
            else:  # h11 judges the rest
                import h11

                event = await self._h11_event()
                if isinstance(event, h11.Data):
                    data = bytes(event.data)
                    if self._skip:
                        cut = min(self._skip, len(data))
                        self._skip -= cut
                        data = data[cut:]
                    if data:
                        yield data
                elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                    return

    def _chunked_step(self) -> bytes | bool | None:
        """Take what the buffer holds of a chunked body: data, b"" at the end, None when
        more must arrive, False for anything h11 must judge (extensions, trailers)."""
        protocol = self.protocol
        buffer = protocol.buffer
        while True:
            pos = protocol.pos
            if self._chunk_left < 0:
                size = _CHUNK_SIZE.match(buffer, pos)
                if size is None:
                    tail = buffer[pos : pos + 24]
                    return False if len(tail) >= 24 or b"\n" in tail else None
                count = int(size.group(1), 16)
                if count == 0:
                    if len(buffer) < size.end() + 2:
                        return None
                    if buffer[size.end() : size.end() + 2] != b"\r\n":
                        return False  # trailers
                    protocol.pos = size.end() + 2
                    return b""
                protocol.pos = size.end()
                self._chunk_left = count
                continue
            if self._chunk_left > 0:
                available = len(buffer) - pos
                if not available:
                    return None
                take = min(available, self._chunk_left)
                piece = bytes(buffer[pos : pos + take])
                protocol.pos += take
                self._chunk_left -= take
                self._delivered += take
                return piece
            if len(buffer) - pos < 2:
                return None
            if buffer[pos : pos + 2] != b"\r\n":
                return False
            protocol.pos += 2
            self._chunk_left = -1

    def buffered_body(self) -> bytes | None:
        """The whole body when it is already here and needs no decoding (the usual case:
        a small response in one read), else None."""
        if self._framing != "length" or self._decoder is not None:
            return None
        protocol = self.protocol
        end = protocol.pos + self._remaining
        if len(protocol.buffer) < end:
            return None
        body = bytes(protocol.buffer[protocol.pos : end])
        protocol.pos = end
        self._delivered += self._remaining
        self._remaining = 0
        return body

    async def aiter_bytes(self) -> Any:
        decoder = _decoder(self.raw_headers)
        async for raw in self.aiter_raw():
            if decoder is None:
                yield raw
                continue
            decoded = decoder.decode(raw)
            if decoded:
                yield decoded
        if decoder is not None:
            rest = decoder.flush()
            if rest:
                yield rest


def _decoder(raw_headers: list[tuple[bytes, bytes]]) -> Any:
    """httpx's content decoder for these headers; None when there is nothing to decode."""
    if not any(name.lower() == b"content-encoding" for name, _ in raw_headers):
        return None
    import httpx

    response = httpx.Response(200, headers=raw_headers)
    return response._get_content_decoder()


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


def _evaluate(
    options: HttpOptions,
    response: httpx.Response,
    redirects: int,
    body: bytes,
    truncated: bool,
    elapsed: float,
    expiry: float | None,
    shown: str,
) -> Result:
    code = response.status_code
    metrics = {"response_time": elapsed, "status_code": float(code), "body_size": float(len(body))}
    if expiry is not None:
        metrics["certificate_expiry"] = expiry
    details: dict[str, Any] = {"url": shown, "status_code": code}
    if redirects:
        details["redirects"] = redirects
        details["final_url"] = masked_url(str(response.url))
    if truncated:
        details["truncated_at"] = options.max_body

    expect = options.expect
    document: Any = None
    json_error: str | None = None
    if expect.json_ is not None or any(e.path is not None for e in options.extract.values()):
        try:
            document = json.loads(body)
        except ValueError as exc:
            json_error = f"body is not JSON ({exc})" + (
                f" after reading the first {options.max_body} bytes" if truncated else ""
            )

    failures: list[str] = []
    status_ok, wanted = _status_ok(code, expect.status)
    if not status_ok:
        message = f"HTTP {code} from {shown} (expected {wanted})"
        snippet = _snippet(response, body)
        if snippet:
            message += f": {snippet}"
        failures.append(message)
    else:
        failures.extend(_header_failures(response, expect.headers))
        if expect.json_ is not None:
            if json_error:
                failures.append(json_error)
            elif (mismatch := json_mismatch(expect.json_, document)) is not None:
                failures.append(f"JSON {mismatch}")
        if expect.body_regex is not None or expect.body_contains is not None:
            text = body.decode(response.encoding or "utf-8", errors="replace")
            if expect.body_regex is not None and not re.search(expect.body_regex, text):
                failures.append(f"body does not match /{expect.body_regex}/")
            if expect.body_contains is not None and expect.body_contains not in text:
                failures.append(f"body does not contain {expect.body_contains!r}")

    problems: dict[str, str] = {}
    if options.extract:
        text = None
        if any(e.regex is not None for e in options.extract.values()):
            text = body.decode(response.encoding or "utf-8", errors="replace")
        extracted, problems = extract_metrics(options.extract, text=text, document=document)
        if json_error:
            problems = {
                name: json_error if options.extract[name].path is not None else reason
                for name, reason in problems.items()
            }
        metrics.update(extracted)
        if problems:
            details["extract_errors"] = problems

    if failures:
        head = failures[0] if not status_ok else f"HTTP {code} from {shown}: {failures[0]}"
        message = "; ".join([head, *failures[1:]])
        return Result(ok=False, message=message, metrics=metrics, details=details)
    message = f"HTTP {code} from {shown} in {took(elapsed)}"
    if problems:
        message += "; " + describe_problems(problems)
    return Result(ok=True, message=message, metrics=metrics, details=details)


def _status_ok(code: int, expected: int | list[int] | None) -> tuple[bool, str]:
    if expected is None:
        return 200 <= code < 400, "2xx or 3xx"
    if isinstance(expected, int):
        return code == expected, str(expected)
    return code in expected, "one of " + ", ".join(str(c) for c in expected)


def _header_failures(response: httpx.Response, expected: dict[str, str]) -> list[str]:
    failures = []
    for name, value in expected.items():
        actual = response.headers.get(name)
        if actual is None:
            failures.append(f"header {name} is missing (expected {value!r})")
        elif actual != value:
            failures.append(f"header {name} is {actual!r} (expected {value!r})")
    return failures


def json_mismatch(expected: Any, actual: Any, where: str = "$") -> str | None:
    """Return where `actual` fails to contain `expected`, or None when it does.

    Objects match key by key (extra keys are fine), recursively; a list matches when each
    expected element matches the element at the same index (extra elements are fine);
    scalars match by value and JSON type, so `1` matches `1.0` but not `true`.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where} is {kind_of(actual)}, expected an object"
        for key, value in expected.items():
            path = f"{where}.{key}"
            if key not in actual:
                return f"{path} is missing"
            if (mismatch := json_mismatch(value, actual[key], path)) is not None:
                return mismatch
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{where} is {kind_of(actual)}, expected a list"
        if len(actual) < len(expected):
            return f"{where} has {len(actual)} items, expected at least {len(expected)}"
        for index, value in enumerate(expected):
            if (mismatch := json_mismatch(value, actual[index], f"{where}[{index}]")) is not None:
                return mismatch
        return None
    if _same_scalar(expected, actual):
        return None
    return f"{where} is {short_json(actual)}, expected {short_json(expected)}"


def _same_scalar(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


async def _read_body(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    if type(response) is _PlainResponse:
        whole = response.buffered_body()
        if whole is not None:
            return (whole[:limit], True) if len(whole) > limit else (whole, False)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _snippet(response: httpx.Response, body: bytes, limit: int = 200) -> str:
    """A short, one-line excerpt of a failing response body, when it is text or JSON."""
    content_type = response.headers.get("content-type", "")
    if not body or not ("json" in content_type or content_type.startswith("text/plain")):
        return ""
    text = " ".join(body[: limit * 4].decode("utf-8", errors="replace").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_error(exc: Exception, shown: str, timeout: float, options: HttpOptions) -> str:
    import httpx

    after = format_duration(timeout)
    via = " through the proxy" if options.proxy else ""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out after {after} connecting to {shown}{via}"
    if isinstance(exc, httpx.ReadTimeout):
        return f"timed out after {after} waiting for the response from {shown}"
    if isinstance(exc, httpx.WriteTimeout):
        return f"timed out after {after} sending the request to {shown}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {after} on {shown}"
    if isinstance(exc, httpx.TooManyRedirects):
        return f"more than {options.max_redirects} redirects from {shown}"
    if isinstance(exc, httpx.ProxyError):
        return f"proxy error for {shown}: {_reason(exc)}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"invalid URL {shown}: {_reason(exc)}"
    if isinstance(exc, httpx.ConnectError):
        reason = _reason(exc)
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in reason:
            return f"TLS certificate of {shown} is not trusted: {reason}"
        if isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc):
            return f"TLS handshake with {shown} failed: {reason}"
        return f"cannot connect to {shown}{via}: {network_reason(exc) or reason}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"bad response from {shown}: {_reason(exc)}"
    return f"request to {shown} failed: {_reason(exc)}"


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    text = _SSL_NOISE.sub("", text)
    if text.startswith("certificate verify failed: "):
        text = text.removeprefix("certificate verify failed: ")
    return text


def network_reason(exc: BaseException) -> str | None:
    """Return the plainest cause of a network error (`connection refused`), if one is known."""
    seen: set[int] = set()
    current: BaseException | None = exc
    reason = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            current = current.exceptions[0]
            continue
        if isinstance(current, OSError) and current.strerror:
            # asyncio words ECONNREFUSED as "Connect call failed (addr)"; the errno says it
            plain = isinstance(current.errno, int) and current.errno > 0
            reason = os.strerror(current.errno) if plain else current.strerror
        current = current.__cause__ or current.__context__
    return reason[:1].lower() + reason[1:] if reason else None


@lru_cache(maxsize=1)
def _limits() -> httpx.Limits:
    import httpx

    # a fresh connection per check: monitoring measures a real connect, and small pools
    # keep httpcore's pool bookkeeping cheap
    return httpx.Limits(max_connections=1, max_keepalive_connections=0)


def _ssl_object(response: httpx.Response) -> ssl.SSLObject | None:
    stream = response.extensions.get("network_stream")
    return stream.get_extra_info("ssl_object") if stream is not None else None


def _path(value: str | None, ctx: ProbeContext) -> Path | None:
    return None if value is None else ctx.base_dir / Path(value).expanduser()


def took(seconds: float) -> str:
    """Render a measured time for a message, precise where it matters: 0.4ms, 182ms, 1.52s."""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return format_duration(seconds)


def time_budget(timeout: float) -> float:
    """Return the seconds a probe gives its library: a little less than the check's timeout.

    The library then times out first and says which phase hung (connect, read), before
    the engine cancels the whole run with a plainer message.
    """
    return max(timeout - min(0.25, timeout * 0.1), 0.001)


@lru_cache(maxsize=4096)
def masked_url(url: str) -> str:
    """Return a URL fit for messages: password and secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class TlsContexts:
    """One ssl.SSLContext per (verify, CA bundle, client certificate), built on first use.

    Building a context (loading the system's CA store) takes milliseconds, so every check
    with the same TLS settings shares one. A file that changes on disk (a rotated CA bundle
    or client certificate) gets a fresh context at the next check.
    """

    def __init__(self, alpn: list[str] | None = None) -> None:
        self.alpn = alpn
        self._contexts: dict[tuple, tuple[tuple, ssl.SSLContext]] = {}
        self._lock: Any = None

    async def get(
        self,
        *,
        verify: bool = True,
        ca_bundle: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
    ) -> ssl.SSLContext:
        """Return the shared context for these settings, building it on first use."""
        import anyio

        key = (verify, ca_bundle, client_cert, client_key)
        stamps = tuple(_mtime(p) for p in (ca_bundle, client_cert, client_key))
        cached = self._contexts.get(key)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:  # a thousand checks starting at once build it once
            cached = self._contexts.get(key)
            if cached is not None and cached[0] == stamps:
                return cached[1]
            # loading a CA store blocks for milliseconds: not on the event loop
            context = await anyio.to_thread.run_sync(
                self._build, verify, ca_bundle, client_cert, client_key
            )
            self._contexts[key] = (stamps, context)
        return context

    def _build(
        self,
        verify: bool,
        ca_bundle: Path | None,
        client_cert: Path | None,
        client_key: Path | None,
    ) -> ssl.SSLContext:
        if not verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif ca_bundle is not None:
            # like curl --cacert: trust exactly this bundle
            context = ssl.create_default_context(cafile=str(ca_bundle))
        else:
            context = ssl.create_default_context()
            try:  # the system store may be empty in slim containers; certifi is httpx's
                import certifi

                context.load_verify_locations(certifi.where())
            except (ImportError, OSError):
                pass
        if client_cert is not None:
            context.load_cert_chain(
                str(client_cert), str(client_key) if client_key is not None else None
            )
        if self.alpn:
            context.set_alpn_protocols(self.alpn)
        return context


def _mtime(path: Path | None) -> int | None:
    return None if path is None else os.stat(path).st_mtime_ns


def certificate_expiry(ssl_object: Any) -> float | None:
    """Return seconds until the peer certificate's notAfter (negative once expired).

    An unverified connection (`verify: false`) hides the parsed certificate, so its DER
    form is decoded instead. None when there is no certificate.
    """
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    not_after = cert.get("notAfter") if cert else None
    if not_after is None:
        der = ssl_object.getpeercert(binary_form=True)
        not_after = _not_after_from_der(der) if der else None
    if not not_after:
        return None
    return ssl.cert_time_to_seconds(not_after) - time.time()


@lru_cache(maxsize=256)
def _not_after_from_der(der: bytes) -> str | None:
    # the standard library decodes a certificate only from a file, and only through this
    # private helper; cached per certificate, so a check does not write a file each run
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    fd, name = tempfile.mkstemp(suffix=".pem", prefix="watchkeeper-cert-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(ssl.DER_cert_to_PEM_cert(der))
        return decode(name).get("notAfter")
    except (OSError, ValueError, ssl.SSLError):
        return None
    finally:
        os.unlink(name)


@hookimpl
def watchkeeper_probes():
    return [HttpProbe]
