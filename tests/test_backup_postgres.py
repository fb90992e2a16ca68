"""The postgres and json_export sources against the real local PostgreSQL: a seeded
database with several tables and a few thousand rows is dumped or exported, restored into
a new database, and every table's row count and checksum compared.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.pg_server import LOCAL_SERVER, PgUnavailable, local_test_database
from tests.test_backup_service import open_backups

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEED = """
create table customers (
    id serial primary key, name text not null, email text, created timestamptz not null,
    vip boolean default false, balance numeric(12, 2), tags text[], profile jsonb,
    avatar bytea, birthday date, ratio double precision
);
insert into customers (name, email, created, vip, balance, tags, profile, avatar, birthday, ratio)
select 'customer ' || g, case when g % 7 = 0 then null else 'c' || g || '@example.com' end,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '37 minutes', g % 11 = 0,
       g * 3.25, array['t' || (g % 5), 'x'],
       jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'q"uote')),
       decode(md5(g::text), 'hex'), date '1970-01-01' + g,
       case when g = 5 then 'NaN'::float8 else g / 7.0 end
from generate_series(1, 3000) g;

create table orders (
    id bigint generated always as identity primary key,
    customer_id int not null references customers (id),
    amount numeric(10, 2) not null, note text, placed_at timestamp
);
insert into orders (customer_id, amount, note, placed_at)
select (g % 3000) + 1, g * 0.5, case when g % 3 = 0 then E'line\\nbreak \\\\ and tab\\t' end,
       timestamp '2026-02-01' + g * interval '1 hour'
from generate_series(1, 4000) g;

create schema audit;
create table audit.events (id serial primary key, kind text, at timestamptz default now());
insert into audit.events (kind) select 'kind-' || (g % 4) from generate_series(1, 1500) g;

create table empty_table (id int primary key, label text);
"""


def digests(url: str) -> dict[str, tuple[int, str]]:
    """Return (rows, md5 of every row in id order) for every user table."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', "
            "'information_schema') order by 1, 2"
        ).fetchall()
        found = {}
        for schema, table in tables:
            rows, digest = conn.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, ',' order by id), '')) "
                f'from "{schema}"."{table}" t'
            ).fetchone()
            found[f"{schema}.{table}"] = (rows, digest)
        return found


@pytest.fixture(scope="module")
def seeded():
    """A database with four tables (one empty, one in another schema), 8500 rows."""
    try:
        with local_test_database("wk_backup_src") as url:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(SEED)
            yield url
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def new_database():
    """Names for restore targets that do not exist yet; dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"wk_backup_dst_{uuid.uuid4().hex[:10]}"
        made.append(name)
        return f"{LOCAL_SERVER}/{name}"

    yield make
    with psycopg.connect(f"{LOCAL_SERVER}/postgres", autocommit=True) as conn:
        for name in made:
            conn.execute(f'drop database if exists "{name}" with (force)')


def job_yaml(source: str, extra: str = "") -> str:
    return f"""
