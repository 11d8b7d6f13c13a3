"""Bring a database to this mxcensus's schema: Alembic, run from code, on first use.

Why: one database keeps many runs side by side, so a newer mxcensus must upgrade the database
an older one made, in place, and never recreate it. Crawls (at start), `scrapy report`,
`scrapy summary` and `scrapy db upgrade` call `upgrade()`:

- a database already at this code's head is only read (no lock, no write);
- an empty database gets every revision;
- a database that mxcensus made before migrations (its tables, no `alembic_version`) is
  checked to hold the whole baseline (revision 0001, commit c8aa822), stamped 0001, then
  upgraded;
- a database at a revision this code does not know was upgraded by a newer mxcensus: it is
  left alone, with an error saying to upgrade mxcensus.

Several crawls may start at once on one database: on PostgreSQL the migration runs in one
transaction under the advisory lock the store always took for its schema, so one process
migrates and the others then find the head; on SQLite, `BEGIN IMMEDIATE` does the same.
DDL is transactional on both, so a failed upgrade leaves the database as it was.

The revisions are files of the package schema.migrations.versions. Alembic reads them from a
directory; when the project runs from a zip (a scrapyd egg), they are copied to a temporary
directory first.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text


class _OnlyUpgrades(logging.Filter):
    """Alembic says which DDL mode it assumes on every look; a crawl's log needs
    only the upgrades it ran ("Will assume non-transactional DDL" is wrong here:
    the upgrade runs in a transaction of ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_OnlyUpgrades())

PACKAGE = "schema.migrations"
BASELINE = "0001"  # the schema as mxcensus made it before migrations
LOCK = "SELECT pg_advisory_xact_lock(hashtext('mxcensus schema'))"
# A table every mxcensus database has had: with it but no alembic_version, a database was
# made before migrations.
LEGACY_MARK = "runs"


class MigrationError(RuntimeError):
    """The database cannot be brought to this code's schema; the message is one line."""


@dataclass(frozen=True)
class Status:
    """Where a database stands, as `scrapy db current` tells it."""

    revision: str | None  # its alembic_version; None when not stamped
    head: str  # this code's newest revision
    legacy: bool  # not stamped, but made by mxcensus before migrations
    known: bool  # its revision is one of this code's (True when not stamped)

    @property
    def at_head(self) -> bool:
        return self.revision == self.head

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.legacy


def head() -> str:
    """This code's newest revision."""
    with _scripts() as script:
        return _head(script)


def current(engine: Engine) -> str | None:
    """The database's revision; None when it has none (empty, or made before migrations)."""
    with engine.connect() as conn:
        return _revision(conn)


def status(engine: Engine) -> Status:
    """The database's revision, this code's head, and whether the one is behind the other."""
    with _scripts() as script, engine.connect() as conn:
        return _status(conn, script)


def upgrade(engine: Engine, *, create: bool = True) -> None:
    """Bring the database to this code's head; idempotent, safe for concurrent callers.

    With `create=False` an empty database is left empty (a command that only reads says there
    is nothing to read rather than creating tables). Raises MigrationError for a database
    newer than this code or one that is not a whole baseline; SQLAlchemy's errors when the
    database cannot be reached or written.
    """
    with _scripts() as script:
        with engine.connect() as conn:
            found = _status(conn, script)
        if found.at_head or (found.empty and not create):
            return
        _check_known(found)
        with engine.begin() as conn:
            _lock(conn)
            _migrate(conn, script)


def _migrate(conn: Connection, script: ScriptDirectory) -> None:
    """Under the lock: look again (another process may have migrated meanwhile), then run
    what is missing."""
    found = _status(conn, script)
    _check_known(found)
    if found.at_head:
        return
    target = found.head
    context = MigrationContext.configure(
        conn, opts={"fn": lambda heads, _context: script._upgrade_revs(target, heads)}
    )
    if found.legacy:
        _check_baseline(conn, script)
        context.stamp(script, BASELINE)
    with Operations.context(context):
        context.run_migrations()


def _status(conn: Connection, script: ScriptDirectory) -> Status:
    revision = _revision(conn)
    known = revision is None or revision in {s.revision for s in script.walk_revisions()}
    legacy = revision is None and inspect(conn).has_table(LEGACY_MARK)
    return Status(revision=revision, head=_head(script), legacy=legacy, known=known)


def _revision(conn: Connection) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise MigrationError(f"the database has several schema revisions ({', '.join(heads)})")
    return heads[0] if heads else None


def _head(script: ScriptDirectory) -> str:
    found = script.get_current_head()
    assert found is not None, "schema/migrations/versions has no revision"
    return found


def _check_known(found: Status) -> None:
    if not found.known:
        raise MigrationError(
            f"the database is at schema revision {found.revision}, newer than this mxcensus "
            f"knows (its newest is {found.head}): upgrade mxcensus to use this database"
        )


def _check_baseline(conn: Connection, script: ScriptDirectory) -> None:
    """A database made before migrations is stamped 0001 only if it holds all of 0001."""
    baseline: MetaData = script.get_revision(BASELINE).module.METADATA
    inspector = inspect(conn)
    missing = []
    for table in baseline.tables.values():
        if not inspector.has_table(table.name):
            missing.append(table.name)
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in have]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MigrationError(
            "the database has tables from before mxcensus's first migration but not its "
            f"whole baseline schema (missing {', '.join(missing[:5])}{more}): it cannot be "
            "upgraded; crawl into a new database"
        )


def _lock(conn: Connection) -> None:
    """One migrating process at a time; the others wait, then find the head."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(LOCK))
    elif conn.dialect.name == "sqlite":
        # pysqlite begins transactions only before DML, so DDL would run outside one;
        # IMMEDIATE also takes the write lock now, before looking again.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def _scripts() -> Iterator[ScriptDirectory]:
    """The revisions as Alembic wants them: in a directory on the filesystem."""
    package = resources.files(PACKAGE)
    if isinstance(package, Path):
        yield ScriptDirectory(package)
        return
    with tempfile.TemporaryDirectory(prefix="mxcensus-migrations-") as directory:
        _copy_sources(package / "versions", Path(directory) / "versions")
        yield ScriptDirectory(directory)


def _copy_sources(source: Traversable, target: Path) -> None:
    target.mkdir()
    for entry in source.iterdir():
        if entry.is_file() and entry.name.endswith(".py"):
            (target / entry.name).write_bytes(entry.read_bytes())
