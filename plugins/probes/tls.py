"""The `tls` probe: certificate expiry, chain and hostname of any TLS service.

The handshake verifies the chain (not the host name) against the CA bundle. When it does
not verify, a second handshake without verification fetches the certificate so that its
expiry, subject and names are still reported. The host name is matched against the
certificate's subject alternative names here, as RFC 9525 says (the subject's common
name is not considered, as in browsers).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
import struct
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, OpenContext, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration


class TlsOptions(ProbeOptions):
    """Connect to host:port (after STARTTLS if asked) and inspect the certificate."""

    host: str = Field(description="Host to connect to.")
    port: int = Field(443, ge=1, le=65535, description="TCP port.")
    server_name: str | None = Field(
        None, description="Name sent as SNI and matched against the certificate (default: host)."
    )
    starttls: Literal["smtp", "postgres", "imap"] | None = Field(
        None, description="Speak this protocol's STARTTLS before the handshake."
    )
    ca_bundle: str | None = Field(
        None, description="PEM file of CA certificates to trust (default: the system's)."
    )
    require_valid: bool = Field(
        True,
        description="Fail when the chain or hostname does not "
        "verify (metrics are reported either way).",
    )


# declared the same way by every probe that reports the certificate a server presents
CERTIFICATE_EXPIRY = Metric(
    "certificate_expiry",
    "duration",
    "until the certificate's `notAfter`; negative once expired",
)


class _Failed(Exception):
    """A run that cannot go on; its message is the result's."""

    def __init__(self, message: str, *, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


@dataclass
class _Session:
    """What one handshake showed."""

    cert: dict[str, Any] | None
    der: bytes | None
    version: str | None
    cipher: str | None
    handshake_time: float


class TlsProbe(Probe):
    """Inspect a server's certificate: trust, name, expiry."""

    type = "tls"
    Options = TlsOptions
    metrics = (
        CERTIFICATE_EXPIRY,
        Metric("chain_valid", "number", "1 when the chain verifies against trusted CAs, else 0"),
        Metric("hostname_valid", "number", "1 when the certificate matches the name, else 0"),
        Metric(
            "handshake_time", "duration", "the TLS handshake alone (after connecting and STARTTLS)"
        ),
    )

    def __init__(self) -> None:
        self._contexts: dict[Path | None, tuple[int | None, ssl.SSLContext]] = {}
        self._inspecting: ssl.SSLContext | None = None

    async def open(self, ctx: OpenContext) -> None:
        # load the system's CA store now, not inside the first check's timeout
        await self._verifying(None)

    async def check(self, options: TlsOptions, ctx: ProbeContext) -> Result:
        target = _target(options.host, options.port)
        if options.starttls:
            target += f" (STARTTLS {options.starttls})"
        name = options.server_name or options.host
        deadline = time.perf_counter() + time_budget(ctx.timeout)
        ca_bundle = None if options.ca_bundle is None else ctx.base_dir / options.ca_bundle
        try:
            verifying = await self._verifying(ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            return Result(ok=False, message=f"cannot load the CA bundle {options.ca_bundle}: {exc}")
        chain_error = None
        try:
            try:
                session = await _session(options, verifying, deadline, ctx.timeout)
            except ssl.SSLCertVerificationError as exc:
                chain_error = _verify_message(exc)
                session = await _session(options, self._unverified(), deadline, ctx.timeout)
        except _Failed as exc:
            message = f"{target}: {exc}"
            if chain_error:
                message = f"{target}: certificate is not trusted ({chain_error}); then {exc}"
            metrics = {} if chain_error is None else {"chain_valid": 0.0}
            return Result(
                ok=False,
                message=message,
                metrics=metrics,
                details={"timeout": True} if exc.timeout else {},
            )
        cert = session.cert if session.cert else _decode(session.der) if session.der else None
        if cert is None:
            return Result(
                ok=False,
                message=f"{target}: the server presented no certificate",
                metrics={"handshake_time": session.handshake_time},
            )
        return _evaluate(options, target, name, cert, session, chain_error)

    async def _verifying(self, ca_bundle: Path | None) -> ssl.SSLContext:
        """Return the chain-verifying context for a CA bundle, rebuilt when the file changes."""
        import anyio

        stamp = None if ca_bundle is None else os.stat(ca_bundle).st_mtime_ns
        cached = self._contexts.get(ca_bundle)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        # loading a CA store blocks for milliseconds: not on the event loop
        context = await anyio.to_thread.run_sync(_verifying_context, ca_bundle)
        self._contexts[ca_bundle] = (stamp, context)
        return context

    def _unverified(self) -> ssl.SSLContext:
        if self._inspecting is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self._inspecting = context
        return self._inspecting


def _verifying_context(ca_bundle: Path | None) -> ssl.SSLContext:
    if ca_bundle is not None:
        context = ssl.create_default_context(cafile=str(ca_bundle))
    else:
        context = ssl.create_default_context()
        try:  # the system store may be empty in slim containers; certifi is httpx's
            import certifi

            context.load_verify_locations(certifi.where())
        except (ImportError, OSError):
            pass
    context.check_hostname = False  # matched separately, so both verdicts are reported
    return context


async def _session(
    options: TlsOptions, context: ssl.SSLContext, deadline: float, timeout: float
) -> _Session:
    """Connect, STARTTLS if asked, hand-shake; raise _Failed, or SSLCertVerificationError."""
    import anyio
    from anyio.streams.tls import TLSAttribute, TLSStream

    phase = "connecting"
    after = format_duration(timeout)
    stream: Any = None
    try:
        with anyio.fail_after(max(deadline - time.perf_counter(), 0.0)):
            try:
                stream = await anyio.connect_tcp(options.host, options.port)
            except OSError as exc:
                raise _Failed(f"cannot connect: {network_reason(exc) or exc}") from None
            if options.starttls:
                phase = f"in the {options.starttls} STARTTLS exchange"
                await STARTTLS[options.starttls](stream)
            phase = "in the TLS handshake"
            start = time.perf_counter()
            stream = await TLSStream.wrap(
                stream,
                hostname=options.server_name or options.host,
                ssl_context=context,
                standard_compatible=False,
            )
            handshake_time = time.perf_counter() - start
            ssl_object = stream.extra(TLSAttribute.ssl_object)
            cipher = ssl_object.cipher()
            return _Session(
                cert=ssl_object.getpeercert() or None,
                der=ssl_object.getpeercert(binary_form=True),
                version=ssl_object.version(),
                cipher=cipher[0] if cipher else None,
                handshake_time=handshake_time,
            )
    except TimeoutError:
        raise _Failed(f"timed out after {after} {phase}", timeout=True) from None
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        raise _Failed(f"TLS handshake failed: {exc.reason or exc}") from None
    except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.IncompleteRead, OSError) as exc:
        reason = network_reason(exc) or "the connection closed"
        raise _Failed(f"{reason} {phase}") from None
    finally:
        if stream is not None:
            await anyio.aclose_forcefully(stream)


# --- STARTTLS -------------------------------------------------------------------------------


async def _smtp(stream: Any) -> None:
    """RFC 3207: greeting, EHLO, STARTTLS offered, `220` to STARTTLS."""
    from anyio.abc import SocketAttribute
    from anyio.streams.buffered import BufferedByteReceiveStream

    reader = BufferedByteReceiveStream(stream)
    code, lines = await _smtp_reply(reader)
    if code != "220":
        raise _Failed(f"SMTP server greeted with {_quote(lines)}")
    # an address literal is a valid EHLO argument whatever this host is called
    local = stream.extra(SocketAttribute.local_address)[0]
    literal = f"[IPv6:{local}]" if ":" in local else f"[{local}]"
    await stream.send(f"EHLO {literal}\r\n".encode())
    code, lines = await _smtp_reply(reader)
    if code != "250":
        raise _Failed(f"SMTP server answered EHLO with {_quote(lines)}")
    if not any(line[4:].strip().upper().startswith("STARTTLS") for line in lines[1:]):
        raise _Failed("SMTP server does not offer STARTTLS")
    await stream.send(b"STARTTLS\r\n")
    code, lines = await _smtp_reply(reader)
    if code != "220":
        raise _Failed(f"SMTP server answered STARTTLS with {_quote(lines)}")
    _nothing_buffered(reader)


async def _smtp_reply(reader: Any) -> tuple[str, list[str]]:
    lines = []
    while True:
        line = await _line(reader)
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return line[:3], lines


async def _imap(stream: Any) -> None:
    """RFC 3501: `* OK` greeting, `a001 STARTTLS`, `a001 OK`."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    reader = BufferedByteReceiveStream(stream)
    greeting = await _line(reader)
    if not greeting.upper().startswith("* OK"):
        raise _Failed(f"IMAP server greeted with {_quote([greeting])}")
    await stream.send(b"a001 STARTTLS\r\n")
    while True:
        line = await _line(reader)
        if line.startswith("* "):
            continue  # untagged data, e.g. a CAPABILITY line
        if line.upper().startswith("A001 OK"):
            break
        raise _Failed(f"IMAP server answered STARTTLS with {_quote([line])}")
    _nothing_buffered(reader)


_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


async def _postgres(stream: Any) -> None:
    """PostgreSQL's SSLRequest packet, answered `S` (go ahead) or `N` (no TLS)."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    reader = BufferedByteReceiveStream(stream)
    await stream.send(_SSL_REQUEST)
    answer = await reader.receive_exactly(1)
    if answer == b"N":
        raise _Failed("PostgreSQL does not accept TLS connections (ssl = off)")
    if answer != b"S":
        raise _Failed(f"unexpected answer {answer!r} to PostgreSQL's SSLRequest")
    _nothing_buffered(reader)


STARTTLS = {"smtp": _smtp, "imap": _imap, "postgres": _postgres}


async def _line(reader: Any) -> str:
    import anyio

    try:
        raw = await reader.receive_until(b"\n", 4096)
    except anyio.DelimiterNotFound:
        raise _Failed("the server sent a line longer than 4096 bytes") from None
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def _nothing_buffered(reader: Any) -> None:
    # bytes sent before our handshake could be injected into the TLS session (CVE-2011-0411)
    if reader.buffer:
        raise _Failed("the server sent data after agreeing to STARTTLS")


def _quote(lines: list[str]) -> str:
    text = " / ".join(line.strip() for line in lines)
    return repr(text if len(text) <= 120 else text[:119] + "…")


# --- the certificate ------------------------------------------------------------------------


def _evaluate(
    options: TlsOptions,
    target: str,
    name: str,
    cert: dict[str, Any],
    session: _Session,
    chain_error: str | None,
) -> Result:
    not_after = _when(cert.get("notAfter"))
    sans = [value.strip() for kind, value in cert.get("subjectAltName", ()) if kind in _SAN_KINDS]
    hostname_valid = hostname_matches(cert, name)
    metrics = {
        "chain_valid": 0.0 if chain_error else 1.0,
        "hostname_valid": 1.0 if hostname_valid else 0.0,
        "handshake_time": session.handshake_time,
    }
    if not_after is not None:
        metrics["certificate_expiry"] = not_after.timestamp() - time.time()
    details: dict[str, Any] = {
        "subject": _name(cert.get("subject", ())),
        "issuer": _name(cert.get("issuer", ())),
        "sans": sans,
        "server_name": name,
        "not_before": _iso(_when(cert.get("notBefore"))),
        "not_after": _iso(not_after),
        "serial": cert.get("serialNumber"),
        "tls_version": session.version,
        "cipher": session.cipher,
    }
    if chain_error:
        details["chain_error"] = chain_error
    problems = []
    if chain_error:
        problems.append(f"certificate is not trusted ({chain_error})")
    if not hostname_valid:
        problems.append(f"certificate does not match {name}")
    about = (
        f"certificate {details['subject'] or '(no subject)'} for "
        f"{', '.join(sans) or 'no names'} issued by {details['issuer'] or '(no issuer)'}"
    )
    if "certificate_expiry" in metrics:
        about += ", " + expiry_phrase(metrics["certificate_expiry"], not_after)
    ok = not (problems and options.require_valid)
    message = f"{target}: " + "; ".join([*problems, about])
    if not problems:
        message += f"; {session.version} in {took(session.handshake_time)}"
    return Result(ok=ok, message=message, metrics=metrics, details=details)


_SAN_KINDS = ("DNS", "IP Address")
_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
}


