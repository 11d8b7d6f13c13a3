"""The crawl's garbage collector: what starts the crawl is kept out of its collections.

A crawl allocates a few hundred short-lived objects per request (requests, responses,
facts, Deferreds, futures) and keeps a little per IP for the whole run. With Python's
defaults (a young collection every 700 net allocations) the transients outlive young
collections, pile up in the oldest generation and trigger full collections, each of
which walks every live object again, the ~150,000 of Scrapy, Twisted, OpenSSL and
SQLAlchemy that the crawl never frees included: 14% of the CPU of a 10^5-domain crawl
(measured with gc.callbacks). So once the engine starts, what exists then is frozen
(`gc.freeze`: never collected, never walked) and young collections run every
`GC_YOUNG_THRESHOLD` allocations, which lets the transients die young. Reference
cycles are still collected; `GC_YOUNG_THRESHOLD = 0` keeps Python's defaults. The
crawl's stats keep what was frozen and the collections of each generation.
"""

from __future__ import annotations

import gc
from typing import Any

from scrapy import signals
from scrapy.exceptions import NotConfigured


class GarbageCollector:
    def __init__(self, stats: Any, young_threshold: int):
        self.stats = stats
        self.young_threshold = young_threshold
        self.defaults = gc.get_threshold()
        self.collections = [0, 0, 0]  # per generation, when the engine started

    @classmethod
    def from_crawler(cls, crawler: Any) -> GarbageCollector:
        threshold = crawler.settings.getint("GC_YOUNG_THRESHOLD")
        if threshold <= 0:
            raise NotConfigured
        extension = cls(crawler.stats, threshold)
        crawler.signals.connect(extension.engine_started, signal=signals.engine_started)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    def engine_started(self) -> None:
        gc.collect()
        gc.freeze()
        _, older, oldest = self.defaults
        gc.set_threshold(self.young_threshold, older, oldest)
        self.collections = _collections()
        self.stats.set_value("mxcensus/gc/frozen", gc.get_freeze_count())

    def spider_closed(self) -> None:
        for generation, (now, then) in enumerate(
            zip(_collections(), self.collections, strict=True)
        ):
            self.stats.set_value(f"mxcensus/gc/collections/{generation}", now - then)

    def engine_stopped(self) -> None:
        # The process may go on (tests, scrapyd's runner): leave the collector as found.
        gc.set_threshold(*self.defaults)
        gc.unfreeze()


def _collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]
