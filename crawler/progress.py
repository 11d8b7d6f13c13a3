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
from dataclasses import dataclass
from typing import Any

from scrapy import signals

logger = logging.getLogger(__name__)

STOP_NOTICE_EVERY = 10.0  # seconds between "still waiting" lines while a stop drains
WATCH_EVERY = 1.0  # seconds between looks for a stop (a public flag; the look is cheap)


@dataclass(frozen=True)
class Snapshot:
    """What the progress line says, read from the crawl's stats."""

    done: int  # domains answered by DNS
    read: int  # domains read from the list so far
    total: int | None  # the list's domains for this crawl, once known or estimated
    exact: bool  # the total is the list's count, not an estimate
    probes: int
    dns_active: int
    smtp_active: int
    elapsed: float  # seconds since the spider opened

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def left(self) -> float | None:
        """Seconds left at the rate so far; None before anything is done."""
        if self.total is None or self.rate <= 0 or self.done >= self.total:
            return None  # unknown, or only the last probes are left
        return (self.total - self.done) / self.rate


def duration(seconds: float) -> str:
    """1 h 02 min, 3 min 05 s, 42 s, <1 s."""
    if seconds < 0.5:
        return "<1 s"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def render(s: Snapshot) -> str:
    if s.total is None:
        domains = f"{s.done:,} domains done ({s.read:,} read so far)"
    else:
        share = f"{100 * s.done / s.total:.1f}%" if s.total else "-"
        about = "" if s.exact else "~"
        domains = f"{s.done:,} of {about}{s.total:,} domains ({share})"
    left = s.left
    eta = f", about {duration(left)} left" if left is not None else ""
    return (
        f"progress: {domains}; DNS {s.done:,} answered, {s.dns_active} in flight; "
        f"SMTP {s.probes:,} probes, {s.smtp_active} in flight; "
        f"{s.rate:.1f} domains/s{eta}"
    )


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
