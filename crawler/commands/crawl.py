"""`scrapy crawl`, exiting 1 when the crawl failed rather than finished.

Scrapy's own command exits 0 whenever the crawler could be built, even when
the spider's start failed (a list URL that could not be fetched): a script
running national lists must be able to tell.
"""

from __future__ import annotations

import argparse

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

# Finish reasons of a crawl that did what it was asked: all of it, or until stopped.
COMPLETED = {"finished", "shutdown"}


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("scrapy crawl takes one spider name, e.g. scrapy crawl tld_mx")
        assert self.crawler_process is not None
        crawler = self.crawler_process.create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:  # the crawl never started
            self.exitcode = 1
            return
        reason = crawler.stats.get_value("finish_reason") or ""
        if reason not in COMPLETED and not reason.startswith("closespider"):
            self.exitcode = 1
        if crawler.stats.get_value("mxcensus/requests/failed"):
            self.exitcode = 1  # targets left unjudged: the crawl is recorded as failed
