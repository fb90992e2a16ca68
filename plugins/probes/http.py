"""The `http` probe: request a URL, check what comes back, extract metrics from the body.

Its options model is in http_options.py: a probe worker runs checks from plain option
values and never reads `HttpProbe.Options`, so it imports neither pydantic nor the
config's models.
"""

from __future__ import annotations

import json
import os
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK, REDACTOR, is_secret_name
from watchkeeper.engine.run.extract import (
    describe_problems,
    extract_metrics,
    kind_of,
    short_json,
)
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http_errors import is_a

if TYPE_CHECKING:
    import ssl

    import httpx

    from watchkeeper.plugins.probes.http_options import HttpOptions

OPTION_MODELS = ("HttpOptions", "HttpExpect", "BasicAuth")
"""The models moved to http_options.py, still found here by whoever imports them from it."""


def __getattr__(name: str) -> Any:
    if name in OPTION_MODELS:
        from watchkeeper.plugins.probes import http_options

        return getattr(http_options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _OptionsModel:
    """`HttpProbe.Options`: the model, imported from http_options.py when first read.

    The registry, validate and the schema read it; a worker running checks from their
    option values never does, and so never imports pydantic.
    """

    def __get__(self, instance: object, owner: type | None = None) -> type[HttpOptions]:
        from watchkeeper.plugins.probes.http_options import HttpOptions

        return HttpOptions


USER_AGENT = "watchkeeper"
_SSL_NOISE = re.compile(r"^\[SSL: [A-Z0-9_]+\] |\s*\(_ssl\.c:\d+\)$")


class HttpProbe(Probe):
    """Request a URL; judge its status, headers and body; read metrics from the body."""

    type = "http"
    Options = _OptionsModel()
    metrics = (
        Metric(
            "response_time",
            "duration",
            "from sending the request to the last byte of the body read, redirects included",
        ),
        Metric("status_code", "number", "status of the final response"),
        Metric("body_size", "bytes", "bytes of the (decoded) body read, at most `max_body`"),
        Metric(
            "certificate_expiry",
            "duration",
            "until the server certificate's `notAfter`; negative once expired; `https://` only",
        ),
    )

    def __init__(self) -> None:
        self.tls = TlsContexts(alpn=["http/1.1"])
        self.pool: Any = None  # connections kept for `reuse_connections`, on first use

    async def open(self, ctx: OpenContext) -> None:
        # the request path now, not inside the first checks' timeouts; httpx and a CA store
        # only when a check needs them (a proxy, a redirect, TLS), see `check()`
        from watchkeeper.plugins.probes import http_request  # noqa: F401

    async def check(self, options: HttpOptions, ctx: ProbeContext) -> Result:
        import ssl

        from watchkeeper.plugins.probes.http_plain_hop import PlainResponse
        from watchkeeper.plugins.probes.http_request import Hops, load_httpx, prepare, send

        shown = masked_url(options.url)
        began = time.perf_counter()
        proxy = options.proxy.get_secret_value() if options.proxy else None
        files = (options.ca_bundle, options.client_cert, options.client_key)
        tls: ssl.SSLContext | None = None
        plain_http = options.url[:7].lower() == "http://"
        if proxy or not plain_http or not options.verify or any(f is not None for f in files):
            # before the clock starts, and a TLS file that cannot be read fails every run
            # of the check, an http:// one too, as it always has; a plain http check with
            # the default settings builds the default context only if a redirect needs it
            try:
                tls = await self.tls.get(
                    verify=options.verify,
                    ca_bundle=_path(options.ca_bundle, ctx),
                    client_cert=_path(options.client_cert, ctx),
                    client_key=_path(options.client_key, ctx),
                )
            except (OSError, ssl.SSLError) as exc:
                return Result(ok=False, message=f"cannot load TLS files for {shown}: {exc}")
        # the transport alone, not an AsyncClient: a client per check spends a third of
        # its CPU on cookie jars and auth flows a health check never needs; http and https
        # hops without a proxy skip even that (see `PlainHop` in http_plain_hop.py), so the
        # transport is only built when a hop needs it
        if options.reuse_connections and self.pool is None:
            from watchkeeper.plugins.probes.http_plain_hop import Pool

            self.pool = Pool()
        pool = self.pool if options.reuse_connections else None
        hops = Hops(tls, proxy or None, pool, self.tls)
        if proxy:
            await load_httpx()
            import httpx

            try:
                hops.transport()
            except (ValueError, httpx.InvalidURL):
                return Result(ok=False, message=f"invalid proxy URL for {shown}")  # never echo it
            except ImportError:
                return Result(ok=False, message="a SOCKS proxy needs the socksio package installed")
        try:
            await hops.ready(await prepare(options))
        except Exception:
            pass  # sending meets the same error, and reports it as a failed request
        start = time.perf_counter()
        # less what a first run spent building a TLS context or importing httpx: the
        # library still times out before the engine does, and says which phase hung
        budget = max(time_budget(ctx.timeout) - (start - began), 0.001)
        try:
            try:
                response, redirects = await send(hops, options, budget)
                try:
                    # before the body: once a TLS stream has read to its end, the
                    # certificate is no longer to be had from it
                    if type(response) is PlainResponse:
                        https = response.request_data.https
                        expiry = response.certificate_expiry() if https else None
                    elif response.url.scheme == "https":
                        expiry = certificate_expiry(_ssl_object(response))
                    else:
                        expiry = None
                    body, truncated = await _read_body(response, options.max_body)
                    elapsed = time.perf_counter() - start
                finally:
                    await response.aclose()
            finally:
                await hops.aclose()
        except Exception as exc:
            # (an alert after the handshake, e.g. a refused client certificate under TLS
            # 1.3, comes as the ssl module's own error)
            if not _request_error(exc):
                raise
            return Result(
                ok=False,
                message=_describe_error(exc, shown, ctx.timeout, options),
                metrics={"response_time": time.perf_counter() - start},
                details={
                    "error": type(exc).__name__,
                    "url": shown,
                    **({"timeout": True} if is_a(exc, "TimeoutException") else {}),
                },
            )
        return _evaluate(options, response, redirects, body, truncated, elapsed, expiry, shown)

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _request_error(exc: Exception) -> bool:
    """Whether `exc` is a failed request (httpx's errors, TLS errors), told in a message."""
    import ssl

    return isinstance(exc, ssl.SSLError) or is_a(exc, "HTTPError", "InvalidURL")


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
    from watchkeeper.plugins.probes.http_plain_hop import PlainResponse

    if type(response) is PlainResponse:
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
    # masked before it is cut: a cut could leave the start of a secret unrecognisable
    text = REDACTOR.redact(body[: limit * 4].decode("utf-8", errors="replace"))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_error(exc: Exception, shown: str, timeout: float, options: HttpOptions) -> str:
    import ssl

    via = " through the proxy" if options.proxy else ""
    if is_a(exc, "TimeoutException"):
        return _describe_timeout(exc, shown, _format_duration(timeout), via)
    if is_a(exc, "TooManyRedirects"):
        return f"more than {options.max_redirects} redirects from {shown}"
    if is_a(exc, "ProxyError"):
        return f"proxy error for {shown}: {_reason(exc)}"
    if is_a(exc, "UnsupportedProtocol", "InvalidURL"):
        return f"invalid URL {shown}: {_reason(exc)}"
    if is_a(exc, "ConnectError"):
        reason = _reason(exc)
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in reason:
            return f"TLS certificate of {shown} is not trusted: {reason}"
        if isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc):
            return f"TLS handshake with {shown} failed: {reason}"
        if _closed_in_handshake(exc):
            return f"TLS handshake with {shown} failed: the server closed the connection"
        return f"cannot connect to {shown}{via}: {network_reason(exc) or reason}"
    if is_a(exc, "RemoteProtocolError"):
        return f"bad response from {shown}: {_reason(exc)}"
    if isinstance(exc, ssl.SSLError):
        if "ALERT" in str(exc):  # the server refused the handshake after it seemed done
            return f"TLS handshake with {shown} failed: {_reason(exc)}"
        return f"TLS error on the connection to {shown}: {_reason(exc)}"
    return f"request to {shown} failed: {_reason(exc)}"


