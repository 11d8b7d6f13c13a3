"""Engines for DATABASE_URL, merges in either dialect, and retries of transient errors."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
SQLITE_BUSY_S = 30  # seconds a SQLite connection waits for another's lock
RETRY_WAITS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # seconds between tries; the last repeats


def engine_for(url: str, **kwargs: Any) -> Engine:
    """Create the engine for DATABASE_URL.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; the project ships
    psycopg2, so the scheme is pinned to it (docs/design.md, "Known pitfalls").
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
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_S * 1000:.0f}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """SQLite answers "database is locked" at once, busy timeout or not, when a new file
    is switched to WAL while another connection holds it (crawls starting together while
    one migrates): try again as long as a write would wait."""
    deadline = time.monotonic() + SQLITE_BUSY_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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


def retrying(
    fn: Callable[..., T],
    *args: Any,
    retry_for: float,
    on_retry: Callable[[Exception, float], None],
) -> T:
    """`fn(*args)`, tried again with backoff while the error is transient, for at
    most `retry_for` seconds; then (or on any other error) the error is raised."""
    deadline = time.monotonic() + retry_for
    for attempt in range(1_000_000):
        try:
            return fn(*args)
        except DBAPIError as e:
            wait = RETRY_WAITS[min(attempt, len(RETRY_WAITS) - 1)]
            if not transient(e) or time.monotonic() + wait > deadline:
                raise
            on_retry(e, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def transient(error: DBAPIError) -> bool:
    """An error a later try may not meet: a dropped connection, a deadlock or
    serialization failure, a server restarting or out of resources, a busy SQLite."""
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "pgcode", None)
    if code:  # SQLSTATE classes: 40 rollback, 08 connection, 57 operator, 53 resources
        return code[:2] in ("40", "08", "57", "53")
    message = str(error.orig).lower()
    if type(error.orig).__module__.startswith("sqlite3"):
        return "locked" in message or "busy" in message
    return "psycopg2" in type(error.orig).__module__  # no SQLSTATE: the connection itself


def first_line(error: Exception) -> str:
    """A database error in one line, without SQLAlchemy's statement and link."""
    return str(getattr(error, "orig", error)).strip().splitlines()[0][:300]
