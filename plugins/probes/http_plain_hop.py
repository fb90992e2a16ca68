"""Plain http and https hops for the `http` probe, on the probe's own asyncio protocol.

Imported with http_request.py when a check sends a request, not with the plugin module, so
`watchkeeper validate` does not import asyncio.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from watchkeeper.plugins.probes import http_errors as errors
from watchkeeper.plugins.probes.http_decoding import PlainHeaders, content_decoder, text_encoding

if TYPE_CHECKING:
    import httpx

    from watchkeeper.plugins.probes.http_request import Prepared

# -- http and https on an asyncio protocol -------------------------------------------------
#
# httpx spends ~0.7 ms of CPU on a one-shot plain http request (request and response
# models, pool bookkeeping, anyio stream wrappers, h11 events) where the socket work takes
# ~0.15 ms; on https its anyio TLS stream adds as much again around the handshake. A hop
# without a proxy therefore goes out as bytes h11 serialised once per check (over
# asyncio's own TLS transport for https), and its response is parsed here for the common
# well-formed case; on
# anything else (1xx, obs-fold, trailers, chunk extensions, a short body, odd bytes) every
# byte received so far is handed to h11, exactly as httpcore would have fed it, so h11's
# verdict and its error stand. Failures are raised as the httpx exceptions httpx raises
# for them (their twins in http_errors.py, so httpx stays unloaded), with the same text,
# so messages and details do not depend on the path.

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([2-9][0-9][0-9])(?: [\t\x20-\x7e]*)?")
_FIELD = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?[ \t]*"
)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})\r\n")
_BARE_LF_END = re.compile(rb"\n\r?\n")
_MAX_HEAD = 100 * 1024  # httpcore's h11 max_incomplete_event_size
_PAUSE_AT = 256 * 1024


class PlainRequest:
    """A plain http request ready to go: its bytes, where to and how to rebuild its parts
    for h11 when a response needs h11's judgement."""

    __slots__ = ("_parts", "_source", "data", "host", "https", "method", "no_body", "port")

    def __init__(self, method: bytes, data: bytes, host: str, port: int, https: bool, source: Any):
        self.method = method
        self.data = data
        self.host = host
        self.https = https
        self.port = port
        self.no_body = method == b"HEAD"
        self._source = source  # a Prepared, or (url, target, headers, body) of a redirect
        self._parts: tuple | None = None

    def parts(self) -> tuple[bytes, list, bytes]:
        if self._parts is None:
            source = self._source
            self._parts = source[1:] if isinstance(source, tuple) else source.parts()
        return self._parts

    def url(self) -> httpx.URL:
        source = self._source
        return source[0] if isinstance(source, tuple) else source.url


def h11_request(request: httpx.Request, prepared: Prepared | None = None) -> PlainRequest | None:
    """Serialise an httpx request as httpcore does; None when h11 refuses it, so the httpx
    path reports that exactly as before."""
    method = request.method.encode("ascii")
    target = request.url.raw_path
    headers = request.headers.raw
    body = request.content
    data = h11_bytes(method, target, headers, body)
    if data is None:
        return None
    url = request.url
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    source = prepared if prepared is not None else (url, target, headers, body)
    return PlainRequest(method, data, url.raw_host.decode("ascii"), port, https, source)


def h11_bytes(method: bytes, target: bytes, headers: list, body: bytes) -> bytes | None:
    """A request's bytes as httpcore writes them (h11: headers, then body, then end);
    None when h11 refuses them."""
    import h11

    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        return None
    return data


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