def tls_failure(exc: BaseException) -> str | None:
    """`TLS failed: ...` when a TLS error is behind `exc` (its causes and contexts), in
    OpenSSL's words; None when none is. For probes whose client library wraps the error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS failed: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            # "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"
            text = re.sub(r"^\[[^]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(current.strerror or ""))
            return f"TLS failed: {text or current.reason or type(current).__name__}"
        current = current.__cause__ or current.__context__
    return None


def hostname_matches(cert: dict[str, Any], name: str) -> bool:
    """Return whether a certificate (as `getpeercert()` shows it) is valid for a host name.

    RFC 9525: DNS names and IP addresses of the subject alternative names only; a
    wildcard stands for one whole left-most label and never for a public suffix alone.
    """
    sans = cert.get("subjectAltName", ())
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        for kind, value in sans:
            if kind == "IP Address":
                try:
                    if ipaddress.ip_address(value.strip()) == address:
                        return True
                except ValueError:
                    continue
        return False
    host = name.rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    for kind, value in sans:
        if kind != "DNS":
            continue
        pattern = value.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "*" not in pattern[2:] and pattern.count(".") >= 2:
            first, _, rest = host.partition(".")
            if first and rest == pattern[2:]:
                return True
    return False


def _name(rdns: Any) -> str:
    """Render getpeercert()'s nested name tuples as `CN=example.com, O=Example`."""
    return ", ".join(f"{_SHORT.get(key, key)}={value}" for rdn in rdns for key, value in rdn)


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), dt.UTC)


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


