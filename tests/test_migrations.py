"""Schema migrations (schema/migrate.py, schema/migrations/), on SQLite and PostgreSQL.

A database made by the mxcensus of commit c8aa822 (frozen in tests/data, see
make_schema_c8aa822.py there) is upgraded in place with its rows; an empty one gets the whole
schema; the migrated schema equals the models and views of today's code, so a model or view
change without a migration fails here; upgrading is idempotent, concurrent-safe, refuses a
database newer than the code, keeps a user's own views, and works from a zip (a scrapyd egg).
"""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

import schema.views
from demo.scan import ROOT
from schema import migrate
from schema.db import engine_for
from schema.migrate import MigrationError
from schema.migrations.ops import replace_views
from schema.models import Base

DATA = Path(__file__).resolve().parent / "data"
OLD_TABLES = {  # c8aa822's tables, each ordered by its primary key
    "runs": "id",
    "crawls": "id",
    "domains": "run_id, domain",
    "mx_records": "run_id, mx_host, domain",
    "mx_hosts": "run_id, name",
    "mx_addresses": "run_id, mx_host, ip",
    "probes": "id",
    "targets": "run_id, mx_host, ip",
    "certificates": "sha256",
}


class Databases:
    """Empty databases of one backend, made on demand, dropped at the end."""

    def __init__(self, backend: str, request: pytest.FixtureRequest, directory: Path):
        self.backend = backend
        self.request = request
        self.directory = directory
        self.made: list[str] = []
        self.engines: list[Engine] = []

    def url(self) -> str:
        name = f"mxcensus_migrations_{secrets.token_hex(4)}"
        if self.backend == "sqlite":
            return f"sqlite:///{self.directory / f'{name}.sqlite'}"
        server = self.request.getfixturevalue("pg_server_url")
        with self._admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return engine_for(server).url.set(database=name).render_as_string(hide_password=False)

    def engine(self, url: str | None = None) -> Engine:
        engine = engine_for(url or self.url())
        self.engines.append(engine)
        return engine

    def old(self) -> Engine:
        """A database exactly as the c8aa822 code made it, with its rows."""
        engine = self.engine()
        sql = (DATA / f"schema_c8aa822_{self.backend}.sql").read_text(encoding="utf-8")
        if self.backend == "sqlite":
            with closing(sqlite3.connect(engine.url.database)) as db:
                db.executescript(sql)
        else:
            raw = engine.raw_connection()
            try:
                raw.cursor().execute(sql)
                raw.commit()
            finally:
                raw.close()
        return engine

    def _admin(self) -> Engine:
        return engine_for(
            self.request.getfixturevalue("pg_server_url"), isolation_level="AUTOCOMMIT"
        )

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        if self.made:
            with self._admin().connect() as conn:
                for name in self.made:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _made(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[Databases]:
    databases = Databases(backend, request, directory)
    yield databases
    databases.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    yield from _made(request.param, request, tmp_path)


@pytest.fixture
def sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    yield from _made("sqlite", request, tmp_path)


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    yield from _made("postgresql", request, tmp_path)


# -- what a database holds ----------------------------------------------------------------


def rows(engine: Engine, columns: dict[str, str] | None = None) -> dict[str, list[tuple]]:
    """Each c8aa822 table's rows, in primary-key order, through `columns` (default: all)."""
    columns = columns or dict.fromkeys(OLD_TABLES, "*")
    with engine.connect() as conn:
        return {
            name: [
                tuple(r)
                for r in conn.execute(
                    text(f"SELECT {columns[name]} FROM {name} ORDER BY {OLD_TABLES[name]}")
                )
            ]
            for name in OLD_TABLES
        }


def column_lists(engine: Engine) -> dict[str, str]:
    inspector = inspect(engine)
    return {t: ", ".join(c["name"] for c in inspector.get_columns(t)) for t in OLD_TABLES}


def model_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, Base.metadata)


