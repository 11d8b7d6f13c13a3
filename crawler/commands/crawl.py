"""`scrapy crawl`, exiting 1 when the crawl failed rather than finished.

Scrapy's own command exits 0 whenever the crawler could be built, even when
the spider's start failed (a list URL that could not be fetched): a script
running national lists must be able to tell. A bad argument, setting or list
found while the crawl starts is one line and exit status 2, as Scrapy's own
usage errors are, not asyncio's traceback of a task that failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from scrapy.settings import BaseSettings

from crawler import settings as project_settings
from crawler.commands.db import unusable
from crawler.coordination import STATUS_STAT
from crawler.spiders.tld_mx import ARGUMENTS, BAD_LIST, LIST_ERROR_STAT

logger = logging.getLogger(__name__)

# The exit status of each way a crawl's record ends (docs/design.md, "Exit statuses"); a
# crawl that never recorded its end failed.
EXIT_STATUS = {"finished": 0, "failed": 1, "interrupted": 3}


class Command(ScrapyCrawlCommand):
    def long_desc(self) -> str:
        width = max(map(len, ARGUMENTS)) + 2
        arguments = "\n".join(f"  {name:<{width}}{what}" for name, what in ARGUMENTS.items())
        return f"{super().long_desc()}.\n\nArguments of tld_mx (-a NAME=VALUE):\n{arguments}"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.formatter_class = _keeping_lines(parser.formatter_class)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("scrapy crawl takes one spider name, e.g. scrapy crawl tld_mx")
        assert self.crawler_process is not None
        try:
            check_numbers(self.settings)  # before Scrapy reads any of them
        except ValueError as e:
            raise UsageError(f"bad setting: {e}", print_help=False) from None
        _check_feeds(self.settings.getdict("FEEDS"))
        problem = unusable(self.settings.get("DATABASE_URL"))
        if problem is not None:  # before Scrapy starts: one line, not its shutdown
            print(problem, file=sys.stderr)
            self.exitcode = 1
            return
        crawler = self.crawler_process.create_crawler(args[0])
        started = self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:  # the crawl never started
            _report_start_failure(started)
            self.exitcode = 1
            return
        self.exitcode = EXIT_STATUS.get(crawler.stats.get_value(STATUS_STAT), 1)
        list_error = crawler.stats.get_value(LIST_ERROR_STAT)
        if list_error:  # a list URL's: the reason again, as the last line
            print(list_error, file=sys.stderr)
            if crawler.stats.get_value("finish_reason") == BAD_LIST:
                self.exitcode = 2
        if self.exitcode == 0 and _feeds_failed(crawler.stats.get_stats()):
            self.exitcode = 1  # -o FILE: Scrapy logs a failed feed and carries on


def _check_feeds(feeds: dict[str, Any]) -> None:
    """A local feed (`-o FILE`) whose directory cannot be made is a usage error at start:
    Scrapy would log a traceback for every item and still exit 0."""
    for uri in feeds:
        parsed = urlsplit(str(uri))
        if parsed.scheme not in ("", "file") or "%(" in str(uri):
            continue
        directory = Path(parsed.path if parsed.scheme else str(uri)).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"-o {uri}: cannot create {directory}: {e.strerror or e}; give a writable path",
                print_help=False,
            ) from None


def _feeds_failed(stats: dict[str, Any]) -> bool:
    return any(k.startswith("feedexport/failed_count/") and v for k, v in stats.items())


def _report_start_failure(started: object) -> None:
    """A crawl that could not start because of what it was given: one line, exit 2."""
    if not isinstance(started, asyncio.Future) or not started.done() or started.cancelled():
        return
    error = started.exception()  # retrieved: asyncio logs no traceback of it
    if error is None:
        return
    logger.debug("the crawl could not start", exc_info=error)  # -s LOG_LEVEL=DEBUG
    if isinstance(error, UsageError):
        raise UsageError(str(error), print_help=False)
    logger.error(
        "the crawl could not start: %s",
        str(error).splitlines()[0] if str(error) else type(error).__name__,
    )


def _keeping_lines(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """The help formatter, printing the description's lines as written (a table)."""

    class Formatter(formatter):  # type: ignore[misc, valid-type]
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            return "".join(indent + line for line in text.splitlines(keepends=True))

    return Formatter


def check_numbers(settings: BaseSettings) -> None:
    """Every numeric setting of the project reads as the number it must be."""
    for name, default in vars(project_settings).items():
        if not name.isupper() or isinstance(default, bool):
            continue
        read = {int: settings.getint, float: settings.getfloat}.get(type(default))
        if read is None:
            continue
        try:
            read(name)
        except (TypeError, ValueError):
            kind = "a whole number" if read == settings.getint else "a number"
            raise ValueError(f"{name}={settings.get(name)!r}: {kind} is needed") from None
