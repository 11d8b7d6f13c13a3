"""`scrapy summary [--run ID_OR_NAME]`: domains by status and targets by outcome."""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

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

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args:
            raise UsageError("summary takes no positional arguments")
        assert self.settings is not None
        engine = engine_for(self.settings.get("DATABASE_URL"))
        found = find_run(engine, opts.run)
        if found is None:
            print(
                f"no run {opts.run or ''} in {self.settings.get('DATABASE_URL')}".replace("  ", " ")
            )
            self.exitcode = 1
            return
        print(render(summarize(engine, *found)))
