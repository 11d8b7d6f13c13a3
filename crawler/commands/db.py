"""`scrapy db upgrade | current`: bring DATABASE_URL to this mxcensus's schema, or say where
it stands.

Crawls, `scrapy report` and `scrapy summary` upgrade an older database on first use; `scrapy db
upgrade` does it ahead of time (before starting many scrapyd jobs, or to see it happen), and
`scrapy db current` tells a database's revision and whether it is this code's head.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from crawler.commands.exits import interruptible
from schema.db import engine_for
from schema.migrate import MigrationError, Status, status, upgrade

T = TypeVar("T")


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "upgrade | current"

    def short_desc(self) -> str:
        return "Upgrade the database's schema to this mxcensus, or show its revision"

    def long_desc(self) -> str:
        return (
            "upgrade: bring DATABASE_URL to this mxcensus's schema (an empty database gets "
            "the whole schema; one made by an older mxcensus is upgraded in place, never "
            "recreated). current: print the database's schema revision and whether it is "
            "this mxcensus's head."
        )

    @interruptible
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        actions: dict[str, Callable[[str], str]] = {"upgrade": _upgrade, "current": _current}
        if len(args) != 1 or args[0] not in actions:
            raise UsageError("give one action: upgrade or current")
        assert self.settings is not None
        url = self.settings.get("DATABASE_URL")
        try:
            print(actions[args[0]](url))
        except DatabaseError as e:
            print(e, file=sys.stderr)
            self.exitcode = 1


class DatabaseError(RuntimeError):
    """A command could not bring the database up to date; the message is one line."""


def shown(url: str) -> str:
    """DATABASE_URL as printed: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # engine_for says what is wrong with it
        return "DATABASE_URL"


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file DATABASE_URL names when it does not exist (connecting would create it)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # engine_for says what is wrong with it
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return None if Path(database).exists() else Path(database)


def unusable(url: str) -> str | None:
    """Why a crawl could not store in DATABASE_URL, with the fix, in one line; None when
    it can. Asked before the crawl starts, so that a database that is not there fails at
    once (a write would be retried for DATABASE_RETRY_FOR) and never as a traceback."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:  # not shown: it may hold a password
        return f"cannot use DATABASE_URL: {e}"
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        directory = Path(database).parent
        if not directory.is_dir():
            return (
                f"no directory {directory} for the SQLite database {database}: "
                f"create it (mkdir -p {directory}) or set DATABASE_URL elsewhere"
            )
        # access() answers EROFS on a read-only mount even to root, who ignores file modes;
        # SQLite writes its WAL and journal beside the file, so the directory counts too.
        for path in (Path(database), directory):
            if path.exists() and not os.access(path, os.W_OK):
                return (
                    f"the SQLite database {database} cannot be written ({path} is read-only): "
                    "remount or copy it somewhere writable, or set DATABASE_URL elsewhere"
                )
        return None
    try:
        engine = engine_for(url, **_connect_timeout(parsed.get_backend_name()))
    except (SQLAlchemyError, ImportError, ValueError) as e:
        return f"cannot use DATABASE_URL {shown(url)}: {e}"
    try:
        with engine.connect():
            return None
    except SQLAlchemyError as e:
        reason = one_line(e)
        return f"cannot connect to {shown(url)}: {reason}; {_fix(reason, parsed.database)}"
    finally:
        engine.dispose()


def one_line(error: Exception) -> str:
    """A database error's own message on one line, without SQLAlchemy's SQL and link."""
    return " ".join(str(getattr(error, "orig", None) or error).split())


def _connect_timeout(backend: str) -> dict[str, Any]:
    # A server that drops packets would hold the start for the OS's TCP timeout.
    return {"connect_args": {"connect_timeout": 10}} if backend == "postgresql" else {}


def _fix(reason: str, database: str | None) -> str:
    """What to do about a connection PostgreSQL refused, by its message."""
    if f'database "{database}" does not exist' in reason:
        return f"create it (createdb {database}) or fix DATABASE_URL"
    if "Connection refused" in reason or "timeout expired" in reason:
        return "start PostgreSQL there, or fix the host and port in DATABASE_URL"
    if "unable to open database file" in reason or "readonly database" in reason:
        return "check the file and its directory can be written, or set DATABASE_URL elsewhere"
    return "fix DATABASE_URL (user, password in PGPASSWORD or ~/.pgpass, host, database)"


def upgrade_before_reading(url: str) -> None:
    """Bring an older mxcensus database to this code's schema before a command reads it.
    A missing SQLite file or an empty database is left alone (the command then says there
    is no run). Raises DatabaseError."""
    if missing_sqlite_file(url) is None:
        _with_engine(url, lambda engine: upgrade(engine, create=False))


def _upgrade(url: str) -> str:
    def act(engine: Engine) -> str:
        before = status(engine)
        upgrade(engine)
        after = status(engine)
        if before.at_head:
            return f"{shown(url)} is already at {after.revision} (head)"
        if before.empty:
            return f"created the schema in {shown(url)} at {after.revision} (head)"
        since = "its schema from before migrations" if before.legacy else before.revision
        return f"upgraded {shown(url)} from {since} to {after.revision} (head)"

    return _with_engine(url, act)


def _current(url: str) -> str:
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise DatabaseError(f"no database at {missing} (DATABASE_URL {shown(url)})")
    return _with_engine(url, lambda engine: describe(status(engine), shown(url)))


def describe(found: Status, where: str) -> str:
    """One line: the revision, and what, if anything, to do about it."""
    if found.at_head:
        return f"{found.revision} (head) in {where}"
    if not found.known:
        return (
            f"{found.revision} in {where}: newer than this mxcensus knows (its head is "
            f"{found.head}); upgrade mxcensus to use this database"
        )
    if found.legacy:
        return (
            f"no revision in {where}: made by mxcensus before migrations; `scrapy db upgrade` "
            f"stamps it with the baseline and upgrades it to {found.head} (head)"
        )
    if found.empty:
        return f"no revision in {where}: no mxcensus schema; `scrapy db upgrade` creates it"
    return f"{found.revision} in {where}, not at head {found.head}: run `scrapy db upgrade`"


def _with_engine(url: str, act: Callable[[Engine], T]) -> T:
    """Run `act` on an engine for `url`; every failure becomes one line naming the database."""
    try:
        engine = engine_for(url)
    except ArgumentError as e:  # not shown: it may hold a password
        raise DatabaseError(f"cannot use DATABASE_URL: {e}") from e
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise DatabaseError(f"cannot use DATABASE_URL {shown(url)}: {e}") from e
    try:
        return act(engine)
    except MigrationError as e:
        raise DatabaseError(f"{shown(url)}: {e}") from e
    except OperationalError as e:  # the server or file cannot be reached: say what to do
        reason = one_line(e)
        database = make_url(url).database
        raise DatabaseError(
            f"cannot use the database {shown(url)}: {reason}; {_fix(reason, database)}"
        ) from e
    except SQLAlchemyError as e:
        raise DatabaseError(f"cannot use the database {shown(url)}: {one_line(e)}") from e
    finally:
        engine.dispose()