def expiry_phrase(seconds: float, not_after: dt.datetime | None) -> str:
    """Say when a certificate expires: `expires in 61d (2027-01-26)`, `expired 3d ago (...)`."""
    day = not_after.date().isoformat() if not_after else "?"
    rounded = round(abs(seconds) / 3600) * 3600 if abs(seconds) >= 3600 else abs(seconds)
    span = format_duration(rounded)
    return f"expires in {span} ({day})" if seconds >= 0 else f"expired {span} ago ({day})"


def _verify_message(exc: ssl.SSLCertVerificationError) -> str:
    return exc.verify_message or exc.reason or str(exc)


@lru_cache(maxsize=256)
def _decode(der: bytes) -> dict[str, Any] | None:
    """Decode a certificate the handshake did not verify (getpeercert() then shows nothing).

    The standard library decodes certificates only from a file, through this private
    helper (as the `http` probe does for expiry); cached per certificate.
    """
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    fd, name = tempfile.mkstemp(suffix=".pem", prefix="watchkeeper-cert-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(ssl.DER_cert_to_PEM_cert(der))
        return decode(name)
    except (OSError, ValueError, ssl.SSLError):
        return None
    finally:
        os.unlink(name)


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@hookimpl
def watchkeeper_probes():
    return [TlsProbe]
