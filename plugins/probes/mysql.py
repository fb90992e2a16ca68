"""The `mysql` probe: connect to MySQL or MariaDB, time a query, read server statistics."""

from __future__ import annotations

import functools
import numbers
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import network_reason, time_budget, took
from watchkeeper.plugins.probes.tls import tls_failure
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration

INSTALL = "pip install 'watchkeeper[mysql]'"
SCHEMES = ("mysql", "mariadb")

# MySQL's and MariaDB's error codes the messages put in words
ACCESS_DENIED = 1045
SYNTAX_ERROR = 1064
UNKNOWN_VARIABLE = 1193
STATEMENT_TIMEOUT = (1969, 3024)  # MariaDB max_statement_time, MySQL max_execution_time


@dataclass(frozen=True)
class Dsn:
    """A parsed `mysql://` DSN."""

    scheme: str
    user: str
    password: str
    host: str
    port: int
    database: str | None
    unix_socket: str | None

    @property
    def shown(self) -> str:
        """The DSN for messages: everything but the password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = host if self.unix_socket else f"{host}:{self.port}"
        tail = f"?unix_socket={self.unix_socket}" if self.unix_socket else ""
        return f"{self.scheme}://{self.user}@{where}/{self.database or ''}{tail}"


def parse_dsn(dsn: str) -> Dsn:
    """Parse `mysql://user:password@host:port/db[?unix_socket=/path]`; ValueError says why not.

    The errors never quote the DSN: it holds the password.
    """
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port or 3306
    except ValueError:
        raise ValueError("not a valid mysql:// DSN (check the port and brackets)") from None
    if parts.scheme not in SCHEMES:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(f"expected a mysql:// or mariadb:// DSN, got {shown}")
    if not parts.username:
        raise ValueError("the DSN names no user (mysql://user:password@host:3306/db)")
    unix_socket = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "unix_socket" and value:
            unix_socket = value
        elif name.lower().startswith(("ssl", "tls")):
            raise ValueError(f"DSN parameter {name!r}: use the tls and ca_bundle options instead")
        else:
            raise ValueError(f"unknown DSN parameter {name!r} (the DSN takes only unix_socket)")
    if not parts.hostname and unix_socket is None:
        raise ValueError("the DSN names no host (mysql://user:password@host:3306/db)")
    database = unquote(parts.path.lstrip("/")) or None
    if database and "/" in database:
        raise ValueError("the DSN's path is one database name, without slashes")
    return Dsn(
        scheme=parts.scheme,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        host=parts.hostname or "localhost",
        port=port,
        database=database,
        unix_socket=unix_socket,
    )


class MysqlOptions(ProbeOptions):
    """Connect to MySQL or MariaDB and time a query (install watchkeeper[mysql])."""

    dsn: Secret = Field(
        description="mysql://user:password@host:3306/database (or mariadb://); "
        "?unix_socket=/run/mysqld/mysqld.sock connects through a socket."
    )
    query: str = Field("SELECT 1", description="Query to time; an error fails the run.")
    tls: bool = Field(
        False, description="Require TLS, verifying the server's certificate and host name."
    )
    ca_bundle: str | None = Field(
        None,
        description="CA certificates (PEM) to verify the server by, not the system's.",
    )
    stats: bool = Field(
        False,
        description="Also report threads_connected, slow_queries and, on a replica, "
        "replication_lag (a replica whose replication has stopped is down).",
    )

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: Secret) -> Secret:
        parse_dsn(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _tls(self) -> MysqlOptions:
        if self.ca_bundle is not None and not self.tls:
            raise ValueError("ca_bundle needs tls: true")
        return self


class MysqlProbe(Probe):
    """Connect to MySQL or MariaDB, time a query, optionally read server statistics."""

    type = "mysql"
    Options = MysqlOptions
    metrics = (
        Metric("connect_time", "duration", "connect, negotiate TLS and authenticate"),
        Metric("query_time", "duration", "run `query` and fetch its rows"),
        Metric("rows", "count", "rows the query returned"),
        Metric(
            "value",
            "any",
            "the first column of the first row, when it is a number: "
            "`SELECT COUNT(*) FROM jobs WHERE failed`; its unit is the query's",
        ),
        Metric("threads_connected", "count", "open client connections, with `stats`"),
        Metric(
            "slow_queries",
            "count",
            "queries slower than `long_query_time` since the server started, with `stats`",
        ),
        Metric(
            "replication_lag",
            "duration",
            "how far a replica's applied changes trail its primary (`Seconds_Behind_Master`), "
            "with `stats`, on a replica",
        ),
    )

    async def check(self, options: MysqlOptions, ctx: ProbeContext) -> Result:
        import anyio

        try:
            import aiomysql
        except ImportError:
            return Result(ok=False, message=f"the mysql probe needs aiomysql: {INSTALL}")

        dsn = parse_dsn(options.dsn.get_secret_value())
        shown = dsn.shown
        budget = time_budget(ctx.timeout)
        after = format_duration(ctx.timeout)
        context = None
        if options.tls:
            try:
                context = _tls_context(options.ca_bundle, ctx.base_dir)
            except (OSError, ssl.SSLError) as exc:
                return Result(
                    ok=False, message=f"cannot load ca_bundle {options.ca_bundle}: {_reason(exc)}"
                )

        conn = _connection_class()(
            host=dsn.host,
            port=dsn.port,
            user=dsn.user,
            password=dsn.password,
            db=dsn.database,
            unix_socket=dsn.unix_socket,
            ssl=context,
            connect_timeout=budget,
            autocommit=True,
            program_name="watchkeeper",
        )
        metrics: dict[str, float] = {}
        phase = "connect"
        try:
            with anyio.fail_after(budget):
                start = time.perf_counter()
                await conn._connect()  # what aiomysql.connect() does, with our class
                metrics["connect_time"] = time.perf_counter() - start
                await _limit_statements(conn, budget - metrics["connect_time"])
                phase = "query"
                start = time.perf_counter()
                async with conn.cursor() as cur:
                    await cur.execute(options.query)
                    rows = await cur.fetchall() if cur.description else ()
                metrics["query_time"] = time.perf_counter() - start
                metrics["rows"] = float(len(rows))
                if (value := _first_number(rows)) is not None:
                    metrics["value"] = value
                replication: list[dict[str, Any]] = []
                if options.stats:
                    phase = "statistics query"
                    metrics.update(await _status(conn))
                    replication = await _replica_status(conn, aiomysql)
        except _NoTls:
            return Result(
                ok=False,
                message=f"cannot connect to {shown}: TLS failed: the server does not offer TLS",
                metrics=metrics,
            )
        except (TimeoutError, aiomysql.Error, OSError) as exc:
            if _timed_out(exc):
                doing = "connecting to" if phase == "connect" else f"running the {phase} on"
                return Result(
                    ok=False,
                    message=f"timed out after {after} {doing} {shown}",
                    metrics=metrics,
                    details={"timeout": True},
                )
            reason = _clean(exc, dsn.password)
            if phase == "connect":
                message = f"cannot connect to {shown}: {reason}"
            else:
                message = f"the {phase} failed on {shown}: {reason}"
            return Result(ok=False, message=message, metrics=metrics)
        finally:
            conn.close()  # closes the socket at once: nothing to await, nothing to shield
        message = (
            f"{shown}: connected in {took(metrics['connect_time'])}, "
            f"query in {took(metrics['query_time'])}"
        )
        if not replication:
            return Result(ok=True, message=message, metrics=metrics)
        return _judge_replica(replication, shown, message, metrics)


class _NoTls(Exception):
    """The server offers no TLS, and the check requires it."""


@functools.cache
def _connection_class() -> type:
    """aiomysql's Connection, refusing to log in without TLS when the check requires it."""
    import aiomysql
    from pymysql.constants import CLIENT

    class Connection(aiomysql.Connection):
        # aiomysql goes on without TLS when the server offers none; with `tls: true`
        # that would send the login in the clear, so stop before authenticating
        async def _request_authentication(self) -> None:
            if self._ssl_context is not None and not self.server_capabilities & CLIENT.SSL:
                raise _NoTls
            await super()._request_authentication()

    return Connection