class PlainHop:
    """One http or https request on a fresh connection (or on a kept one, given a `Pool`);
    the response streams its body."""

    enabled = True

    @staticmethod
    async def send(
        request: PlainRequest,
        budget: float,
        tls: ssl.SSLContext | None = None,
        pool: Pool | None = None,
    ) -> PlainResponse:
        tls = tls if request.https else None
        key = (request.host, request.port, tls)
        if pool is not None and (kept := pool.take(key)) is not None:
            try:
                return await _exchange(kept, request, budget, pool, key)
            except Exception as exc:
                if not errors.is_a(exc, "ReadError", "RemoteProtocolError") or kept.buffer:
                    raise  # the server answered: its answer stands
                # the server closed the kept connection as the request went out: once
                # more on a fresh one, as a browser does
        protocol = await _connect(request.host, request.port, budget, tls)
        return await _exchange(protocol, request, budget, pool, key)


async def _exchange(
    protocol: _Protocol, request: PlainRequest, budget: float, pool: Pool | None, key: tuple
) -> PlainResponse:
    response = PlainResponse(protocol, request, budget, pool, key)
    try:
        protocol.transport.write(request.data)
        while protocol.write_paused and not protocol.eof:
            try:
                await protocol.wait(budget)
            except TimeoutError:
                raise errors.WriteTimeout("") from None
        # a server that closed early may still have answered: read, as httpcore does
        await response.read_head()
    except BaseException:
        protocol.transport.abort()
        raise
    return response


async def _connect(
    host: str, port: int, budget: float, tls: ssl.SSLContext | None = None
) -> _Protocol:
    """Connect as anyio's connect_tcp does for httpcore (the same resolution, the same
    happy-eyeballs order and delay, the same errors), then, given `tls`, make the TLS
    handshake as httpcore's start_tls does (its own `budget`, the same errors); return the
    connected protocol."""
    import anyio

    try:
        address = ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        # an address: one attempt, timed by the loop (no cancel scope needed)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        try:
            sock = await _open_socket(family, host, port, budget)
        except TimeoutError:
            raise errors.ConnectTimeout("") from None
        except OSError as exc:
            raise errors.ConnectError("All connection attempts failed") from _chained(exc)
        return await _wrap(sock, host, budget, tls)
    loop = asyncio.get_running_loop()
    try:
        with anyio.fail_after(budget):
            targets = await _resolve(host, port)
            if len(targets) == 1:
                try:
                    if tls is None:
                        _, protocol = await loop.create_connection(_Protocol, targets[0], port)
                        return protocol
                    sock = await _open_socket(_family(targets[0]), targets[0], port, budget)
                except TimeoutError:
                    raise
                except OSError as exc:
                    raise errors.ConnectError("All connection attempts failed") from _chained(exc)
            else:
                connected = await _happy_eyeballs(loop, targets, port, budget, tls is not None)
                if tls is None:
                    return connected
                sock = connected
    except TimeoutError:
        raise errors.ConnectTimeout("") from None
    return await _wrap(sock, host, budget, tls)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


async def _open_socket(family: int, host: str, port: int, budget: float) -> socket.socket:
    """Connect a non-blocking socket as asyncio's sock_connect does, with a timer for
    the timeout."""
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
    except BaseException:
        sock.close()
        raise
    return sock


async def _wrap(sock: socket.socket, host: str, budget: float, tls: Any) -> _Protocol:
    """A connected socket in a transport, plain or, given `tls`, after the handshake."""
    loop = asyncio.get_running_loop()
    try:
        if tls is None:
            _, protocol = await loop.create_connection(_Protocol, sock=sock)
        else:
            _, protocol = await loop.create_connection(
                _Protocol, sock=sock, ssl=tls, server_hostname=host, ssl_handshake_timeout=budget
            )
    except BaseException as exc:
        sock.close()
        if not isinstance(exc, OSError) or tls is None:
            raise
        # httpcore's words for the same failures (anyio's TLS stream under it)
        if isinstance(exc, ConnectionAbortedError) and "SSL handshake is taking" in str(exc):
            raise errors.ConnectTimeout("") from None
        error = _handshake_error(exc)
        if error.__cause__ is None:
            raise error from exc
        raise error from error.__cause__
    return protocol


