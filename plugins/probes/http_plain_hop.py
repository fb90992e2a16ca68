"""Plain http hops for the `http` probe, on the probe's own asyncio protocol.

Imported with http_request.py when a check sends a request, not with the plugin module, so
`watchkeeper validate` does not import asyncio.
"""

from __future__ import annotations

import asyncio
import re
import socket
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from watchkeeper.plugins.probes.http_request import Prepared

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


class PlainRequest:
    """A plain http request ready to go: its bytes, where to and how to rebuild its parts
    for h11 when a response needs h11's judgement."""

    __slots__ = ("_parts", "_source", "data", "host", "method", "no_body", "port")

    def __init__(self, method: bytes, data: bytes, url: httpx.URL, source: Any):
        self.method = method
        self.data = data
        self.host = url.raw_host.decode("ascii")
        self.port = url.port or 80
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
    return PlainRequest(method, data, request.url, source)


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
    """One plain http request on a fresh connection; the response streams its body."""

    enabled = True

    @staticmethod
    async def send(request: PlainRequest, budget: float) -> PlainResponse:
        import httpx

        protocol = await _connect(request.host, request.port, budget)
        response = PlainResponse(protocol, request, budget)
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


class PlainResponse:
    """The parts of an httpx.Response the probe reads, over `_Protocol`."""

    def __init__(self, protocol: _Protocol, request: PlainRequest, budget: float):
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
