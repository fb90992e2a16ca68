"""The `postgres` backup source: pg_dump in custom format, restored with pg_restore.

pg_dump writes to a pipe that is read 256 KiB at a time and streamed on (hashing,
encryption, destinations), so a dump of any size uses a few MiB of memory.
"""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import Any

import anyio
from pydantic import Field

from watchkeeper.engine.backups import postgres as pg
from watchkeeper.engine.backups.plugin import BackupError, BackupSource, DumpContext, RestoreContext
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.engine.observe.redaction import redact
from watchkeeper.schema.backups import SourceOptions
from watchkeeper.schema.base import Secret

READ_SIZE = 256 * 1024
MAGIC = b"PGDMP"  # how every custom-format archive starts


class PostgresSourceOptions(SourceOptions):
    """Dump one PostgreSQL database with pg_dump (custom format, streamed)."""

    dsn: Secret = Field(description="Connection string of the database to dump.")
    schemas: list[str] = Field(default_factory=list, description="Only these schemas.")
    exclude_schemas: list[str] = Field(default_factory=list, description="Not these schemas.")
    tables: list[str] = Field(default_factory=list, description="Only these tables.")
    exclude_tables: list[str] = Field(default_factory=list, description="Not these tables.")
    exclude_table_data: list[str] = Field(
        default_factory=list, description="Schema but no rows for these tables."
    )
    compress: int = Field(6, ge=0, le=9, description="pg_dump compression level.")
    pg_dump: str = Field("pg_dump", description="pg_dump program to run.")
    pg_restore: str = Field("pg_restore", description="pg_restore program to run.")
    no_owner: bool = Field(
        True,
        description="Restore without the original owners and privileges (so any role "
        "may restore, into any server); false restores them as dumped.",
    )


def dump_argv(options: PostgresSourceOptions, conninfo: str) -> list[str]:
    """Return pg_dump's command line (the password is never part of it)."""
    argv = [options.pg_dump, "--format=custom", f"--compress={options.compress}", "--no-password"]
    for flag, values in (
        ("--schema", options.schemas),
        ("--exclude-schema", options.exclude_schemas),
        ("--table", options.tables),
        ("--exclude-table", options.exclude_tables),
        ("--exclude-table-data", options.exclude_table_data),
    ):
        argv += [f"{flag}={v}" for v in values]
    return [*argv, f"--dbname={conninfo}"]


async def _tool_version(program: str) -> tuple[str, int | None]:
    try:
        result = await anyio.run_process([program, "--version"], check=False)
    except OSError as exc:
        raise BackupError(
            f"cannot run {program!r}: {exc.strerror or exc} (install the PostgreSQL client "
            "tools, e.g. `apt-get install postgresql-client`, or set its path)"
        ) from None
    text = result.stdout.decode(errors="replace").strip()
    return text, pg.major_of(text)


async def check_versions(options: PostgresSourceOptions, program: str) -> dict[str, Any]:
    """Refuse a client tool older than the server: its dump would be refused or wrong."""
    dsn = options.dsn.get_secret_value()
    version_num = await pg.server_version(dsn)
    server = pg.server_major(version_num)
    text, local = await _tool_version(program)
    if local is not None and local < server:
        raise BackupError(
            f"{Path(program).name} {local} is older than the server (PostgreSQL {server}): "
            f"install the version {server} client tools (e.g. postgresql-client-{server}) "
            f"and point `{'pg_dump' if 'dump' in program else 'pg_restore'}:` at them"
        )
    return {"server_version": version_num, "tool": text}


class _Tail:
    """The last lines a process wrote to stderr, for the error message."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=20)

    async def drain(self, stream: Any) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in lines if line.strip())
        if buffer.strip():
            self.lines.append(buffer.decode(errors="replace"))

    def text(self) -> str:
        return redact(" | ".join(self.lines))[-1500:]


class PostgresSource(BackupSource):
    type = "postgres"
    Options = PostgresSourceOptions
    restores_to = "database"

    def file_name(self, job: str) -> str:
        return f"{job}.dump"

    async def dump(self, options: PostgresSourceOptions, ctx: DumpContext) -> dict[str, Any]:
        facts = await check_versions(options, options.pg_dump)
        conninfo, env = pg.libpq_args(options.dsn.get_secret_value())
        argv = dump_argv(options, conninfo)
        tail = _Tail()
        size = 0
        try:
            process = await anyio.open_process(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            raise BackupError(f"cannot run {options.pg_dump!r}: {exc.strerror or exc}") from None
        async with process:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(tail.drain, process.stderr)
                    async with ctx.file(self.file_name(ctx.job)) as out:
                        assert process.stdout is not None
                        while True:
                            try:
                                chunk = await process.stdout.receive(READ_SIZE)
                            except anyio.EndOfStream:
                                break
                            if size == 0 and not chunk.startswith(MAGIC[: len(chunk)]):
                                raise BackupError(
                                    f"{options.pg_dump} did not write a custom-format archive"
                                )
                            size += len(chunk)
                            await out.write(chunk)
                        code = await process.wait()
                        if code == 0 and size < len(MAGIC):
                            raise BackupError(f"{options.pg_dump} wrote no archive")
                        if code != 0:
                            raise BackupError(
                                f"pg_dump exited {code}: {tail.text() or 'no message'}"
                            )
            except BaseException:
                if process.returncode is None:
                    process.kill()
                raise
        facts["dump_bytes"] = size
        return facts

    async def restore(
        self, options: Any, files: dict[str, Path], target: str, ctx: RestoreContext
    ) -> dict[str, Any]:
        dumps = [p for name, p in files.items() if name.endswith(".dump")]
        if len(dumps) != 1:
            raise BackupError(f"expected one .dump file in the backup, found {sorted(files)}")
        program = getattr(options, "pg_restore", None) or "pg_restore"
        created = await pg.create_database(target)
        if not created and not ctx.clean and await _has_tables(target):
            raise BackupError(
                f"database {pg.dbname(target)!r} already holds tables: restore into a new "
                "database, or pass --clean to drop and recreate the dumped objects"
            )
        conninfo, env = pg.libpq_args(target)
        argv = [program, "--no-password", "--exit-on-error", "--single-transaction"]
        if getattr(options, "no_owner", True):
            argv += ["--no-owner", "--no-privileges"]
        if ctx.clean and not created:
            argv += ["--clean", "--if-exists"]
        argv += [f"--dbname={conninfo}", str(dumps[0])]
        result = await anyio.run_process(argv, env=env, check=False)
        if result.returncode != 0:
            message = redact(result.stderr.decode(errors="replace").strip())[-1500:]
            raise BackupError(f"pg_restore exited {result.returncode}: {message}")
        if created:
            ctx.notes.append(f"created database {pg.dbname(target)}")
        counts = await pg.row_counts(target)
        return {
            "database": pg.dbname(target),
            "created": created,
            "tables": len(counts),
            "rows": sum(counts.values()),
        }


async def _has_tables(dsn: str) -> bool:
    conn = await pg.connect(dsn, autocommit=True)
    async with conn:
        return bool(await pg.user_tables(conn))


@hookimpl
def watchkeeper_backup_sources():
    return [PostgresSource]