def _handshake_error(exc: OSError) -> Exception:
    if isinstance(exc, ssl.SSLError) and not _eof(exc):
        return errors.ConnectError(str(exc))
    error = errors.ConnectError("")
    if isinstance(exc, ConnectionResetError) and exc.errno is None:
        # asyncio's word for a connection closed during the handshake; anyio's (under
        # httpcore) is OpenSSL's, which the message reads
        error.__cause__ = ssl.SSLEOFError(
            ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol"
        )
        error.__suppress_context__ = True
    return error


def _eof(exc: ssl.SSLError) -> bool:
    return isinstance(exc, ssl.SSLEOFError) or "UNEXPECTED_EOF_WHILE_READING" in str(exc)


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

    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise errors.ConnectError(str(exc)) from exc
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


async def _happy_eyeballs(
    loop: Any, targets: list[str], port: int, budget: float, sockets: bool
) -> Any:
    """The first connection of attempts started 250 ms apart: a connected protocol, or
    with `sockets` a connected socket (for a TLS handshake to follow)."""
    import anyio

    connected: Any = None
    failed: list[OSError] = []

    def discard(connection: Any) -> None:
        if sockets:
            connection.close()
        else:
            connection.transport.abort()

    async def attempt(target: str, event: anyio.Event) -> None:
        nonlocal connected
        try:
            if sockets:
                connection: Any = await _open_socket(_family(target), target, port, budget)
            else:
                _, connection = await loop.create_connection(_Protocol, target, port)
        except OSError as exc:
            failed.append(exc)
            return
        else:
            if connected is None:
                connected = connection
                tg.cancel_scope.cancel()
            else:
                discard(connection)
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
            discard(connected)
        raise
    if connected is None:
        cause: BaseException = (
            failed[0]
            if len(failed) == 1
            else ExceptionGroup("multiple connection attempts failed", failed)
        )
        raise errors.ConnectError("All connection attempts failed") from _chained(cause)
    return connected