def view_definitions(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = "SELECT name, sql FROM sqlite_master WHERE type = 'view'"
        else:
            sql = "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'"
        return dict(conn.execute(text(sql)).all())


def structure(engine: Engine) -> list[tuple]:
    """Every table, column, constraint, index and view, as the database itself states them
    (alembic's own table left out)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.execute(
                text(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                    " WHERE tbl_name <> 'alembic_version' ORDER BY type, name"
                )
            ).all()
        queries = [
            "SELECT table_name, column_name, ordinal_position, data_type,"
            " character_maximum_length, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name <> 'alembic_version' ORDER BY 1, 3",
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace"
            " AND conrelid::regclass::text <> 'alembic_version' ORDER BY 1, 2",
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version' ORDER BY 1, 2",
            "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
        ]
        return [tuple(r) for q in queries for r in conn.execute(text(q))]


def upgrade_to(engine: Engine, revision: str, stamp: str | None = None) -> None:
    """Only the revisions up to `revision` (the public API always goes to the head), from
    `stamp` if given."""
    with migrate._scripts() as script, engine.begin() as conn:
        context = MigrationContext.configure(
            conn, opts={"fn": lambda heads, _: script._upgrade_revs(revision, heads)}
        )
        if stamp:
            context.stamp(script, stamp)
        with Operations.context(context):
            context.run_migrations()


def statements(engine: Engine, action: Callable[[], None]) -> list[str]:
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent


# -- a database from before migrations ----------------------------------------------------


def test_a_database_made_by_c8aa822_is_upgraded_with_its_rows(dbs):
    engine = dbs.old()
    old_columns = column_lists(engine)
    before = rows(engine, old_columns)
    assert all(before.values()), "the fixture has rows in every table"
    found = migrate.status(engine)
    assert (found.revision, found.legacy, found.at_head) == (None, True, False)

    migrate.upgrade(engine)

    assert migrate.current(engine) == migrate.head()
    assert rows(engine, old_columns) == before
    assert model_differences(engine) == []
    columns = {c["name"] for c in inspect(engine).get_columns("crawls")}
    assert {"heartbeat_at", "job", "node"} <= columns
    assert inspect(engine).has_table("claims")
    with engine.connect() as conn:
        domains = conn.execute(
            text(
                "SELECT domain, status, best_category, worst_category, primary_category"
                " FROM domain_results ORDER BY domain"
            )
        ).all()
        targets = conn.execute(
            text("SELECT mx_host, ip, category, skip_reason FROM target_results ORDER BY 1, 2")
        ).all()
        ip = conn.execute(text("SELECT tls_version FROM ip_results WHERE ip = '192.0.2.1'"))
        tls_version = ip.scalar_one()
        mx = conn.execute(text("SELECT mx_host, category FROM mx_results ORDER BY 1")).all()
        pairs = conn.execute(text("SELECT domain, mx_host FROM domain_mx ORDER BY 1, 2")).all()
    assert [tuple(d) for d in domains] == [
        ("example.test", "ok", "strict", "none", "strict"),
        ("literal.test", "ok", None, None, None),
        ("missing.test", "nxdomain", None, None, None),
    ]
    assert [tuple(t) for t in targets] == [
        ("192.0.2.99", None, None, "ip_literal_mx"),
        ("mx1.example.test", "192.0.2.1", "strict", None),
        ("mx2.example.test", "10.0.0.2", None, "non_public_address"),
        ("mx2.example.test", "192.0.2.2", "none", None),
    ]
    assert [tuple(m) for m in mx] == [
        ("192.0.2.99", None),
        ("mx1.example.test", "strict"),
        ("mx2.example.test", "none"),
    ]
    assert len(pairs) == 3
    assert tls_version == "TLSv1.3"
    # The next crawl writes as today's code does (on PostgreSQL, ids go on from the old ones).
    with engine.begin() as conn:
        crawl = conn.execute(
            text(
                "INSERT INTO crawls (run_id, source, started_at, status, versions, settings,"
                " heartbeat_at, job, node) VALUES (1, 'x', :at, 'running', '{}', '{}', :at,"
                " 'job-1', 'node-a') RETURNING id"
            ),
            {"at": "2026-11-24 00:00:00+00:00"},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO claims (run_id, ip, port, crawl_id, claimed_at)"
                " VALUES (1, '192.0.2.1', 25, :crawl, '2026-11-24 00:00:00+00:00')"
            ),
            {"crawl": crawl},
        )
    assert crawl == 2


def test_the_baseline_revision_is_exactly_the_c8aa822_schema(dbs):
    """Stamping an old database 0001 is right only if 0001 makes what c8aa822 made."""
    old = dbs.old()
    fresh = dbs.engine()
    upgrade_to(fresh, "0001")
    assert migrate.current(fresh) == "0001"
    assert structure(fresh) == structure(old)


def test_a_database_missing_part_of_the_baseline_is_not_stamped(dbs):
    engine = dbs.engine()
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)"))
    with pytest.raises(MigrationError, match=r"not its whole baseline schema \(missing ") as e:
        migrate.upgrade(engine)
    assert "\n" not in str(e.value)
    assert set(inspect(engine).get_table_names()) == {"runs"}  # nothing stamped


def test_a_failed_upgrade_leaves_the_database_as_it_was(dbs, monkeypatch):
    """One transaction: the revision that fails takes the stamp and every step before it
    back with it (on SQLite too, where pysqlite would run DDL outside a transaction)."""
    engine = dbs.old()
    before = (structure(engine), rows(engine))

    def fail(table: str, column: str) -> bool:
        raise RuntimeError("a step of 0002 fails after creating claims")

    monkeypatch.setattr("schema.migrations.ops.has_column", fail)
    with pytest.raises(RuntimeError, match="a step of 0002 fails"):
        migrate.upgrade(engine)
    assert (structure(engine), rows(engine)) == before
    assert not inspect(engine).has_table("alembic_version")
    assert migrate.status(engine).legacy


@pytest.mark.parametrize("columns", [True, False])
def test_a_database_that_a_development_build_touched_is_upgraded(dbs, columns):
    """Between c8aa822 and migrations the store ran `create_all` with the coordination models:
    on an empty database that made claims and the crawls columns, on an older one only
    claims. Neither has a revision; both are upgraded."""
    engine = dbs.old()
    upgrade_to(engine, "0002", stamp="0001")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        for column in () if columns else ("heartbeat_at", "job", "node"):
            conn.execute(text(f"ALTER TABLE crawls DROP COLUMN {column}"))
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert model_differences(engine) == []


# -- an empty database, and the models ----------------------------------------------------


def test_an_empty_database_gets_every_revision_and_matches_the_models(dbs):
    engine = dbs.engine()
    assert migrate.status(engine).empty
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert model_differences(engine) == []


def test_the_migrated_views_are_the_views_of_schema_views(dbs):
    """A change of schema/views.py without a migration fails here."""
    migrated = dbs.engine()
    migrate.upgrade(migrated)
    made = dbs.engine()  # as the store made databases before migrations, with today's code
    with made.begin() as conn:
        Base.metadata.create_all(conn)
        for name, sql in schema.views.VIEWS.items():
            conn.execute(text(f"CREATE VIEW {name} AS {sql}"))
    assert view_definitions(migrated) == view_definitions(made)
    assert set(view_definitions(migrated)) == set(schema.views.VIEWS)


def test_the_model_comparison_sees_a_missing_migration(dbs):
    engine = dbs.engine()
    upgrade_to(engine, "0001")
    found = {(d[0], d[1].name) if d[0] == "add_table" else d[0] for d in _flat(engine)}
    assert ("add_table", "claims") in found
    assert "add_column" in found


def _flat(engine: Engine) -> list[Any]:
    differences = []
    for d in model_differences(engine):
        differences += d if isinstance(d, list) else [d]
    return differences


def test_create_false_leaves_an_empty_database_empty(dbs):
    engine = dbs.engine()
    migrate.upgrade(engine, create=False)
    assert inspect(engine).get_table_names() == []


# -- idempotent, concurrent, newer --------------------------------------------------------


def test_upgrading_twice_is_a_no_op(dbs):
    engine = dbs.old()
    migrate.upgrade(engine)
    before = (structure(engine), rows(engine))
    sent = statements(engine, lambda: migrate.upgrade(engine))
    writes = [s for s in sent if not s.lstrip().upper().startswith(("SELECT", "PRAGMA"))]
    assert writes == []
    assert (structure(engine), rows(engine)) == before
    assert migrate.current(engine) == migrate.head()


def test_crawls_starting_together_upgrade_once(dbs):
    url = dbs.url()
    engines = [dbs.engine(url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(engines))

    def one(engine: Engine) -> None:
        start.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(e,), daemon=True) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "upgrades waiting on each other"
    assert errors == []
    assert migrate.current(engines[0]) == migrate.head()
    assert model_differences(engines[0]) == []


def test_a_database_newer_than_this_code_is_refused(dbs):
    engine = dbs.engine()
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    before = structure(engine)
    found = migrate.status(engine)
    assert (found.revision, found.known, found.at_head) == ("9999", False, False)
    with pytest.raises(MigrationError) as e:
        migrate.upgrade(engine)
    assert str(e.value) == (
        "the database is at schema revision 9999, newer than this mxcensus knows "
        f"(its newest is {migrate.head()}): upgrade mxcensus to use this database"
    )
    assert structure(engine) == before


# -- a user's own views -------------------------------------------------------------------

USER_VIEW = (
    "CREATE VIEW my_strict_domains AS"
    " SELECT domain FROM domain_results WHERE primary_category = 'strict'"
)


def test_a_user_view_on_ours_survives_the_upgrade(dbs):
    engine = dbs.old()
    with engine.begin() as conn:
        conn.execute(text(USER_VIEW))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT domain FROM my_strict_domains")).all() == [
            ("example.test",)
        ]


def test_replaced_views_keep_a_user_view_and_never_cascade(pg):
    """A revision that appends a column to a view replaces it in place; one that would
    drop a column fails, whole, rather than drop the user's view."""
    engine = pg.old()
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE VIEW my_mx AS SELECT domain, mx_host FROM domain_mx"))
    appended = "SELECT run_id, domain, mx_host, preference, implicit, 1 AS extra FROM mx_records"
    run_ops(engine, lambda: replace_views({"domain_mx": appended}))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM my_mx")).scalar_one() == 3
        assert conn.execute(text("SELECT MAX(extra) FROM domain_mx")).scalar_one() == 1
    dropped = "SELECT run_id, domain, mx_host FROM mx_records"
    with pytest.raises(DBAPIError, match="cannot drop columns from view"):
        run_ops(engine, lambda: replace_views({"domain_mx": dropped}))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM my_mx")).scalar_one() == 3


def run_ops(engine: Engine, steps: Callable[[], None]) -> None:
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        steps()


# -- from a zip, as scrapyd runs an egg ---------------------------------------------------

FROM_ZIP = """
import importlib.resources, pathlib, sys
zip_path, database, *site = sys.argv[1:]
sys.path[:] = [zip_path, *[p for p in sys.path if p], *site]
from sqlalchemy import create_engine
import schema.migrate as migrate
assert migrate.__file__.startswith(zip_path), migrate.__file__
assert not isinstance(importlib.resources.files("schema.migrations"), pathlib.Path)
engine = create_engine(f"sqlite:///{database}")
migrate.upgrade(engine)
print(migrate.current(engine), migrate.head())
"""


def test_upgrades_when_the_project_is_imported_from_a_zip(tmp_path):
    egg = tmp_path / "mxcensus.egg"
    with zipfile.ZipFile(egg, "w") as z:
        for path in sorted((ROOT / "schema").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                z.write(path, path.relative_to(ROOT).as_posix())
    database = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(database)) as db:  # made before migrations: stamped, upgraded
        db.executescript((DATA / "schema_c8aa822_sqlite.sql").read_text(encoding="utf-8"))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    paths = sysconfig.get_paths()
    site = sorted({paths["purelib"], paths["platlib"]})
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", FROM_ZIP, str(egg), str(database), *site],
        cwd=tmp_path,
        env={"TMPDIR": str(temporary), "PATH": "/usr/bin:/bin"},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [migrate.head(), migrate.head()]
    assert list(temporary.iterdir()) == []  # the copied revisions are gone
    assert model_differences(engine_for(f"sqlite:///{database}")) == []


# -- the commands -------------------------------------------------------------------------


def scrapy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_scrapy_db_current_and_upgrade(sqlite):
    engine = sqlite.old()
    url = f"DATABASE_URL={engine.url.render_as_string(hide_password=False)}"
    where = engine.url.render_as_string()
    head = migrate.head()

    result = scrapy("db", "current", "-s", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"no revision in {where}: made by mxcensus before migrations")

    result = scrapy("db", "upgrade", "-s", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"upgraded {where} from its schema from before migrations to {head} (head)\n"
    )
    assert migrate.current(engine) == head

    result = scrapy("db", "upgrade", "-s", url)
    assert (result.returncode, result.stdout) == (0, f"{where} is already at {head} (head)\n")
    result = scrapy("db", "current", "-s", url)
    assert (result.returncode, result.stdout) == (0, f"{head} (head) in {where}\n")

    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for command in (["db", "upgrade"], ["summary"]):
        result = scrapy(*command, "-s", url)
        assert result.returncode == 1
        assert result.stderr.endswith("upgrade mxcensus to use this database\n")
        assert result.stderr.count("\n") == 1


def test_scrapy_db_masks_the_password_and_fails_in_one_line(pg, tmp_path):
    url = make_url(pg.url())
    if url.password is None:
        url = url.set(password="s3cret")  # the test server trusts loopback: ignored
    result = scrapy("db", "upgrade", "-s", f"DATABASE_URL={url.render_as_string(False)}")
    assert result.returncode == 0, result.stderr
    assert str(url.password) not in result.stdout and ":***@" in result.stdout
    assert result.stdout.startswith("created the schema in ")

    missing = tmp_path / "none.sqlite"
    result = scrapy("db", "current", "-s", f"DATABASE_URL=sqlite:///{missing}")
    assert result.returncode == 1
    assert result.stderr == f"no database at {missing} (DATABASE_URL sqlite:///{missing})\n"
    assert not missing.exists()

    result = scrapy("db", "upgrade", "-s", "DATABASE_URL=postgresql://u:s3cret@127.0.0.1:1/x")
    assert result.returncode == 1
    assert result.stderr.startswith("cannot use the database postgresql://u:***@127.0.0.1:1/x: ")
    assert result.stderr.count("\n") == 1 and "s3cret" not in result.stderr

    result = scrapy("db", "sideways")
    assert result.returncode == 2
    assert "give one action: upgrade or current" in result.stderr


def test_summary_and_report_upgrade_an_old_database_first(sqlite):
    for command in (["summary"], ["report", "--format", "json"]):
        engine = sqlite.old()
        url = engine.url.render_as_string(hide_password=False)
        result = scrapy(*command, "-s", f"DATABASE_URL={url}")
        assert result.returncode == 0, result.stderr
        assert "fixture-20261123T110534Z-0001" in result.stdout
        assert migrate.current(engine) == migrate.head()
