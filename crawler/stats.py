"""The crawl's stats collector: Scrapy's in-memory one, without its per-access shim.

Scrapy 2.19's `StatsCollector.__getattribute__` wraps the public methods to warn about a
deprecated `spider` argument, and pays for it on every attribute access, its own
`self._stats` included: a failed lookup of a `_cached_…` name, an exception caught, per
access. A crawl counts several stats per request, and the shim cost ~1.5% of its CPU.
Nothing here passes `spider`; plain attribute access is all this collector needs.
"""

from __future__ import annotations

from scrapy.statscollectors import MemoryStatsCollector


class CrawlStats(MemoryStatsCollector):
    __getattribute__ = object.__getattribute__