version: 1
state: {{type: sqlite, path: state.db}}
backups:
  destinations:
    local: {{type: local, path: backups}}
  jobs:
    db:
      source: {source}
      schedule: {{cron: "0 2 * * *"}}
      to: [local]
{extra}
"""


async def test_pg_dump_round_trip_restores_every_table_exactly(tmp_path, seeded, new_database):
    h = await open_backups(tmp_path, job_yaml(f'{{type: postgres, dsn: "{seeded}"}}'))
    try:
        entry = await h.backups.run_job("db")
        assert entry["status"] == "ok", entry
        [file] = entry["files"]
        assert file["name"] == "db.dump"
        dump = tmp_path / "backups" / "db" / entry["id"] / "db.dump"
        assert dump.read_bytes()[:5] == b"PGDMP"  # custom format
        assert entry["info"]["server_version"] >= 100000
        target = new_database()
        result = await h.backups.restore(entry["id"], target)
        assert result["created"] is True
        assert result["rows"] == 8500
        assert digests(target) == digests(seeded)
        # a second restore into the now non-empty database is refused, --clean replaces
        from watchkeeper.engine.backups.plugin import BackupError

        with pytest.raises(BackupError, match="already holds tables"):
            await h.backups.restore(entry["id"], target)
        await h.backups.restore(entry["id"], target, clean=True)
        assert digests(target) == digests(seeded)
    finally:
        await h.close()


async def test_pg_dump_options_select_schemas_and_tables(tmp_path, seeded, new_database):
    source = (
        f'{{type: postgres, dsn: "{seeded}", exclude_schemas: [audit], '
        "exclude_table_data: [orders]}"
    )
    h = await open_backups(tmp_path, job_yaml(source))
    try:
        entry = await h.backups.run_job("db")
        assert entry["status"] == "ok", entry
        target = new_database()
        await h.backups.restore(entry["id"], target)
        got = digests(target)
        assert "audit.events" not in got
        assert got["public.orders"][0] == 0
        assert got["public.customers"] == digests(seeded)["public.customers"]
    finally:
        await h.close()


def fake_tool(folder: Path, version: str) -> Path:
    """A pg_dump stand-in that records its argv and PGPASSWORD, then prints a version."""
    script = folder / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {folder}/argv.txt\n'
        f'echo "PGPASSWORD=$PGPASSWORD" >> {folder}/env.txt\n'
        f'echo "pg_dump (PostgreSQL) {version}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_an_older_pg_dump_than_the_server_is_refused_clearly(tmp_path, seeded):
    tool = fake_tool(tmp_path, "9.6.24")
    h = await open_backups(
        tmp_path, job_yaml(f'{{type: postgres, dsn: "{seeded}", pg_dump: "{tool}"}}')
    )
    try:
        entry = await h.backups.run_job("db")
        assert entry["status"] == "failed"
        assert "pg_dump 9 is older than the server (PostgreSQL" in entry["error"]
        assert "postgresql-client-" in entry["error"]
    finally:
        await h.close()


async def test_the_password_goes_through_the_environment_not_argv(tmp_path, seeded):
    # trust authentication ignores the password, so any value connects
    url = seeded.replace("postgres@", "postgres:s3cret-pw-77@")
    h = await open_backups(
        tmp_path,
        job_yaml(f'{{type: postgres, dsn: "{url}", pg_dump: "{fake_tool(tmp_path, "99.0")}"}}'),
    )
    try:
        entry = await h.backups.run_job("db")
        argv = (tmp_path / "argv.txt").read_text()
        env = (tmp_path / "env.txt").read_text()
        assert "s3cret-pw-77" not in argv
        assert "--dbname=" in argv
        assert "--format=custom" in argv
        assert "PGPASSWORD=s3cret-pw-77" in env
        # the fake tool writes no dump: the run fails, without the password in the error
        assert entry["status"] == "failed"
        assert "s3cret-pw-77" not in (entry["error"] or "")
    finally:
        await h.close()


async def test_json_export_round_trip_into_a_new_database(tmp_path, seeded, new_database):
    h = await open_backups(
        tmp_path,
        job_yaml(
            f'{{type: json_export, dsn: "{seeded}", schemas: [public, audit], batch_size: 500}}'
        ),
    )
    try:
        entry = await h.backups.run_job("db")
        assert entry["status"] == "ok", entry
        names = sorted(f["name"] for f in entry["files"])
        assert names == [
            "audit.events.jsonl.gz", "public.customers.jsonl.gz", "public.empty_table.jsonl.gz",
            "public.orders.jsonl.gz", "tables.json",
        ]  # fmt: skip
        assert entry["info"] == {"tables": 4, "rows": 8500}
        target = new_database()
        result = await h.backups.restore(entry["id"], target)
        assert result["rows"] == 8500
        assert sorted(result["created_tables"]) == [
            "audit.events", "public.customers", "public.empty_table", "public.orders"
        ]  # fmt: skip
        assert digests(target) == digests(seeded)
    finally:
        await h.close()


async def test_json_export_loads_into_existing_tables_in_foreign_key_order(
    tmp_path, seeded, new_database
):
    h = await open_backups(
        tmp_path, job_yaml(f'{{type: json_export, dsn: "{seeded}", tables: [orders, customers]}}')
    )
    try:
        entry = await h.backups.run_job("db")
        assert entry["status"] == "ok", entry
        target = new_database()
        # the schema exists already (as after a migration): the rows go into it
        with psycopg.connect(f"{LOCAL_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'create database "{target.rsplit("/", 1)[1]}"')
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(SEED.split("create schema audit;")[0].split("insert into customers")[0])
            conn.execute(
                "create table orders (id bigint generated always as identity primary key, "
                "customer_id int not null references customers (id), amount numeric(10, 2) "
                "not null, note text, placed_at timestamp)"
            )
        result = await h.backups.restore(entry["id"], target)
        assert result["created_tables"] == []
        want = digests(seeded)
        got = digests(target)
        assert got["public.customers"] == want["public.customers"]
        assert got["public.orders"] == want["public.orders"]
        with psycopg.connect(target) as conn:
            # sequences moved past the loaded ids: new rows do not collide
            conn.execute("insert into customers (name, created) values ('new', now())")
            conn.execute("insert into orders (customer_id, amount) values (1, 1)")
    finally:
        await h.close()