class PlainResponse:
    """The parts of an httpx.Response the probe reads, over `_Protocol`."""

    def __init__(
        self,
        protocol: _Protocol,
        request: PlainRequest,
        budget: float,
        pool: Pool | None = None,
        key: tuple = (),
    ):
        self.protocol = protocol
        self.request_data = request
        self.pool = pool
        self.key = key
        self._keep: float | None = None  # seconds the connection may idle in the pool
        self._ended = False  # a chunked body read to its last chunk
        self._url: httpx.URL | None = None
        self.budget = budget
        self.status_code = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.extensions: dict[str, Any] = {}
        self._headers: PlainHeaders | None = None
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
    def headers(self) -> PlainHeaders:
        if self._headers is None:
            self._headers = PlainHeaders(self.raw_headers)
        return self._headers

    @property
    def encoding(self) -> str | None:
        if self._encoding is None:
            # httpx's own rules (charset parameter, known codecs, utf-8 by default)
            self._encoding = text_encoding(self.headers)
        return self._encoding

    def certificate_expiry(self) -> float | None:
        """Seconds until the server certificate expires, from this connection's handshake
        (a kept connection's: the handshake it was opened with)."""
        from watchkeeper.plugins.probes.http import certificate_expiry

        transport = self.protocol.transport
        # asyncio parsed the certificate at the handshake: not again
        return certificate_expiry(
            transport.get_extra_info("ssl_object"), transport.get_extra_info("peercert")
        )

    async def aclose(self) -> None:
        protocol = self.protocol
        if self.pool is not None and self._reusable():
            self.pool.put(self.key, protocol, self._keep)
            return
        transport = protocol.transport
        if not transport.is_closing():
            if self.request_data.https:
                transport.abort()  # as httpcore closes TLS: the TCP connection, no close_notify
            else:
                transport.close()

    def _reusable(self) -> bool:
        """The response was read to its end, nothing more came, and the server keeps the
        connection open."""
        protocol = self.protocol
        return (
            self._keep is not None
            and self._remaining == 0
            and (self._framing == "length" or (self._framing == "chunked" and self._ended))
            and protocol.pos == len(protocol.buffer)
            and not protocol.eof
            and not protocol.paused
            and not protocol.transport.is_closing()
        )

    # -- reading -----------------------------------------------------------------------------

    async def _more(self) -> None:
        if self.protocol.eof:
            return
        try:
            await self.protocol.wait(self.budget)
        except TimeoutError:
            raise errors.ReadTimeout("") from None

    def _read_error(self) -> BaseException:
        cause = self.protocol.error
        if isinstance(cause, ssl.SSLError) and not _eof(cause):
            return cause  # as under httpcore, whose TLS stream raises it as it is
        error = errors.ReadError("")
        error.__cause__ = cause
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
        keep = None
        if self.pool is not None and lines[0].startswith(b"HTTP/1.1 "):
            keep = _KEEP_IDLE
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
            elif keep is not None and lower in (b"connection", b"keep-alive"):
                keep = _keep_for(lower, value, keep)
            headers.append((name, value))
        if chunked and length is not None:
            return False
        code = int(status.group(1))
        self.status_code = code
        self.raw_headers = headers
        self._keep = keep
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

        conn = self._h11
        protocol = self.protocol
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise errors.RemoteProtocolError(str(exc)) from exc
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
                    raise errors.RemoteProtocolError(
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
                    self._ended = True
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
        decoder = content_decoder(self.raw_headers)
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


# -- kept connections (`reuse_connections: true`) -----------------------------------------

_KEEP_IDLE = 55.0  # under the idle timeouts of common servers and load balancers (60 s+)
_KEEP_PER_ORIGIN = 16
_KEEP_ALIVE_TIMEOUT = re.compile(rb"timeout=(\d+)", re.IGNORECASE)


def _keep_for(name: bytes, value: bytes, keep: float) -> float | None:
    """How long a connection may idle, after a Connection or Keep-Alive header."""
    if name == b"connection":
        tokens = {t.strip().lower() for t in value.split(b",")}
        return None if b"close" in tokens else keep
    timeout = _KEEP_ALIVE_TIMEOUT.search(value)
    if timeout is None:
        return keep
    # a second short of what the server says, so it never closes one as it is reused
    seconds = min(keep, int(timeout.group(1)) - 1.0)
    return seconds if seconds > 0 else None


class Pool:
    """Connections kept open between runs, idle, by where they lead (host, port and TLS
    context); the most recently used is taken first. At most `_KEEP_PER_ORIGIN` idle ones
    per destination; one idle longer than the server allows is closed, not reused."""

    def __init__(self) -> None:
        self.idle: dict[tuple, list[tuple[float, _Protocol]]] = {}
        self._swept = time.monotonic()

    def take(self, key: tuple) -> _Protocol | None:
        kept = self.idle.get(key)
        now = time.monotonic()
        while kept:
            until, protocol = kept.pop()
            if until > now and not protocol.eof and not protocol.transport.is_closing():
                return protocol
            _drop(protocol)
        return None

    def put(self, key: tuple, protocol: _Protocol, keep: float | None) -> None:
        now = time.monotonic()
        kept = self.idle.setdefault(key, [])
        if keep is None or len(kept) >= _KEEP_PER_ORIGIN:
            _drop(protocol)
        else:
            protocol.buffer.clear()
            protocol.pos = 0
            kept.append((now + keep, protocol))
        if now - self._swept > 5.0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key in list(self.idle):
            kept = self.idle[key]
            for until, protocol in kept:
                if until <= now or protocol.eof:
                    _drop(protocol)
            kept[:] = [(u, p) for u, p in kept if u > now and not p.eof]
            if not kept:
                del self.idle[key]

    def close(self) -> None:
        for kept in self.idle.values():
            for _, protocol in kept:
                _drop(protocol)
        self.idle.clear()


def _drop(protocol: _Protocol) -> None:
    transport = protocol.transport
    if not transport.is_closing():
        transport.abort()
