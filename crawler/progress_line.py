"""What a progress line says (pure): domains done of the total, probes, rate, time left.

The crawl's extension (`crawler.progress`) logs it; `scrapy summary` says a running crawl's
rate and elapsed time in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass


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
