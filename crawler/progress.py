"""The crawl's progress in the log, for a person watching a census of hours.

Replaces Scrapy's LogStats ("Crawled N pages"): every `PROGRESS_INTERVAL` seconds one
line with domains done of the list's total (estimated from the share of the file read
while the list still streams), DNS lookups and SMTP probes done and in flight, the rate
and the time left. After Ctrl-C it says what the stop waits for: the requests in flight
end by their own stage deadlines, and a second Ctrl-C stops at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from scrapy import signals

from crawler.progress_line import Snapshot, duration, render

logger = logging.getLogger(__name__)

STOP_NOTICE_EVERY = 10.0  # seconds between "still waiting" lines while a stop drains
WATCH_EVERY = 1.0  # seconds between looks for a stop (a public flag; the look is cheap)


class Progress:
    def __init__(self, crawler: Any, interval: float):
        self.crawler = crawler
        self.interval = interval
        self._opened = 0.0
        self._calls: list[Any] = []
        self._stop_noted = 0.0  # monotonic time of the last stop notice; 0: none yet
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> Progress:
        return cls(crawler, crawler.settings.getfloat("PROGRESS_INTERVAL"))

    def spider_opened(self, spider: Any) -> None:
        from twisted.internet.task import LoopingCall

        self._opened = time.monotonic()
        loops = [(self._watch_stop, WATCH_EVERY)]
        if self.interval > 0:  # 0: no progress lines
            loops.append((self.log_progress, self.interval))
        for fn, every in loops:
            call = LoopingCall(fn)
            call.start(every, now=False)
            self._calls.append(call)

    def spider_closed(self, spider: Any) -> None:
        for call in self._calls:
            if call.running:
                call.stop()
        self._calls.clear()

    def log_progress(self) -> None:
        logger.info("%s", render(self.snapshot()))

    def snapshot(self) -> Snapshot:
        stats = self.crawler.stats.get_stats()
        done = sum(v for k, v in stats.items() if k.startswith("mxcensus/domains/status/"))
        probes = sum(
            v for k, v in stats.items() if k.startswith("mxcensus/probes/") and _outcome(k)
        )
        skipped = stats.get("mxcensus/domains/excluded", 0) + stats.get(
            "mxcensus/domains/resumed", 0
        )
        read, total, exact = self._list(skipped)
        dns, smtp = self._in_flight()
        return Snapshot(
            done, read, total, exact, probes, dns, smtp, time.monotonic() - self._opened
        )

    def _list(self, skipped: int) -> tuple[int, int | None, bool]:
        """Domains read from the list so far, and those this crawl will ask DNS for
        (less the excluded and resumed): exact once the list is read, else estimated
        from the share of its bytes read so far."""
        listed = getattr(self.crawler.spider, "domain_list", None)
        if listed is None:  # a list URL not fetched yet
            return 0, None, False
        stats = listed.stats
        if stats.sha256 is not None:  # read to its end
            return stats.entries, max(stats.entries - skipped, 0), True
        read = listed.bytes_read()
        if not stats.size or not read or not stats.entries:
            return stats.entries, None, False
        estimate = round(stats.entries * stats.size / read)
        return stats.entries, max(estimate - skipped, 0), False

    def _in_flight(self) -> tuple[int, int]:
        active = self.crawler.engine.downloader.active
        dns = sum(1 for request in active if request.url.startswith("dns:"))
        return dns, len(active) - dns

    def _watch_stop(self) -> None:
        """After Ctrl-C (the engine no longer running), say what the stop waits for."""
        engine = self.crawler.engine
        if engine.running:
            return
        now = time.monotonic()
        if self._stop_noted and now - self._stop_noted < STOP_NOTICE_EVERY:
            return
        dns, smtp = self._in_flight()
        if not dns + smtp:
            return
        settings = self.crawler.settings
        longest = max(
            settings.getfloat("SMTP_PROBE_TIMEOUT"),
            settings.getfloat("DNS_TIMEOUT") * settings.getint("DNS_TRIES"),
        )
        again = "still " if self._stop_noted else ""
        logger.warning(
            "stopping: %swaiting for %d DNS lookups and %d probes in flight, each ends by its "
            "stage deadline (at most %s); Ctrl-C again stops at once (what is buffered is "
            "written, the crawl recorded interrupted, the probes in flight lost)",
            again,
            dns,
            smtp,
            duration(longest),
        )
        self._stop_noted = now


def _outcome(key: str) -> bool:
    """mxcensus/probes/<outcome>: one per finished probe (the other keys count events)."""
    return key.rsplit("/", 1)[1] in ("tls", "none", "failure", "error")