def _tls_context(ca_bundle: str | None, base_dir: Path) -> ssl.SSLContext:
    cafile = None if ca_bundle is None else str(base_dir / Path(ca_bundle).expanduser())
    return ssl.create_default_context(cafile=cafile)


async def _limit_statements(conn: Any, seconds: float) -> None:
    """Have the server stop a runaway query a little before the probe would give up.

    Closing the socket does not stop a query already running: without a limit it would
    run on in the server after every timed-out check.
    """
    import aiomysql

    seconds = max(seconds, 0.001)
    if "mariadb" in conn.get_server_info().lower():
        statement = f"SET SESSION max_statement_time = {seconds:.3f}"
    else:  # MySQL's limit, which applies to SELECT only
        statement = f"SET SESSION max_execution_time = {max(1, int(seconds * 1000))}"
    async with conn.cursor() as cur:
        try:
            await cur.execute(statement)
        except aiomysql.Error as exc:
            if exc.args[:1] != (UNKNOWN_VARIABLE,):
                raise
            # servers older than MySQL 5.7.8 and MariaDB 10.1 have no such limit


async def _status(conn: Any) -> dict[str, float]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Slow_queries')"
        )
        found = {str(name).lower(): value for name, value in await cur.fetchall()}
    return {
        name: float(found[name]) for name in ("threads_connected", "slow_queries") if name in found
    }