def _describe_timeout(exc: Exception, shown: str, after: str, via: str) -> str:
    if is_a(exc, "ConnectTimeout"):
        return f"timed out after {after} connecting to {shown}{via}"
    if is_a(exc, "ReadTimeout"):
        return f"timed out after {after} waiting for the response from {shown}"
    if is_a(exc, "WriteTimeout"):
        return f"timed out after {after} sending the request to {shown}"
    return f"timed out after {after} on {shown}"


def _format_duration(seconds: float) -> str:
    # only on the paths that show a duration (a timeout, a response over a minute):
    # schema.units brings pydantic, which a worker running checks otherwise does without
    from watchkeeper.schema.units import format_duration

    return format_duration(seconds)


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    text = _SSL_NOISE.sub("", text)
    if text.startswith("certificate verify failed: "):
        text = text.removeprefix("certificate verify failed: ")
    return text


def _is_ssl(exc: BaseException) -> bool:
    import ssl

    return isinstance(exc, ssl.SSLError)  # its errno is OpenSSL's, not the system's


def _closed_in_handshake(exc: BaseException) -> bool:
    import ssl

    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, ssl.SSLEOFError):
            return True
        current = current.__cause__ or current.__context__
    return False


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
        if isinstance(current, OSError) and current.strerror and not _is_ssl(current):
            # asyncio words ECONNREFUSED as "Connect call failed (addr)"; the errno says it
            plain = isinstance(current.errno, int) and current.errno > 0
            reason = os.strerror(current.errno) if plain else current.strerror
        current = current.__cause__ or current.__context__
    return reason[:1].lower() + reason[1:] if reason else None


