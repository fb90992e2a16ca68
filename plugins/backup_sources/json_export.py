"""The `json_export` backup source: each table as gzipped JSON Lines.

Every table is read through a server-side cursor inside one read-only REPEATABLE READ
transaction, so all files show the same instant and memory holds one batch at a time.
PostgreSQL itself renders each row (`row_to_json`), and restoring hands the lines back to
it (`json_populate_recordset`), so every type round-trips through its own text form.

Files: `<schema>.<table>.jsonl.gz` per table, and `tables.json` describing each table's
columns (name, type, nullability), primary key, row count and file.

Restore: into an existing database (created when missing). A table that exists receives
the rows (it must be empty, unless `--clean`, which truncates it first); a missing table
is created from the exported column types and primary key — no indexes, defaults or
foreign keys, since an export is data, not the database (use the `postgres` source for
that). Tables load parent-first by the target's foreign keys; sequences behind serial
and identity columns are moved past the loaded values.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import Field

from watchkeeper.engine.backups import postgres as pg
from watchkeeper.engine.backups.plugin import BackupError, BackupSource, DumpContext, RestoreContext
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.schema.backups import SourceOptions
from watchkeeper.schema.base import Secret

TABLES_FILE = "tables.json"
INSERT_BATCH_BYTES = 4 << 20
INSERT_BATCH_ROWS = 5000


class JsonExportOptions(SourceOptions):
    """Export tables row by row through server-side cursors."""

    dsn: Secret = Field(description="Connection string of the database to export.")
    tables: Literal["all"] | list[str] = Field(
        "all", description="`all` or a list of (schema-qualified) tables."
    )
    schemas: list[str] = Field(
        default_factory=lambda: ["public"], description="Schemas searched when tables is `all`."
    )
    batch_size: int = Field(2000, ge=1, description="Rows fetched per round trip.")
    compress: int = Field(6, ge=1, le=9, description="gzip compression level.")


def file_name(schema: str, table: str) -> str:
    """Return a table's file name; characters unsafe in file names are %-escaped."""

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", lambda m: f"%{ord(m.group()):02X}", text)

    return f"{safe(schema)}.{safe(table)}.jsonl.gz"


async def _tables(conn: Any, options: JsonExportOptions) -> list[tuple[str, str]]:
    if options.tables == "all":
        return [t for t in await pg.user_tables(conn) if t[0] in options.schemas]
    found = []
    for name in options.tables:
        cur = await conn.execute(
            "select n.nspname, c.relname from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass(%s)",
            (name,),
        )
        row = await cur.fetchone()
        if row is None:
            raise BackupError(f"table {name!r} does not exist")
        found.append((row[0], row[1]))
    return found


