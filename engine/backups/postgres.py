"""PostgreSQL helpers the backup sources and drills share: DSNs, libpq's environment,
creating and dropping databases, counting rows.

Credentials never reach a command line (where `ps` shows them): `pg_dump` and
`pg_restore` get the connection without its password as `--dbname`, and the password in
the PGPASSWORD environment variable (a `passfile` in the DSN is passed on as is).
"""

from __future__ import annotations

import os
import re
from typing import Any

from watchkeeper.engine.backups.plugin import BackupError

MAINTENANCE_DBS = ("postgres", "template1")


def _parse(dsn: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except Exception as exc:
        raise BackupError(f"invalid PostgreSQL connection string: {exc}") from None


def dbname(dsn: str) -> str | None:
    """Return the database a DSN names (None: libpq's default, the user name)."""
    return _parse(dsn).get("dbname")


def with_dbname(dsn: str, name: str) -> str:
    """Return the DSN pointed at another database of the same server."""
    from psycopg.conninfo import make_conninfo

    from watchkeeper.engine.observe.redaction import REDACTOR

    params = _parse(dsn)
    # the rewritten DSN is a new string: make sure its password is masked wherever it goes
    REDACTOR.add(params.get("password"))
    params["dbname"] = name
    return make_conninfo(**params)


def same_database(a: str, b: str) -> bool:
    """Return whether two DSNs name the same database on the same server."""
    pa, pb = _parse(a), _parse(b)

    def key(p: dict[str, Any]) -> tuple[str, str, str]:
        host = str(p.get("host") or p.get("hostaddr") or "localhost")
        host = "localhost" if host in ("127.0.0.1", "::1", "") else host
        return host, str(p.get("port") or "5432"), str(p.get("dbname") or p.get("user") or "")

    return key(pa) == key(pb)


def libpq_args(dsn: str, *, extra_env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Return (conninfo without password, environment with PGPASSWORD) for a client tool."""
    from psycopg.conninfo import make_conninfo

    params = _parse(dsn)
    password = params.pop("password", None)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password:
        env["PGPASSWORD"] = str(password)
    env.update(extra_env or {})
    return make_conninfo(**params), env


async def connect(dsn: str, **kwargs: Any) -> Any:
    """Open an async psycopg connection, with errors phrased for the operator."""
    import psycopg

    try:
        return await psycopg.AsyncConnection.connect(dsn, connect_timeout=15, **kwargs)
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {_pg_message(exc)}") from None


def _pg_message(exc: BaseException) -> str:
    from watchkeeper.engine.observe.redaction import redact

    return redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


async def server_version(dsn: str) -> int:
    """Return the server's version number (e.g. 160002)."""
    conn = await connect(dsn, autocommit=True)
    async with conn:
        return conn.info.server_version


async def _maintenance(dsn: str) -> Any:
    """Connect to the server of a DSN through a database that always exists."""
    import psycopg

    last: BaseException | None = None
    for name in MAINTENANCE_DBS:
        try:
            return await psycopg.AsyncConnection.connect(
                with_dbname(dsn, name), autocommit=True, connect_timeout=15
            )
        except psycopg.Error as exc:
            last = exc
    raise BackupError(f"cannot connect to the PostgreSQL server: {_pg_message(last)}")


async def database_exists(dsn: str) -> bool:
    name = dbname(dsn)
    conn = await _maintenance(dsn)
    async with conn:
        cur = await conn.execute("select 1 from pg_database where datname = %s", (name,))
        return await cur.fetchone() is not None


async def create_database(dsn: str) -> bool:
    """Create the database a DSN names when it does not exist; return whether it did."""
    from psycopg import errors, sql

    name = dbname(dsn)
    if not name:
        raise BackupError("the target connection string names no database (dbname)")
    conn = await _maintenance(dsn)
    async with conn:
        cur = await conn.execute("select 1 from pg_database where datname = %s", (name,))
        if await cur.fetchone() is not None:
            return False
        try:
            await conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except errors.DuplicateDatabase:
            return False
        except Exception as exc:
            raise BackupError(f"cannot create database {name!r}: {_pg_message(exc)}") from None
        return True


async def drop_database(dsn: str) -> None:
    """Drop the database a DSN names (sessions still on it are ended)."""
    from psycopg import sql

    name = dbname(dsn)
    conn = await _maintenance(dsn)
    async with conn:
        version = conn.info.server_version
        force = sql.SQL(" with (force)") if version >= 130000 else sql.SQL("")
        await conn.execute(
            sql.SQL("drop database if exists {}").format(sql.Identifier(name)) + force
        )


async def user_tables(conn: Any) -> list[tuple[str, str]]:
    """Return (schema, table) of every ordinary or partitioned table outside the catalogs."""
    cur = await conn.execute(
        """
        select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and not c.relispartition
          and n.nspname not in ('pg_catalog', 'information_schema')
          and n.nspname not like 'pg\\_toast%%' and n.nspname not like 'pg\\_temp%%'
        order by 1, 2
        """
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def row_counts(dsn: str) -> dict[str, int]:
    """Return the exact row count of every user table (`schema.table` -> rows)."""
    from psycopg import sql

    conn = await connect(dsn, autocommit=True)
    async with conn:
        counts = {}
        for schema, table in await user_tables(conn):
            cur = await conn.execute(
                sql.SQL("select count(*) from {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )
            row = await cur.fetchone()
            counts[f"{schema}.{table}"] = int(row[0]) if row else 0
        return counts


def major_of(version_text: str) -> int | None:
    """Return the major version in `pg_dump (PostgreSQL) 15.4` or `16devel`."""
    match = re.search(r"(\d+)(?:\.\d+)?", version_text.split(")")[-1])
    return int(match.group(1)) if match else None


def server_major(version_num: int) -> int:
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def scratch_name(prefix: str, suffix: str) -> str:
    """Return a lowercase database name of at most 63 bytes."""
    safe = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{suffix}".lower())
    return safe[:63]
