"""The `dns` probe: resolve a name and check the answers."""

from __future__ import annotations

import ipaddress
import os
import re
import time
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.schema.base import ConfigModel, defaults_of, empty_list
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "PTR", "CAA"]

Rcode = Literal[
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


class DnsExpect(ConfigModel):
    """What good answers look like."""

    rcode: Annotated[Rcode, BeforeValidator(_upper)] = Field(
        "NOERROR", description="Expected response code (NOERROR, NXDOMAIN, SERVFAIL, REFUSED...)."
    )
    answers: list[str] | None = Field(None, description="The exact set of answers.")
    contains: list[str] = Field(
        default_factory=empty_list, description="Answers that must be among those returned."
    )
    regex: str | None = Field(
        None, description="A regular expression every answer must match (and one must exist)."
    )
    min_answers: int | None = Field(None, ge=0, description="At least this many answers.")

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class DnsOptions(ProbeOptions):
    """Query a name for a record type against given or the system's resolvers."""

    name: str = Field(
        min_length=1,
        description="Name to resolve (absolute; with record_type PTR an IP address may be given).",
    )
    record_type: RecordType = Field("A", description="Record type to query.")
    resolvers: list[str] = Field(
        default_factory=empty_list,
        description="Resolver addresses (`ip`, `ip:port` or `[ipv6]:port`); default: the "
        "system's (/etc/resolv.conf).",
    )
    protocol: Literal["udp", "tcp"] = Field("udp", description="Transport.")
    expect: DnsExpect = Field(
        default_factory=defaults_of(DnsExpect),
        description="What good answers look like.",
    )

    @field_validator("resolvers")
    @classmethod
    def _valid_resolvers(cls, value: list[str]) -> list[str]:
        for text in value:
            resolver_address(text)
        return value


def resolver_address(text: str) -> tuple[str, int]:
    """Split `ip`, `ip:port`, `ipv6` or `[ipv6]:port` into (ip, port); ValueError if invalid."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"resolver {text!r}: expected [ipv6]:port")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"resolver {text!r} is not an IP address (write `ip` or `ip:port`)"
        ) from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"resolver {text!r}: port must be 1-65535")
    return host, int(port)


def _shown(host: str, port: int) -> str:
    text = f"[{host}]" if ":" in host else host
    return text if port == 53 else f"{text}:{port}"


class DnsProbe(Probe):
    """Resolve a name and judge the answer."""

    type = "dns"
    Options = DnsOptions
    metrics = (
        Metric("resolution_time", "duration", "from the query to the answer (or to the failure)"),
        Metric(
            "answer_count",
            "count",
            "records of `record_type` in the answer; 0 for NXDOMAIN and empty answers",
        ),
    )

    def __init__(self) -> None:
        self._system: tuple[int | None, list[Any]] | None = None

    async def check(self, options: DnsOptions, ctx: ProbeContext) -> Result:
        import anyio
        import dns.asyncresolver
        import dns.exception
        import dns.name
        import dns.nameserver
        import dns.rcode
        import dns.resolver
        import dns.reversename

        # the http probe's module (and what it imports) is loaded when a check runs, not
        # when `watchkeeper validate` reads the options
        from watchkeeper.plugins.probes.http import time_budget, took

        question = f"{options.name} {options.record_type}"
        try:
            qname = _qname(options.name, options.record_type)
        except (dns.exception.DNSException, ValueError) as exc:
            return Result(ok=False, message=f"invalid name {options.name!r}: {exc}")
        if options.resolvers:
            targets = [resolver_address(text) for text in options.resolvers]
            nameservers: list[Any] = [dns.nameserver.Do53Nameserver(h, p) for h, p in targets]
            via = ", ".join(_shown(h, p) for h, p in targets)
        else:
            try:
                nameservers = await anyio.to_thread.run_sync(self._system_nameservers)
            except dns.resolver.NoResolverConfiguration:
                return Result(ok=False, message="no system resolvers are configured")
            via = "the system resolvers"
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = nameservers
        budget = time_budget(ctx.timeout)
        resolver.timeout = min(2.0, budget)  # per try; tries repeat until the lifetime ends
        resolver.cache = None
        tcp = options.protocol == "tcp"
        start = time.perf_counter()
        answers: list[str] = []
        details: dict[str, Any] = {"resolvers": via}
        try:
            # dnspython may overrun its lifetime by a retry's back-off: the budget is ours
            with anyio.fail_after(budget):
                answer = await resolver.resolve(
                    qname,
                    options.record_type,
                    tcp=tcp,
                    lifetime=budget,
                    search=False,
                    raise_on_no_answer=False,
                )
        except dns.resolver.NXDOMAIN:
            rcode = "NXDOMAIN"
        except dns.resolver.YXDOMAIN:
            rcode = "YXDOMAIN"
        except (dns.resolver.LifetimeTimeout, TimeoutError) as exc:
            # a resolver that refused or failed is worth naming; one that was silent is not
            tried = getattr(exc, "kwargs", {}).get("errors") or []
            named = "; ".join(
                f"{where}: {why}" for where, why in _errors(tried).items() if why != "no answer"
            )
            return Result(
                ok=False,
                message=f"timed out after {format_duration(ctx.timeout)} resolving {question} "
                f"via {via}" + (f" ({named})" if named else ""),
                metrics={"resolution_time": time.perf_counter() - start},
                details={**details, "timeout": True},
            )
        except dns.resolver.NoNameservers as exc:
            tried = exc.kwargs.get("errors") or []
            rcodes = [r.rcode() for *_, r in tried if r is not None]
            if not rcodes:
                why = "; ".join(
                    reason if where == via else f"{where}: {reason}"
                    for where, reason in _errors(tried).items()
                )
                return Result(
                    ok=False,
                    message=f"no answer resolving {question} via {via}: {why}",
                    metrics={"resolution_time": time.perf_counter() - start},
                    details=details,
                )
            rcode = dns.rcode.to_text(rcodes[-1])
        except dns.exception.DNSException as exc:
            return Result(
                ok=False,
                message=f"resolving {question} via {via} failed: {exc}",
                metrics={"resolution_time": time.perf_counter() - start},
                details=details,
            )
        else:
            rcode = "NOERROR"
            if answer.rrset is not None:
                answers = [_text(rdata) for rdata in answer.rrset]
            details["answered_by"] = _shown(answer.nameserver, answer.port)
            if answer.canonical_name != answer.qname:
                details["canonical_name"] = answer.canonical_name.to_text(omit_final_dot=True)
        elapsed = time.perf_counter() - start
        details.update(rcode=rcode, answers=answers)
        metrics = {"resolution_time": elapsed, "answer_count": float(len(answers))}
        failures = _failures(options, rcode, answers)
        head = f"{question} via {via}"
        if failures:
            return Result(
                ok=False,
                message=f"{head}: " + "; ".join(failures),
                metrics=metrics,
                details=details,
            )
        if rcode != "NOERROR":
            outcome = f"{rcode} as expected"
        else:
            outcome = _listing(answers) if answers else "no answers"
        return Result(
            ok=True,
            message=f"{head}: {outcome} in {took(elapsed)}",
            metrics=metrics,
            details=details,
        )

    def _system_nameservers(self) -> list[Any]:
        """Return the resolvers of /etc/resolv.conf, read again when the file changes."""
        import dns.resolver

        try:
            stamp: int | None = os.stat("/etc/resolv.conf").st_mtime_ns
        except OSError:
            stamp = None
        if self._system is None or self._system[0] != stamp:
            self._system = (stamp, list(dns.resolver.Resolver(configure=True).nameservers))
        return self._system[1]


def _qname(name: str, record_type: str) -> Any:
    import dns.name
    import dns.reversename

    if record_type == "PTR":
        try:
            return dns.reversename.from_address(name)
        except (ValueError, SyntaxError):
            pass  # already a name such as 1.0.0.127.in-addr.arpa
    return dns.name.from_text(name)


def _text(rdata: Any) -> str:
    """Write an answer as people do: TXT strings joined, names without their final dot."""
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return "".join(s.decode("utf-8", errors="replace") for s in strings)
    address = getattr(rdata, "address", None)
    if isinstance(address, str):
        return address
    return " ".join(_undot(token) for token in rdata.to_text().split())


def _undot(token: str) -> str:
    return token[:-1] if len(token) > 1 and token.endswith(".") else token


def _key(text: str, record_type: str) -> str:
    """Return the form answers compare in: addresses by value, TXT as is, names folded."""
    text = text.strip()
    if record_type in ("A", "AAAA"):
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text
    if record_type == "TXT":
        return text
    return " ".join(_undot(token) for token in text.split()).casefold()


def _failures(options: DnsOptions, rcode: str, answers: list[str]) -> list[str]:
    expect = options.expect
    if rcode != expect.rcode:
        return [f"{rcode} (expected {expect.rcode})"]
    kind = options.record_type
    got = {_key(a, kind): a for a in answers}
    failures = []
    if expect.min_answers is not None and len(answers) < expect.min_answers:
        failures.append(f"{_count(len(answers))} (expected at least {expect.min_answers})")
    if expect.answers is not None:
        wanted = {_key(a, kind): a for a in expect.answers}
        if set(wanted) != set(got):
            found = _listing(answers) if answers else "no answers"
            failures.append(f"answers are {found} (expected exactly {_listing(expect.answers)})")
    missing = [a for a in expect.contains if _key(a, kind) not in got]
    if missing:
        found = _listing(answers) if answers else "no answers"
        failures.append(f"missing {_listing(missing)} (got {found})")
    if expect.regex is not None:
        pattern = re.compile(expect.regex)
        if not answers:
            failures.append(f"no answers to match /{expect.regex}/")
        for answer in answers:
            if not pattern.search(answer):
                failures.append(f"{answer!r} does not match /{expect.regex}/")
                break
    return failures


def _count(n: int) -> str:
    return f"{n} answer" if n == 1 else f"{n} answers"


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _errors(errors: list[Any]) -> dict[str, str]:
    """Return what went wrong with each resolver: `{"127.0.0.1:5353": "no answer"}`."""
    import dns.exception
    import dns.rcode

    from watchkeeper.plugins.probes.http import network_reason

    parts: dict[str, str] = {}
    for server, _tcp, port, error, response in errors:
        # dnspython names a resolver `Do53:127.0.0.1@5353` or just `127.0.0.1`
        host = str(server).removeprefix("Do53:").rpartition("@")[0] or str(server)
        where = _shown(host, int(port or 53))
        if response is not None:
            parts[where] = dns.rcode.to_text(response.rcode())
        elif isinstance(error, dns.exception.Timeout):
            parts[where] = "no answer"
        elif isinstance(error, BaseException):
            parts[where] = network_reason(error) or str(error) or type(error).__name__
        else:
            parts[where] = str(error)
    return parts


@hookimpl
def watchkeeper_probes():
    return [DnsProbe]
