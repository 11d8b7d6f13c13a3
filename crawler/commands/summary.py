"""`scrapy summary [--run ID_OR_NAME]`: domains by status and targets by outcome.

A database an older mxcensus made is upgraded first (the summary reads today's views).
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from crawler.commands.db import (
    DatabaseError,
    missing_sqlite_file,
    one_line,
    shown,
    upgrade_before_reading,
)
from crawler.commands.exits import interruptible
from schema.db import engine_for
from schema.summary import find_run, render, summarize


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "[--run ID_OR_NAME]"

    def short_desc(self) -> str:
        return "Print a run's domains by status and targets by outcome"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--run", help="run id or name (default: the latest run)")

    @interruptible
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args:
            raise UsageError("summary takes no positional arguments")
        assert self.settings is not None
        url = self.settings.get("DATABASE_URL")
        missing = missing_sqlite_file(url)
        if missing is not None:  # looking would create an empty file
            self._fail(f"no database at {missing} (DATABASE_URL {shown(url)})")
            return
        try:
            upgrade_before_reading(url)
        except DatabaseError as e:
            self._fail(str(e))
            return
        engine = engine_for(url)
        try:
            if not inspect(engine).has_table("runs"):  # an empty database: nothing stored yet
                self._fail(f"no run in {shown(url)}: no crawl has stored there yet")
                return
            found = find_run(engine, opts.run)
            if found is None:
                print(f"no run {opts.run or ''} in {shown(url)}".replace("  ", " "))
                self.exitcode = 1
                return
            lease = self.settings.getfloat("RUN_LEASE")
            print(render(summarize(engine, *found, lease=lease)))
        except SQLAlchemyError as e:
            self._fail(f"cannot read the runs in {shown(url)}: {one_line(e)}")
        finally:
            engine.dispose()

    def _fail(self, message: str) -> None:
        print(message, file=sys.stderr)
        self.exitcode = 1
