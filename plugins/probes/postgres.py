"""The `postgres` probe: connect, run a query, optionally read server statistics."""

from __future__ import annotations

import numbers
import re
import time
from typing import Any

from pydantic import Field

from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import MASK
from watchkeeper.engine.run.probe import Metric, Probe, ProbeContext, Result
from watchkeeper.plugins.probes.http import time_budget, took
from watchkeeper.schema.base import Secret
from watchkeeper.schema.checks import ProbeOptions
from watchkeeper.schema.units import format_duration


class PostgresOptions(ProbeOptions):
    """Connect to PostgreSQL and time a query."""

    dsn: Secret = Field(description="Connection string (postgresql://user:pass@host/db).")
    query: str = Field("select 1", description="Query to time; must succeed.")
    expect_rows: int | None = Field(
        None, ge=0, description="Fail unless the query returns at least this many rows."
    )
    stats: bool = Field(False, description="Also report connections and database_size.")


_SERVER_PREFIX = re.compile(r'^connection to server (at|on) "[^"]*"(, port \d+)? failed: ')

_STATS = """
select (select count(*) from pg_stat_activity where backend_type = 'client backend'),
       current_setting('max_connections')::int,
       pg_database_size(current_database())
"""


class PostgresProbe(Probe):
    """Connect to PostgreSQL, time a query, optionally read server statistics."""

    type = "postgres"
    Options = PostgresOptions
    metrics = (
        Metric("connect_time", "duration", "connect and authenticate"),
        Metric("query_time", "duration", "run `query` and fetch its rows"),
        Metric("rows", "count", "rows the query returned"),
        Metric(
            "value",
            "any",
            "the first column of the first row, when it is a number: "
            "`select count(*) from jobs where failed`; its unit is the query's",
        ),
        Metric(
            "connections",
            "count",
            "client connections to the server (`pg_stat_activity`), with `stats`",
        ),
        Metric("max_connections", "count", "the server's `max_connections`, with `stats`"),
        Metric("connection_usage", "ratio", "`connections ÷ max_connections`, with `stats`"),
        Metric("database_size", "bytes", "size of the connected database, with `stats`"),
    )

    async def check(self, options: PostgresOptions, ctx: ProbeContext) -> Result:
        import anyio
        import psycopg

        dsn = options.dsn.get_secret_value()
        try:
            shown, password, params = _describe_dsn(dsn)
        except psycopg.ProgrammingError as exc:
            return Result(ok=False, message=f"invalid dsn: {_clean(exc, None)}")
        budget = time_budget(ctx.timeout)
        after = format_duration(ctx.timeout)
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        try:
            with anyio.fail_after(budget):
                conn = await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, **_session_params(params, budget)
                )
        except TimeoutError:
            return Result(
                ok=False,
                message=f"timed out after {after} connecting to {shown}",
                details={"timeout": True},
            )
        except psycopg.Error as exc:
            return Result(ok=False, message=f"cannot connect to {shown}: {_clean(exc, password)}")
        metrics["connect_time"] = time.perf_counter() - start
        try:
            left = max(budget - metrics["connect_time"], 0.001)
            phase = "query"
            with anyio.fail_after(left):
                start = time.perf_counter()
                async with conn.cursor() as cur:
                    await cur.execute(options.query)
                    rows = await cur.fetchall() if cur.description is not None else []
                metrics["query_time"] = time.perf_counter() - start
                metrics["rows"] = float(len(rows))
                if (value := _first_number(rows)) is not None:
                    metrics["value"] = value
                if options.stats:
                    phase = "statistics query"
                    async with conn.cursor() as cur:
                        await cur.execute(_STATS)
                        connections, max_connections, size = await cur.fetchone()
                    metrics["connections"] = float(connections)
                    metrics["max_connections"] = float(max_connections)
                    metrics["connection_usage"] = connections / max_connections
                    metrics["database_size"] = float(size)
        except (TimeoutError, psycopg.errors.QueryCanceled):
            return Result(
                ok=False,
                message=f"timed out after {after} running the {phase} on {shown}",
                metrics=metrics,
                details={"timeout": True},
            )
        except psycopg.Error as exc:
            return Result(
                ok=False,
                message=f"the {phase} failed on {shown}: {_clean(exc, password)}",
                metrics=metrics,
            )
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await conn.close()
        if options.expect_rows is not None and len(rows) < options.expect_rows:
            return Result(
                ok=False,
                message=f"query on {shown} returned {len(rows)} rows "
                f"(expected at least {options.expect_rows})",
                metrics=metrics,
            )
        return Result(
            ok=True,
            message=f"{shown}: connected in {took(metrics['connect_time'])}, "
            f"query in {took(metrics['query_time'])}",
            metrics=metrics,
        )


def _describe_dsn(dsn: str) -> tuple[str, str | None, dict[str, Any]]:
    """Return (`postgresql://user@host:port/db` for messages, the password, its params)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = params.get("port") or 5432
    user = params.get("user")
    db = params.get("dbname") or user or ""
    shown = f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}"
    password = params.get("password")
    return shown, str(password) if password else None, params


def _session_params(params: dict[str, Any], budget: float) -> dict[str, Any]:
    """Connection settings the probe adds: a name in pg_stat_activity, server-side limits."""
    extra: dict[str, Any] = {}
    if "application_name" not in params:
        extra["application_name"] = "watchkeeper"
    if "connect_timeout" not in params:
        extra["connect_timeout"] = max(2, int(budget + 0.999))  # libpq's minimum is 2s
    # the server ends a runaway query a little before the probe would cancel it, so the
    # connection closes cleanly instead of through a cancelled await
    timeout = f"-c statement_timeout={max(1, int(budget * 900))}"
    extra["options"] = f"{params['options']} {timeout}" if params.get("options") else timeout
    return extra


def _first_number(rows: list[Any]) -> float | None:
    if not rows or not rows[0]:
        return None
    value = rows[0][0]
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def _clean(exc: BaseException, password: str | None) -> str:
    """One line of a psycopg error, never carrying the password."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = _SERVER_PREFIX.sub("", text.removeprefix("connection failed: "))
    text = " ".join(text.replace("FATAL:", "").split())
    if password:
        text = text.replace(password, MASK)
    return text


@hookimpl
def watchkeeper_probes():
    return [PostgresProbe]