async def _replica_status(conn: Any, aiomysql: Any) -> list[dict[str, Any]]:
    """Rows of SHOW REPLICA STATUS (one per channel), or none on a server that is no replica."""
    async with conn.cursor(aiomysql.DictCursor) as cur:
        try:
            await cur.execute("SHOW REPLICA STATUS")
        except aiomysql.ProgrammingError as exc:
            if exc.args[0] != SYNTAX_ERROR:
                raise
            # MySQL before 8.0.22 and MariaDB before 10.5 know only the older words
            await cur.execute("SHOW SLAVE STATUS")
        return list(await cur.fetchall())


def _judge_replica(
    rows: list[dict[str, Any]], shown: str, message: str, metrics: dict[str, float]
) -> Result:
    """Report the replica's lag; down when replication has stopped on any channel."""
    lags = []
    for row in rows:
        channel = row.get("Channel_Name") or row.get("Connection_name") or ""
        named = f" (channel {channel})" if channel else ""
        sql = _field(row, "Replica_SQL_Running", "Slave_SQL_Running")
        if sql != "Yes":
            error = _field(row, "Last_SQL_Error") or "it was stopped"
            return Result(
                ok=False,
                message=f"{shown}: the replica's SQL thread is stopped{named}: {error}",
                metrics=metrics,
            )
        io = _field(row, "Replica_IO_Running", "Slave_IO_Running")
        if io != "Yes":
            primary = f"{_field(row, 'Source_Host', 'Master_Host')}:" + str(
                _field(row, "Source_Port", "Master_Port")
            )
            error = _field(row, "Last_IO_Error") or f"IO thread {io or 'stopped'}"
            return Result(
                ok=False,
                message=f"{shown}: the replica is not receiving from {primary}{named}: {error}",
                metrics=metrics,
            )
        lag = row.get("Seconds_Behind_Source", row.get("Seconds_Behind_Master"))
        if lag is not None:
            lags.append(float(lag))
    if lags:
        metrics["replication_lag"] = max(lags)
        message += f"; replica {format_duration(max(lags))} behind"
    return Result(ok=True, message=message, metrics=metrics)


def _field(row: dict[str, Any], *names: str) -> str:
    """The first of `names` the row has: MySQL 8 says Replica/Source, older servers Slave/Master."""
    for name in names:
        if name in row:
            value = row[name]
            return value.decode() if isinstance(value, bytes) else str(value or "")
    return ""


def _first_number(rows: Any) -> float | None:
    if not rows or not rows[0]:
        return None
    value = rows[0][0]
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def _timed_out(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        args = getattr(seen, "args", ())
        if args and args[0] in STATEMENT_TIMEOUT:
            return True
        seen = seen.__cause__
    return False


def _reason(exc: BaseException) -> str:
    """The plainest words for what went wrong, without a traceback."""
    if (tls := tls_failure(exc)) is not None:
        return tls
    if (plain := network_reason(exc)) is not None:
        return plain
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        code, text = args
        if code == ACCESS_DENIED:
            return f"auth failed: {text}"
        return f"{text} (error {code})"
    return str(exc) or type(exc).__name__


def _clean(exc: BaseException, password: str) -> str:
    text = " ".join(_reason(exc).split())
    if password:
        text = text.replace(password, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [MysqlProbe]