def _ssl_object(response: httpx.Response) -> ssl.SSLObject | None:
    stream = response.extensions.get("network_stream")
    return stream.get_extra_info("ssl_object") if stream is not None else None


def _path(value: str | None, ctx: ProbeContext) -> Path | None:
    return None if value is None else _joined(ctx.base_dir, value)


@lru_cache(maxsize=1024)
def _joined(base_dir: Path, value: str) -> Path:
    return base_dir / Path(value).expanduser()


def took(seconds: float) -> str:
    """Render a measured time for a message, precise where it matters: 0.4ms, 182ms, 1.52s."""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return _format_duration(seconds)


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
        import ssl

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


def certificate_expiry(ssl_object: Any, cert: dict | None = None) -> float | None:
    """Return seconds until the peer certificate's notAfter (negative once expired).

    `cert` is the parsed certificate when the caller has it already. An unverified
    connection (`verify: false`) hides the parsed certificate, so its DER form is decoded
    instead. None when there is no certificate.
    """
    if ssl_object is None:
        return None
    if cert is None:
        cert = ssl_object.getpeercert()
    not_after = cert.get("notAfter") if cert else None
    if not_after is None:
        der = ssl_object.getpeercert(binary_form=True)
        not_after = _not_after_from_der(der) if der else None
    if not not_after:
        return None
    return _seconds_of(not_after) - time.time()


@lru_cache(maxsize=1024)
def _seconds_of(not_after: str) -> float:
    # strptime costs more than the rest of reading the certificate: once per certificate
    import ssl

    return ssl.cert_time_to_seconds(not_after)


@lru_cache(maxsize=256)
def _not_after_from_der(der: bytes) -> str | None:
    # the standard library decodes a certificate only from a file, and only through this
    # private helper; cached per certificate, so a check does not write a file each run
    import ssl
    import tempfile

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