async def _describe(conn: Any, schema: str, table: str) -> dict[str, Any]:
    cur = await conn.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
        from pg_attribute a
        where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
        order by a.attnum
        """,
        (_qualified(schema, table),),
    )
    columns = [{"name": r[0], "type": r[1], "nullable": not r[2]} for r in await cur.fetchall()]
    cur = await conn.execute(
        """
        select a.attname from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = %s::regclass and i.indisprimary
        order by array_position(i.indkey, a.attnum)
        """,
        (_qualified(schema, table),),
    )
    primary_key = [r[0] for r in await cur.fetchall()]
    return {"schema": schema, "name": table, "columns": columns, "primary_key": primary_key}


def _qualified(schema: str, table: str) -> str:
    from psycopg import sql

    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)).as_string(None)


class JsonExportSource(BackupSource):
    type = "json_export"
    Options = JsonExportOptions
    restores_to = "database"

    async def dump(self, options: JsonExportOptions, ctx: DumpContext) -> dict[str, Any]:
        import psycopg
        from psycopg import sql

        conn = await pg.connect(options.dsn.get_secret_value())
        described = []
        async with conn:
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            async with conn.transaction():
                for schema, table in await _tables(conn, options):
                    meta = await _describe(conn, schema, table)
                    meta["file"] = file_name(schema, table)
                    query = sql.SQL("select row_to_json(t)::text from {}.{} t").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                    rows = 0
                    gz = zlib.compressobj(options.compress, zlib.DEFLATED, 31)
                    async with ctx.file(meta["file"]) as out:
                        async with conn.cursor(name=f"wk_export_{len(described)}") as cur:
                            cur.itersize = options.batch_size
                            await cur.execute(query)
                            while batch := await cur.fetchmany(options.batch_size):
                                rows += len(batch)
                                text = "".join(row[0] + "\n" for row in batch)
                                await out.write(gz.compress(text.encode()))
                        await out.write(gz.flush())
                    meta["rows"] = rows
                    described.append(meta)
                    ctx.log.debug(
                        "exported table", extra={"table": f"{schema}.{table}", "rows": rows}
                    )
        summary = {"format": 1, "tables": described}
        async with ctx.file(TABLES_FILE) as out:
            await out.write(json.dumps(summary, indent=2).encode())
        return {"tables": len(described), "rows": sum(t["rows"] for t in described)}

    async def restore(
        self, options: Any, files: dict[str, Path], target: str, ctx: RestoreContext
    ) -> dict[str, Any]:
        if TABLES_FILE not in files:
            raise BackupError(f"the backup has no {TABLES_FILE}: not a json_export backup")
        summary = json.loads(files[TABLES_FILE].read_bytes())
        created_db = await pg.create_database(target)
        if created_db:
            ctx.notes.append(f"created database {pg.dbname(target)}")
        result = await anyio.to_thread.run_sync(
            _load, target, summary["tables"], files, ctx.clean, ctx.notes
        )
        result["database"] = pg.dbname(target)
        return result


def _load(
    dsn: str, tables: list[dict[str, Any]], files: dict[str, Path], clean: bool, notes: list[str]
) -> dict[str, Any]:
    """Load every table in one transaction (runs in a worker thread)."""
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(dsn, connect_timeout=15)
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to the target database: {exc}") from None
    rows_total = 0
    with conn:
        existing = {}
        for meta in tables:
            row = conn.execute(
                "select to_regclass(%s)", (_qualified(meta["schema"], meta["name"]),)
            ).fetchone()
            existing[(meta["schema"], meta["name"])] = row[0] is not None
        created = []
        for meta in tables:
            key = (meta["schema"], meta["name"])
            ident = sql.Identifier(*key)
            if not existing[key]:
                _create(conn, meta)
                created.append(".".join(key))
                continue
            has_rows = conn.execute(sql.SQL("select exists (select from {})").format(ident))
            if has_rows.fetchone()[0] and not clean:
                raise BackupError(
                    f"table {'.'.join(key)} is not empty: restore into empty tables or a new "
                    "database, or pass --clean to truncate the exported tables first"
                )
        if clean:
            present = [
                sql.Identifier(m["schema"], m["name"])
                for m in tables
                if existing[(m["schema"], m["name"])]
            ]
            if present:
                conn.execute(sql.SQL("truncate {} cascade").format(sql.SQL(", ").join(present)))
        for meta in _parents_first(conn, tables):
            rows_total += _load_table(conn, meta, files)
    if created:
        notes.append(f"created {len(created)} table(s) from the exported column types")
    return {"tables": len(tables), "rows": rows_total, "created_tables": created}


def _create(conn: Any, meta: dict[str, Any]) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(meta["schema"])))
    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c["name"]),
            sql.SQL(c["type"]),  # format_type() output: a type name PostgreSQL wrote itself
            sql.SQL("" if c["nullable"] else " not null"),
        )
        for c in meta["columns"]
    ]
    if meta.get("primary_key"):
        columns.append(
            sql.SQL("primary key ({})").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in meta["primary_key"])
            )
        )
    conn.execute(
        sql.SQL("create table {} ({})").format(
            sql.Identifier(meta["schema"], meta["name"]), sql.SQL(", ").join(columns)
        )
    )


def _parents_first(conn: Any, tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order tables so that a table comes after those its foreign keys reference."""
    names = {_qualified(m["schema"], m["name"]): m for m in tables}
    oids = {}
    for name in names:
        oids[name] = conn.execute("select %s::regclass::oid", (name,)).fetchone()[0]
    by_oid = {oid: name for name, oid in oids.items()}
    depends: dict[str, set[str]] = {name: set() for name in names}
    for child, parent in conn.execute(
        "select conrelid, confrelid from pg_constraint where contype = 'f' and conrelid = any(%s)",
        (list(oids.values()),),
    ).fetchall():
        if parent in by_oid and parent != child:
            depends[by_oid[child]].add(by_oid[parent])
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered or name in visiting:
            return  # a cycle: load in the given order and let deferred keys sort it out
        visiting.add(name)
        for parent in sorted(depends[name]):
            visit(parent)
        visiting.discard(name)
        ordered.append(name)

    for name in names:
        visit(name)
    return [names[n] for n in ordered]


def _load_table(conn: Any, meta: dict[str, Any], files: dict[str, Path]) -> int:
    from psycopg import sql

    table = sql.Identifier(meta["schema"], meta["name"])
    cur = conn.execute(
        """
        select attname, attidentity, attgenerated from pg_attribute
        where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum
        """,
        (_qualified(meta["schema"], meta["name"]),),
    )
    columns = [(r[0], r[1], r[2]) for r in cur.fetchall()]
    insertable = [sql.Identifier(name) for name, _identity, generated in columns if not generated]
    column_list = sql.SQL(", ").join(insertable)
    insert = sql.SQL(
        "insert into {table} ({cols}) overriding system value "
        "select {cols} from json_populate_recordset(null::{table}, %s::json)"
    ).format(table=table, cols=column_list)
    rows = 0
    batch: list[str] = []
    size = 0
    path = files.get(meta["file"])
    if path is None:
        raise BackupError(
            f"the backup lacks {meta['file']} for table {meta['schema']}.{meta['name']}"
        )
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                continue
            batch.append(line)
            size += len(line)
            if len(batch) >= INSERT_BATCH_ROWS or size >= INSERT_BATCH_BYTES:
                conn.execute(insert, ("[" + ",".join(batch) + "]",))
                rows += len(batch)
                batch, size = [], 0
    if batch:
        conn.execute(insert, ("[" + ",".join(batch) + "]",))
        rows += len(batch)
    for name, _identity, _generated in columns:
        sequence = conn.execute(
            "select pg_get_serial_sequence(%s, %s)",
            (_qualified(meta["schema"], meta["name"]), name),
        ).fetchone()[0]
        if sequence:
            conn.execute(
                sql.SQL(
                    "select setval(%s, coalesce(max({col}), 1), max({col}) is not null) "
                    "from {table}"
                ).format(col=sql.Identifier(name), table=table),
                (sequence,),
            )
    return rows


@hookimpl
def watchkeeper_backup_sources():
    return [JsonExportSource]
