"""Engines for DATABASE_URL, and the dialect-neutral "insert unless present"."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url


def engine_for(url: str, **kwargs: Any) -> Engine:
    """Create the engine for DATABASE_URL.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; the project ships
    psycopg2, so the scheme is pinned to it (DESIGN.md, "Known pitfalls").
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (reports, sqlite3 shells) query while a crawl writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def insert_ignore(engine: Engine, table: Table):
    """INSERT … ON CONFLICT DO NOTHING: facts shared across domains, crawls and
    shards (an MX host, an address, a certificate) are written once."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def merge_statement(engine: Engine, table: Table, keys: tuple[str, ...], better: str | None) -> Any:
    """INSERT … ON CONFLICT (keys): DO NOTHING when the first row stays, else DO
    UPDATE WHERE `better` (SQL over `excluded` and the table) says the new row wins.
    The same SQL on PostgreSQL and SQLite; primary-key columns are never overwritten."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    if better is None:
        return statement.on_conflict_do_nothing(index_elements=list(keys))
    fixed = set(keys) | {c.name for c in table.primary_key.columns}
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in fixed},
        where=text(better),
    )
